"""Preference pairs from judged candidates: best against worst, when the judge separated them clearly enough.

Rule, per item (``id``, one (video, question)):

* only candidates with status "scored" take part (failed ones are counted in the report, not guessed);
* chosen = a best-scored candidate, rejected = a worst-scored one;
* ties among equally scored candidates are broken by the lowest ``candidate_index`` (for both chosen and
  rejected), so the same input always gives the same pairs;
* the pair is kept when ``best - worst >= min_margin`` (default 1); when all scores are equal it is a tie and
  dropped; when best and worst answers are the same text it is dropped too (no preference to learn).

Pairs JSONL, one line per kept item::

    {"id", "video", "prompt" (the question), "reference", "chosen", "rejected", "chosen_score", "rejected_score",
     "chosen_index", "rejected_index"}
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llava_video.errors import ConfigError, InputError
from llava_video.feedback.records import candidate_from_json, read_jsonl, write_jsonl_atomic, write_text_atomic

__all__ = ["DropReason", "PairsReport", "ScoredCandidate", "choose_pair", "build_pairs", "build_pairs_file"]

DropReason = str  # one of the DROP_* constants below
DROP_TOO_FEW = "fewer than 2 scored candidates"
DROP_TIE = "all scores equal"
DROP_MARGIN = "margin below threshold"
DROP_SAME_TEXT = "best and worst answers identical"


@dataclass(frozen=True)
class ScoredCandidate:
    candidate_index: int
    answer: str
    score: int


@dataclass
class PairsReport:
    items: int = 0
    candidates: int = 0
    failed_candidates: int = 0
    pairs_kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> items
    score_histogram: dict[int, int] = field(default_factory=lambda: {s: 0 for s in range(1, 6)})
    margin_histogram: Counter = field(default_factory=Counter)  # best - worst -> kept pairs

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "candidates": self.candidates,
            "failed_candidates": self.failed_candidates,
            "pairs_kept": self.pairs_kept,
            "dropped": dict(self.dropped),
            "score_histogram": {str(k): v for k, v in sorted(self.score_histogram.items())},
            "kept_margin_histogram": {str(k): v for k, v in sorted(self.margin_histogram.items())},
        }

    def summary(self) -> str:
        dropped = ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common()) or "none"
        histogram = " ".join(f"{s}:{n}" for s, n in sorted(self.score_histogram.items()))
        return (f"{self.pairs_kept} pairs kept from {self.items} items ({self.candidates} candidates, "
                f"{self.failed_candidates} unscored); dropped: {dropped}; scores {histogram}")


def choose_pair(
    candidates: list[ScoredCandidate], *, min_margin: int = 1
) -> tuple[ScoredCandidate, ScoredCandidate] | DropReason:
    """(chosen, rejected) for one item's scored candidates, or the reason there is no pair."""
    if len(candidates) < 2:
        return DROP_TOO_FEW
    # The key (-score, index) picks the best with the lowest index; (score, index) the worst likewise.
    chosen = min(candidates, key=lambda c: (-c.score, c.candidate_index))
    rejected = min(candidates, key=lambda c: (c.score, c.candidate_index))
    margin = chosen.score - rejected.score
    if margin == 0:
        return DROP_TIE
    if margin < min_margin:
        return DROP_MARGIN
    if chosen.answer.strip() == rejected.answer.strip():
        return DROP_SAME_TEXT
    return chosen, rejected


def build_pairs(rows: list[tuple[str, Any]], *, min_margin: int = 1) -> tuple[list[dict[str, Any]], PairsReport]:
    """Pairs from judged rows given as ``(where, parsed json)``; items come out in order of first appearance."""
    if min_margin < 1:
        raise ConfigError(f"min_margin must be >= 1 (a margin of 0 is a tie), got {min_margin}")
    report = PairsReport()
    items: dict[str, dict[str, Any]] = {}
    scored: dict[str, list[ScoredCandidate]] = {}
    seen: set[tuple[str, int]] = set()
    for where, row in rows:
        candidate = candidate_from_json(row, where=where)
        status = row.get("status")
        if status not in ("scored", "failed"):
            raise InputError(f"{where}: field 'status' must be 'scored' or 'failed', got {status!r}")
        if candidate.key in seen:
            raise InputError(f"{where}: candidate (id={candidate.id!r}, candidate_index="
                             f"{candidate.candidate_index}) appears twice")
        seen.add(candidate.key)
        first = items.setdefault(candidate.id, {"video": candidate.video, "prompt": candidate.question,
                                                "reference": candidate.reference})
        if (first["video"], first["prompt"]) != (candidate.video, candidate.question):
            raise InputError(f"{where}: id {candidate.id!r} is used for two different (video, question) items")
        scored.setdefault(candidate.id, [])
        report.candidates += 1
        if status == "failed":
            report.failed_candidates += 1
            continue
        score = row.get("score")
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise InputError(f"{where}: a scored line needs an integer 'score' 1-5, got {score!r}")
        report.score_histogram[score] += 1
        scored[candidate.id].append(ScoredCandidate(candidate.candidate_index, candidate.answer, score))

    pairs = []
    report.items = len(items)
    for item_id, item in items.items():
        outcome = choose_pair(scored[item_id], min_margin=min_margin)
        if isinstance(outcome, str):
            report.dropped[outcome] += 1
            continue
        chosen, rejected = outcome
        report.pairs_kept += 1
        report.margin_histogram[chosen.score - rejected.score] += 1
        pairs.append({"id": item_id, **item, "chosen": chosen.answer, "rejected": rejected.answer,
                      "chosen_score": chosen.score, "rejected_score": rejected.score,
                      "chosen_index": chosen.candidate_index, "rejected_index": rejected.candidate_index})
    return pairs, report


def build_pairs_file(
    *, judged_path: str | Path, output_path: str | Path, report_path: str | Path | None = None, min_margin: int = 1
) -> PairsReport:
    """Read judged JSONL, write the pairs JSONL (and the report as JSON), both atomically."""
    pairs, report = build_pairs(list(read_jsonl(judged_path)), min_margin=min_margin)
    write_jsonl_atomic(output_path, pairs)
    if report_path is not None:
        write_text_atomic(report_path, json.dumps(report.to_json(), indent=2) + "\n")
    return report
