"""The OpenAI-compatible judge against a misbehaving loopback server: nothing lost, nothing judged twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

import pytest

from llava_video.errors import ConfigError
from llava_video.feedback.judge import judge_candidates
from llava_video.feedback.judges import Judge, JudgeRequest, JudgeResult, OpenAICompatibleJudge
from llava_video.feedback.judges.openai_compat import _retry_after_seconds, chat_completions_url

SECRET = "sk-test-0123456789abcdef"

# (answer script, expected status, expected score or a substring of the failure reason)
SCRIPTS = [
    ("[plan=ok score=5]", "scored", 5),
    ("[plan=429,ok score=4]", "scored", 4),
    ("[plan=500,500,ok score=2]", "scored", 2),
    ("[plan=timeout,ok score=3]", "scored", 3),
    ("[plan=garbage,ok score=1]", "scored", 1),
    ("[plan=noscore,ok score=4]", "scored", 4),
    ("[plan=500 score=3]", "failed", "HTTP 500"),
    ("[plan=429 score=3]", "failed", "HTTP 429"),
    ("[plan=timeout score=3]", "failed", "timed out"),
    ("[plan=noscore score=3]", "failed", "malformed reply: no 'Score: N' line"),
    ("[plan=garbage score=3]", "failed", "not a chat completion"),
    ("[plan=401 score=3]", "failed", "HTTP 401"),
]


def _write_candidates(path, *, duplicate: bool = True) -> list[dict]:
    rows = []
    for i, (script, _, _) in enumerate(SCRIPTS):
        rows.append({"id": f"item{i // 3}", "video": f"v{i // 3}.mp4", "question": f"What happens in clip {i // 3}?",
                     "reference": None if i % 2 else "A ball rolls.", "caption": "A red ball rolls across a table.",
                     "candidate_index": i % 3, "answer": f"Answer {i} {script}", "sampler": {"seed": i}})
    if duplicate:  # the same text sampled twice for one item: one request, two judged lines
        rows.append(dict(rows[0], candidate_index=7))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _judge(url: str, delays: list[float], **overrides) -> OpenAICompatibleJudge:
    settings = dict(url=url, model="judge-model", api_key_env="LLAVA_VIDEO_TEST_KEY", concurrency=4, timeout=0.25,
                    max_retries=2, backoff=0.001, max_backoff=5.0, max_reasks=1)
    settings.update(overrides)
    return OpenAICompatibleJudge(**settings, sleep=delays.append)  # record waits instead of sleeping them


class CrashAfter(Judge):
    """Wraps a judge and raises after ``n`` results: a run that dies half way, with requests still in flight."""

    def __init__(self, inner: Judge, n: int) -> None:
        self.inner, self.n = inner, n

    @property
    def identity(self) -> str:
        return self.inner.identity

    def iter_score(self, requests: Sequence[JudgeRequest],
                   on_complete: Callable[[JudgeResult], None] | None = None) -> Iterator[JudgeResult]:
        for count, result in enumerate(self.inner.iter_score(requests, on_complete=on_complete), start=1):
            yield result
            if count == self.n:
                raise KeyboardInterrupt("simulated crash")


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_candidate_scored_or_failed_and_none_judged_twice(tmp_path, judge_server, monkeypatch) -> None:
    monkeypatch.setenv("LLAVA_VIDEO_TEST_KEY", SECRET)
    candidates = tmp_path / "cands.jsonl"
    rows = _write_candidates(candidates)
    output, cache = tmp_path / "judged.jsonl", tmp_path / "cache.jsonl"
    delays: list[float] = []

    # Run 1 dies after 4 results.
    with pytest.raises(KeyboardInterrupt):
        judge_candidates(candidates_path=candidates, output_path=output, cache_path=cache, progress=False,
                         judge=CrashAfter(_judge(judge_server.url, delays), 4))
    first = _read(output)
    assert 4 <= len(first) < len(rows)
    hits_after_crash = judge_server.hits()
    # Simulate a kill mid-write: a torn last line is cut off on restart.
    with output.open("a") as handle:
        handle.write('{"id": "item0", "candidate_ind')

    # Run 2 (restart) finishes the job.
    report = judge_candidates(candidates_path=candidates, output_path=output, cache_path=cache, progress=False,
                              judge=_judge(judge_server.url, delays))
    judged = _read(output)
    keys = [(r["id"], r["candidate_index"]) for r in judged]
    assert sorted(keys) == sorted((r["id"], r["candidate_index"]) for r in rows)  # none lost, none twice
    assert report.already_done == len(first)
    by_answer = {r["answer"]: r for r in judged}
    for i, (script, status, expected) in enumerate(SCRIPTS):
        row = by_answer[f"Answer {i} {script}"]
        assert row["status"] == status, (script, row)
        if status == "scored":
            assert row["score"] == expected and row["reason"] is None and row["explanation"]
        else:
            assert row["score"] is None and expected in row["reason"], (script, row["reason"])
        assert row["sampler"] == {"seed": i}  # extra keys pass through
        # No candidate got more than one verdict from the server across both runs.
        assert judge_server.ok_count(row["answer"]) <= 1
    duplicate = [r for r in judged if r["candidate_index"] == 7]
    assert duplicate[0]["score"] == 5
    # Retry-After was honoured (the exponential backoff alone would have waited ~1 ms).
    assert 1.0 in delays
    # The re-ask showed the judge its bad reply: 2 messages first, then 4.
    noscore = next(a for a in judge_server.conversation_lengths if "noscore,ok" in a)
    assert judge_server.conversation_lengths[noscore] == [2, 4]
    assert judge_server.hits() > hits_after_crash

    # Run 3: everything is done, the server sees nothing.
    hits = judge_server.hits()
    report = judge_candidates(candidates_path=candidates, output_path=output, cache_path=cache, progress=False,
                              judge=_judge(judge_server.url, delays))
    assert judge_server.hits() == hits and report.sent == 0 and report.already_done == len(rows)

    # Run 4 on a fresh output but the same cache: every scored prompt comes from the cache, only failures re-query.
    fresh = tmp_path / "judged2.jsonl"
    report = judge_candidates(candidates_path=candidates, output_path=fresh, cache_path=cache, progress=False,
                              judge=_judge(judge_server.url, delays))
    n_scored = sum(1 for _, s, _ in SCRIPTS if s == "scored") + 1
    assert report.from_cache == n_scored
    assert report.sent == len(SCRIPTS) - (n_scored - 1)
    for i, (script, status, _) in enumerate(SCRIPTS):
        if status == "scored":
            assert judge_server.ok_count(f"Answer {i} {script}") == 1

    # --retry-failed on the first output: failed lines are replaced, scored ones untouched.
    report = judge_candidates(candidates_path=candidates, output_path=output, cache_path=cache, progress=False,
                              judge=_judge(judge_server.url, delays), retry_failed=True)
    assert report.sent == len(SCRIPTS) - (n_scored - 1)
    assert len(_read(output)) == len(rows)

    # The key was sent, and never written anywhere.
    assert f"Bearer {SECRET}" in judge_server.authorization
    for path in (output, cache, fresh):
        assert SECRET not in path.read_text()
    assert "<redacted>" in by_answer[f"Answer 11 {SCRIPTS[11][0]}"]["reason"]


def test_score_returns_in_request_order_and_repr_hides_key(judge_server, monkeypatch) -> None:
    monkeypatch.setenv("LLAVA_VIDEO_TEST_KEY", SECRET)
    judge = _judge(judge_server.url, [])
    requests = [JudgeRequest(key=f"k{i}", caption="c", question="q", answer=f"a{i} [plan=ok score={i}]")
                for i in range(1, 6)]
    results = judge.score(requests)
    assert [r.key for r in results] == [r.key for r in requests]
    assert [r.score for r in results] == [1, 2, 3, 4, 5]
    assert SECRET not in repr(judge) and SECRET not in judge.identity and "judge-model" in judge.identity


def test_connection_refused_is_retried_then_failed(tmp_path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    delays: list[float] = []
    judge = _judge(f"http://127.0.0.1:{port}", delays)
    [result] = judge.score([JudgeRequest(key="k", caption="c", question="q", answer="a")])
    assert result.status == "failed" and "connection failed" in result.reason and result.attempts == 3
    assert len(delays) == 2


def test_settings_are_validated() -> None:
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("https://h/v1/chat/completions") == "https://h/v1/chat/completions"
    with pytest.raises(ConfigError, match="http"):
        OpenAICompatibleJudge(url="h:1", model="m")
    with pytest.raises(ConfigError, match="concurrency"):
        OpenAICompatibleJudge(url="http://h", model="m", concurrency=0)
    assert _retry_after_seconds("2") == 2.0
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert _retry_after_seconds("soon") is None
