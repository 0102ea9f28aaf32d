"""``tools/train.py --config recipe.yaml [key=value ...]``: every training stage and objective.

Launch one process directly, several with ``torchrun --nproc-per-node N``, DeepSpeed with
``deepspeed [--hostfile hosts] tools/train.py ... distributed.deepspeed=configs/deepspeed/zero2.json``,
or ``accelerate launch``; see docs/training.md.
"""

from __future__ import annotations

import argparse
import sys

from llava_video.errors import LlavaVideoError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description="Train a LLaVA-NeXT-Video model from a YAML recipe.")
    p.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    p.add_argument("--check", action="store_true", help="validate the recipe and exit")
    p.add_argument("--local-rank", "--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by deepspeed
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4 schedule.max_steps=10")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from llava_video.train.config import load_train_config

    try:
        config = load_train_config(args.config, args.overrides)
        if args.check:
            print(f"{args.config}: ok")
            return 0
        from llava_video.train.trainer import run_training

        run_training(config)
    except LlavaVideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with checkpoint.resume=auto (the default)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
