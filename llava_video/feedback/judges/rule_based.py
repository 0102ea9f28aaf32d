"""A judge that applies a rule instead of asking a model: for the synthetic world and for offline demos."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence

from llava_video.feedback.judges.base import Judge, JudgeRequest, JudgeResult

__all__ = ["JudgeRule", "RuleBasedJudge", "reference_overlap_rule"]

JudgeRule = Callable[[str, str, "str | None", str], int]  # (caption, question, reference, answer) -> 1..5

_WORD = re.compile(r"[a-z0-9]+")


def reference_overlap_rule(caption: str, question: str, reference: str | None, answer: str) -> int:
    """1-5 from the word-overlap F1 of the answer with the reference (or with the caption when there is none).

    A stand-in for demos on CPU; the synthetic world supplies a rule that knows its ground truth.
    """
    truth = set(_WORD.findall((reference if reference else caption).lower()))
    said = set(_WORD.findall(answer.lower()))
    if not truth or not said:
        return 1
    common = len(truth & said)
    if common == 0:
        return 1
    precision, recall = common / len(said), common / len(truth)
    f1 = 2 * precision * recall / (precision + recall)
    return 1 + min(4, int(f1 * 5))  # f1 in [0, 0.2) -> 1 ... [0.8, 1] -> 5


class RuleBasedJudge(Judge):
    """Scores with ``rule(caption, question, reference, answer)``.

    A rule that raises ValueError (it cannot judge that input) or returns something other than an integer 1-5
    yields a failed result with the reason; any other exception is a bug in the rule and propagates.
    """

    def __init__(self, *, rule: JudgeRule, name: str) -> None:
        self._rule = rule
        self._name = name

    @property
    def identity(self) -> str:
        return f"rule:{self._name}"

    def cache_text(self, request: JudgeRequest) -> str:
        # The rule reads the fields, not a prompt, so the fields key the cache.
        return json.dumps([request.caption, request.question, request.reference, request.answer],
                          ensure_ascii=False)

    def _judge_one(self, request: JudgeRequest) -> JudgeResult:
        try:
            score = self._rule(request.caption, request.question, request.reference, request.answer)
        except ValueError as exc:
            return JudgeResult.failed(request.key, reason=f"rule could not judge: {exc}")
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            return JudgeResult.failed(request.key, reason=f"rule returned {score!r}, not an integer 1-5")
        return JudgeResult.scored(request.key, score=score, explanation=f"rule {self._name}")

    def iter_score(
        self, requests: Sequence[JudgeRequest], on_complete: Callable[[JudgeResult], None] | None = None
    ) -> Iterator[JudgeResult]:
        for request in requests:
            result = self._judge_one(request)
            if on_complete is not None:
                on_complete(result)
            yield result
