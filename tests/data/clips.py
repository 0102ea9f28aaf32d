"""Test clips whose frames say which frame they are: frame i shows its number as a colour code.

The top-left quadrant of frame i is filled with a colour that encodes i in base 16 (one digit per RGB
channel, levels 16 apart so lossy codecs cannot blur one digit into the next); the bottom-right corner
holds a white block so a rotation is visible. ``read_number`` recovers i from a decoded frame.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["numbered_frames", "read_number", "write_vfr_clip", "write_rotated_clip", "LEVEL_STEP"]

LEVEL_STEP = 16


def _code_colour(i: int) -> tuple[int, int, int]:
    digits = (i % 16, (i // 16) % 16, (i // 256) % 16)
    return tuple(8 + LEVEL_STEP * d for d in digits)  # type: ignore[return-value]


def numbered_frames(n: int, height: int, width: int) -> np.ndarray:
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)  # (T, H, W, 3)
    for i in range(n):
        frames[i, : height // 2, : width // 2] = _code_colour(i)
        frames[i, -max(2, height // 4):, -max(2, width // 4):] = 255
    return frames


def read_number(frame: np.ndarray) -> int:
    """The frame number drawn into ``frame`` (un-rotated), read from the centre of its code quadrant."""
    h, w = frame.shape[:2]
    patch = frame[h // 8 : h // 2 - h // 8, w // 8 : w // 2 - w // 8].reshape(-1, 3).astype(np.float64)
    digits = np.clip(np.round((patch.mean(axis=0) - 8) / LEVEL_STEP), 0, 15).astype(int)
    return int(digits[0] + 16 * digits[1] + 256 * digits[2])


def write_vfr_clip(path: Path, frames: np.ndarray, times_ms: list[int], *, codec: str = "libx264") -> Path:
    """Encode ``frames`` with explicit presentation times (milliseconds): a variable-frame-rate clip."""
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for frame, t in zip(frames, times_ms):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_rotated_clip(path: Path, frames: np.ndarray, *, rotation: int, fps: int = 10) -> Path:
    """Encode ``frames`` with a display-matrix rotation (degrees counter-clockwise)."""
    _, height, width, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
