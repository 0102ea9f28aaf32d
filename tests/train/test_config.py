import json
from pathlib import Path

import pytest

from llava_video.data.records import read_mixture
from llava_video.errors import ConfigError
from llava_video.train.config import DatasetEntry, TrainConfig, dataset_entry_from_dict, load_train_config

REPO = Path(__file__).resolve().parents[2]
# configs/demo/{model,recipe}.yaml are the demo's architecture and stage list, not training recipes: they are
# validated in tests/synthetic/test_demo_recipe.py.
NOT_RECIPES = {REPO / "configs" / "demo" / "model.yaml", REPO / "configs" / "demo" / "recipe.yaml"}
RECIPES = sorted(
    p for p in (REPO / "configs").rglob("*.yaml")
    if "mixtures" not in p.parts and p.name != "mixture.yaml" and p not in NOT_RECIPES
)
MIXTURES = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p not in RECIPES and p not in NOT_RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_recipe_validates(path):
    cfg = load_train_config(path)
    assert isinstance(cfg, TrainConfig)
    if cfg.distributed.deepspeed:
        assert (REPO / cfg.distributed.deepspeed).is_file()


@pytest.mark.parametrize("path", MIXTURES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_mixture_validates(path):
    entries = [dataset_entry_from_dict(e, where=str(path)) for e in read_mixture(path)]
    assert entries and all(isinstance(e, DatasetEntry) for e in entries)


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
    for override in ("batching.modality=both", "optim.lr=fast", "parts.projector.train=false", "data.on_bad_record=ignore",
                     "runtime.dtype=fp8", "runtime.attn=flash", "runtime.device=tpu"):
        with pytest.raises(ConfigError):
            load_train_config(base, [override])
    cfg = load_train_config(base, ["optim.lr=1e-4", "schedule.max_steps=3"])
    assert cfg.optim.lr == 1e-4 and cfg.schedule.max_steps == 3


def test_inherit_merges_sections(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {init: tiny}\ndata: {train: a.json, num_frames: 4}\n")
    (tmp_path / "top.yaml").write_text("inherit: base.yaml\ndata: {num_frames: 8}\n")
    cfg = load_train_config(tmp_path / "top.yaml")
    assert cfg.data.train == "a.json" and cfg.data.num_frames == 8


def test_mixture_entry_unknown_key_is_named(tmp_path):
    (tmp_path / "mix.yaml").write_text("datasets:\n  - {path: a.json, sampel: all}\n")
    with pytest.raises(ConfigError, match=r"datasets\[\]\.sampel"):
        dataset_entry_from_dict(read_mixture(tmp_path / "mix.yaml")[0], where="mix.yaml")


def test_cli_check_and_usage_errors(capsys):
    from llava_video.cli.train import main

    assert main(["--config", str(REPO / "configs/stage2.yaml"), "--check"]) == 0
    assert main(["--config", str(REPO / "configs/stage2.yaml"), "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train.py: error: unknown config key(s): optim.lrr"]
    assert main(["--config", "does/not/exist.yaml"]) == 2
