#!/usr/bin/env python
"""Train the embedded demo model end to end: ``python tools/train_demo.py --output runs/demo [--install]``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_video.cli.train_demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
