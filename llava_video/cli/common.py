"""What every command shares: user errors become one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from llava_video.errors import LlavaVideoError

__all__ = ["USAGE_ERROR", "ArgumentParser", "run_reporting_errors", "report_errors"]

USAGE_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors on one line (``prog: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def report_errors(prog: str, work: Callable[[], int], *, on_interrupt: str = "") -> int:
    """Run ``work`` and return its exit code: input errors become one stderr line and exit code 2, argparse's
    exits (usage errors, ``--help``) return their code, Ctrl-C exits with 130 and the ``on_interrupt`` hint
    (e.g. how to resume)."""
    try:
        return work()
    except SystemExit as exc:  # argparse: --help (0) or a usage error already printed on one line (2)
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    except (LlavaVideoError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted" + (f"; {on_interrupt}" if on_interrupt else ""), file=sys.stderr)
        return 130


def run_reporting_errors(prog: str, work: Callable[[], str]) -> int:
    """Run ``work`` (which returns a summary line to print) under :func:`report_errors`; 0 on success."""

    def print_summary() -> int:
        print(work())
        return 0

    return report_errors(prog, print_summary)
