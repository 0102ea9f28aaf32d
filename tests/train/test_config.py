import json
from pathlib import Path

import pytest

from llava_video.data.records import read_mixture
from llava_video.errors import ConfigError
from llava_video.train.config import DatasetEntry, TrainConfig, load_train_config

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "mixtures" not in p.parts and p.name != "mixture.yaml")
MIXTURES = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p not in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_recipe_validates(path):
    cfg = load_train_config(path)
    assert isinstance(cfg, TrainConfig)
    if cfg.distributed.deepspeed:
        assert (REPO / cfg.distributed.deepspeed).is_file()


@pytest.mark.parametrize("path", MIXTURES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_mixture_validates(path):
    entries = [DatasetEntry(**e) for e in read_mixture(path)]
    assert entries


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_configs_parse(path):
    ds = json.loads(path.read_text())
    stage = ds["zero_optimization"]["stage"]
    assert stage == (2 if "zero2" in path.name else 3)
    assert ("offload_optimizer" in ds["zero_optimization"]) == ("offload" in path.name)


def test_published_stage_settings():
    s1 = load_train_config(REPO / "configs/stage1.yaml")
    assert s1.parts.projector.train and not s1.parts.language_model.train and not s1.parts.vision_tower.train
    assert s1.parts.projector.lr == 1e-3 and s1.optim.warmup_ratio == 0.03 and s1.schedule.epochs == 1
    s2 = load_train_config(REPO / "configs/stage2.yaml")
    assert s2.parts.language_model.train and s2.parts.projector.train and not s2.parts.vision_tower.train
    assert s2.optim.lr == 2e-5 and s2.parts.vision_tower.lr == 2e-6
    video = load_train_config(REPO / "configs/video_sft.yaml")
    assert video.batching.modality == "mixed" and video.data.num_frames == 16


@pytest.mark.parametrize(
    "override, key",
    [("optim.lrr=1", "optim.lrr"), ("parts.projector.tain=true", "parts.projector.tain"), ("bogus=1", "bogus")],
)
def test_unknown_keys_are_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_train_config(REPO / "configs/tiny/stage1.yaml", [override])


def test_bad_values_are_errors():
    base = REPO / "configs/tiny/stage1.yaml"
    for override in ("batching.modality=both", "optim.lr=fast", "parts.projector.train=false", "data.on_bad_record=ignore"):
        with pytest.raises(ConfigError):
            load_train_config(base, [override])
    cfg = load_train_config(base, ["optim.lr=1e-4", "schedule.max_steps=3"])
    assert cfg.optim.lr == 1e-4 and cfg.schedule.max_steps == 3


def test_inherit_merges_sections(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {init: tiny}\ndata: {train: a.json, num_frames: 4}\n")
    (tmp_path / "top.yaml").write_text("inherit: base.yaml\ndata: {num_frames: 8}\n")
    cfg = load_train_config(tmp_path / "top.yaml")
    assert cfg.data.train == "a.json" and cfg.data.num_frames == 8
