"""The four steps chained by tools/dpo_loop.py on CPU: tiny model, tiny synthetic world, rule judge."""

import json

import pytest

from llava_video.cli.dpo_loop import main as loop_main
from llava_video.synthetic.export import ExportConfig, export_dataset
from llava_video.synthetic.world import WorldConfig
from llava_video.testing.tiny import tiny_model

from tests.train.conftest import REPO


@pytest.mark.slow
def test_sample_judge_pairs_train_chained(tmp_path, capsys):
    data = tmp_path / "data"
    export_dataset(output=data, config=ExportConfig(num_train=4, num_eval=1, num_images=0, num_dpo=12, num_dpo_eval=0,
                                                    frames=4, world=WorldConfig(size=32)))
    tiny_model().save_pretrained(tmp_path / "policy")
    work = tmp_path / "run"
    args = ["--model", str(tmp_path / "policy"), "--prompts", str(data / "dpo_prompts.jsonl"), "--work-dir", str(work),
            "--train-config", str(REPO / "configs" / "tiny" / "dpo.yaml"), "--num-samples", "4",
            "--max-new-tokens", "12", "--frames", "4", "--no-progress"]
    assert loop_main(args) == 0
    candidates = (work / "candidates.jsonl").read_text().splitlines()
    judged = [json.loads(line) for line in (work / "judged.jsonl").read_text().splitlines()]
    pairs = [json.loads(line) for line in (work / "pairs.jsonl").read_text().splitlines()]
    assert len(candidates) == 48 and len(judged) == 48 and all(j["status"] == "scored" for j in judged)
    assert pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    metrics = [json.loads(line) for line in (work / "train" / "metrics.jsonl").read_text().splitlines()]
    assert metrics and "rewards/accuracies" in metrics[-1]
    assert any((work / "train").glob("checkpoint-*/model/model.safetensors"))
    # Rerunning resumes every step: nothing is sampled or judged twice.
    capsys.readouterr()
    assert loop_main(args) == 0
    out = capsys.readouterr().out
    assert "sampled 0 candidates" in out and "48 already judged" in out
