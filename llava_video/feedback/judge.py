"""Judge every candidate of a candidates JSONL, resumably, through any :class:`Judge` backend.

``judge_candidates`` appends one judged line per candidate to the output as results arrive. A rerun on the same
output skips candidates already there (scored or failed; ``retry_failed`` gives failed ones another chance), and
the cache answers any prompt a judge with the same identity has scored before, so nothing is judged twice.
Candidates whose prompts are identical (the same answer sampled twice) are sent once and share the verdict.

The prompt, parser and backends live in :mod:`llava_video.feedback.prompt` and :mod:`llava_video.feedback.judges`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from llava_video.feedback.cache import JudgeCache, cache_key
from llava_video.feedback.judges.base import Judge, JudgeRequest, JudgeResult
from llava_video.feedback.records import Candidate, JsonlAppender, read_candidates, write_jsonl_atomic

__all__ = ["JudgeRunReport", "judge_candidates", "judged_row", "request_for"]


@dataclass
class JudgeRunReport:
    total: int = 0  # candidates in the input
    already_done: int = 0  # found in the output of an earlier run
    from_cache: int = 0  # answered by the cache
    sent: int = 0  # distinct prompts given to the judge in this run
    scored: int = 0  # this run's scored candidates (cache hits included)
    failed: int = 0
    failure_reasons: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        line = (f"{self.total} candidates: {self.already_done} already judged, {self.from_cache} from cache, "
                f"{self.sent} prompts sent; this run scored {self.scored}, failed {self.failed}")
        if self.failure_reasons:
            top = "; ".join(f"{n} x {reason}" for reason, n in self.failure_reasons.most_common(3))
            line += f" ({top})"
        return line


def request_for(candidate: Candidate, *, key: str) -> JudgeRequest:
    return JudgeRequest(key=key, caption=candidate.caption, question=candidate.question,
                        answer=candidate.answer, reference=candidate.reference)


def judged_row(candidate: Candidate, result: JudgeResult, *, judge_identity: str, cached: bool) -> dict[str, Any]:
    row = candidate.to_json()
    row.update(status=result.status, score=result.score, explanation=result.explanation, reason=result.reason,
               judge=judge_identity, cached=cached)
    return row


def _done_keys(output: Path, *, retry_failed: bool) -> set[tuple[str, int]]:
    """Candidates an earlier run finished; with retry_failed, failed lines are first removed from the file."""
    if not output.exists():
        return set()
    with JsonlAppender(output) as existing_file:  # also cuts a torn last line
        rows = existing_file.existing()
    if retry_failed:
        kept = [row for row in rows if row.get("status") != "failed"]
        if len(kept) != len(rows):
            write_jsonl_atomic(output, kept)
        rows = kept
    return {(row.get("id"), row.get("candidate_index")) for row in rows if row.get("status") in ("scored", "failed")}


def _failure_reason_class(reason: str) -> str:
    """Group reasons for the summary: drop the per-candidate detail in parentheses and quoted excerpts."""
    return reason.split(" (")[0].split(": '")[0].split(': "')[0]


def judge_candidates(
    *,
    candidates_path: str | Path,
    output_path: str | Path,
    judge: Judge,
    cache_path: str | Path | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> JudgeRunReport:
    """Judge the candidates not yet in ``output_path`` and append their judged lines to it."""
    candidates = read_candidates(candidates_path)
    output = Path(output_path)
    report = JudgeRunReport(total=len(candidates))
    done = _done_keys(output, retry_failed=retry_failed)
    todo = [c for c in candidates if c.key not in done]
    report.already_done = len(candidates) - len(todo)

    identity = judge.identity
    cache = JudgeCache(cache_path) if cache_path is not None else None
    # Group the remaining candidates by prompt: one request per distinct (judge, prompt).
    groups: dict[str, list[Candidate]] = {}
    for candidate in todo:
        key = cache_key(judge_identity=identity, prompt_text=judge.cache_text(request_for(candidate, key="")))
        groups.setdefault(key, []).append(candidate)

    def record(out: JsonlAppender, candidates_of_prompt: list[Candidate], result: JudgeResult, cached: bool) -> None:
        for candidate in candidates_of_prompt:
            out.append(judged_row(candidate, result, judge_identity=identity, cached=cached))
            if result.status == "scored":
                report.scored += 1
            else:
                report.failed += 1
                report.failure_reasons[_failure_reason_class(result.reason or "")] += 1

    try:
        with JsonlAppender(output) as out, tqdm(total=len(todo), disable=not progress, desc="judging",
                                                unit="answer") as bar:
            requests = []
            for key, members in groups.items():
                verdict = cache.get(key) if cache is not None else None
                if verdict is None:
                    requests.append(request_for(members[0], key=key))
                    continue
                record(out, members, JudgeResult.scored(key, score=verdict[0], explanation=verdict[1]), True)
                report.from_cache += len(members)
                bar.update(len(members))
            report.sent = len(requests)

            def remember(result: JudgeResult) -> None:
                if cache is not None:
                    cache.put(result.key, judge_identity=identity, result=result)

            results = judge.iter_score(requests, on_complete=remember)
            try:
                for result in results:
                    record(out, groups[result.key], result, False)
                    bar.update(len(groups[result.key]))
            finally:
                close = getattr(results, "close", None)  # generators: a backend with workers stops them here
                if close is not None:
                    close()
    finally:
        if cache is not None:
            cache.close()
    return report
