#!/usr/bin/env python3
"""Thin wrapper: see llava_video/cli/make_synthetic.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_video.cli.make_synthetic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
