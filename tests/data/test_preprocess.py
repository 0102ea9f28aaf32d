"""Preprocessing parity with transformers' PIL processors (the references; no torchvision here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llava_video.data.preprocess import (
    CLIP_STD,
    ImageProcessorConfig,
    preprocess_anyres_image,
    preprocess_frames,
)
from llava_video.errors import ConfigError

clip_pil = pytest.importorskip("transformers.models.clip.image_processing_pil_clip")
llava_next_pil = pytest.importorskip("transformers.models.llava_next.image_processing_pil_llava_next")

SIZE = 56  # small crop keeps the test fast; the arithmetic is the same at 336
PINPOINTS = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]


def _config(**overrides: object) -> ImageProcessorConfig:
    return ImageProcessorConfig(crop_size=SIZE, shortest_edge=SIZE, grid_pinpoints=PINPOINTS, **overrides)


def _images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    ramp = np.linspace(0, 255, shape[-2])[None, :, None]  # smooth part: bicubic overshoot is exercised
    return ((noise.astype(np.float64) + ramp) / 2).astype(np.uint8)


def _max_level_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference in 0-255 pixel levels, undoing the std division."""
    std = torch.tensor(CLIP_STD, dtype=torch.float64)[None, :, None, None]
    return float(((a.double() - b.double()) * std).abs().max() * 255)


@pytest.mark.parametrize("height,width", [(36, 64), (64, 48), (57, 91), (20, 18), (56, 56)])
def test_frames_match_clip_pil_processor(height: int, width: int) -> None:
    frames = _images((3, height, width, 3))
    reference = clip_pil.CLIPImageProcessorPil(
        size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}
    )
    expected = torch.from_numpy(
        np.stack(reference([Image.fromarray(f) for f in frames], return_tensors="np")["pixel_values"])
    )
    ours = preprocess_frames(frames, _config())
    assert ours.shape == (3, 3, SIZE, SIZE) and ours.dtype == torch.float32
    assert _max_level_diff(ours, expected) <= 1.0


def test_crop_larger_than_resize_pads_like_reference() -> None:
    frames = _images((2, 30, 40, 3))
    config = ImageProcessorConfig(crop_size=SIZE, shortest_edge=40, grid_pinpoints=PINPOINTS)
    reference = clip_pil.CLIPImageProcessorPil(size={"shortest_edge": 40}, crop_size={"height": SIZE, "width": SIZE})
    expected = torch.from_numpy(
        np.stack(reference([Image.fromarray(f) for f in frames], return_tensors="np")["pixel_values"])
    )
    assert _max_level_diff(preprocess_frames(frames, config), expected) <= 1.0


@pytest.mark.parametrize("height,width", [(36, 64), (200, 75), (50, 50), (30, 180), (56, 112), (13, 17)])
def test_anyres_matches_llava_next_pil_processor(height: int, width: int) -> None:
    image = Image.fromarray(_images((height, width, 3), seed=height))
    reference = llava_next_pil.LlavaNextImageProcessorPil(
        size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}, image_grid_pinpoints=PINPOINTS
    )
    out = reference(image, return_tensors="np")
    tiles, image_size = preprocess_anyres_image(image, _config())
    assert image_size == tuple(int(v) for v in out["image_sizes"][0]) == (height, width)
    expected = torch.from_numpy(out["pixel_values"][0])
    assert tiles.shape == expected.shape
    assert _max_level_diff(tiles, expected) <= 1.0


def test_anyres_accepts_arrays_and_non_rgb_images() -> None:
    array = _images((40, 70, 3))
    from_array, size = preprocess_anyres_image(array, _config())
    from_rgba, _ = preprocess_anyres_image(Image.fromarray(array).convert("RGBA"), _config())
    assert size == (40, 70) and torch.equal(from_array, from_rgba)


def test_config_hf_round_trip(tmp_path: Path) -> None:
    config = ImageProcessorConfig()
    assert config.crop_size == 336 and config.grid_pinpoints[0] == [336, 672]
    hf = config.to_hf_dict()
    assert hf["crop_size"] == {"height": 336, "width": 336} and hf["size"] == {"shortest_edge": 336}
    assert ImageProcessorConfig.from_hf_dict(hf) == config
    # What transformers itself writes is readable too.
    saved = tmp_path / "hf"
    llava_next_pil.LlavaNextImageProcessorPil(
        size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}, image_grid_pinpoints=PINPOINTS
    ).save_pretrained(saved)
    assert ImageProcessorConfig.from_pretrained(saved) == _config()
    written = _config().save_pretrained(tmp_path / "ours")
    assert json.loads(written.read_text())["image_grid_pinpoints"] == PINPOINTS
    assert ImageProcessorConfig.from_pretrained(tmp_path / "ours") == _config()
    assert not list((tmp_path / "ours").glob("*.tmp"))


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        ImageProcessorConfig(crop_size=0)
    with pytest.raises(ConfigError):
        ImageProcessorConfig(image_std=(0.5, 0.0, 0.5))
    with pytest.raises(ConfigError):
        ImageProcessorConfig(crop_size=336, grid_pinpoints=[[300, 672]])
    with pytest.raises(ConfigError):
        ImageProcessorConfig.from_pretrained("/nonexistent/dir")
    with pytest.raises(ConfigError):
        preprocess_frames(np.zeros((2, 8, 8), dtype=np.uint8), _config())
