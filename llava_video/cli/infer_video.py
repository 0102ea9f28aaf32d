"""tools/infer_video.py: ask a LLaVA-NeXT-Video model about one or more clips.

    python tools/infer_video.py --frames 32 clip.mp4
    python tools/infer_video.py --model path/to/LLaVA-NeXT-Video-7B-hf --prompt "What happens first?" a.mp4 b.mp4
    python tools/infer_video.py --chat clip.mp4          # multi-turn; /reset, /quit, Ctrl-C

The answer streams to stdout. ``--json`` prints one JSON object per input instead (frame indices,
timestamps, token budget, RoPE factor and timings). Exit code 2 with one line on stderr for bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llava_video.cli.common import ArgumentParser, report_errors
from llava_video.errors import CheckpointError, ConfigError

__all__ = ["build_parser", "main", "resolve_model_path", "DEMO_MODEL_DIR"]

DEMO_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"


def _frames(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(value)
    return n


_frames.__name__ = "frame count (a positive integer or 'auto')"


def _positive_float(value: str) -> float:
    v = float(value)
    if v <= 0:
        raise ValueError(value)
    return v


_positive_float.__name__ = "positive number"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="infer_video.py", description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video files, GIFs, frame folders or images")
    p.add_argument("--model", default="demo", help="checkpoint directory or hub id ('demo': the bundled demo model)")
    p.add_argument("--frames", type=_frames, default=32, help="frames to sample uniformly, or 'auto' (most that fit)")
    p.add_argument("--fps", type=_positive_float, default=None, help="sample at this rate instead (capped by --frames)")
    p.add_argument("--prompt", default=None, help="question (default: 'Please describe this video in detail.')")
    p.add_argument("--image", action="append", default=[], metavar="IMG", help="an image to add to the prompt (repeatable)")
    p.add_argument("--chat", action="store_true", help="multi-turn conversation about the (first) video")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--attn", default="auto", choices=["auto", "sdpa", "eager", "flash_attention_2"])
    p.add_argument("--conv-template", default=None, help="vicuna_v1, chatml, llama3, mistral or chat_template")
    p.add_argument("--max-rope-factor", type=_positive_float, default=4.0, help="largest linear RoPE factor allowed")
    p.add_argument("--batch-size", type=int, default=1, help="videos answered together (left padding)")
    p.add_argument("--json", action="store_true", help="one JSON object per input instead of streamed text")
    return p


def resolve_model_path(name: str) -> str:
    if name == "demo":
        if not (DEMO_MODEL_DIR / "config.json").exists():
            raise CheckpointError(f"the bundled demo model is missing from {DEMO_MODEL_DIR}; pass --model DIR")
        return str(DEMO_MODEL_DIR)
    return name


def _check_args(args: Any) -> None:
    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ConfigError(f"--top-p must be in (0, 1], got {args.top_p}")
    if not args.videos and not args.image:
        raise ConfigError("give at least one VIDEO (or --image)")
    if args.chat and args.json:
        raise ConfigError("--chat and --json do not go together")
    for path in [*args.videos, *args.image]:
        if not Path(path).exists():
            raise ConfigError(f"{path}: no such file or directory")


def _load_model(args: Any) -> Any:
    from llava_video import LlavaVideo

    return LlavaVideo.from_pretrained(
        resolve_model_path(args.model), device=args.device, dtype=args.dtype, attn_implementation=args.attn
    )


def _run(args: Any) -> int:
    from llava_video.inference import pipeline as pl

    _check_args(args)
    model = _load_model(args)
    settings = pl.GenerationSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )
    prompt = args.prompt or pl.DEFAULT_PROMPT
    if args.chat:
        return _chat(model, args, settings, prompt if args.prompt else None)
    videos: list[str | None] = list(args.videos) or [None]
    for start in range(0, len(videos), args.batch_size):
        batch = videos[start : start + args.batch_size]
        requests = [_prepare(model, video, args, settings, prompt) for video in batch]
        stream = not args.json and len(batch) == 1
        if stream and len(videos) > 1:
            print(f"== {batch[0]}", flush=True)
        on_text = (lambda _row, delta: print(delta, end="", flush=True)) if stream else None
        results = pl.generate_batch(model, requests, settings, conv_template=args.conv_template, on_text=on_text)
        for video, result in zip(batch, results):
            if args.json:
                print(json.dumps(result.as_json(args.model)), flush=True)
            elif stream:
                print(flush=True)
            else:
                print(f"== {video}\n{result.answer}", flush=True)
    return 0


def _prepare(model: Any, video: str | None, args: Any, settings: Any, prompt: str) -> Any:
    from llava_video.inference import pipeline as pl

    visual = pl.load_visual(model, images=args.image)
    messages = pl.build_messages(prompt, num_images=len(visual.image_sizes), has_video=video is not None)
    if video is not None:
        frames = args.frames
        if frames == "auto":
            frames = pl.auto_frame_count(
                model, visual, messages, max_new_tokens=settings.max_new_tokens, conv_template=args.conv_template
            )
        pl.load_visual(model, video=video, num_frames=frames, fps=args.fps, max_frames=frames if args.fps else None, into=visual)
    return pl.prepare_request(
        model, visual, messages, max_new_tokens=settings.max_new_tokens, conv_template=args.conv_template,
        max_rope_factor=args.max_rope_factor,
    )


def _chat(model: Any, args: Any, settings: Any, first_prompt: str | None) -> int:
    from llava_video.inference import pipeline as pl

    request = _prepare(model, args.videos[0] if args.videos else None, args, settings, pl.DEFAULT_PROMPT)
    session = pl.ChatSession(
        model, request.visual, settings=settings, conv_template=args.conv_template, max_rope_factor=args.max_rope_factor
    )
    interactive = sys.stdin.isatty()
    print("Chat about the video. /reset starts over, /quit (or Ctrl-D) leaves.", file=sys.stderr)
    pending = [first_prompt] if first_prompt else []
    while True:
        if pending:
            line = pending.pop()
        else:
            if interactive:
                print("> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line:
                return 0
        line = line.strip()
        if not line:
            continue
        if line == "/quit":
            return 0
        if line == "/reset":
            session.reset()
            print("(conversation reset)", file=sys.stderr)
            continue
        session.ask(line, on_text=lambda delta: print(delta, end="", flush=True))
        print(flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors("infer_video.py", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
