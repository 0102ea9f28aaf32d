"""The shipped demo model (llava_video/assets/demo): it is small, loads as the default ``--model demo``, and
answers held-out synthetic NExT-QA multiple choice (scenes it never saw, made here) from the clip: issue #8's
CI check of >= 85% on a fixed subset (the shipped model: 86% on these 50, harder scenes than most; on the recipe's
2,976 held-out questions, where the issue asks for 90%, 90.7%)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_video.cli.infer_video import DEMO_MODEL_DIR, resolve_model_path

ROOT = Path(__file__).resolve().parents[2]
TRAIN_FRAMES = 8
MAX_BYTES = 25 * 1024 * 1024

# The checkpoint is produced by `python tools/train_demo.py --output runs/demo --install` (docs/demo.md).
pytestmark = pytest.mark.skipif(not (DEMO_MODEL_DIR / "config.json").is_file(),
                                reason="no demo checkpoint in llava_video/assets/demo yet (tools/train_demo.py --install)")


def test_demo_checkpoint_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in DEMO_MODEL_DIR.iterdir() if p.is_file()}
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert name in files, name
    assert sum(files.values()) <= MAX_BYTES


def test_default_model_is_the_demo_and_loads():
    from llava_video import LlavaVideo
    from llava_video.cli.infer_video import build_parser

    assert build_parser().parse_args([]).model == "demo"
    model = LlavaVideo.from_pretrained(resolve_model_path("demo"), device="cpu", dtype="float32")
    tokenizer = model.tokenizer
    assert tokenizer.convert_tokens_to_ids("<video>") == model.config.video_token_id
    assert tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """10 held-out clips (seed 0's held-out split: never in training) in the demo recipe's world, 50 questions."""
    from llava_video.demo.recipe import load_demo_recipe
    from llava_video.synthetic.export import ExportConfig, export_dataset

    data = tmp_path_factory.mktemp("demo_eval") / "data"
    world = load_demo_recipe(ROOT / "configs" / "demo").world()
    export_dataset(output=data, config=ExportConfig(seed=0, num_train=0, num_eval=10, num_images=0, num_dpo=0,
                                                    num_dpo_eval=0, frames=TRAIN_FRAMES, world=world))
    return data


def _mc_accuracy(data: Path, output: Path, video_map: Path | None = None) -> dict:
    """Held-out multiple choice through tools/eval_nextqa.py's own runner."""
    from llava_video.cli.eval_nextqa import run

    extra = ["--video-map", str(video_map)] if video_map else []
    return run(["--model", "demo", "--annotations", str(data / "nextqa_mc.csv"), "--video-root", str(data / "videos"),
                "--task", "mc", "--frames", str(TRAIN_FRAMES), "--batch-size", "10", "--num-workers", "0",
                "--no-progress", "--output", str(output), *extra])


@pytest.mark.slow
def test_demo_model_held_out_multiple_choice_accuracy(held_out, tmp_path):
    metrics = _mc_accuracy(held_out, tmp_path / "eval")
    assert metrics["overall"]["count"] == 50
    assert metrics["overall"]["accuracy"] >= 85.0, metrics["per_type"]  # percent


@pytest.mark.slow
def test_demo_model_answers_from_the_clip(held_out, tmp_path):
    """The same 50 questions, each asked about another clip (a rotation of the 10): the model's answers must
    come from the video, so the accuracy with the right clips is far above that with the wrong ones."""
    videos = sorted(p.stem for p in (held_out / "videos").glob("*.mp4"))
    rotated = tmp_path / "rotated.json"
    rotated.write_text(json.dumps({v: videos[(i + 1) % len(videos)] for i, v in enumerate(videos)}))
    right = _mc_accuracy(held_out, tmp_path / "right")["overall"]["accuracy"]
    wrong = _mc_accuracy(held_out, tmp_path / "wrong", video_map=rotated)["overall"]["accuracy"]
    assert right >= wrong + 15.0, (right, wrong)


@pytest.mark.slow
def test_infer_video_on_the_example_clip_at_32_frames(capsys):
    """``tools/infer_video.py --frames 32 examples/clip.mp4`` with the default model: the description names
    what the clip shows (scored by the synthetic rule judge against the ground-truth caption), and short
    questions get the ground-truth answers."""
    from llava_video.cli.infer_video import main
    from llava_video.synthetic.rule_judge import score_answer

    truth = json.loads((ROOT / "examples" / "clip.json").read_text())
    clip = str(ROOT / "examples" / "clip.mp4")
    assert main(["--frames", "32", "--json", clip]) == 0
    description = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["answer"]
    assert score_answer(caption=truth["caption"], question="Describe the video.", reference=truth["caption"],
                        answer=description) >= 4, description
    # The first question of the kinds the model answers best at 8 frames (docs/demo.md), from the clip's ground truth.
    asked = {}
    for q in truth["questions"]:
        asked.setdefault(q["kind"], q)
    for kind in ("colour", "count", "event"):
        question, expected = asked[kind]["question"], asked[kind]["answer"]
        assert main(["--frames", "32", "--json", "--prompt", question, clip]) == 0
        answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["answer"]
        assert answer.strip().rstrip(".").lower() == expected, (question, answer)


def test_greedy_judge_scores_do_not_depend_on_the_batch(tmp_path):
    """The recipe's judge comparison decodes its prompts in left-padded batches: every answer (and so every
    score) must be the one the prompt gets alone."""
    from llava_video.demo.judge_eval import greedy_judge_scores
    from llava_video.demo.recipe import load_demo_recipe
    from llava_video.synthetic.export import ExportConfig, export_dataset

    data = tmp_path / "data"
    world = load_demo_recipe(ROOT / "configs" / "demo").world()
    export_dataset(output=data, config=ExportConfig(seed=0, num_train=0, num_eval=6, num_images=0, num_dpo=0,
                                                    num_dpo_eval=11, frames=TRAIN_FRAMES, world=world))
    prompts = data / "dpo_eval_prompts.jsonl"
    results, answers = [], []
    for batch_size in (1, 4):  # 4 does not divide 11: the last batch is shorter
        out = tmp_path / f"greedy_{batch_size}.jsonl"
        results.append(greedy_judge_scores(model_dir=DEMO_MODEL_DIR, prompts=prompts, frames=TRAIN_FRAMES,
                                           max_new_tokens=24, batch_size=batch_size, output=out))
        answers.append([json.loads(line) for line in out.read_text().splitlines()])
    assert results[0]["count"] == 11
    assert answers[0] == answers[1]
    assert len({row["answer"] for row in answers[0]}) > 1  # the prompts differ, and so do their answers
    with pytest.raises(ValueError, match="batch_size"):
        greedy_judge_scores(model_dir=DEMO_MODEL_DIR, prompts=prompts, frames=TRAIN_FRAMES, batch_size=0)
