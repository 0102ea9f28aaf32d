#!/usr/bin/env python
"""Accuracy at 8/16/32 frames with and without RoPE scaling: ``python tools/demo_length_table.py --output runs/demo_length``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_video.cli.demo_length_table import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
