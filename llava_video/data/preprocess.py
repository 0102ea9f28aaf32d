"""Frames and images to model tensors: CLIP-style resize / centre crop / normalise, and AnyRes tiling.

Matches transformers' PIL processors (``CLIPImageProcessorPil``, ``LlavaNextImageProcessorPil``) without
torchvision. The resize is PIL's own bicubic filter on uint8, exactly as the reference calls it, so pixels
agree bit for bit (resizing only the cropped region with PIL's ``box`` was tried: up to 10 levels off at
the crop edges, so it is not used). Speed comes from resizing frames in threads (PIL releases the GIL) and
normalising through a 256-entry lookup table per channel that reproduces the reference's float arithmetic
exactly, instead of float64 copies of every frame.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from llava_video.atomic import write_text_atomic
from llava_video.errors import ConfigError
from llava_video.model.anyres import select_best_resolution

__all__ = [
    "ImageProcessorConfig",
    "preprocess_frames",
    "preprocess_anyres_image",
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_GRID_PINPOINTS",
    "PREPROCESSOR_CONFIG_NAME",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_GRID_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"


@dataclass
class ImageProcessorConfig:
    """How images and frames become ``pixel_values``; sizes are (height, width) where pairs appear."""

    crop_size: int = 336
    shortest_edge: int = 336
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    rescale_factor: float = 1 / 255
    do_center_crop: bool = True
    grid_pinpoints: list[list[int]] = field(default_factory=lambda: [list(p) for p in DEFAULT_GRID_PINPOINTS])

    def __post_init__(self) -> None:
        if not (isinstance(self.crop_size, int) and self.crop_size > 0):
            raise ConfigError(f"crop_size must be a positive int, got {self.crop_size!r}")
        if not (isinstance(self.shortest_edge, int) and self.shortest_edge > 0):
            raise ConfigError(f"shortest_edge must be a positive int, got {self.shortest_edge!r}")
        self.image_mean = tuple(float(v) for v in self.image_mean)  # type: ignore[assignment]
        self.image_std = tuple(float(v) for v in self.image_std)  # type: ignore[assignment]
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ConfigError(f"image_mean and image_std need 3 values, got {self.image_mean} {self.image_std}")
        if any(not s > 0 for s in self.image_std):
            raise ConfigError(f"image_std must be positive, got {self.image_std}")
        if not self.rescale_factor > 0:
            raise ConfigError(f"rescale_factor must be positive, got {self.rescale_factor}")
        if not self.do_center_crop and self.shortest_edge != self.crop_size:
            raise ConfigError("without centre crop, shortest_edge must equal crop_size to give square tiles")
        if not self.grid_pinpoints:
            raise ConfigError("grid_pinpoints must not be empty")
        self.grid_pinpoints = [[int(h), int(w)] for h, w in self.grid_pinpoints]
        for h, w in self.grid_pinpoints:
            if h <= 0 or w <= 0 or h % self.crop_size or w % self.crop_size:
                raise ConfigError(f"grid pinpoint {h}x{w} is not a positive multiple of crop_size {self.crop_size}")

    @classmethod
    def from_hf_dict(cls, config: dict[str, Any]) -> ImageProcessorConfig:
        """Read transformers' ``preprocessor_config.json`` layout (LlavaNext / CLIP image processors)."""
        crop = config.get("crop_size", 336)
        if isinstance(crop, dict):
            if crop.get("height") != crop.get("width"):
                raise ConfigError(f"only square crop sizes are supported, got {crop}")
            crop = crop["height"]
        size = config.get("size", {"shortest_edge": crop})
        if isinstance(size, dict):
            if "shortest_edge" in size:
                size = size["shortest_edge"]
            elif size.get("height") == size.get("width") and size.get("height"):
                size = size["height"]
            else:
                raise ConfigError(f"size must be {{'shortest_edge': n}} or a square, got {size}")
        return cls(
            crop_size=int(crop),
            shortest_edge=int(size),
            image_mean=tuple(config.get("image_mean", CLIP_MEAN)),
            image_std=tuple(config.get("image_std", CLIP_STD)),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)),
            do_center_crop=bool(config.get("do_center_crop", True)),
            grid_pinpoints=config.get("image_grid_pinpoints", DEFAULT_GRID_PINPOINTS),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        return {
            "image_processor_type": "LlavaNextImageProcessor",
            "crop_size": {"height": self.crop_size, "width": self.crop_size},
            "size": {"shortest_edge": self.shortest_edge},
            "do_resize": True,
            "resample": 3,  # PIL bicubic
            "do_center_crop": self.do_center_crop,
            "do_rescale": True,
            "rescale_factor": self.rescale_factor,
            "do_normalize": True,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "do_convert_rgb": True,
            "do_pad": True,
            "image_grid_pinpoints": [list(p) for p in self.grid_pinpoints],
        }

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ImageProcessorConfig:
        path = Path(directory) / PREPROCESSOR_CONFIG_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_hf_dict(data)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / PREPROCESSOR_CONFIG_NAME
        write_text_atomic(target, json.dumps(self.to_hf_dict(), indent=2) + "\n")
        return target


def _normalise_table(config: ImageProcessorConfig) -> np.ndarray:
    """(3, 256) float32: value of each uint8 level per channel, computed as the reference computes it.

    The reference rescales in float64 then casts to float32, then normalises in float32.
    """
    levels = (np.arange(256, dtype=np.float64) * config.rescale_factor).astype(np.float32)  # (256,)
    mean = np.asarray(config.image_mean, dtype=np.float32)[:, None]  # (3, 1)
    std = np.asarray(config.image_std, dtype=np.float32)[:, None]
    return (levels[None, :] - mean) / std  # (3, 256)


def _to_tensor(images: np.ndarray, config: ImageProcessorConfig) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 normalised."""
    table = _normalise_table(config)  # (3, 256)
    out = np.empty((images.shape[0], 3, *images.shape[1:3]), dtype=np.float32)  # (N, 3, S, S)
    for c in range(3):
        np.take(table[c], images[..., c], out=out[:, c])
    return torch.from_numpy(out)


def _shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    # Same rounding as transformers' get_resize_output_image_size(default_to_square=False): int() floors.
    if width <= height:
        return int(shortest_edge * height / width), shortest_edge
    return shortest_edge, int(shortest_edge * width / height)


def _resize_crop(frame: np.ndarray, config: ImageProcessorConfig) -> np.ndarray:
    """One (H, W, 3) uint8 frame -> (crop, crop, 3) uint8: shortest-edge bicubic resize, centre crop."""
    height, width = frame.shape[:2]
    new_h, new_w = _shortest_edge_size(height, width, config.shortest_edge)
    image = Image.fromarray(frame)
    crop = config.crop_size
    if not config.do_center_crop:
        return np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC))
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC))
    return _center_crop(resized, crop, crop)


def _center_crop(image: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """Centre crop of (H, W, 3); an image smaller than the crop is zero-padded first, as the reference does."""
    height, width = image.shape[:2]
    if crop_h > height or crop_w > width:
        new_h, new_w = max(crop_h, height), max(crop_w, width)
        padded = np.zeros((new_h, new_w, 3), dtype=image.dtype)
        pad_top, pad_left = math.ceil((new_h - height) / 2), math.ceil((new_w - width) / 2)
        padded[pad_top : pad_top + height, pad_left : pad_left + width] = image
        top, left = (height - crop_h) // 2 + pad_top, (width - crop_w) // 2 + pad_left
        return padded[top : top + crop_h, left : left + crop_w]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image[top : top + crop_h, left : left + crop_w]


_MIN_PIXELS_FOR_THREADS = 128 * 128


def preprocess_frames(frames: np.ndarray, config: ImageProcessorConfig, *, threads: int | None = None) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames -> (T, 3, crop, crop) float32, as CLIPImageProcessor would give.

    ``threads``: PIL resize workers (None: one per core, at most T).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ConfigError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[0] == 0:
        raise ConfigError("frames is empty (T = 0)")
    workers = min(frames.shape[0], threads or os.cpu_count() or 1)
    # A pool costs ~1 ms to start: worth it for real frames, not for the few-pixel frames of tests and the demo.
    if workers > 1 and frames.shape[1] * frames.shape[2] >= _MIN_PIXELS_FOR_THREADS:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            crops = list(pool.map(lambda f: _resize_crop(f, config), frames))
    else:
        crops = [_resize_crop(f, config) for f in frames]
    return _to_tensor(np.stack(crops), config)  # (T, 3, crop, crop)


def preprocess_anyres_image(
    image: Image.Image | np.ndarray, config: ImageProcessorConfig
) -> tuple[torch.Tensor, tuple[int, int]]:
    """AnyRes: (tiles, 3, crop, crop) float32 and the original (height, width), as LlavaNextImageProcessorPil.

    Tile 0 is the whole image squashed to crop x crop; then the image is fitted (aspect kept) into the best
    grid resolution, zero-padded centred (black in uint8, as the reference pads before normalising), and
    cut into crop-sized tiles row by row.
    """
    array = _as_rgb_array(image)
    height, width = array.shape[:2]
    best_h, best_w = select_best_resolution((height, width), config.grid_pinpoints)
    fit_h, fit_w = _fit_size(height, width, best_h, best_w)
    pil = Image.fromarray(array)
    fitted = np.asarray(pil.resize((fit_w, fit_h), Image.Resampling.BICUBIC))  # (fit_h, fit_w, 3)
    canvas = np.zeros((best_h, best_w, 3), dtype=np.uint8)
    top, left = (best_h - fit_h) // 2, (best_w - fit_w) // 2
    canvas[top : top + fit_h, left : left + fit_w] = fitted
    tile = config.crop_size
    grid = canvas.reshape(best_h // tile, tile, best_w // tile, tile, 3).transpose(0, 2, 1, 3, 4)  # (r, c, t, t, 3)
    base = np.asarray(pil.resize((config.shortest_edge, config.shortest_edge), Image.Resampling.BICUBIC))
    tiles = [base] + list(grid.reshape(-1, tile, tile, 3))  # row-major after the base tile
    # Each tile then goes through the ordinary resize + centre crop (a no-op for crop-sized square tiles).
    tiles = [t if t.shape[:2] == (tile, tile) and config.shortest_edge == tile else _resize_crop(t, config)
             for t in tiles]
    return _to_tensor(np.stack(tiles), config), (height, width)


def _fit_size(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """Size of the image scaled to fit (target_h, target_w) keeping its aspect, rounded as transformers does."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ConfigError(f"image must be a PIL image or (H, W, 3) uint8, got {array.shape} {array.dtype}")
    return array
