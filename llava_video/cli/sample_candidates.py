"""tools/sample_candidates.py: K sampled answers per (video, question) (step 1 of DPO from AI feedback).

    python tools/sample_candidates.py --model runs/video_sft --prompts prompts.jsonl --output candidates.jsonl \
        [--num-samples 4] [--temperature 1.0] [--top-p 0.95] [--frames 16] [--batch-size 8] [--seed 0]

Resumable: rerun the same command and only the missing candidates are sampled. Exit code 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llava_video.cli.common import ArgumentParser, run_reporting_errors

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="sample_candidates.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="checkpoint directory (the SFT policy)")
    p.add_argument("--prompts", required=True, help="prompts JSONL (id, video, question, caption, reference)")
    p.add_argument("--output", required=True, help="candidates JSONL to append to")
    p.add_argument("--video-root", default=None, help="folder of relative video paths (default: the prompts file's folder)")
    p.add_argument("--num-samples", type=int, default=4, help="K answers per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--frames", type=int, default=16, help="frames sampled uniformly per video")
    p.add_argument("--batch-size", type=int, default=8, help="answers decoded together (of one prompt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--attn", default="auto")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> str:
        from llava_video.feedback.sample import SamplingConfig, read_prompts, sample_candidates
        from llava_video.model.llava_video import LlavaVideo

        config = SamplingConfig(num_samples=args.num_samples, temperature=args.temperature, top_p=args.top_p,
                                top_k=args.top_k, max_new_tokens=args.max_new_tokens, num_frames=args.frames,
                                batch_size=args.batch_size, seed=args.seed)
        prompts = read_prompts(args.prompts)[: args.limit]
        model = LlavaVideo.from_pretrained(args.model, device=args.device, dtype=args.dtype, attn_implementation=args.attn)
        video_root = args.video_root if args.video_root is not None else Path(args.prompts).parent
        summary = sample_candidates(model, prompts, output=args.output, config=config, video_root=video_root,
                                    progress=not args.no_progress)
        return summary.line(args.output)

    return run_reporting_errors("sample_candidates.py", work)


if __name__ == "__main__":
    sys.exit(main())
