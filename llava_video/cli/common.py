"""What every command shares: user errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from llava_video.errors import LlavaVideoError

__all__ = ["USAGE_ERROR", "run_reporting_errors"]

USAGE_ERROR = 2


def run_reporting_errors(prog: str, work: Callable[[], str]) -> int:
    """Run ``work`` (which returns a summary line to print); 0 on success, 2 with one stderr line on bad input."""
    try:
        summary = work()
    except (LlavaVideoError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(summary)
    return 0
