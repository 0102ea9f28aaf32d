"""NExT-QA files, prompts, multiple-choice parsing, scoring and the official aggregation.

Formats (official release, also used by lmms-eval):
- MC CSV: ``video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4``; ``answer`` is 0-4.
- OE CSV: ``video,frame_count,width,height,question,answer,qid,type``; the test split adds a second
  reference per question in ``add_reference_answer_test.json`` (``{video: {qid: answer}}``).
- ``map_vid_vidorID.json``: ``{video: "folder/id"}``, videos at ``<root>/<folder>/<id>.mp4``; without a
  map the lmms-eval layout ``<root>/<video>.mp4`` is used.

Aggregation follows ``eval_mc.py`` / ``eval_oe.py``: TP is scored with TN; groups are the first letter of
the type (C causal, T temporal, D descriptive); a group's score is pooled over its questions.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping, Sequence

from llava_video.errors import InputError, LlavaVideoError

__all__ = [
    "Task",
    "NextQAQuestion",
    "MC_TYPES",
    "OE_TYPES",
    "GROUP_NAMES",
    "OPTION_LETTERS",
    "MC_INSTRUCTION",
    "OE_INSTRUCTION",
    "AnnotationError",
    "read_questions",
    "read_extra_references",
    "read_video_map",
    "video_path",
    "build_prompt",
    "parse_mc_answer",
    "folded_type",
    "aggregate",
    "official_mc_predictions",
    "official_oe_predictions",
]

Task = Literal["mc", "oe"]
OPTION_LETTERS = ("A", "B", "C", "D", "E")
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OE_INSTRUCTION = "Answer a question using a short phrase or sentence."
MC_TYPES = ("CW", "CH", "TN", "TC", "DC", "DL", "DO")  # the order eval_mc.py prints
OE_TYPES = ("CW", "CH", "TN", "TC", "DB", "DC", "DL", "DO")  # the order eval_oe.py prints
GROUP_NAMES = {"C": "causal", "T": "temporal", "D": "descriptive"}
_BASE_COLUMNS = ("video", "frame_count", "width", "height", "question", "answer", "qid", "type")
_MC_COLUMNS = _BASE_COLUMNS + tuple(f"a{i}" for i in range(5))


class AnnotationError(LlavaVideoError, ValueError):
    """An annotation, map or reference file is malformed; the message names the file and the row."""


@dataclass(frozen=True)
class NextQAQuestion:
    """One question. ``answer`` is the reference text (OE) or the correct option's index as text (MC)."""

    video: str
    qid: str
    question: str
    qtype: str
    answer: str
    options: tuple[str, ...] = ()
    extra_answers: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """The official id: ``<video>_<qid>``."""
        return f"{self.video}_{self.qid}"

    @property
    def answer_index(self) -> int:
        return int(self.answer)

    @property
    def references(self) -> tuple[str, ...]:
        return (self.answer, *self.extra_answers)


def folded_type(qtype: str) -> str:
    """The type a question is scored under: TP (previous) is folded into TN (before/after)."""
    return "TN" if qtype == "TP" else qtype


def _read_json(path: Path, *, what: str) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnnotationError(f"{path}: {what} file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: {what} is not valid JSON ({exc})") from None


def read_questions(path: str | Path, *, task: Task,
                   extra_references: Mapping[tuple[str, str], str] | None = None) -> list[NextQAQuestion]:
    """Read an official MC or OE CSV (values kept as text) into questions, in file order."""
    path = Path(path)
    columns = _MC_COLUMNS if task == "mc" else _BASE_COLUMNS
    allowed_types = set(MC_TYPES) | {"TP"} if task == "mc" else set(OE_TYPES) | {"TP"}
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    questions: list[NextQAQuestion] = []
    seen: set[str] = set()
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            hint = " (is this the multiple-choice file? use --task mc)" if task == "oe" and "a0" in (reader.fieldnames or ()) else ""
            raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)} for --task {task}{hint}")
        for line, row in enumerate(reader, start=2):
            qtype = row["type"].strip()
            if qtype not in allowed_types:
                raise AnnotationError(f"{path}:{line}: unknown question type {qtype!r}")
            video, qid = row["video"].strip(), row["qid"].strip()
            answer = row["answer"].strip()
            if task == "mc" and answer not in {"0", "1", "2", "3", "4"}:
                raise AnnotationError(f"{path}:{line}: answer must be an option index 0-4, got {answer!r}")
            extra = ()
            if extra_references and (video, qid) in extra_references:
                extra = (extra_references[(video, qid)],)
            question = NextQAQuestion(
                video=video, qid=qid, question=row["question"].strip(), qtype=qtype, answer=answer,
                options=tuple(row[f"a{i}"].strip() for i in range(5)) if task == "mc" else (),
                extra_answers=extra)
            if question.key in seen:
                raise AnnotationError(f"{path}:{line}: duplicate question {question.key}")
            seen.add(question.key)
            questions.append(question)
    if not questions:
        raise AnnotationError(f"{path}: no questions")
    return questions


def read_extra_references(path: str | Path) -> dict[tuple[str, str], str]:
    """The test split's second references: ``{video: {qid: answer}}`` -> ``{(video, qid): answer}``."""
    data = _read_json(Path(path), what="reference answers")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise AnnotationError(f"{path}: expected {{video: {{qid: answer}}}}")
    return {(str(video), str(qid)): str(answer) for video, answers in data.items() for qid, answer in answers.items()}


def read_video_map(path: str | Path) -> dict[str, str]:
    """``map_vid_vidorID.json``: ``{video: "folder/id"}``."""
    data = _read_json(Path(path), what="video map")
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise AnnotationError(f"{path}: expected {{video: \"folder/id\"}}")
    return {str(k): v for k, v in data.items()}


def video_path(video: str, *, video_root: Path, video_map: Mapping[str, str] | None) -> Path:
    """Where a video lives: ``root/<folder>/<id>.mp4`` through the map, else ``root/<video>.mp4``."""
    if video_map is not None:
        if video not in video_map:
            return video_root / f"<not in video map: {video}>"
        return video_root / f"{video_map[video]}.mp4"
    return video_root / f"{video}.mp4"


def build_prompt(question: NextQAQuestion, *, task: Task) -> str:
    """The text after the video: the question, the lettered options (MC) and the answer instruction."""
    if task == "mc":
        options = "\n".join(f"{letter}. {text}" for letter, text in zip(OPTION_LETTERS, question.options))
        return f"{question.question}\n{options}\n{MC_INSTRUCTION}"
    return f"{question.question}\n{OE_INSTRUCTION}"


# --- multiple-choice parsing -------------------------------------------------------------------------------
_LETTER_PATTERNS = (
    re.compile(r"^\W*\(?([A-Ea-e])\)?\W*$"),  # the whole answer is one letter: "B", "(c)", "D."
    re.compile(r"^\s*\(?([A-E])(?:\)|\.|:|\s*$)"),  # leads with "B." / "(B)" / "B)" / "B:"
    re.compile(r"(?i:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*\(?([A-E])\b(?![\w'])"),  # "answer is C"
    re.compile(r"\(([A-E])\)"),  # "(C)" anywhere
    re.compile(r"(?<![\w'])([A-E])(?:\.|\))(?=\s|$)"),  # "C." / "C)" anywhere
)


def _normalize_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def parse_mc_answer(response: str, options: Sequence[str]) -> int | None:
    """The option index a response names, or None. Deterministic: letter forms first, then option text.

    Each letter pattern is tried in order; a pattern that names exactly one distinct letter decides.
    Then the option texts: an exact (normalised) match, else the longest option contained in the
    response, when unique. A bare "A" at the start of a sentence ("A man ...") is not taken as a letter.
    """
    valid = OPTION_LETTERS[: len(options)]
    for pattern in _LETTER_PATTERNS:
        letters = {match.upper() for match in pattern.findall(response)} & set(valid)
        if len(letters) == 1:
            return OPTION_LETTERS.index(letters.pop())
        if len(letters) > 1:
            break  # the response names several letters: only the option text can decide
    said = f" {_normalize_text(response)} "
    normalized = [_normalize_text(option) for option in options]
    exact = [i for i, option in enumerate(normalized) if option and said.strip() == option]
    if len(exact) == 1:
        return exact[0]
    contained = [i for i, option in enumerate(normalized) if option and f" {option} " in said]
    if not contained:
        return None
    longest = max(len(normalized[i]) for i in contained)
    best = [i for i in contained if len(normalized[i]) == longest]
    return best[0] if len(best) == 1 else None


# --- aggregation -------------------------------------------------------------------------------------------
def aggregate(scores: Iterable[tuple[str, Sequence[float]]], *, task: Task,
              metric_names: Sequence[str]) -> dict:
    """Per-type, per-group and overall means (x100) of per-question scores, as the official scripts pool them.

    ``scores``: (question type, one value per metric) per question. Types with no question are left out.
    """
    type_order = MC_TYPES if task == "mc" else OE_TYPES
    sums: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for qtype, values in scores:
        qtype = folded_type(qtype)
        if qtype not in type_order:
            raise InputError(f"question type {qtype!r} is not scored in task {task}")
        acc = sums.setdefault(qtype, [0.0] * len(metric_names))
        for i, value in enumerate(values):
            acc[i] += value
        counts[qtype] = counts.get(qtype, 0) + 1

    def summarise(type_keys: Sequence[str]) -> dict | None:
        n = sum(counts.get(k, 0) for k in type_keys)
        if n == 0:
            return None
        totals = [sum(sums[k][i] for k in type_keys if k in sums) for i in range(len(metric_names))]
        return {"count": n, **{name: 100.0 * total / n for name, total in zip(metric_names, totals)}}

    per_type = {k: summarise([k]) for k in type_order if k in counts}
    per_group = {}
    for letter, name in GROUP_NAMES.items():
        summary = summarise([k for k in type_order if k[0] == letter])
        if summary is not None:
            per_group[name] = summary
    return {"overall": summarise(type_order), "per_type": per_type, "per_group": per_group}


def official_mc_predictions(records: Iterable[Mapping]) -> dict[str, dict[str, int]]:
    """``{"<video>_<qid>": {"answer": i, "prediction": j}}`` as eval_mc.py reads it (-1: unparsed)."""
    return {r["key"]: {"answer": int(r["answer"]), "prediction": int(r["prediction"])} for r in records}


def official_oe_predictions(records: Iterable[Mapping]) -> dict[str, dict[str, str]]:
    """``{video: {qid: prediction}}``, the form eval_oe.py reads (``res[video][qid]``)."""
    nested: dict[str, dict[str, str]] = {}
    for r in records:
        nested.setdefault(r["video"], {})[r["qid"]] = r["prediction"]
    return nested
