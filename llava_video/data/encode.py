"""Writing clips with PyAV: used by the synthetic world, the tests and the benchmarks."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["write_video"]


def write_video(
    path: str | Path,
    frames: np.ndarray,
    *,
    fps: float = 8.0,
    codec: str = "libx264",
    keyframe_interval: int | None = None,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB into ``path``; the container follows the suffix.

    yuv420p needs even sides, so odd frame sizes are written with ``yuv444p`` when the codec allows it.
    Lossless settings are the caller's choice (``options={"crf": "0"}`` for x264).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if (height % 2 or width % 2) and codec in ("libx264", "libx265") else pix_fmt
        if keyframe_interval is not None:
            stream.codec_context.gop_size = keyframe_interval
        if options:
            stream.options = dict(options)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
