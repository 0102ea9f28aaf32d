"""``tools/train.py --config recipe.yaml [key=value ...]``: every training stage and objective.

Launch one process directly, several with ``torchrun --nproc-per-node N``, DeepSpeed with
``deepspeed [--hostfile hosts] tools/train.py ... distributed.deepspeed=configs/deepspeed/zero2.json``,
or ``accelerate launch``; see docs/training.md.
"""

from __future__ import annotations

import argparse
import sys

from llava_video.cli.common import ArgumentParser, report_errors

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="train.py", description="Train a LLaVA-NeXT-Video model from a YAML recipe.")
    p.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    p.add_argument("--check", action="store_true", help="validate the recipe and exit")
    p.add_argument("--local-rank", "--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by deepspeed
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=1e-4 schedule.max_steps=10")
    return p


def main(argv: list[str] | None = None) -> int:
    def work() -> int:
        args = build_parser().parse_args(argv)
        from llava_video.train.config import load_train_config

        config = load_train_config(args.config, args.overrides)
        if args.check:
            print(f"{args.config}: ok")
            return 0
        from llava_video.train.trainer import run_training

        run_training(config)
        return 0

    return report_errors("train.py", work, on_interrupt="rerun the same command to resume (checkpoint.resume=auto, the default)")


if __name__ == "__main__":
    sys.exit(main())
