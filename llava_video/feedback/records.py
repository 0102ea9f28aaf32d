"""File schemas of the feedback loop and the JSONL plumbing they share.

Candidates JSONL (written by the sampler, read by the judge), one line per candidate answer::

    {"id": "vid7-q2", "video": "videos/vid7.mp4", "question": "What does the man do?",
     "reference": "He opens a door." | null, "caption": "<detailed caption of the video>",
     "candidate_index": 0, "answer": "He walks to a door and opens it."}

``id`` names one (video, question) item and is shared by its K candidates; ``(id, candidate_index)`` names one
candidate. ``reference`` may be absent or null. Extra keys are kept and passed through.

Judged JSONL adds ``status`` ("scored" | "failed"), ``score`` (int 1-5 or null), ``explanation`` (str or null),
``reason`` (why it failed, or null), ``judge`` (the judge's identity) and ``cached`` (bool).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llava_video.atomic import write_text_atomic
from llava_video.errors import InputError

__all__ = [
    "Candidate",
    "candidate_from_json",
    "read_jsonl",
    "read_candidates",
    "JsonlAppender",
    "write_text_atomic",
    "write_jsonl_atomic",
    "JudgeStatus",
]

JudgeStatus = Literal["scored", "failed"]


@dataclass(frozen=True)
class Candidate:
    """One sampled answer to one (video, question) item."""

    id: str
    video: str
    question: str
    caption: str
    candidate_index: int
    answer: str
    reference: str | None = None
    extra: dict[str, Any] | None = None  # keys the sampler added; written back unchanged

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.candidate_index)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = dict(self.extra or {})
        row.update(id=self.id, video=self.video, question=self.question, reference=self.reference,
                   caption=self.caption, candidate_index=self.candidate_index, answer=self.answer)
        return row


_REQUIRED_STR = ("id", "video", "question", "caption", "answer")


def candidate_from_json(row: Any, *, where: str) -> Candidate:
    """Validate one parsed JSON line; ``where`` ("file:line") prefixes any error."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in _REQUIRED_STR:
        if not isinstance(row.get(name), str):
            raise InputError(f"{where}: field '{name}' must be a string")
    index = row.get("candidate_index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise InputError(f"{where}: field 'candidate_index' must be a non-negative integer")
    reference = row.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise InputError(f"{where}: field 'reference' must be a string or null")
    known = set(_REQUIRED_STR) | {"candidate_index", "reference"}
    extra = {k: v for k, v in row.items() if k not in known}
    return Candidate(id=row["id"], video=row["video"], question=row["question"], caption=row["caption"],
                     candidate_index=index, answer=row["answer"], reference=reference, extra=extra or None)


def read_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield ``("file:line", parsed object)`` for each non-blank line; a bad line raises InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from None


def read_candidates(path: str | Path) -> list[Candidate]:
    """All candidates of a file, checking that no (id, candidate_index) appears twice."""
    seen: set[tuple[str, int]] = set()
    candidates = []
    for where, row in read_jsonl(path):
        candidate = candidate_from_json(row, where=where)
        if candidate.key in seen:
            raise InputError(f"{where}: duplicate candidate (id={candidate.id!r}, "
                             f"candidate_index={candidate.candidate_index})")
        seen.add(candidate.key)
        candidates.append(candidate)
    return candidates


class JsonlAppender:
    """Append JSON lines, flushed one by one, to a file that may hold the output of an interrupted run.

    A run killed mid-write can leave a last line without its newline; it is cut off on open (it was never
    complete, so nothing valid is lost) and :meth:`existing` returns the complete lines already there.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._existing = self._repair_and_read()
        self._handle = self.path.open("a", encoding="utf-8")

    def _repair_and_read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        complete_end = data.rfind(b"\n") + 1  # 0 when there is no newline at all
        if complete_end < len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(complete_end)
        rows = []
        for number, line in enumerate(data[:complete_end].decode("utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{self.path}:{number}: not valid JSON ({exc.msg})") from None
        return rows

    def existing(self) -> list[dict[str, Any]]:
        return list(self._existing)

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_jsonl_atomic(path: str | Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
