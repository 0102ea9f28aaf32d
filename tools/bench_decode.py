"""Benchmark: sampling 32 uniformly spaced frames with our loader and with the usual alternatives.

    python tools/bench_decode.py [--runs 5] [--clip-dir DIR] [--only 10s-360p-g30,...] [--frames 32]
    python tools/bench_decode.py --convert      # RGB conversion: a converter per frame vs one per clip

Generates its clips (h264, 10 s and 60 s, 640x360 and 1280x720, keyframe every 30 and every 250 frames)
into --clip-dir (kept between runs), then times each method on each clip (median of --runs) and prints a
Markdown table with ratios. Every method's frames are checked against ours before timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_video.data.encode import write_video  # noqa: E402
from llava_video.data.video import load_video, sample_indices  # noqa: E402
from llava_video.errors import LlavaVideoError  # noqa: E402
from llava_video.optional import is_available  # noqa: E402

FPS = 30
CLIPS = {
    f"{secs}s-{h}p-g{gop}": (secs, (w, h), gop)
    for secs in (10, 60)
    for (w, h) in ((640, 360), (1280, 720))
    for gop in (30, 250)
}


def make_clip(path: Path, *, seconds: int, size: tuple[int, int], gop: int) -> Path:
    """Moving gradients and a sliding bar: content that costs real decoding work, written in chunks."""
    if path.exists():
        return path
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "veryfast", "crf": "23", "sc_threshold": "0"}
        for i in range(seconds * FPS):
            frame = np.empty((height, width, 3), dtype=np.uint8)  # (H, W, 3)
            frame[..., 0] = (xx + 3 * i) % 256
            frame[..., 1] = (yy + 2 * i) % 256
            frame[..., 2] = ((xx // 16 + yy // 16 + i) % 2) * 200
            bar = (i * 7) % width
            frame[:, bar : bar + 24] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def _wanted(path: Path, n: int) -> list[int]:
    with av.open(str(path)) as container:
        total = container.streams.video[0].frames
    return sample_indices(total, num_frames=n)


def pyav_sequential(path: Path, wanted: list[int]) -> np.ndarray:
    """Decode from the start (threaded), convert only the wanted frames, stop after the last one."""
    todo, out = set(wanted), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in todo:
                out.append(frame.to_ndarray(format="rgb24"))
            if i >= wanted[-1]:
                break
    return np.stack(out)


def pyav_seek(path: Path, wanted: list[int]) -> np.ndarray:
    """For each wanted frame: seek to the keyframe before it, decode forward to it (threaded)."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        rate, base = stream.average_rate, stream.time_base
        start = stream.start_time or 0
        for idx in wanted:
            target = start + int(round(idx / rate / base))
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    out.append(frame.to_ndarray(format="rgb24"))
                    break
    return np.stack(out)


def decord_get_batch(path: Path, wanted: list[int]) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))  # default threading
    return reader.get_batch(wanted).asnumpy()


def decode_everything(path: Path, wanted: list[int]) -> np.ndarray:
    """The naive loader: decode and convert every frame, then index. (Converted frames are dropped
    immediately instead of kept, to spare the shared machine's memory; the work is the same.)"""
    todo, out = set(wanted), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            rgb = frame.to_ndarray(format="rgb24")
            if i in todo:
                out.append(rgb)
    return np.stack(out)


def ours(path: Path, wanted: list[int]) -> np.ndarray:
    clip = load_video(path, num_frames=len(wanted), backend="auto")
    assert clip.indices == wanted, (clip.indices[:4], wanted[:4])
    return clip.frames


def ours_pyav(path: Path, wanted: list[int]) -> np.ndarray:
    return load_video(path, num_frames=len(wanted), backend="pyav").frames


def ours_decord(path: Path, wanted: list[int]) -> np.ndarray:
    return load_video(path, num_frames=len(wanted), backend="decord").frames


def median_ms(
    methods: dict[str, Callable[[Path, list[int]], np.ndarray]], path: Path, wanted: list[int], runs: int
) -> dict[str, float]:
    """Runs are interleaved (each method once per round) so load from other work hits all methods alike."""
    times: dict[str, list[float]] = {label: [] for label in methods}
    for _ in range(runs):
        for label, fn in methods.items():
            t0 = time.perf_counter()
            fn(path, wanted)
            times[label].append((time.perf_counter() - t0) * 1000)
    return {label: statistics.median(t) for label, t in times.items()}


def peak_rss(clip_dir: Path, frames: int) -> None:
    """Sample ``frames`` frames from a 10-minute 1080p clip in a fresh process; print its peak RSS."""
    import subprocess

    path = clip_dir / "600s-1080p-10fps.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        height, width, rate = 1080, 1920, 10
        yy, xx = np.mgrid[0:height, 0:width]
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "ultrafast", "crf": "28"}
            base = np.empty((height, width, 3), dtype=np.uint8)  # (H, W, 3)
            base[..., 0], base[..., 1], base[..., 2] = xx % 256, yy % 256, 128
            for i in range(600 * rate):
                frame = np.roll(base, i * 4, axis=1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        tmp.replace(path)
    code = (
        "import resource, sys, time; sys.path.insert(0, sys.argv[1]);"
        "from llava_video.data.video import load_video;"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; t = time.perf_counter();"
        f"clip = load_video(sys.argv[2], num_frames={frames}); dt = time.perf_counter() - t;"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024;"
        "print(f'peak RSS {peak:.0f} MB (after imports {base:.0f} MB; frames alone {clip.frames.nbytes / 2**20:.0f} MB)"
        " for {len(clip.indices)} of {clip.num_source_frames} frames, {clip.frames.shape}, {dt:.1f} s')"
    )
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parents[1]), str(path)], check=True)


def preprocess_speed(runs: int, frames: int) -> None:
    """Frames per second of preprocess_frames vs transformers' CLIPImageProcessorPil (336 crop)."""
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from llava_video.data.preprocess import ImageProcessorConfig, preprocess_frames

    config = ImageProcessorConfig()
    reference = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    print(f"# preprocessing {frames} frames to 336x336, median of {runs} runs, frames/s")
    print("| input | ours | CLIPImageProcessorPil | ratio | max diff (levels) |\n|---|---|---|---|---|")
    for height, width in ((360, 640), (720, 1280)):
        batch = np.random.default_rng(0).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
        ours_t, ref_t = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            got = preprocess_frames(batch, config)
            ours_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            want = reference([Image.fromarray(f) for f in batch], return_tensors="pt")["pixel_values"]
            ref_t.append(time.perf_counter() - t0)
        diff = float(((got - want).abs() * 0.27577711).max() * 255)
        ours_fps, ref_fps = frames / statistics.median(ours_t), frames / statistics.median(ref_t)
        print(f"| {width}x{height} | {ours_fps:.0f} | {ref_fps:.0f} | {ours_fps / ref_fps:.2f}x | {diff:.3f} |")


def convert_speed(runs: int, clip_dir: Path) -> None:
    """ms per frame to decode and convert to RGB, as the loader does it (decode a clip, convert each frame while the
    container is open): ``to_ndarray(format="rgb24")`` per frame vs one ``VideoReformatter`` per clip (our loader).
    On 20 clips of 8 frames at the demo's 32 px (lossless yuv444p) and at 360p/720p h264."""
    from av.video.reformatter import VideoReformatter

    rng = np.random.default_rng(0)
    cases = {"32x32 yuv444p lossless (demo)": ((32, 32), {"crf": "0"}, "yuv444p"),
             "640x360 yuv420p": ((640, 360), {"crf": "23"}, "yuv420p"),
             "1280x720 yuv420p": ((1280, 720), {"crf": "23"}, "yuv420p")}

    def decode_all(paths: list[Path], *, shared: bool) -> tuple[float, list[np.ndarray]]:
        out, t0 = [], time.perf_counter()
        for path in paths:
            reformatter = VideoReformatter()
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    out.append(reformatter.reformat(frame, format="rgb24").to_ndarray() if shared
                               else frame.to_ndarray(format="rgb24"))
        return (time.perf_counter() - t0) / len(out) * 1e3, out

    print(f"# decode + RGB conversion, ms per frame, median of {runs} runs over 20 clips of 8 frames")
    print("| clips | to_ndarray(format=rgb24) per frame | one VideoReformatter per clip | ratio | identical |\n|---|---|---|---|---|")
    for label, ((width, height), options, pix_fmt) in cases.items():
        paths = []
        for i in range(20):
            path = clip_dir / f"convert-{width}x{height}-{i}.mp4"
            if not path.is_file():
                frames = rng.integers(0, 256, (8, height, width, 3), dtype=np.uint8)
                write_video(path, frames, fps=8.0, pix_fmt=pix_fmt, options=options)
            paths.append(path)
        per_frame, shared = [], []
        for _ in range(runs):  # interleaved, so load changes hit both alike
            ms, a_frames = decode_all(paths, shared=False)
            per_frame.append(ms)
            ms, b_frames = decode_all(paths, shared=True)
            shared.append(ms)
        same = all(np.array_equal(x, y) for x, y in zip(a_frames, b_frames))
        slow, fast = statistics.median(per_frame), statistics.median(shared)
        print(f"| {label} | {slow:.3f} | {fast:.3f} | {slow / fast:.2f}x | {same} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--clip-dir", type=Path, default=Path(tempfile.gettempdir()) / "llava_video_bench")
    parser.add_argument("--only", default="", help="comma-separated clip names (default: all)")
    parser.add_argument("--extra", action="store_true", help="also time ours with each backend forced")
    parser.add_argument("--peak-rss", action="store_true", help="only measure peak RSS on a 10-minute 1080p clip")
    parser.add_argument("--preprocess", action="store_true", help="only time preprocessing against transformers")
    parser.add_argument("--convert", action="store_true", help="only time the per-frame RGB conversion, both ways")
    args = parser.parse_args(argv)
    if args.convert:
        args.clip_dir.mkdir(parents=True, exist_ok=True)
        convert_speed(args.runs, args.clip_dir)
        return 0
    if args.preprocess:
        preprocess_speed(args.runs, args.frames)
        return 0
    if args.peak_rss:
        args.clip_dir.mkdir(parents=True, exist_ok=True)
        peak_rss(args.clip_dir, args.frames)
        return 0
    names = [n for n in args.only.split(",") if n] or list(CLIPS)
    unknown = [n for n in names if n not in CLIPS]
    if unknown or args.runs < 1 or args.frames < 1:
        print(f"error: unknown clip(s) {unknown}; choose from {list(CLIPS)}" if unknown
              else "error: --runs and --frames must be >= 1", file=sys.stderr)
        return 2

    methods: dict[str, Callable[[Path, list[int]], np.ndarray]] = {"ours (auto)": ours}
    if args.extra:
        methods["ours (pyav)"] = ours_pyav
        if is_available("decord"):
            methods["ours (decord)"] = ours_decord
    methods |= {"PyAV sequential": pyav_sequential, "PyAV seek": pyav_seek}
    if is_available("decord"):
        methods["decord get_batch"] = decord_get_batch
    methods["decode all, index"] = decode_everything
    singles = [m for m in methods if not m.startswith("ours")]

    args.clip_dir.mkdir(parents=True, exist_ok=True)
    print(f"# {args.frames} frames, median of {args.runs} runs, ms; av {av.__version__}", flush=True)
    print("| clip | " + " | ".join(methods) + " | ours / fastest single | decord / ours |")
    print("|" + "---|" * (len(methods) + 3))
    for name in names:
        seconds, size, gop = CLIPS[name]
        path = make_clip(args.clip_dir / f"{name}.mp4", seconds=seconds, size=size, gop=gop)
        wanted = _wanted(path, args.frames)
        reference = ours(path, wanted)
        for label, fn in methods.items():  # correctness first: a fast wrong answer is not a result
            got = fn(path, wanted)
            if got.shape != reference.shape or not np.array_equal(got, reference):
                print(f"warning: {label} returns different frames on {name}", file=sys.stderr)
        ms = median_ms(methods, path, wanted, args.runs)
        fastest = min(ms[m] for m in singles)
        decord_ratio = f"{ms['decord get_batch'] / ms['ours (auto)']:.2f}x" if "decord get_batch" in ms else "n/a"
        cells = " | ".join(f"{ms[m]:.0f}" for m in methods)
        print(f"| {name} | {cells} | {ms['ours (auto)'] / fastest:.2f}x | {decord_ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LlavaVideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
