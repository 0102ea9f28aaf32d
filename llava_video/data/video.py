"""Turning a video file, a GIF, a folder of frames or an image into N sampled RGB frames.

Every video path of the toolkit starts here. Sampling is decided on the frame index (packet timestamps,
no decoding), then only the chosen frames are decoded and kept; the whole video is never held in memory.
Policies (uniform / fps / time window, short clips) are documented in docs/video_input.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from llava_video.data.video_backends import (
    Deadline,
    build_index,
    check_media_path,
    decode_decord,
    decode_pyav,
    rotate_frames,
)
from llava_video.errors import ConfigError, VideoDecodeError
from llava_video.optional import is_available

__all__ = [
    "VideoClip", "load_video", "sample_indices", "header_frame_count", "EmptyWindowError", "IMAGE_SUFFIXES", "Backend",
]

Backend = Literal["auto", "pyav", "decord"]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
# Tolerance when comparing a frame's time with a sampling instant (float seconds from integer pts).
_TIME_EPS = 1e-6


class EmptyWindowError(ConfigError):
    """The requested time window holds no frame of this source (load_video reports it per file)."""


@dataclass
class VideoClip:
    """Sampled frames and where they came from."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB, rotation metadata already applied
    indices: list[int]  # index of each frame in the source's presentation order
    timestamps: list[float]  # seconds from the source's first frame
    duration: float  # seconds
    source_fps: float
    path: str
    num_source_frames: int

    def __post_init__(self) -> None:
        t = self.frames.shape[0]
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}")
        if len(self.indices) != t or len(self.timestamps) != t:
            raise ValueError(f"{t} frames but {len(self.indices)} indices and {len(self.timestamps)} timestamps")


def sample_indices(
    num_source_frames: int,
    *,
    num_frames: int | None = 32,
    fps: float | None = None,
    max_frames: int | None = None,
    timestamps: Sequence[float] | np.ndarray | None = None,
    source_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    duration: float | None = None,
) -> list[int]:
    """Choose frames (ascending, no repeats) from a source of ``num_source_frames`` frames.

    * ``fps=None``: ``num_frames`` evenly spaced frames, ``linspace(first, last, N)`` floored (the
      LLaVA-NeXT-Video rule); ``num_frames=None`` takes every frame.
    * ``fps=F``: one frame per 1/F seconds (the frame shown at each instant); if that gives more than
      ``max_frames`` (default: ``num_frames``), ``max_frames`` evenly spaced frames instead.
    * ``start``/``end`` (seconds from the first frame) restrict both to the frames shown in [start, end).
    * Short clips are never padded: fewer frames than asked means every frame once (see docs/video_input.md).

    Frame times come from ``timestamps`` (variable frame rate) or, if absent, ``i / source_fps``;
    ``duration`` (seconds) is when the last frame stops being shown (default: one frame interval after it).
    """
    if num_source_frames <= 0:
        raise ConfigError(f"num_source_frames must be positive, got {num_source_frames}")
    if num_frames is not None and num_frames <= 0:
        raise ConfigError(f"num_frames must be positive or None, got {num_frames}")
    if max_frames is not None and max_frames <= 0:
        raise ConfigError(f"max_frames must be positive or None, got {max_frames}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    if start is not None and end is not None and not end > start:
        raise ConfigError(f"end ({end}) must be after start ({start})")
    times = _frame_times(num_source_frames, timestamps=timestamps, source_fps=source_fps,
                         need=fps is not None or start is not None or end is not None)

    candidates = np.arange(num_source_frames)
    if start is not None or end is not None:
        lo = -np.inf if start is None else start - _TIME_EPS
        hi = np.inf if end is None else end - _TIME_EPS
        assert times is not None
        candidates = candidates[(times >= lo) & (times < hi)]
        if candidates.size == 0:
            raise EmptyWindowError(
                f"no frame is shown in the window [{start}, {end}) s (the source spans "
                f"{times[0]:.3f}-{times[-1]:.3f} s)"
            )

    if fps is None:
        return _uniform(candidates, num_frames)
    assert times is not None
    cap = max_frames if max_frames is not None else num_frames
    window_start = float(times[candidates[0]]) if start is None else float(start)
    window_end = _source_end(times, duration) if end is None else float(end)
    instants = window_start + np.arange(int(np.ceil((window_end - window_start) * fps - _TIME_EPS))) / fps
    instants = instants[instants < window_end]
    cand_times = times[candidates]
    # The frame on screen at instant t is the last one whose time is <= t (the first one before it starts).
    pos = np.clip(np.searchsorted(cand_times, instants + _TIME_EPS, side="right") - 1, 0, candidates.size - 1)
    chosen = np.unique(candidates[pos])
    if cap is not None and chosen.size > cap:
        return _uniform(candidates, cap)
    return chosen.tolist()


def _frame_times(
    n: int, *, timestamps: Sequence[float] | np.ndarray | None, source_fps: float | None, need: bool
) -> np.ndarray | None:
    if timestamps is not None:
        times = np.asarray(timestamps, dtype=np.float64)
        if times.shape != (n,):
            raise ConfigError(f"timestamps must hold one time per frame ({n}), got shape {times.shape}")
        if np.any(np.diff(times) < 0):
            raise ConfigError("timestamps must be non-decreasing")
        return times
    if source_fps is not None:
        if not source_fps > 0:
            raise ConfigError(f"source_fps must be positive, got {source_fps}")
        return np.arange(n, dtype=np.float64) / source_fps
    if need:
        raise ConfigError("fps sampling and time windows need timestamps or source_fps")
    return None


def _source_end(times: np.ndarray, duration: float | None) -> float:
    if duration is not None:
        return float(duration)
    interval = float(np.median(np.diff(times))) if times.size > 1 else 0.0
    return float(times[-1]) + max(interval, _TIME_EPS)


def _uniform(candidates: np.ndarray, num_frames: int | None) -> list[int]:
    if num_frames is None or num_frames >= candidates.size:
        return candidates.tolist()  # short clip: every frame once, no padding
    positions = np.linspace(0, candidates.size - 1, num_frames).astype(np.int64)  # floor, as LLaVA-NeXT
    return candidates[positions].tolist()


def load_video(
    path: str | Path,
    *,
    num_frames: int | None = 32,
    fps: float | None = None,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    backend: Backend = "auto",
    timeout: float | None = 60.0,
    frame_dir_fps: float = 1.0,
    threads: int = 0,
) -> VideoClip:
    """Sample frames from a video file, a GIF, a directory of frame images or a single image.

    ``backend="auto"`` uses PyAV (it measured fastest on every benchmark clip, see docs/benchmarks.md);
    ``"decord"`` forces decord (optional extra) for video files. ``timeout`` bounds the whole call
    (None: unbounded). ``frame_dir_fps`` is the frame rate assumed for a directory of frames.
    ``threads`` is the decoder thread count (0: one per core). Every failure caused by the input raises
    ``VideoDecodeError(path, reason)``; bad arguments raise ``ConfigError``.
    """
    if backend not in ("auto", "pyav", "decord"):
        raise ConfigError(f"backend must be 'auto', 'pyav' or 'decord', got {backend!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be positive or None, got {timeout}")
    path = Path(path)
    sampling = dict(num_frames=num_frames, fps=fps, max_frames=max_frames, start=start, end=end)
    if path.is_dir():
        return _load_frame_dir(path, frame_dir_fps=frame_dir_fps, **sampling)
    check_media_path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _load_image(path, **sampling)

    deadline = Deadline(str(path), timeout)
    index = build_index(path, deadline)
    chosen = _sample_for(path, index.num_frames, timestamps=index.timestamps, duration=index.duration, **sampling)
    wanted = np.asarray(chosen, dtype=np.int64)
    use_decord = backend == "decord"
    if use_decord:
        if not is_available("decord"):
            raise ConfigError("backend='decord' needs the optional package decord2: pip install 'llava-video[decord]'")
        frames = decode_decord(path, index, wanted, deadline=deadline, threads=threads)
        rotation = 0.0  # decord2 applies the display rotation itself
    else:
        frames, rotation = decode_pyav(path, index, wanted, deadline=deadline, threads=threads)
    frames = rotate_frames(frames, rotation)
    return VideoClip(
        frames=frames,
        indices=chosen,
        timestamps=[float(index.timestamps[i]) for i in chosen],
        duration=index.duration,
        source_fps=index.fps,
        path=str(path),
        num_source_frames=index.num_frames,
    )


def header_frame_count(path: str | Path) -> int | None:
    """Frames the container header declares for the first video stream, without demuxing; None when the
    header does not say (0 frames declared), the path is not a video file or it cannot be opened. For
    estimates only (length grouping): ``load_video`` is the authority and reports the errors."""
    import av

    path = Path(path)
    if not path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            return int(container.streams.video[0].frames) or None
    except (av.error.FFmpegError, OSError, ValueError):
        return None


def _sample_for(path: Path, num_source_frames: int, **kwargs: object) -> list[int]:
    try:
        return sample_indices(num_source_frames, **kwargs)  # type: ignore[arg-type]
    except EmptyWindowError as exc:  # the request is fine, this file is too short for it
        raise VideoDecodeError(path, str(exc)) from None


def _natural_key(name: str) -> list[object]:
    # "frame_10.jpg" after "frame_9.jpg": digit runs compare as numbers.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)  # EXIF orientation is the image's rotation metadata
            return np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VideoDecodeError(path, f"not a readable image ({exc})") from None


def _load_image(path: Path, **sampling: object) -> VideoClip:
    frame = _read_image(path)
    chosen = _sample_for(path, 1, source_fps=1.0, duration=1.0, **sampling)  # validates the arguments; [0]
    return VideoClip(frames=frame[None], indices=chosen, timestamps=[0.0], duration=1.0, source_fps=1.0,
                     path=str(path), num_source_frames=1)


def _load_frame_dir(path: Path, *, frame_dir_fps: float, **sampling: object) -> VideoClip:
    if not frame_dir_fps > 0:
        raise ConfigError(f"frame_dir_fps must be positive, got {frame_dir_fps}")
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise VideoDecodeError(path, "directory holds no frame images (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    chosen = _sample_for(path, len(files), source_fps=frame_dir_fps, duration=len(files) / frame_dir_fps, **sampling)
    frames = [_read_image(files[i]) for i in chosen]
    if len({f.shape for f in frames}) > 1:
        raise VideoDecodeError(path, f"frame images differ in size: {sorted({f.shape[:2] for f in frames})}")
    return VideoClip(
        frames=np.stack(frames),  # (T, H, W, 3)
        indices=chosen,
        timestamps=[i / frame_dir_fps for i in chosen],
        duration=len(files) / frame_dir_fps,
        source_fps=frame_dir_fps,
        path=str(path),
        num_source_frames=len(files),
    )
