#!/usr/bin/env python
"""Ask a LLaVA-NeXT-Video model about clips. See `python tools/infer_video.py --help`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_video.cli.infer_video import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
