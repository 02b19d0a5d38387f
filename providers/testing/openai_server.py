"""A tiny OpenAI-compatible chat-completions server, scripted per test, for the local tier's server path.

It speaks what llama-server, Ollama and vLLM answer on ``POST /v1/chat/completions``. Nothing here imports
pytest, so benchmarks can drive the same server.

Usage::

    with FakeOpenAIServer() as server:
        server.script([Fail(status=500), Answer(text="ok")])
        ...  # point ChatOpenAICompatLocal(base_url=server.base_url) at it
        assert len(server.requests) == 2

Each request takes the next scripted action; with the script empty, the server answers ``Answer()``.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias

__all__ = ["Answer", "Fail", "FakeOpenAIServer", "Hang", "Malformed", "RecordedRequest"]


@dataclass(frozen=True)
class Answer:
    """Answer with a chat completion; ``logprobs`` are per-token values reported in OpenAI's shape."""

    text: str = "The local model answers."
    finish_reason: str = "stop"
    prompt_tokens: int = 12
    completion_tokens: int = 5
    model: str = "fake-local"
    logprobs: tuple[float, ...] = ()
    delay_s: float = 0.0


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error status and an OpenAI-style error body."""

    status: int = 500
    message: str = "internal error"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer until the server stops (or ``seconds`` pass)."""

    seconds: float | None = None


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with a body that is not a chat completion."""

    body: bytes = b"{not json"


Action: TypeAlias = Answer | Fail | Hang | Malformed


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FakeOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # The default handler writes a line per request to stderr, which buries test output.
        return

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_raw": raw.decode("utf-8", errors="replace")}
        owner._record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}})
            return
        action = owner._next_action()
        if isinstance(action, Hang):
            owner._release.wait(action.seconds)
            self.close_connection = True
            return
        if isinstance(action, Fail):
            error = {"error": {"code": action.status, "message": action.message, "type": "server_error"}}
            self._send_json(action.status, error, action.headers)
            return
        if isinstance(action, Malformed):
            self._send_bytes(200, action.body)
            return
        if action.delay_s:
            time.sleep(action.delay_s)
        self._send_json(200, _completion(action, body))

    def _send_json(self, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._send_bytes(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_bytes(self, status: int, data: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _completion(answer: Answer, request: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": answer.text},
        "finish_reason": answer.finish_reason,
    }
    if answer.logprobs:
        choice["logprobs"] = {
            "content": [{"token": f"t{i}", "logprob": lp, "top_logprobs": []} for i, lp in enumerate(answer.logprobs)]
        }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model or request.get("model", ""),
        "choices": [choice],
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        },
    }


class FakeOpenAIServer:
    """Threaded OpenAI-compatible server on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self._script: collections.deque[Action] = collections.deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[RecordedRequest] = []

    @property
    def base_url(self) -> str:
        """Return the server's root URL (without ``/v1``)."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, actions: list[Action]) -> None:
        """Queue actions for the next requests, in order."""
        with self._lock:
            self._script.extend(actions)

    def start(self) -> FakeOpenAIServer:
        """Bind a free port and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._release.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        # A short poll interval: stop() waits for the serve loop to notice, 0.5 s a test by default.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung requests and free the port."""
        httpd = self._httpd
        if httpd is None:
            return
        self._release.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_action(self) -> Action:
        with self._lock:
            return self._script.popleft() if self._script else Answer()
