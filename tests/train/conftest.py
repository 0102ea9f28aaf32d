from pathlib import Path

import pytest

from llava_video.testing.tiny_data import write_tiny_dataset
from llava_video.train.config import load_train_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    return write_tiny_dataset(root)


def data_overrides(train_json: Path) -> list[str]:
    root = train_json.parent
    return [f"data.train={train_json}", f"data.image_root={root / 'images'}", f"data.video_root={root / 'videos'}"]


def _tiny_recipe(name: str, train_json: Path, out: Path, *extra: str):
    """A shipped tiny recipe pointed at generated data and a temporary output folder."""
    overrides = data_overrides(train_json) + [f"checkpoint.output_dir={out}"] + list(extra)
    return load_train_config(REPO / "configs" / "tiny" / f"{name}.yaml", overrides)


@pytest.fixture
def tiny_recipe():
    return _tiny_recipe
