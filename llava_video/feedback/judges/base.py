"""The interface every judge backend implements."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from llava_video.feedback.prompt import ChatMessage, build_judge_messages, render_messages
from llava_video.feedback.records import JudgeStatus

__all__ = ["JudgeRequest", "JudgeResult", "Judge"]


@dataclass(frozen=True)
class JudgeRequest:
    """What a judge needs about one candidate; ``key`` is an opaque id echoed back in the result."""

    key: str
    caption: str
    question: str
    answer: str
    reference: str | None = None

    def messages(self) -> list[ChatMessage]:
        return build_judge_messages(caption=self.caption, question=self.question, reference=self.reference,
                                    answer=self.answer)


@dataclass(frozen=True)
class JudgeResult:
    """A score with its explanation, or a failure with its reason; never both, never neither."""

    key: str
    status: JudgeStatus
    score: int | None = None
    explanation: str | None = None
    reason: str | None = None
    attempts: int = 1  # requests sent (or rule calls made) for this candidate

    def __post_init__(self) -> None:
        if self.status == "scored" and not (isinstance(self.score, int) and 1 <= self.score <= 5):
            raise ValueError(f"scored result {self.key!r} needs an integer score 1-5, got {self.score!r}")
        if self.status == "failed" and not self.reason:
            raise ValueError(f"failed result {self.key!r} needs a reason")

    @classmethod
    def scored(cls, key: str, *, score: int, explanation: str, attempts: int = 1) -> JudgeResult:
        return cls(key=key, status="scored", score=score, explanation=explanation, attempts=attempts)

    @classmethod
    def failed(cls, key: str, *, reason: str, attempts: int = 1) -> JudgeResult:
        return cls(key=key, status="failed", reason=reason, attempts=attempts)


class Judge(abc.ABC):
    """Scores candidates 1-5. Backends differ in where the verdict comes from, not in what they return.

    ``identity`` names the judge and every setting that changes its verdicts (model, decoding, prompt version);
    cached scores are reused only under the same identity. It must never contain secrets.
    """

    @property
    @abc.abstractmethod
    def identity(self) -> str: ...

    @abc.abstractmethod
    def iter_score(
        self, requests: Sequence[JudgeRequest], on_complete: Callable[[JudgeResult], None] | None = None
    ) -> Iterator[JudgeResult]:
        """Yield exactly one result per request, in any order (as they complete).

        ``on_complete`` (thread-safe) is called with each result as soon as it exists, before it is yielded: a
        concurrent backend calls it from its workers, so results of requests in flight when the consumer stops
        are still delivered to it (the runner uses it to fill the cache).
        """

    def cache_text(self, request: JudgeRequest) -> str:
        """The text whose hash keys the cache: by default the rendered prompt."""
        return render_messages(request.messages())

    def score(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """One result per request, in the order of ``requests``."""
        by_key = {result.key: result for result in self.iter_score(requests)}
        return [by_key[request.key] for request in requests]
