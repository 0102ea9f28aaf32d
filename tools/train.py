#!/usr/bin/env python
"""Train from a recipe: ``python tools/train.py --config configs/stage2.yaml key=value ...``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_video.cli.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
