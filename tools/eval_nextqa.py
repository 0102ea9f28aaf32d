#!/usr/bin/env python
"""Zero-shot NExT-QA evaluation: see llava_video/cli/eval_nextqa.py and docs/nextqa.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_video.cli.eval_nextqa import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
