import json

import pytest
import torch

from llava_video.data.records import BadRecordError
from llava_video.model.llava_video import LlavaVideo
from llava_video.testing.tiny import tiny_config
from llava_video.train.checkpointing import latest_checkpoint
from llava_video.train.trainer import part_parameters, run_training



def _parts(model):
    return {part: {n: p.detach().clone() for n, p in params} for part, params in part_parameters(model).items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage1_then_stage2_lowers_loss_and_keeps_frozen_parts(tiny_data, tmp_path, tiny_recipe):
    torch.manual_seed(0)
    initial = _parts(LlavaVideo(tiny_config()))  # what model.init=tiny, seed 0 builds

    s1 = run_training(tiny_recipe("stage1", tiny_data, tmp_path / "s1"))
    after1 = _parts(LlavaVideo.from_pretrained(latest_checkpoint(tmp_path / "s1") / "model"))
    assert _same(after1["vision_tower"], initial["vision_tower"])
    assert _same(after1["language_model"], initial["language_model"])
    assert not _same(after1["projector"], initial["projector"])

    s2 = run_training(tiny_recipe("stage2", tiny_data, tmp_path / "s2", f"model.path={tmp_path / 's1'}"))
    after2 = _parts(LlavaVideo.from_pretrained(latest_checkpoint(tmp_path / "s2") / "model"))
    assert _same(after2["vision_tower"], initial["vision_tower"])
    assert not _same(after2["language_model"], after1["language_model"])

    losses = [json.loads(line)["loss"] for line in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    start = s1.first_loss
    end = sum(losses[-5:]) / 5  # mean of the last five steps, not one lucky batch
    drop = 1 - end / start
    print(f"stage1 start loss {start:.3f}, stage2 end loss {end:.3f}, drop {drop:.1%}")
    assert drop >= 0.80, (start, end)
    assert s1.token_efficiency == 1.0 and s2.token_efficiency == 1.0


def test_bad_records_counted_reported_or_fatal(tiny_data, tmp_path, tiny_recipe):
    records = json.loads(tiny_data.read_text())
    broken = tiny_data.parent / "videos" / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    records.append({"id": "broken_video", "video": "broken.mp4",
                    "conversations": [{"from": "human", "value": "<video> hi"}, {"from": "gpt", "value": "x"}]})
    records.append({"id": "missing", "video": "gone.mp4",
                    "conversations": [{"from": "human", "value": "<video> hi"}, {"from": "gpt", "value": "x"}]})
    path = tiny_data.parent / "with_bad.json"
    path.write_text(json.dumps(records, indent=1))
    summary = run_training(tiny_recipe("stage1", path, tmp_path / "skip", "schedule.max_steps=null", "schedule.epochs=1"))
    assert summary.bad_records == 2
    saved = (latest_checkpoint(tmp_path / "skip") / "bad_records.jsonl").read_text().splitlines()
    reasons = {json.loads(line)["record_id"]: json.loads(line)["reason"] for line in saved}
    assert reasons["missing"].startswith("missing media") and reasons["broken_video"].startswith("media failed to load")
    assert all(json.loads(line)["source"] == str(path) for line in saved)
    with pytest.raises(BadRecordError, match="gone.mp4"):
        run_training(tiny_recipe("stage1", path, tmp_path / "fail", "data.on_bad_record=fail"))


def test_over_long_records_are_reported(tiny_data, tmp_path, tiny_recipe):
    summary = run_training(tiny_recipe("stage1", tiny_data, tmp_path / "long", "data.max_length=40",
                                       "schedule.max_steps=null", "schedule.epochs=1"))
    # Every video (4 frames x 4 tokens + prompt) and multi-image record exceeds 40 tokens with visual tokens past the cut.
    assert summary.bad_records > 0
    saved = (latest_checkpoint(tmp_path / "long") / "bad_records.jsonl").read_text()
    assert "over-long" in saved
