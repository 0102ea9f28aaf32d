"""``tools/demo_length_table.py --model llava_video/assets/demo --output runs/demo_length``: held-out
multiple-choice accuracy at 8, 16 and 32 frames with and without linear RoPE scaling (see
llava_video/demo/length_table.py and docs/demo.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_video.cli.common import ArgumentParser, report_errors

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="demo_length_table.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="demo", help="checkpoint folder ('demo': the bundled demo model)")
    p.add_argument("--output", required=True, type=Path, help="work folder (reused: finished evaluations are kept)")
    p.add_argument("--train-frames", type=int, default=8, help="frames per clip the model was trained at")
    p.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--num-eval", type=int, default=100, help="held-out clips (5 questions each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", type=Path, default=None,
                   help="demo recipe folder whose world the clips are rendered in (default: configs/demo)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        from llava_video.cli.infer_video import resolve_model_path
        from llava_video.demo.length_table import format_length_table, run_length_table
        from llava_video.demo.recipe import REPO_ROOT, load_demo_recipe

        recipe = load_demo_recipe(args.recipe or REPO_ROOT / "configs" / "demo")
        results = run_length_table(model_dir=resolve_model_path(args.model), output=args.output,
                                   train_frames=args.train_frames, frames=args.frames, num_eval=args.num_eval, seed=args.seed,
                                   world_arguments=recipe.world_arguments())
        print(format_length_table(results))
        return 0

    return report_errors("demo_length_table.py", work)
