"""A loopback OpenAI-compatible chat-completions server that misbehaves on purpose.

Each candidate answer carries its own script, e.g. ``"He opens it. [plan=429,500,ok score=4]"``: the n-th request
for that answer gets the n-th action (the last action repeats). Actions: ``ok`` (a well-formed verdict with the
given score), ``429`` (with Retry-After), ``500``, ``401`` (echoes the Authorization header back, to prove the
client scrubs it), ``timeout`` (answers after the client has given up), ``garbage`` (a body that is not JSON),
``noscore`` (a completion whose text has no score).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SLOW_REPLY_S = 0.6  # longer than the clients' timeouts in the tests
RETRY_AFTER_S = 1.0
_PLAN = re.compile(r"\[plan=([a-z0-9,]+) score=(\d)\]")


class FakeJudgeServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.served: dict[str, list[str]] = defaultdict(list)  # answer -> actions served, in order
        self.authorization: list[str] = []
        self.conversation_lengths: dict[str, list[int]] = defaultdict(list)
        handler = self._handler_class()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> FakeJudgeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def hits(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.served.values())

    def ok_count(self, answer: str) -> int:
        with self.lock:
            return self.served[answer].count("ok")

    def _next_action(self, answer: str, n_messages: int) -> tuple[str, int]:
        match = _PLAN.search(answer)
        plan, score = (match.group(1).split(","), int(match.group(2))) if match else (["ok"], 3)
        with self.lock:
            attempt = len(self.served[answer])
            action = plan[min(attempt, len(plan) - 1)]
            self.served[answer].append(action)
            self.conversation_lengths[answer].append(n_messages)
        return action, score

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if length > 1_000_000:  # bounded requests
                    self._send(413, b"too large")
                    return
                payload = json.loads(self.rfile.read(length))
                auth = self.headers.get("Authorization", "")
                with server.lock:
                    server.authorization.append(auth)
                if self.path != "/v1/chat/completions" or "messages" not in payload or "model" not in payload:
                    self._send(404, b"unknown endpoint")
                    return
                user = payload["messages"][1]["content"]
                answer = user.split("Answer to evaluate:\n", 1)[1]
                action, score = server._next_action(answer, len(payload["messages"]))
                content = None
                if action == "ok":
                    content = f"Explanation: The answer matches the description.\nScore: {score}"
                elif action == "noscore":
                    content = "It seems mostly fine to me."
                elif action == "timeout":
                    time.sleep(SLOW_REPLY_S)
                    content = f"Explanation: late.\nScore: {score}"
                elif action == "429":
                    self._send(429, b'{"error": "rate limited"}', {"Retry-After": f"{RETRY_AFTER_S:g}"})
                    return
                elif action == "500":
                    self._send(500, b'{"error": "internal"}')
                    return
                elif action == "401":
                    self._send(401, json.dumps({"error": f"bad key {auth}"}).encode())
                    return
                elif action == "garbage":
                    self._send(200, b"<html>502 gateway</html>", {"Content-Type": "text/html"})
                    return
                body = {"id": "x", "object": "chat.completion", "model": payload["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                     "finish_reason": "stop"}]}
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

        return Handler


@pytest.fixture
def judge_server():
    server = FakeJudgeServer().start()
    yield server
    server.stop()
