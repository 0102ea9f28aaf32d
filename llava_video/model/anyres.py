"""AnyRes geometry, pure and shared.

The image preprocessor, the placeholder expansion, the token-budget planner and the model all ask
this module how an image is tiled and how many tokens it becomes, so they cannot disagree.
Sizes are ``(height, width)`` throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "select_best_resolution",
    "tile_grid_shape",
    "unpadded_feature_size",
    "anyres_max_downscaled_size",
    "image_feature_size",
    "image_token_count",
    "num_image_tiles",
]

Size = tuple[int, int]


def select_best_resolution(image_size: Size, pinpoints: Sequence[Sequence[int]]) -> Size:
    """Pick the candidate resolution that keeps the most of the image, then wastes the least area.

    The image is scaled (keeping its aspect ratio) to fit each candidate; the effective resolution is the
    number of original pixels that survive the downscale (never more than the original has). Ties go to
    the candidate with the smaller padded area. The first candidate wins remaining ties.
    """
    height, width = int(image_size[0]), int(image_size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if not pinpoints:
        raise ValueError("image_grid_pinpoints is empty")
    best: Size | None = None
    best_effective, best_wasted = -1, math.inf
    for cand_h, cand_w in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (int(cand_h), int(cand_w)), effective, wasted
    assert best is not None
    return best


def tile_grid_shape(image_size: Size, pinpoints: Sequence[Sequence[int]], tile_size: int) -> Size:
    """Rows and columns of ``tile_size`` tiles the chosen resolution is cut into."""
    best_h, best_w = select_best_resolution(image_size, pinpoints)
    return best_h // tile_size, best_w // tile_size


def num_image_tiles(image_size: Size, pinpoints: Sequence[Sequence[int]], tile_size: int) -> int:
    """Tiles the vision tower sees for one image: the grid plus the whole-image base tile."""
    rows, cols = tile_grid_shape(image_size, pinpoints, tile_size)
    return rows * cols + 1


def unpadded_feature_size(image_size: Size, grid_size: Size) -> Size:
    """Size of the stitched feature map once the letterbox padding is removed.

    ``grid_size`` is the stitched map (rows x cols of patches). The image was resized to fit the padded
    canvas and centred, so the side that was padded loses ``padding`` rows/columns on both ends.
    """
    orig_h, orig_w = image_size
    cur_h, cur_w = grid_size
    if orig_w / orig_h > cur_w / cur_h:
        # Wider than the canvas: the width fills it, rows were padded.
        new_h = int(round(orig_h * (cur_w / orig_w), 7))
        pad = (cur_h - new_h) // 2
        return cur_h - 2 * pad, cur_w
    new_w = int(round(orig_w * (cur_h / orig_h), 7))
    pad = (cur_w - new_w) // 2
    return cur_h, cur_w - 2 * pad


def anyres_max_downscaled_size(size: Size, patches_per_side: int, max_tiles: int | None) -> Size:
    """``anyres_max_N``: shrink an unpadded map holding more than 1.1x N tiles' worth of tokens."""
    if max_tiles is None:
        return size
    h, w = size
    times = math.sqrt(h * w / (max_tiles * patches_per_side**2))
    if times > 1.1:
        return int(h // times), int(w // times)
    return size


def image_feature_size(
    image_size: Size,
    pinpoints: Sequence[Sequence[int]],
    *,
    tile_size: int,
    patches_per_side: int,
    max_tiles: int | None = None,
) -> Size:
    """Rows and columns of the AnyRes feature map (after unpadding and ``anyres_max``), newlines excluded."""
    rows, cols = tile_grid_shape(image_size, pinpoints, tile_size)
    size = unpadded_feature_size(image_size, (rows * patches_per_side, cols * patches_per_side))
    return anyres_max_downscaled_size(size, patches_per_side, max_tiles)


def image_token_count(
    image_size: Size,
    pinpoints: Sequence[Sequence[int]],
    *,
    tile_size: int,
    patches_per_side: int,
    max_tiles: int | None = None,
    base_tokens: int | None = None,
) -> int:
    """Tokens one AnyRes image becomes: base tile, then the unpadded map with a newline after each row."""
    h, w = image_feature_size(
        image_size, pinpoints, tile_size=tile_size, patches_per_side=patches_per_side, max_tiles=max_tiles
    )
    base = patches_per_side**2 if base_tokens is None else base_tokens
    return base + h * (w + 1)
