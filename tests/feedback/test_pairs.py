"""Pair selection: best vs worst, margin threshold, ties dropped, deterministic tie-breaking, report."""

from __future__ import annotations

import json

import pytest

from llava_video.errors import ConfigError, InputError
from llava_video.feedback.pairs import (DROP_MARGIN, DROP_SAME_TEXT, DROP_TIE, DROP_TOO_FEW, ScoredCandidate,
                                        build_pairs, choose_pair)


def _row(item: str, index: int, score: int | None, answer: str | None = None) -> tuple[str, dict]:
    row = {"id": item, "video": f"{item}.mp4", "question": f"q {item}", "caption": "c", "reference": None,
           "candidate_index": index, "answer": answer or f"{item} answer {index}",
           "status": "scored" if score is not None else "failed", "score": score,
           "reason": None if score is not None else "HTTP 500"}
    return (f"judged.jsonl:{index}", row)


def test_best_and_worst_with_lowest_index_on_ties() -> None:
    cands = [ScoredCandidate(3, "c", 5), ScoredCandidate(1, "a", 5), ScoredCandidate(0, "z", 2),
             ScoredCandidate(2, "b", 2), ScoredCandidate(4, "d", 3)]
    chosen, rejected = choose_pair(cands)
    assert (chosen.candidate_index, rejected.candidate_index) == (1, 0)
    assert choose_pair(list(reversed(cands))) == (chosen, rejected)  # input order does not matter


def test_drop_reasons() -> None:
    assert choose_pair([ScoredCandidate(0, "a", 4)]) == DROP_TOO_FEW
    assert choose_pair([ScoredCandidate(0, "a", 4), ScoredCandidate(1, "b", 4)]) == DROP_TIE
    assert choose_pair([ScoredCandidate(0, "a", 4), ScoredCandidate(1, "b", 3)], min_margin=2) == DROP_MARGIN
    assert choose_pair([ScoredCandidate(0, "same", 4), ScoredCandidate(1, "same ", 2)]) == DROP_SAME_TEXT


def test_build_pairs_report_and_schema() -> None:
    rows = [_row("a", 0, 5), _row("a", 1, 2), _row("a", 2, None),  # pair (margin 3), one unscored
            _row("b", 0, 3), _row("b", 1, 3),  # tie
            _row("c", 0, 4), _row("c", 1, None),  # too few scored
            _row("d", 0, 4), _row("d", 1, 3)]  # margin 1
    pairs, report = build_pairs(rows, min_margin=1)
    assert [p["id"] for p in pairs] == ["a", "d"]
    assert pairs[0] == {"id": "a", "video": "a.mp4", "prompt": "q a", "reference": None, "chosen": "a answer 0",
                        "rejected": "a answer 1", "chosen_score": 5, "rejected_score": 2, "chosen_index": 0,
                        "rejected_index": 1}
    assert report.pairs_kept == 2 and report.items == 4 and report.candidates == 9 and report.failed_candidates == 2
    assert report.dropped == {DROP_TIE: 1, DROP_TOO_FEW: 1}
    assert report.score_histogram == {1: 0, 2: 1, 3: 3, 4: 2, 5: 1}
    assert json.loads(json.dumps(report.to_json()))["kept_margin_histogram"] == {"1": 1, "3": 1}
    pairs2, report2 = build_pairs(rows, min_margin=2)
    assert [p["id"] for p in pairs2] == ["a"] and report2.dropped[DROP_MARGIN] == 1


def test_bad_judged_input_is_named() -> None:
    with pytest.raises(ConfigError, match="min_margin"):
        build_pairs([], min_margin=0)
    with pytest.raises(InputError, match="appears twice"):
        build_pairs([_row("a", 0, 5), _row("a", 0, 4)])
    bad = _row("a", 1, 5)
    bad[1]["score"] = 9
    with pytest.raises(InputError, match="judged.jsonl:1: a scored line needs an integer 'score'"):
        build_pairs([bad])
    other = _row("a", 1, 5)
    other[1]["video"] = "elsewhere.mp4"
    with pytest.raises(InputError, match="two different"):
        build_pairs([_row("a", 0, 5), other])
