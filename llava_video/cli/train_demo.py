"""``tools/train_demo.py --output runs/demo [--install]``: train the embedded demo model from scratch on the
synthetic world (data -> stage 1 -> stage 2 -> sample -> judge -> pairs -> DPO -> evaluation), each stage
through its own command; see docs/demo.md and llava_video/demo/recipe.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llava_video.cli.common import ArgumentParser, report_errors

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="train_demo.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, type=Path, help="run folder (reused to resume: finished stages are skipped)")
    p.add_argument("--config-dir", type=Path, default=None, help="recipe folder (default configs/demo)")
    p.add_argument("--install", action="store_true", help="copy the final model into llava_video/assets/demo")
    p.add_argument("--keep-media-cache", action="store_true",
                   help="keep the training stages' decoded clips (OUTPUT/media_cache, ~4.4 GB) after DPO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        from llava_video.demo.recipe import REPO_ROOT, run_demo_recipe

        report = run_demo_recipe(output=args.output, config_dir=args.config_dir or REPO_ROOT / "configs" / "demo",
                                 install=args.install, keep_media_cache=args.keep_media_cache)
        print(json.dumps({name: stage["seconds"] for name, stage in report["stages"].items()}
                         | {"total_seconds": report["total_seconds"]}))
        return 0

    return report_errors("train_demo.py", work)
