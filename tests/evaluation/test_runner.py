"""The resumable loop and the CLI, end to end on a generated NExT-QA-format set (fake model, real videos)."""

import json
from pathlib import Path

import av
import numpy as np
import pytest

from llava_video.cli.eval_nextqa import main, run
from llava_video.data.encode import write_video
from llava_video.evaluation.nextqa import read_questions
from llava_video.evaluation.runner import EvalConfig, read_predictions, run_evaluation, select_questions
from llava_video.evaluation.wups import OpenEndedScorer

VIDEOS = {"5001": "1000/5001", "5002": "1000/5002", "5003": "1001/5003"}
MC_ROWS = [("5001", 0, "CW", 1), ("5001", 1, "TN", 2), ("5001", 2, "TP", 0), ("5002", 0, "DC", 3),
           ("5002", 1, "CH", 4), ("5003", 0, "TC", 0), ("5003", 1, "DL", 1), ("5003", 2, "DO", 2)]
OE_ROWS = [("5001", 0, "CW", "to get the ball"), ("5001", 1, "DB", "yes"), ("5002", 0, "DC", "two"),
           ("5002", 1, "TN", "run away"), ("5003", 0, "DO", "dog"), ("5003", 1, "DL", "in the park")]
OE_OUTPUTS = ["to pick up the ball", "yes", "three", "runs away", "a cat", "park", "dog"]


def pyav_loader(path: Path, num_frames: int):
    """Stand-in for llava_video.data.video.load_video: uniform indices over all frames (PyAV)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    indices = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    return np.stack([frames[i] for i in indices])


def fake_mc_model(requests):
    outputs = []
    for r in requests:
        assert r.clip.shape[0] == 4 and r.clip.dtype == np.uint8
        letter = "ABCDE"[sum(map(ord, r.key)) % 5]
        outputs.append({0: f"{letter}", 1: f"The answer is ({letter}).", 2: "no idea"}[sum(map(ord, r.key)) % 3])
    return outputs


def fake_oe_model(requests):
    return [OE_OUTPUTS[sum(map(ord, r.key)) % len(OE_OUTPUTS)] for r in requests]


class Killed(RuntimeError):
    pass


def dies_after(model, n):
    calls = {"answered": 0}

    def answer(requests):
        if calls["answered"] + len(requests) > n:
            raise Killed("simulated kill")
        calls["answered"] += len(requests)
        return model(requests)

    answer.calls = calls
    return answer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("nextqa")
    rng = np.random.default_rng(0)
    for video, rel in VIDEOS.items():
        clip = rng.integers(0, 255, size=(6, 16, 16, 3), dtype=np.uint8)
        write_video(root / "videos" / f"{rel}.mp4", clip, fps=4)
        write_video(root / "flat" / f"{video}.mp4", clip, fps=4)
    (root / "map.json").write_text(json.dumps(VIDEOS))
    header = "video,frame_count,width,height,question,answer,qid,type"
    mc = [header + ",a0,a1,a2,a3,a4"] + [f"{v},6,16,16,what happened {q},{a},{q},{t},ball,run,sit,throw,cry"
                                         for v, q, t, a in MC_ROWS]
    (root / "mc.csv").write_text("\n".join(mc) + "\n")
    oe = [header] + [f"{v},6,16,16,what is it {q},{a},{q},{t}" for v, q, t, a in OE_ROWS]
    (root / "oe.csv").write_text("\n".join(oe) + "\n")
    (root / "add_ref.json").write_text(json.dumps({"5003": {"0": "puppy"}, "5002": {"0": "2"}}))
    return root


def _argv(dataset, out, task, *extra):
    annotations = dataset / ("mc.csv" if task == "mc" else "oe.csv")
    return ["--model", "tiny", "--annotations", str(annotations), "--task", task, "--frames", "4",
            "--output", str(out), "--no-progress", "--num-workers", "0", *extra]


def test_end_to_end_both_tasks(dataset, tmp_path, capsys):
    mc = run(_argv(dataset, tmp_path / "mc", "mc", "--video-root", str(dataset / "videos"), "--video-map",
                   str(dataset / "map.json"), "--batch-size", "3", "--num-workers", "1"),
             model_binder=lambda args: fake_mc_model, frame_loader=pyav_loader)
    assert mc["answered"] == 8 and mc["overall"]["count"] == 8
    assert set(mc["per_type"]) == {"CW", "TN", "DC", "CH", "TC", "DL", "DO"} and mc["per_type"]["TN"]["count"] == 2
    official = json.loads((tmp_path / "mc" / "official_predictions.json").read_text())
    assert official["5001_2"]["answer"] == 0 and len(official) == 8
    lines = (tmp_path / "mc" / "predictions.jsonl").read_text().splitlines()
    unparsed = [json.loads(x)["key"] for x in lines if not json.loads(x)["parsed"]]
    assert mc["unparsed"] == unparsed and all(official[k]["prediction"] == -1 for k in unparsed)
    correct = sum(v["answer"] == v["prediction"] for v in official.values())
    assert mc["overall"]["accuracy"] == pytest.approx(100 * correct / 8)

    oe = run(_argv(dataset, tmp_path / "oe", "oe", "--video-root", str(dataset / "flat"), "--extra-references",
                   str(dataset / "add_ref.json"), "--batch-size", "4"),
             model_binder=lambda args: fake_oe_model, frame_loader=pyav_loader, scorer_factory=OpenEndedScorer.create)
    assert oe["answered"] == 6 and set(oe["per_group"]) == {"causal", "temporal", "descriptive"}
    assert oe["scorer"]["wordnet"] == "3.0" and "trontagger" in oe["scorer"]["lemmatiser"] or oe["scorer"]["lemmatiser_exact"]
    nested = json.loads((tmp_path / "oe" / "official_predictions_oe.json").read_text())
    assert set(nested) == {"5001", "5002", "5003"} and set(nested["5001"]) == {"0", "1"}
    printed = capsys.readouterr().out
    assert "wups0" in printed and "overall" in printed and "causal" in printed


def _config(dataset, out, task="mc", **kw):
    return EvalConfig(task=task, output_dir=out, video_root=dataset / "flat", num_frames=4, num_workers=0,
                      progress=False, **kw)


def test_kill_and_resume_matches_uninterrupted(dataset, tmp_path):
    questions = read_questions(dataset / "mc.csv", task="mc")
    reference = run_evaluation(questions=questions, config=_config(dataset, tmp_path / "ref", batch_size=2),
                               answer_batch=fake_mc_model, frame_loader=pyav_loader)
    out = tmp_path / "resumed"
    killed = dies_after(fake_mc_model, 5)
    with pytest.raises(Killed):
        run_evaluation(questions=questions, config=_config(dataset, out, batch_size=2), answer_batch=killed,
                       frame_loader=pyav_loader)
    assert len(read_predictions(out / "predictions.jsonl")) == 4  # two whole batches written before the kill
    with (out / "predictions.jsonl").open("a") as handle:  # a kill in the middle of writing a line
        handle.write('{"key": "5003_0", "vid')
    resumed = dies_after(fake_mc_model, 100)
    result = run_evaluation(questions=questions, config=_config(dataset, out, batch_size=2), answer_batch=resumed,
                            frame_loader=pyav_loader)
    assert resumed.calls["answered"] == 4 and result.newly_answered == 4  # nothing recomputed
    keys = [json.loads(line)["key"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(q.key for q in questions) and len(keys) == len(set(keys))
    assert result.metrics == reference.metrics


def test_resume_refuses_other_settings(dataset, tmp_path):
    questions = read_questions(dataset / "mc.csv", task="mc")
    run_evaluation(questions=questions, config=_config(dataset, tmp_path, limit=2), answer_batch=fake_mc_model,
                   frame_loader=pyav_loader)
    config = EvalConfig(task="mc", output_dir=tmp_path, video_root=dataset / "flat", num_frames=8, num_workers=0,
                        progress=False)
    with pytest.raises(Exception, match="other settings"):
        run_evaluation(questions=questions, config=config, answer_batch=fake_mc_model, frame_loader=pyav_loader)


def test_limit_is_deterministic_and_stated(dataset, tmp_path):
    questions = read_questions(dataset / "mc.csv", task="mc")
    first = [q.key for q in select_questions(questions, limit=3, seed=7)]
    assert first == [q.key for q in select_questions(questions, limit=3, seed=7)]
    assert first == sorted(first, key=[q.key for q in questions].index)  # file order kept
    assert {tuple(q.key for q in select_questions(questions, limit=3, seed=s)) for s in range(6)} != {tuple(first)}
    metrics = run_evaluation(questions=questions, config=_config(dataset, tmp_path, limit=3, seed=7),
                             answer_batch=fake_mc_model, frame_loader=pyav_loader).metrics
    assert metrics["selection"]["keys"] == first and metrics["selection"]["limit"] == 3
    assert metrics["selection"]["seed"] == 7 and metrics["answered"] == 3
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["selection"]["keys"] == first


def test_missing_videos_skip_or_fail(dataset, tmp_path):
    questions = read_questions(dataset / "mc.csv", task="mc")
    vmap = {**VIDEOS, "5002": "1000/absent"}
    config = EvalConfig(task="mc", output_dir=tmp_path / "skip", video_root=dataset / "videos", video_map=vmap,
                        num_frames=4, num_workers=0, progress=False)
    metrics = run_evaluation(questions=questions, config=config, answer_batch=fake_mc_model,
                             frame_loader=pyav_loader).metrics
    assert metrics["skipped"]["missing_videos"] == ["5002"] and metrics["skipped"]["questions"] == 2
    assert metrics["answered"] == 6
    argv = _argv(dataset, tmp_path / "fail", "mc", "--video-root", str(dataset / "flat"), "--missing-videos", "error")
    (dataset / "flat" / "5003.mp4").rename(dataset / "flat" / "5003.bak")
    try:
        assert main(argv) == 2
    finally:
        (dataset / "flat" / "5003.bak").rename(dataset / "flat" / "5003.mp4")


@pytest.mark.parametrize("change", [
    lambda a: a.__setitem__(a.index("--annotations") + 1, "/nonexistent.csv"),
    lambda a: a.__setitem__(a.index("--task") + 1, "yesno"),
    lambda a: a.__setitem__(a.index("--frames") + 1, "0"),
    lambda a: a.__setitem__(a.index("--video-root") + 1, "/nonexistent"),
    lambda a: a.remove("--model") or a.remove("tiny"),
    lambda a: a.extend(["--limit", "0"]),
    lambda a: a.extend(["--extra-references", "x.json"]),
])
def test_cli_bad_input_exits_2_with_one_line(dataset, tmp_path, capsys, change):
    argv = _argv(dataset, tmp_path, "mc", "--video-root", str(dataset / "flat"))
    change(argv)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eval_nextqa.py: error:") and len(err.splitlines()) == 1


def test_cli_wrong_task_for_file(dataset, tmp_path, capsys):
    argv = _argv(dataset, tmp_path, "mc", "--video-root", str(dataset / "flat"))
    argv[argv.index("--annotations") + 1] = str(dataset / "oe.csv")
    assert main(argv) == 2
    assert "missing column" in capsys.readouterr().err
