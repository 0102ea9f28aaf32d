"""Video loading: right frames (checked by the number drawn in each), all inputs, both backends, errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from llava_video.data.encode import write_video
from llava_video.data.video import VideoClip, load_video, sample_indices
from llava_video.errors import ConfigError, VideoDecodeError
from llava_video.optional import is_available
from tests.data.clips import numbered_frames, read_number, write_rotated_clip, write_vfr_clip

HAS_DECORD = is_available("decord")
FPS = 10
N = 40  # frames per generated clip
SIZE = (64, 64)  # SVT-AV1 needs at least 64 pixels a side

# (file name, codec, encoder options): every container and codec the loader promises to read.
FORMATS = [
    ("h264.mp4", "libx264", None),
    ("hevc.mkv", "libx265", {"x265-params": "log-level=error"}),
    ("vp9.webm", "libvpx-vp9", None),
    ("av1.mkv", "libsvtav1", {"svtav1-params": "log-level=0"}),
    ("mpeg4.avi", "mpeg4", {"b": "4M"}),
    ("h264.mov", "libx264", None),
]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    frames = numbered_frames(N, *SIZE)
    for name, codec, options in FORMATS:
        write_video(root / name, frames, fps=FPS, codec=codec, keyframe_interval=8, options=options)
    return root


def _numbers(clip: VideoClip) -> list[int]:
    return [read_number(f) for f in clip.frames]


@pytest.mark.parametrize("name", [f[0] for f in FORMATS])
def test_frames_match_indices_by_content(clip_dir: Path, name: str) -> None:
    clip = load_video(clip_dir / name, num_frames=7, backend="pyav")
    assert clip.indices == sample_indices(N, num_frames=7)
    assert _numbers(clip) == clip.indices
    assert clip.frames.shape == (7, *SIZE, 3) and clip.frames.dtype == np.uint8
    assert clip.num_source_frames == N
    assert clip.source_fps == pytest.approx(FPS)
    assert clip.duration == pytest.approx(N / FPS)
    assert clip.timestamps == pytest.approx([i / FPS for i in clip.indices])


@pytest.mark.skipif(not HAS_DECORD, reason="decord not installed")
@pytest.mark.parametrize("name", [f[0] for f in FORMATS])
def test_backends_bit_identical(clip_dir: Path, name: str) -> None:
    ours = load_video(clip_dir / name, num_frames=9, backend="pyav")
    if name.startswith("hevc"):
        # decord2 returned wrong frames on HEVC after seeks: it is refused, loudly.
        with pytest.raises(VideoDecodeError, match="decord is not used for hevc"):
            load_video(clip_dir / name, num_frames=9, backend="decord")
        return
    theirs = load_video(clip_dir / name, num_frames=9, backend="decord")
    assert theirs.indices == ours.indices
    assert np.array_equal(theirs.frames, ours.frames)


def test_auto_equals_forced_pyav(clip_dir: Path) -> None:
    a = load_video(clip_dir / "h264.mp4", num_frames=5)
    b = load_video(clip_dir / "h264.mp4", num_frames=5, backend="pyav")
    assert np.array_equal(a.frames, b.frames) and a.indices == b.indices


def test_seeking_and_sequential_agree(clip_dir: Path) -> None:
    # Every frame, one at a time (each call seeks), equals the frames of one sequential pass.
    every = load_video(clip_dir / "h264.mp4", num_frames=None)
    assert _numbers(every) == list(range(N))
    for i in (0, 7, 8, 9, 23, 39):
        single = load_video(clip_dir / "h264.mp4", num_frames=None, start=i / FPS, end=(i + 0.5) / FPS)
        assert single.indices == [i]
        assert np.array_equal(single.frames[0], every.frames[i])


def test_variable_frame_rate_uses_packet_times(tmp_path: Path) -> None:
    times_ms = [0, 40, 80, 400, 420, 440, 1000, 1500, 1520, 2600]
    path = write_vfr_clip(tmp_path / "vfr.mp4", numbered_frames(len(times_ms), 48, 64), times_ms)
    clip = load_video(path, num_frames=None)
    assert _numbers(clip) == list(range(len(times_ms)))
    assert clip.timestamps == pytest.approx([t / 1000 for t in times_ms])
    # One frame per second: the frame on screen at 0 s, 1 s, 2 s (and 3 s if the last one is still shown:
    # the muxer gives the last frame the length of the previous interval).
    per_second = load_video(path, num_frames=None, fps=1.0)
    expected = [0, 6, 8] + ([9] if clip.duration > 3.0 else [])
    assert per_second.indices == expected
    assert _numbers(per_second) == expected


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_rotation_metadata_applied(tmp_path: Path, rotation: int) -> None:
    frames = numbered_frames(12, 32, 64)
    path = write_rotated_clip(tmp_path / f"rot{rotation}.mp4", frames, rotation=rotation)
    clip = load_video(path, num_frames=4)
    turns = rotation // 90
    expected = np.rot90(frames[clip.indices], k=turns, axes=(1, 2))
    assert clip.frames.shape == expected.shape
    assert np.abs(clip.frames.astype(int) - expected).mean() < 4
    unrotated = np.rot90(clip.frames, k=-turns, axes=(1, 2))
    assert [read_number(f) for f in unrotated] == clip.indices
    if HAS_DECORD:
        assert np.array_equal(load_video(path, num_frames=4, backend="decord").frames, clip.frames)


def test_odd_frame_size(tmp_path: Path) -> None:
    path = write_video(tmp_path / "odd.mp4", numbered_frames(15, 33, 47), fps=FPS)
    clip = load_video(path, num_frames=4)
    assert clip.frames.shape == (4, 33, 47, 3)
    assert _numbers(clip) == clip.indices
    if HAS_DECORD:
        assert np.array_equal(load_video(path, num_frames=4, backend="decord").frames, clip.frames)


def test_gif_with_frame_delays(tmp_path: Path) -> None:
    frames = numbered_frames(6, 32, 32)
    images = [Image.fromarray(f) for f in frames]
    durations = [100, 100, 300, 100, 200, 100]  # ms: a variable-rate GIF
    images[0].save(tmp_path / "a.gif", save_all=True, append_images=images[1:], duration=durations, loop=0)
    clip = load_video(tmp_path / "a.gif", num_frames=None)
    assert _numbers(clip) == list(range(6))
    assert clip.timestamps == pytest.approx(np.cumsum([0] + durations[:-1]) / 1000)


def test_frame_directory_natural_sort(tmp_path: Path) -> None:
    frames = numbered_frames(12, 16, 16)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"frame_{i + 1}.png")  # frame_10 must follow frame_9
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = load_video(tmp_path, num_frames=4)
    assert clip.indices == [0, 3, 7, 11]
    assert _numbers(clip) == clip.indices
    assert clip.num_source_frames == 12 and clip.source_fps == 1.0


def test_single_image_is_one_frame(tmp_path: Path) -> None:
    Image.fromarray(numbered_frames(6, 20, 30)[5]).save(tmp_path / "x.png")
    clip = load_video(tmp_path / "x.png", num_frames=32)
    assert clip.frames.shape == (1, 20, 30, 3) and clip.indices == [0]
    assert read_number(clip.frames[0]) == 5


def test_short_clip_is_not_padded(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", numbered_frames(5, 32, 32), fps=FPS)
    clip = load_video(path, num_frames=16)
    assert clip.indices == [0, 1, 2, 3, 4]
    assert _numbers(clip) == [0, 1, 2, 3, 4]


def test_time_window(clip_dir: Path) -> None:
    clip = load_video(clip_dir / "vp9.webm", num_frames=4, start=1.0, end=2.0)
    assert clip.indices == [10, 13, 16, 19]
    assert all(1.0 <= t < 2.0 for t in clip.timestamps)
    assert _numbers(clip) == clip.indices
    with pytest.raises(VideoDecodeError, match="window"):
        load_video(clip_dir / "vp9.webm", start=50.0)


def test_sample_indices_rules() -> None:
    assert sample_indices(100, num_frames=8) == np.linspace(0, 99, 8, dtype=int).tolist()
    assert sample_indices(3, num_frames=8) == [0, 1, 2]
    # fps: one frame per 1/F s; more than max_frames falls back to max_frames uniform frames.
    assert sample_indices(300, fps=1.0, source_fps=30, max_frames=64) == list(range(0, 300, 30))
    assert sample_indices(300, fps=1.0, source_fps=30, max_frames=4) == sample_indices(300, num_frames=4)
    assert sample_indices(300, fps=1.0, source_fps=30, num_frames=5) == sample_indices(300, num_frames=5)
    assert sample_indices(300, fps=100.0, source_fps=30, max_frames=1000) == list(range(300))
    assert sample_indices(300, num_frames=3, source_fps=30, start=2.0, end=3.0) == [60, 74, 89]
    with pytest.raises(ConfigError):
        sample_indices(10, fps=1.0)  # no times known
    with pytest.raises(ConfigError):
        sample_indices(10, num_frames=0)


def test_rss_stable_over_500_loads(clip_dir: Path) -> None:
    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    path = clip_dir / "h264.mp4"
    for _ in range(20):  # warm caches and allocator pools first
        load_video(path, num_frames=8)
    before = rss_mb()
    for _ in range(500):
        load_video(path, num_frames=8)
    assert rss_mb() - before < 50


# ---------------------------------------------------------------- bad input: one error type, bounded time


def _write_faststart_mp4(path: Path, n: int) -> Path:
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for frame in numbered_frames(n, 64, 64):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _write_tone(path: Path, *, with_video_stream: bool) -> None:
    with av.open(str(path), mode="w") as container:
        if with_video_stream:
            video = container.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.arange(8000) / 5) * 3000).astype(np.int16)[None]  # (channels, samples)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _bad_files(root: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected reason fragment); each file made here."""
    cases: dict[str, tuple[Path, str]] = {"missing": (root / "nope.mp4", "not found")}
    text = root / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    cases["not media"] = (text, "not a readable media file")
    data = good.read_bytes()
    cut = root / "cut.mp4"  # moov atom at the end: cut in half, nothing is left to index
    cut.write_bytes(data[: len(data) // 2])
    cases["truncated"] = (cut, "not a readable media file")
    over = _write_faststart_mp4(root / "over.mp4", 40)  # index first, samples after: cut leaves 40 declared
    over.write_bytes(over.read_bytes()[: int(over.stat().st_size * 0.6)])
    cases["over-reported frame count"] = (over, "declares 40 frames")
    corrupt = root / "corrupt.webm"  # header kept, every frame's data overwritten with noise
    corrupt_src = bytearray((good.parent / "vp9.webm").read_bytes())
    rng = np.random.default_rng(0)
    corrupt_src[400:] = rng.integers(0, 256, len(corrupt_src) - 400, dtype=np.uint8).tobytes()
    corrupt.write_bytes(bytes(corrupt_src))
    cases["corrupt"] = (corrupt, "")
    _write_tone(root / "tone.wav", with_video_stream=False)
    cases["audio only"] = (root / "tone.wav", "audio-only")
    _write_tone(root / "novideo.mkv", with_video_stream=True)  # a video stream that holds no packets
    cases["zero frames"] = (root / "novideo.mkv", "zero decodable frames")
    zero_bytes = root / "zero.mp4"
    zero_bytes.write_bytes(b"")
    cases["empty file"] = (zero_bytes, "empty file")
    bad_png = root / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cases["bad image"] = (bad_png, "not a readable image")
    no_frames_dir = root / "emptydir"
    no_frames_dir.mkdir()
    cases["empty directory"] = (no_frames_dir, "no frame images")
    fifo = root / "pipe.mp4"
    os.mkfifo(fifo)
    cases["fifo"] = (fifo, "not a regular file")
    return cases


def test_bad_inputs_raise_video_decode_error_quickly(tmp_path: Path, clip_dir: Path) -> None:
    cases = _bad_files(tmp_path, clip_dir / "h264.mp4")
    for name, (path, reason) in cases.items():
        t0 = time.monotonic()
        with pytest.raises(VideoDecodeError) as info:
            load_video(path, num_frames=8, timeout=10.0)
        assert time.monotonic() - t0 < 10.0, name
        assert str(path) in str(info.value), name
        assert reason in info.value.reason, (name, info.value.reason)


def test_decoding_is_time_bounded(clip_dir: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(VideoDecodeError, match="timeout"):
        load_video(clip_dir / "hevc.mkv", num_frames=None, timeout=1e-4)
    assert time.monotonic() - t0 < 2.0


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        load_video("x.mp4", backend="opencv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        load_video("x.mp4", timeout=0)


@pytest.mark.skipif(HAS_DECORD, reason="only meaningful without decord")
def test_forced_decord_without_it_says_how_to_install(clip_dir: Path) -> None:
    with pytest.raises(ConfigError, match="decord2"):
        load_video(clip_dir / "h264.mp4", backend="decord")
