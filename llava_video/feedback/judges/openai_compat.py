"""A judge behind any OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama, OpenAI, ...).

Only the standard library: ``urllib`` for HTTP and a thread pool for concurrency, so the judge adds no
dependency. Failure handling, per candidate:

* HTTP 408/429/5xx, timeouts and dropped connections are transient: retried up to ``max_retries`` times, waiting
  ``Retry-After`` when the server sends it (capped at ``max_backoff``), else ``backoff * 2**n`` (capped, with a
  little jitter so concurrent workers do not retry in lockstep).
* Other HTTP errors (400, 401, 404, ...) will not get better by asking again: failed at once with the status.
* A reply without a readable score (or a body that is not a chat completion) is re-asked, with the bad reply and
  a reminder of the format, up to ``max_reasks`` times; then failed with the parser's reason.

The API key is read from an environment variable, sent only in the Authorization header, and scrubbed from
every reason string; the identity, reprs and errors never contain it.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from llava_video.errors import ConfigError
from llava_video.feedback.judges.base import Judge, JudgeRequest, JudgeResult
from llava_video.feedback.prompt import PROMPT_VERSION, REASK_PROMPT, ChatMessage, MalformedReply, parse_judge_reply

__all__ = ["OpenAICompatibleJudge", "chat_completions_url"]

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_BODY_EXCERPT = 200


def chat_completions_url(url: str) -> str:
    """Accept a server root (``http://host:8000``), an API base (``.../v1``) or the full endpoint."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"judge url must start with http:// or https://, got {url!r}")
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


@dataclass(frozen=True)
class _Reply:
    """What one HTTP exchange gave: content, or a problem that is transient (retry) or final."""

    content: str | None = None
    problem: str | None = None
    transient: bool = False
    malformed: bool = False
    retry_after: float | None = None


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleJudge(Judge):
    def __init__(
        self,
        *,
        url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_reasks: int = 2,
        temperature: float = 0.0,
        max_tokens: int = 512,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not model:
            raise ConfigError("judge model name is empty")
        if concurrency < 1:
            raise ConfigError(f"judge concurrency must be >= 1, got {concurrency}")
        if timeout <= 0:
            raise ConfigError(f"judge timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0 or max_reasks < 0:
            raise ConfigError(f"max_retries and max_reasks must be >= 0, got {max_retries} and {max_reasks}")
        if backoff < 0 or max_backoff < 0:
            raise ConfigError(f"backoff and max_backoff must be >= 0, got {backoff} and {max_backoff}")
        self.endpoint = chat_completions_url(url)
        self.model = model
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_reasks = max_reasks
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"OpenAICompatibleJudge(endpoint={self.endpoint!r}, model={self.model!r}, key_env={self.api_key_env!r})"

    @property
    def identity(self) -> str:
        # The endpoint is left out on purpose: the same model served elsewhere gives the same verdicts.
        return (f"openai-compatible:{self.model}:temperature={self.temperature}:max_tokens={self.max_tokens}"
                f":prompt={PROMPT_VERSION}")

    # -- one HTTP exchange --------------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "<redacted>")
        return text

    def _post(self, messages: list[ChatMessage]) -> _Reply:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            excerpt = exc.read(_BODY_EXCERPT).decode("utf-8", "replace").strip() if exc.fp else ""
            exc.close()
            problem = self._scrub(f"HTTP {exc.code}" + (f": {excerpt}" if excerpt else ""))
            return _Reply(problem=problem, transient=exc.code in _TRANSIENT_STATUS,
                          retry_after=_retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None))
        except (TimeoutError, socket.timeout):
            return _Reply(problem=f"timed out after {self.timeout:g} s", transient=True)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                return _Reply(problem=f"timed out after {self.timeout:g} s", transient=True)
            return _Reply(problem=self._scrub(f"connection failed: {exc.reason}"), transient=True)
        except (http.client.HTTPException, ConnectionError) as exc:
            return _Reply(problem=self._scrub(f"connection failed: {type(exc).__name__}: {exc}"), transient=True)
        return self._read_completion(raw)

    def _read_completion(self, raw: bytes) -> _Reply:
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            excerpt = raw[:_BODY_EXCERPT].decode("utf-8", "replace")
            return _Reply(problem=self._scrub(f"reply is not a chat completion: {excerpt!r}"), malformed=True)
        if not isinstance(content, str):
            return _Reply(problem=f"reply content is {type(content).__name__}, not text", malformed=True)
        return _Reply(content=content)

    # -- one candidate ------------------------------------------------------------------------------------------------

    def _delay(self, transient_count: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        base = min(self.backoff * 2 ** (transient_count - 1), self.max_backoff)
        return base * (1.0 + 0.25 * random.random())

    def _judge_one(self, request: JudgeRequest) -> JudgeResult:
        original = request.messages()
        messages = original
        attempts = transient = reasks = 0
        while True:
            attempts += 1
            reply = self._post(messages)
            if reply.transient:
                transient += 1
                if transient > self.max_retries:
                    return JudgeResult.failed(request.key, attempts=attempts,
                                              reason=f"{reply.problem} (gave up after {attempts} attempts)")
                self._sleep(self._delay(transient, reply.retry_after))
                continue
            if reply.problem is not None and not reply.malformed:
                return JudgeResult.failed(request.key, attempts=attempts, reason=reply.problem)
            problem = reply.problem
            if reply.content is not None:
                try:
                    parsed = parse_judge_reply(reply.content)
                except MalformedReply as exc:
                    problem = f"malformed reply: {exc}"
                else:
                    return JudgeResult.scored(request.key, score=parsed.score, explanation=parsed.explanation,
                                              attempts=attempts)
            reasks += 1
            if reasks > self.max_reasks:
                return JudgeResult.failed(request.key, attempts=attempts,
                                          reason=f"{problem} (after {reasks} asks)")
            # Show the judge its unreadable reply and ask again; a body that was not a completion is resent as is.
            messages = original if reply.content is None else original + [
                {"role": "assistant", "content": reply.content}, {"role": "user", "content": REASK_PROMPT}]

    # -- many candidates ----------------------------------------------------------------------------------------------

    def iter_score(
        self, requests: Sequence[JudgeRequest], on_complete: Callable[[JudgeResult], None] | None = None
    ) -> Iterator[JudgeResult]:
        executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge")

        def work(request: JudgeRequest) -> JudgeResult:
            result = self._judge_one(request)
            if on_complete is not None:
                on_complete(result)  # in the worker, so a result survives even if the consumer has stopped
            return result

        try:
            futures = [executor.submit(work, request) for request in requests]
            for future in as_completed(futures):
                yield future.result()
        finally:
            # A consumer that stops early (error, interrupt) cancels what has not started; running ones finish
            # and still reach on_complete.
            executor.shutdown(wait=True, cancel_futures=True)
