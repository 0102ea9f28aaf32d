"""Decoding chosen frames of one video stream: the frame index (PyAV demux) and two decoders (PyAV, decord).

The index is built by demuxing every packet once (no decoding): it gives the true frame count (a header
that over-reports is caught here), presentation timestamps from packet times (correct for variable frame
rate), and where the keyframes are. Decoders are asked for presentation indices and identify each decoded
frame by its timestamp, never by counting after a seek, so a seek that lands in the wrong place shows up
as a missed frame (retried without seeking, then an error) instead of a wrong frame.
"""

from __future__ import annotations

import math
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from llava_video.errors import VideoDecodeError
from llava_video.optional import is_available, require

__all__ = [
    "StreamIndex",
    "Deadline",
    "build_index",
    "decode_pyav",
    "decode_decord",
    "rotate_frames",
    "check_media_path",
    "SEEK_MARGIN_FRAMES",
    "DECORD_UNSAFE_CODECS",
]

# Roughly what one seek costs in decoded frames (the flush empties the frame-thread pipeline, which must
# fill again); closer targets are reached by decoding on. A judgement, not a tuned value: on the
# benchmark clips the result was already below every single method (docs/benchmarks.md).
SEEK_MARGIN_FRAMES = 8
# Measured on generated clips with decord2 3.4.0: HEVC (open GOP) came back with wrong frames after seeks,
# HEVC with closed GOP failed with "Error sending packet"; GIF is not a format decord reads.
DECORD_UNSAFE_CODECS = frozenset({"hevc"})
DECORD_UNSAFE_FORMATS = frozenset({"gif"})


class Deadline:
    """Wall-clock budget for one load; checked between packets and frames so decoding cannot run away."""

    def __init__(self, path: str, seconds: float | None) -> None:
        self.path = path
        self.seconds = seconds
        self.end = math.inf if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.end - time.monotonic())

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise VideoDecodeError(self.path, f"decoding did not finish within the {self.seconds:g} s timeout")


@dataclass(frozen=True)
class StreamIndex:
    """Every frame of one video stream, in presentation order, from one demux pass."""

    stream_index: int
    pts: np.ndarray  # (n,) int64 presentation timestamps in ``time_base`` units, ascending
    keyframe: np.ndarray  # (n,) bool: decoding can start at this frame
    time_base: Fraction
    timestamps: np.ndarray  # (n,) float64 seconds from the first frame
    duration: float
    fps: float
    seekable: bool  # timestamps are known and unique, so a decoded frame can be identified after a seek
    codec: str
    container_format: str

    @property
    def num_frames(self) -> int:
        return int(self.pts.shape[0])


def check_media_path(path: Path) -> None:
    """Refuse paths that cannot be a media file before any decoder touches them (a FIFO would block)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise VideoDecodeError(path, "file not found") from None
    except OSError as exc:
        raise VideoDecodeError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise VideoDecodeError(path, "not a regular file")
    if info.st_size == 0:
        raise VideoDecodeError(path, "empty file")


def open_container(path: Path, deadline: Deadline) -> av.container.InputContainer:
    remaining = deadline.remaining()
    try:
        # The timeouts bound blocking I/O inside FFmpeg (interrupt callback); our loops check the deadline.
        return av.open(str(path), mode="r", timeout=None if remaining is None else max(remaining, 0.01))
    except av.FFmpegError as exc:
        raise VideoDecodeError(path, f"not a readable media file ({_ffmpeg_reason(exc)})") from None


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    # Cover art in audio files is a one-picture "video" stream flagged as an attached picture; skip it.
    candidates = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not candidates:
        kinds = sorted({s.type for s in container.streams})
        what = "audio-only file" if kinds == ["audio"] else f"streams: {', '.join(kinds) or 'none'}"
        raise VideoDecodeError(path, f"no video stream ({what})")
    return candidates[0]


def build_index(path: Path, deadline: Deadline) -> StreamIndex:
    """Demux every packet of the first video stream (no decoding) and describe its frames."""
    with open_container(path, deadline) as container:
        stream = _video_stream(container, path)
        pts_list: list[int | None] = []
        key_list: list[bool] = []
        durations: list[int] = []
        try:
            for packet in container.demux(stream):
                deadline.check()
                if packet.size == 0 or packet.is_discard:  # flush packets; samples cut by an edit list
                    continue
                pts_list.append(packet.pts if packet.pts is not None else packet.dts)
                key_list.append(bool(packet.is_keyframe))
                durations.append(int(packet.duration or 0))
        except av.FFmpegError as exc:
            raise VideoDecodeError(path, f"truncated or corrupt file ({_ffmpeg_reason(exc)})") from None
        declared = int(stream.frames or 0)
        if not pts_list:
            raise VideoDecodeError(path, "zero decodable frames (the video stream holds no packets)")
        if declared and len(pts_list) < declared:
            raise VideoDecodeError(
                path,
                f"the container declares {declared} frames but only {len(pts_list)} can be read "
                "(truncated file or over-reported frame count)",
            )
        time_base = stream.time_base or Fraction(1, 1)
        rate = stream.average_rate or stream.guessed_rate
        codec = stream.codec_context.name
        fmt = container.format.name
        stream_index = stream.index  # read now: a closed container's streams are not valid any more

    known = all(p is not None for p in pts_list)
    if known:
        order = np.argsort(np.asarray(pts_list, dtype=np.int64), kind="stable")
        pts = np.asarray(pts_list, dtype=np.int64)[order]
        keyframe = np.asarray(key_list, dtype=bool)[order]
        seekable = bool(np.all(np.diff(pts) > 0))
    else:
        # Without timestamps frames can only be counted from the start: no seeking, evenly spaced times.
        pts = np.arange(len(pts_list), dtype=np.int64)
        keyframe = np.zeros(len(pts_list), dtype=bool)
        keyframe[0] = True
        seekable = False
    keyframe[0] = True  # decoding from the start always works

    n = pts.shape[0]
    if known and seekable:
        timestamps = (pts - pts[0]).astype(np.float64) * float(time_base)
        last = durations[int(order[-1])] * float(time_base)
        span = float(timestamps[-1])
        fps = float(rate) if rate else (n - 1) / span if span > 0 else 1.0
        duration = span + (last if last > 0 else 1.0 / fps)
    else:
        fps = float(rate) if rate else 1.0
        timestamps = np.arange(n, dtype=np.float64) / fps
        duration = n / fps
    return StreamIndex(
        stream_index=stream_index,
        pts=pts,
        keyframe=keyframe,
        time_base=time_base,
        timestamps=timestamps,
        duration=float(duration),
        fps=float(fps),
        seekable=seekable,
        codec=codec,
        container_format=fmt,
    )


def rotate_frames(frames: np.ndarray, rotation: float) -> np.ndarray:
    """Apply display-matrix rotation (degrees counter-clockwise, as FFmpeg reports it) to (T, H, W, 3)."""
    quarter_turns = int(round(rotation / 90.0)) % 4
    if quarter_turns == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=quarter_turns, axes=(1, 2)))  # (T, W, H, 3) for odd turns


class _FrameSink:
    """Collects the wanted frames, in the order of ``wanted``, as they are decoded."""

    def __init__(self, path: Path, wanted: np.ndarray) -> None:
        self.path = path
        self.wanted = wanted
        self.slot = {int(w): i for i, w in enumerate(wanted)}
        self.filled = np.zeros(len(wanted), dtype=bool)
        self.frames: np.ndarray | None = None
        self.rotation = 0.0
        # One converter for the whole clip: frame.to_ndarray(format=...) builds a new swscale context for
        # every frame, 0.2-2 ms each (half the decode time of a 32 px frame; docs/benchmarks.md).
        self.reformatter = VideoReformatter()

    def put(self, idx: int, frame: av.VideoFrame) -> None:
        slot = self.slot.get(idx)
        if slot is None or self.filled[slot]:
            return
        rgb = self.reformatter.reformat(frame, format="rgb24").to_ndarray()  # (H, W, 3)
        if self.frames is None:
            self.frames = np.empty((len(self.wanted), *rgb.shape), dtype=np.uint8)
            self.rotation = float(frame.rotation or 0.0)
        elif rgb.shape != self.frames.shape[1:]:
            raise VideoDecodeError(
                self.path, f"frame size changes mid-stream ({self.frames.shape[2]}x{self.frames.shape[1]} "
                f"to {rgb.shape[1]}x{rgb.shape[0]})"
            )
        self.frames[slot] = rgb
        self.filled[slot] = True

    def missing(self) -> np.ndarray:
        return self.wanted[~self.filled]


def decode_pyav(
    path: Path,
    index: StreamIndex,
    wanted: np.ndarray,
    *,
    deadline: Deadline,
    threads: int = 0,
    allow_seek: bool = True,
) -> tuple[np.ndarray, float]:
    """Decode the frames at sorted unique presentation indices ``wanted``; returns (frames, rotation).

    Decodes forward while the next wanted frame is close; seeks to the keyframe before it when the gap
    is larger than ``SEEK_MARGIN_FRAMES``. Frames that a seek missed are decoded again from the start.
    """
    sink = _FrameSink(path, wanted)
    seek = allow_seek and index.seekable
    _decode_pass(path, index, sink, deadline=deadline, threads=threads, allow_seek=seek)
    if seek and not sink.filled.all():
        _decode_pass(path, index, sink, deadline=deadline, threads=threads, allow_seek=False)
    if not sink.filled.all() or sink.frames is None:
        missing = sink.missing().tolist()
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        if sink.frames is None and len(missing) == len(wanted):
            raise VideoDecodeError(path, f"zero decodable frames among the {len(wanted)} requested (corrupt file?)")
        raise VideoDecodeError(path, f"frame(s) {shown} could not be decoded (truncated or corrupt file)")
    return sink.frames, sink.rotation


def _decode_pass(
    path: Path, index: StreamIndex, sink: _FrameSink, *, deadline: Deadline, threads: int, allow_seek: bool
) -> None:
    todo = sink.missing()
    if todo.size == 0:
        return
    # Keyframe at or before each frame: the latest keyframe index seen so far along presentation order.
    key_before = np.maximum.accumulate(np.where(index.keyframe, np.arange(index.num_frames), 0))
    pts_to_idx = {int(p): i for i, p in enumerate(index.pts)} if index.seekable else None
    # Skipping non-reference frames is only safe when frames are identified by timestamp, and is left
    # out of the retry pass so that pass is as plain as decoding gets.
    keep_pts = {int(index.pts[i]) for i in todo} if (allow_seek and pts_to_idx is not None) else None
    with open_container(path, deadline) as container:
        stream = container.streams[index.stream_index]
        stream.codec_context.thread_type = "AUTO"  # frame + slice threads
        stream.codec_context.thread_count = threads  # 0: FFmpeg picks one per core
        cursor, last_idx, counted = 0, -1, -1
        start_key = 0
        while cursor < todo.size:
            key = int(key_before[int(todo[cursor])])
            if allow_seek and key > 0 and (last_idx < 0 or key > last_idx + SEEK_MARGIN_FRAMES):
                container.seek(int(index.pts[key]), stream=stream, backward=True, any_frame=False)
                start_key = key
            reached_end = True
            try:
                for frame in _decoded_frames(container, stream, keep_pts, deadline):
                    counted += 1
                    if pts_to_idx is None:
                        idx = counted
                    else:
                        idx = pts_to_idx.get(frame.pts if frame.pts is not None else -(2**63))
                        # Unknown times, and leading pictures before the keyframe we seeked to, are unusable.
                        if idx is None or idx < start_key:
                            continue
                    last_idx = idx
                    sink.put(idx, frame)
                    while cursor < todo.size and todo[cursor] <= idx:
                        cursor += 1  # passed (filled, or missed and left for the caller)
                    if cursor >= todo.size:
                        reached_end = False
                        break
                    next_key = int(key_before[int(todo[cursor])])
                    if allow_seek and next_key > idx + SEEK_MARGIN_FRAMES:
                        reached_end = False
                        break
            except av.FFmpegError as exc:
                if isinstance(exc, av.ExitError):  # FFmpeg's interrupt callback fired: the I/O timeout
                    raise VideoDecodeError(path, "decoding was interrupted by the timeout") from None
                # A broken packet ends this pass; wanted frames not yet seen are reported by the caller.
                return
            if reached_end:
                return


def _decoded_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    keep_pts: set[int] | None,
    deadline: Deadline,
) -> Iterator[av.VideoFrame]:
    """Demux and decode; with ``keep_pts``, packets of unwanted frames may skip decoding if nothing
    references them (FFmpeg's skip_frame=NONREF, set per packet: frame threads copy it at submission)."""
    codec = stream.codec_context
    for packet in container.demux(stream):
        deadline.check()
        if keep_pts is not None:
            wanted = packet.pts is None or packet.pts in keep_pts
            codec.skip_frame = "DEFAULT" if wanted else "NONREF"
        yield from codec.decode(packet)


def decode_decord(
    path: Path, index: StreamIndex, wanted: np.ndarray, *, deadline: Deadline, threads: int = 0
) -> np.ndarray:
    """Decode ``wanted`` with decord's ``get_batch`` in a worker thread, so a hang becomes a timeout error.

    decord holds the GIL-free C++ call until it returns; if it never does, the daemon thread is
    abandoned (it cannot be killed from Python) and the caller gets a VideoDecodeError instead of a hang.
    """
    if not is_available("decord"):
        require("decord", "the decord video backend")
    if index.codec in DECORD_UNSAFE_CODECS or index.container_format in DECORD_UNSAFE_FORMATS:
        raise VideoDecodeError(
            path, f"decord is not used for {index.codec} in {index.container_format}: it returned wrong frames "
            "after seeks or failed on such generated clips (use backend='pyav')"
        )
    result: dict[str, object] = {}

    def work() -> None:
        try:
            import decord

            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
            if len(reader) != index.num_frames:
                result["error"] = (
                    f"decord counts {len(reader)} frames, the stream index {index.num_frames}; "
                    "refusing to guess which frames it would return"
                )
                return
            result["frames"] = reader.get_batch(wanted.tolist()).asnumpy()
            del reader
        except Exception as exc:  # decord raises its own DECORDError (a RuntimeError) for bad data
            result["error"] = f"decord failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"

    worker = threading.Thread(target=work, name="decord-decode", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        raise VideoDecodeError(path, f"decord did not finish within the {deadline.seconds:g} s timeout")
    if "error" in result:
        raise VideoDecodeError(path, str(result["error"]))
    return result["frames"]  # type: ignore[return-value]
