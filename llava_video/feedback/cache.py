"""A persistent cache of judge verdicts, keyed by (judge identity, prompt), so reruns never re-query.

One JSON line per verdict, appended and flushed as each arrives (safe to kill at any moment; a torn last line
is dropped on the next open). Only scores are cached: a failure is worth retrying later, and the judged output
file already records it.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from llava_video.feedback.judges.base import JudgeResult
from llava_video.feedback.records import JsonlAppender

__all__ = ["cache_key", "CachedVerdict", "JudgeCache"]

CachedVerdict = tuple[int, str]  # (score, explanation)


def cache_key(*, judge_identity: str, prompt_text: str) -> str:
    """sha256 over the judge identity and the prompt; a NUL separates them so no two pairs collide by concatenation."""
    return hashlib.sha256(f"{judge_identity}\0{prompt_text}".encode()).hexdigest()


class JudgeCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file = JsonlAppender(self.path)
        self._verdicts: dict[str, CachedVerdict] = {}
        for row in self._file.existing():
            if isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("score"), int):
                self._verdicts[row["key"]] = (row["score"], str(row.get("explanation") or ""))

    def __len__(self) -> int:
        return len(self._verdicts)

    def get(self, key: str) -> CachedVerdict | None:
        with self._lock:
            return self._verdicts.get(key)

    def put(self, key: str, *, judge_identity: str, result: JudgeResult) -> None:
        """Store a scored result (failed ones are ignored). Thread-safe."""
        if result.status != "scored" or result.score is None:
            return
        with self._lock:
            if key in self._verdicts:
                return
            self._verdicts[key] = (result.score, result.explanation or "")
            self._file.append({"key": key, "judge": judge_identity, "score": result.score,
                               "explanation": result.explanation})

    def close(self) -> None:
        with self._lock:
            self._file.close()
