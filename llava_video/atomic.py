"""Atomic file writes: whoever reads a file, or resumes a run after a kill, sees the old content or the new,
never half of it.

Every writer of results, reports, checkpoints and indexes goes through here. The new content goes to a hidden
file in the target's own folder (a rename is atomic only within one file system), which then replaces the
target with ``os.replace``; if writing fails, the partial file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for any writer (``torch.save``, safetensors, ...); on a clean exit
    it replaces ``path``, on an exception it is deleted and the exception propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer (pid + random), so two processes writing the same file do not share one
    # partial file; created by the writer with the process's umask (tempfile.mkstemp would make it 0600).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, payload: object, *, indent: int | None = 2) -> None:
    """``payload`` as JSON (UTF-8, not ASCII-escaped) with a final newline."""
    write_text_atomic(path, json.dumps(payload, indent=indent, ensure_ascii=False) + "\n")
