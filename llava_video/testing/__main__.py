"""``python -m llava_video.testing DIR``: save a tiny random checkpoint (llava-hf layout) to DIR.

Used by the README's first command until the trained demo model ships, and handy for trying the commands.
"""

from __future__ import annotations

import argparse

from llava_video.testing.tiny import tiny_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llava_video.testing", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="directory to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = tiny_model(seed=args.seed).save_pretrained(args.output)
    print(f"tiny random checkpoint written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
