import csv
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from llava_video.errors import ConfigError
from llava_video.evaluation.nextqa import MC_INSTRUCTION
from llava_video.synthetic.export import MC_COLUMNS, OE_COLUMNS, ExportConfig, export_dataset, write_example
from llava_video.synthetic.language import IMAGE_CAPTION_PROMPTS, VIDEO_CAPTION_PROMPTS
from llava_video.synthetic.samples import make_video_sample
from llava_video.synthetic.world import PALETTE, Scene, WorldConfig, render_clip

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(num_train=6, num_eval=4, num_images=4, num_dpo=5, num_dpo_eval=3, frames=8)
TEXT_FILES = ("stage1.json", "stage2.json", "eval.json", "nextqa_mc.csv", "nextqa_oe.csv", "dpo_prompts.jsonl",
              "dpo_eval_prompts.jsonl", "ground_truth.jsonl", "manifest.json")


def decode(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    export_dataset(output=a, config=ExportConfig(seed=3, **SMALL))
    # The second copy renders its clips in two worker processes: the files must not depend on it.
    export_dataset(output=b, config=ExportConfig(seed=3, **SMALL), num_workers=2)
    return a, b


def test_same_seed_same_bytes_and_frames(exported, tmp_path):
    """Same seed, same files, whether the clips are rendered in this process or by workers."""
    a, b = exported
    for name in TEXT_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    clips = sorted((a / "videos").glob("*.mp4"))
    assert len(clips) == len(list((b / "videos").glob("*.mp4"))) > 0
    for clip in clips:
        assert clip.read_bytes() == (b / "videos" / clip.name).read_bytes(), clip.name
        assert np.array_equal(decode(clip), decode(b / "videos" / clip.name))
    for image in sorted((a / "images").glob("*.png")):
        assert (a / "images" / image.name).read_bytes() == (b / "images" / image.name).read_bytes()
    other = tmp_path / "c"
    export_dataset(output=other, config=ExportConfig(seed=4, **SMALL))
    assert (other / "stage2.json").read_bytes() != (a / "stage2.json").read_bytes()


def test_open_question_records_only_with_multiple_choice(exported, tmp_path):
    a, _ = exported
    assert not (a / "stage2_open.json").exists()  # mc_share 0: stage2.json is already open questions only
    export_dataset(output=tmp_path / "mc", config=ExportConfig(seed=3, mc_share=1.0, mc_answer="text", **SMALL))
    mc = json.loads((tmp_path / "mc" / "stage2.json").read_text())
    open_only = json.loads((tmp_path / "mc" / "stage2_open.json").read_text())
    assert len(open_only) == len(mc) and "stage2_open.json" in json.loads((tmp_path / "mc" / "manifest.json").read_text())["files"]
    gpt = lambda records: [t["value"] for r in records for t in r["conversations"] if t["from"] == "human"]
    assert all("Answer with the option" not in q and "\nA. " not in q for q in gpt(open_only))
    captions = VIDEO_CAPTION_PROMPTS + IMAGE_CAPTION_PROMPTS
    assert all("\nA. " in q for q in gpt(mc) if q.split("\n", 1)[-1] not in captions)


def test_clips_decode_to_the_ground_truth(exported):
    a, _ = exported
    for line in (a / "ground_truth.jsonl").read_text().splitlines():
        row = json.loads(line)
        frames = decode(a / "videos" / f"{row['id']}.mp4")
        expected = render_clip(Scene.from_dict(row["scene"]), num_frames=row["frames"])
        assert frames.shape == expected.shape
        # x264 4:4:4 at crf 0: colours come back within rounding of the RGB->YUV conversion.
        assert np.abs(frames.astype(int) - expected).max() <= 2


def test_long_clips_are_the_same_scenes_sampled_more_densely(exported, tmp_path):
    """``long_share`` of the training clips get ``long_frames`` frames over the same duration; scenes, texts and
    held-out clips are those of the dataset without long clips."""
    a, _ = exported
    out = tmp_path / "long"
    export_dataset(output=out, config=ExportConfig(seed=3, long_frames=24, long_share=0.5, **SMALL))
    rows = {json.loads(line)["id"]: json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()}
    plain = {json.loads(line)["id"]: json.loads(line) for line in (a / "ground_truth.jsonl").read_text().splitlines()}
    counts = {split: sorted({r["frames"] for r in rows.values() if r["split"] == split}) for split in ("train", "eval")}
    assert counts == {"train": [8, 24], "eval": [8]}
    for name in ("stage1.json", "stage2.json", "nextqa_mc.csv", "dpo_prompts.jsonl"):
        assert (out / name).read_bytes() == (a / name).read_bytes(), name
    for clip_id, row in rows.items():
        assert {k: v for k, v in row.items() if k != "frames"} == {k: v for k, v in plain[clip_id].items() if k != "frames"}
        with av.open(str(out / "videos" / f"{clip_id}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.frames == row["frames"]
            assert float(stream.frames / stream.average_rate) == pytest.approx(2.0)  # clip_seconds


def test_dpo_clips_are_scenes_no_sft_record_shows(exported, tmp_path):
    """With ``num_dpo_clips`` the DPO prompts ask about clips of their own (training-split scenes after the SFT
    clips, at ``frames`` even with long clips); everything else is the dataset without them."""
    a, _ = exported
    out = tmp_path / "dpo_clips"
    export_dataset(output=out, config=ExportConfig(seed=3, num_dpo_clips=2, long_frames=24, long_share=1.0,
                                                   **{**SMALL, "num_train": 6}))
    sft_videos = {r["video"] for name in ("stage1.json", "stage2.json") for r in json.loads((out / name).read_text())
                  if "video" in r}
    prompts = [json.loads(line) for line in (out / "dpo_prompts.jsonl").read_text().splitlines()]
    assert {p["video"] for p in prompts} == {"videos/20000006.mp4", "videos/20000007.mp4"}
    assert not sft_videos & {p["video"] for p in prompts}
    rows = {json.loads(line)["id"]: json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()}
    assert rows["20000006"]["role"] == "dpo" and rows["20000006"]["frames"] == 8 and rows["20000005"]["frames"] == 24
    assert json.loads((out / "manifest.json").read_text())["counts"]["dpo_clips"] == 2
    for name in ("stage1.json", "stage2.json", "nextqa_mc.csv", "dpo_eval_prompts.jsonl"):
        assert (out / name).read_bytes() == (a / name).read_bytes(), name
    only = tmp_path / "dpo_clips_only"  # no SFT clips at all: the DPO clips are still marked as such
    export_dataset(output=only, config=ExportConfig(seed=3, num_dpo_clips=1, **{**SMALL, "num_train": 0}))
    assert [json.loads(line).get("role") for line in (only / "ground_truth.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == "train"] == ["dpo"]
    with pytest.raises(ConfigError, match="num_dpo_clips"):
        ExportConfig(**{**SMALL, "num_dpo_clips": -1})


def test_train_count_weights_change_the_training_split_only(tmp_path):
    """Training clips, DPO clips and stills follow ``train_count_weights``; held-out clips and everything derived
    from them are byte for byte those of the dataset without weights."""
    out, even = tmp_path / "two_objects", tmp_path / "even"
    world = WorldConfig(max_objects=2)
    export_dataset(output=even, config=ExportConfig(seed=3, num_dpo_clips=2, world=world, **SMALL))
    export_dataset(output=out, config=ExportConfig(seed=3, num_dpo_clips=2, world=world, train_count_weights=(0.0, 1.0),
                                                   **SMALL))
    rows = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert {len(r["scene"]["objects"]) for r in rows if r["split"] == "train"} == {2}
    for name in ("nextqa_mc.csv", "nextqa_oe.csv", "eval.json", "dpo_eval_prompts.jsonl"):
        assert (out / name).read_bytes() == (even / name).read_bytes(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["train_count_weights"] == [0.0, 1.0]
    with pytest.raises(ConfigError, match="train_count_weights"):
        ExportConfig(**SMALL, world=world, train_count_weights=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("bad", [dict(long_share=1.5, long_frames=24), dict(long_share=0.5, long_frames=8),
                                 dict(long_share=0.5, long_frames=0)])
def test_long_clip_settings_are_checked(bad):
    with pytest.raises(ConfigError, match="long_"):
        ExportConfig(**{**SMALL, **bad})


def test_csv_columns_and_rows(exported):
    a, _ = exported
    with open(a / "nextqa_mc.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == MC_COLUMNS
        mc = list(reader)
    with open(a / "nextqa_oe.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == OE_COLUMNS
        oe = list(reader)
    assert len(mc) == len(oe) > 0
    for m, o in zip(mc, oe):
        assert 0 <= int(m["answer"]) <= 4 and m[f"a{m['answer']}"] == o["answer"]
        assert m["type"] in {"CH", "TN", "TC", "DL", "DC", "DO"}
        assert (a / "videos" / f"{m['video']}.mp4").is_file()
        assert (m["frame_count"], m["width"], m["height"]) == ("8", "64", "64")
    assert len({(m["video"], m["qid"]) for m in mc}) == len(mc)


def test_llava_records(exported):
    a, _ = exported
    stage1 = json.loads((a / "stage1.json").read_text())
    stage2 = json.loads((a / "stage2.json").read_text())
    assert len(stage1) == len(stage2) == SMALL["num_train"] + SMALL["num_images"]
    for record in stage1 + stage2:
        media = "video" if "video" in record else "image"
        assert (a / record[media]).is_file()
        turns = record["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith(f"<{media}>\n")
        assert sum(t["value"].count("<") for t in turns) == 1
    assert {("video" in r) for r in stage2} == {True, False}
    assert all(len(r["conversations"]) == 2 for r in stage1)


def test_dpo_mc_share_writes_training_questions_as_multiple_choice(tmp_path):
    """``dpo_mc_share`` rewrites DPO training questions in the evaluation's multiple-choice prompt, referenced by
    the right option's text; descriptions, the held-out DPO prompts and the SFT files stay byte for byte."""
    out = tmp_path / "dpo_mc"
    export_dataset(output=out, config=ExportConfig(seed=3, dpo_mc_share=1.0, **{**SMALL, "num_dpo": 12}))
    plain = tmp_path / "plain"
    export_dataset(output=plain, config=ExportConfig(seed=3, **{**SMALL, "num_dpo": 12}))
    rows = [json.loads(line) for line in (out / "dpo_prompts.jsonl").read_text().splitlines()]
    before = [json.loads(line) for line in (plain / "dpo_prompts.jsonl").read_text().splitlines()]
    questions = [(r, b) for r, b in zip(rows, before) if r["kind"] != "caption"]
    assert questions and len(questions) < len(rows)  # both kinds of prompt present at the default caption share
    for row, old in questions:
        lines = row["question"].split("\n")
        assert lines[0] == old["question"] and lines[-1] == MC_INSTRUCTION
        options = [line.split(". ", 1)[1] for line in lines[1:-1]]
        assert len(options) == 5 and row["reference"] == old["reference"] and old["reference"] in options
    assert [r for r in rows if r["kind"] == "caption"] == [b for b in before if b["kind"] == "caption"]
    for name in ("stage1.json", "stage2.json", "nextqa_mc.csv", "dpo_eval_prompts.jsonl"):
        assert (out / name).read_bytes() == (plain / name).read_bytes(), name
    assert (plain / "dpo_prompts.jsonl").read_bytes() != (out / "dpo_prompts.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="dpo_mc_share"):
        ExportConfig(**SMALL, dpo_mc_share=1.5)


def test_dpo_prompts_and_manifest(exported):
    a, _ = exported
    rows = [json.loads(line) for line in (a / "dpo_prompts.jsonl").read_text().splitlines()]
    held = [json.loads(line) for line in (a / "dpo_eval_prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and len(held) == 3
    for row in rows + held:
        assert {"id", "video", "question", "reference", "caption", "type", "ground_truth"} <= set(row)
        assert (a / row["video"]).is_file()
    assert all(r["video"].startswith("videos/2") for r in rows) and all(r["video"].startswith("videos/1") for r in held)
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["counts"]["train_clips"] == 6
    assert manifest["parameters"]["world"]["size"] == 64


def test_in_memory_sample_equals_exported_clip(exported):
    a, _ = exported
    sample = make_video_sample(seed=3, split="eval", index=1, num_frames=8, config=WorldConfig())
    assert np.abs(decode(a / "videos" / f"{sample.id}.mp4").astype(int) - sample.frames).max() <= 2


def test_example_clip(tmp_path):
    clip, meta = write_example(output_dir=tmp_path, seed=6, frames=32)
    truth = json.loads(meta.read_text())
    frames = decode(clip)
    assert frames.shape == (32, 64, 64, 3) and clip.stat().st_size < 100_000
    obj = truth["scene"]["objects"][0]
    x, y = (round(v) for v in obj["start"])
    assert np.abs(frames[0, y, x].astype(int) - PALETTE[obj["colour"]]).max() <= 2


def test_shipped_example_is_the_demo_worlds():
    """examples/clip.mp4 is `make_synthetic.py --example examples --seed 9` in the demo recipe's world."""
    from llava_video.demo.recipe import load_demo_recipe

    shipped = json.loads((ROOT / "examples" / "clip.json").read_text())
    world = load_demo_recipe(ROOT / "configs" / "demo").world()
    sample = make_video_sample(seed=9, split="eval", index=0, num_frames=32, config=world)
    assert shipped["caption"] == sample.caption and shipped["frames"] == 32
    assert np.abs(decode(ROOT / "examples" / "clip.mp4").astype(int) - sample.frames).max() <= 2


@pytest.mark.parametrize("args", [["--output", "X", "--size", "8"], ["--output", "X", "--frames", "1"],
                                  ["--output", "X", "--holdout", "nope"], ["--output", "X", "--background", "1,2"],
                                  ["--output", "X", "--background", "0,0,300"], ["--output", "X", "--shapes", "hexagon,square,cross"],
                                  ["--output", "X", "--shapes", "square,cross"], ["--output", "X", "--dpo-caption-share", "1.5"],
                                  ["--output", "X", "--max-objects", "2", "--train-count-weights", "1,x"],
                                  ["--output", "X", "--max-objects", "2", "--train-count-weights", "1,2,3"],
                                  ["--output", "X", "--num-workers", "-1"], []])
def test_cli_bad_values_exit_2(args, tmp_path):
    args = [a.replace("X", str(tmp_path / "out")) for a in args]
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "make_synthetic.py"), *args],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
