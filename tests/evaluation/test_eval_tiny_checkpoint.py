"""tools/eval_nextqa.py end to end with a real (tiny, random) checkpoint on a generated NExT-QA-format set."""

from __future__ import annotations

import json

import pytest

from llava_video.cli import eval_nextqa
from llava_video.synthetic.export import ExportConfig, export_dataset
from llava_video.synthetic.world import WorldConfig
from llava_video.testing import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("nextqa-tiny")
    data = root / "data"
    export_dataset(output=data, config=ExportConfig(seed=3, num_train=0, num_eval=3, num_images=0, num_dpo=0, num_dpo_eval=0, frames=8, world=WorldConfig(size=32)))
    ckpt = root / "ckpt"
    tiny_model(seed=11).save_pretrained(ckpt)
    return data, ckpt, root


@pytest.mark.parametrize("task", ["mc", "oe"])
def test_both_tasks_with_a_tiny_checkpoint(setup, task, capsys):
    data, ckpt, root = setup
    out = root / f"out-{task}"
    code = eval_nextqa.main([
        "--model", str(ckpt), "--annotations", str(data / f"nextqa_{task}.csv"), "--video-root", str(data / "videos"),
        "--task", task, "--frames", "4", "--batch-size", "2", "--num-workers", "0", "--output", str(out),
        "--max-new-tokens", "4", "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    lines = (out / "predictions.jsonl").read_text().splitlines()
    n_questions = sum(1 for _ in open(data / f"nextqa_{task}.csv")) - 1
    assert len(lines) == n_questions > 0
    keys = [(row["video"], row["qid"]) for row in map(json.loads, lines)]  # NExT-QA qids count per video
    assert len(set(keys)) == len(keys)
    assert metrics["answered"] == n_questions
    overall = metrics["overall"]
    if task == "oe":
        assert 0 <= overall["wups9"] <= overall["wups0"] <= 100
    else:
        assert 0 <= overall["accuracy"] <= 100
