"""tools/build_pairs.py: preference pairs from judged candidates (step 3 of the DPO-from-AI-feedback loop).

    python tools/build_pairs.py --judged judged.jsonl --output pairs.jsonl [--min-margin 1]

chosen = best-scored, rejected = worst-scored answer of each item, kept when the score margin reaches
--min-margin; ties are dropped. The report (pairs kept, drops by reason, score histogram) is printed and written
as JSON next to the output (``<output>.report.json`` unless --report is given). Exit code 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys

from llava_video.cli.common import ArgumentParser, run_reporting_errors
from llava_video.feedback.pairs import build_pairs_file

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="build_pairs.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--judged", required=True, help="judged JSONL written by judge.py")
    parser.add_argument("--output", required=True, help="pairs JSONL to write")
    parser.add_argument("--report", default=None, help="report JSON (default: <output>.report.json)")
    parser.add_argument("--min-margin", type=int, default=1, help="smallest best-minus-worst score kept")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> str:
        return build_pairs_file(judged_path=args.judged, output_path=args.output,
                                report_path=args.report or f"{args.output}.report.json",
                                min_margin=args.min_margin).summary()

    return run_reporting_errors("build_pairs.py", work)


if __name__ == "__main__":
    sys.exit(main())
