"""A tiny mixed image + video LLaVA dataset written to a folder (tests, tiny recipes, benchmarks).

Clips are a few frames of a coloured square moving across a 32x32 canvas, images are coloured
rectangles of several sizes (so AnyRes picks different grids), and the records mix single-image,
multi-image, video and text-only conversations in the LLaVA JSON format.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np

__all__ = ["write_tiny_dataset", "moving_square_clip", "COLOURS"]

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230), "yellow": (230, 220, 40)}
_DIRECTIONS = ("left", "right")


def moving_square_clip(
    colour: tuple[int, int, int], *, direction: str, frames: int, size: int, row: int | None = None
) -> np.ndarray:
    """A square of side size/4 crossing a black frame left->right (or right->left); vertically centred
    unless ``row`` gives its top row."""
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)  # (T, H, W, 3)
    side = size // 4
    rows = slice(size // 2 - side // 2, size // 2 + side // 2) if row is None else slice(row, row + side)
    for t in range(frames):
        x = int((size - side) * t / max(1, frames - 1))
        if direction == "left":
            x = size - side - x
        video[t, rows, x : x + side] = colour
    return video


def _image(colour: tuple[int, int, int], height: int, width: int) -> np.ndarray:
    img = np.full((height, width, 3), 245, dtype=np.uint8)
    img[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = colour
    return img


def write_tiny_dataset(
    root: str | Path,
    *,
    num_videos: int = 4,
    num_images: int = 4,
    num_text: int = 2,
    frames: int = 8,
    size: int = 32,
    seed: int = 0,
    long_answers: bool = False,
) -> Path:
    """Write ``videos/``, ``images/`` and ``train.json`` under ``root``; returns the JSON path."""
    from PIL import Image

    from llava_video.data.encode import write_video

    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = list(COLOURS)
    records: list[dict] = []
    for i in range(num_videos):
        colour, direction = names[i % len(names)], _DIRECTIONS[(i // len(names) + i) % 2]
        rel = f"clip_{i}.mp4"
        write_video(root / "videos" / rel, moving_square_clip(COLOURS[colour], direction=direction, frames=frames, size=size), fps=8.0, options={"crf": "0"})
        answer = f"A {colour} square moves {direction}."
        if long_answers:
            answer = " ".join([answer] * 3)
        records.append(
            {
                "id": f"video_{i}",
                "video": rel,
                "conversations": [
                    {"from": "human", "value": "<video>\nPlease describe this video in detail."},
                    {"from": "gpt", "value": answer},
                ],
            }
        )
    shapes = [(size, size), (size, 2 * size), (2 * size, size), (48, 80)]
    for i in range(num_images):
        colour = names[(i + 1) % len(names)]
        h, w = shapes[i % len(shapes)]
        rel = f"image_{i}.png"
        Image.fromarray(_image(COLOURS[colour], h, w)).save(root / "images" / rel)
        records.append(
            {
                "id": f"image_{i}",
                "image": rel,
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat colour is the square?"},
                    {"from": "gpt", "value": f"The square is {colour}."},
                ],
            }
        )
    if num_images >= 2:
        records.append(
            {
                "id": "multi_image_0",
                "image": ["image_0.png", "image_1.png"],
                "conversations": [
                    {"from": "human", "value": "<image>\n<image>\nWhat colours are the two squares?"},
                    {"from": "gpt", "value": f"{names[1]} and {names[2]}."},
                ],
            }
        )
    for i in range(num_text):
        records.append(
            {
                "id": f"text_{i}",
                "conversations": [
                    {"from": "human", "value": "Answer with one word: is a triangle a shape?"},
                    {"from": "gpt", "value": "yes"},
                    {"from": "human", "value": "And a circle?"},
                    {"from": "gpt", "value": "yes"},
                ],
            }
        )
    rng.shuffle(records)
    path = root / "train.json"
    path.write_text(json.dumps(records, indent=1) + "\n")
    return path


if __name__ == "__main__":
    out = write_tiny_dataset(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny_data")
    print(out)
