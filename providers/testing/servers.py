"""Local HTTP servers that speak the Gemini and Perplexity wire protocols, scripted per test or benchmark.

The real LangChain clients are pointed at these servers, so a test exercises the vendor SDK's own request
building, response parsing and error raising; only the network peer is fake. Nothing here imports pytest:
benchmarks use the same classes.

Usage::

    with FakeGemini() as gemini:
        gemini.script([Fail(status=503), Reply(text="ok")])
        ...  # point ChatGoogleGenerativeAI(base_url=gemini.base_url) at it
        assert gemini.request_count == 2

Each request takes the next scripted action; when the script is empty, ``server.behaviour`` decides: either
an action or a callable ``(request_index, request) -> Action`` (the fault-injection hook for chaos runs).
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import select
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self, TypeAlias
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Action",
    "Behaviour",
    "Blocked",
    "Delay",
    "Drop",
    "Empty",
    "Fail",
    "FakeGemini",
    "FakePerplexity",
    "FakeProviderServer",
    "Hang",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Source",
]


# ----------------------------------------------------------------------------------------------------------
# Actions: what the server does with one request.


@dataclass(frozen=True)
class Source:
    """A web source the fake cites (Gemini grounding chunk, Perplexity search result)."""

    url: str
    title: str = ""
    date: str = ""
    snippet: str = ""


@dataclass(frozen=True)
class Reply:
    """Answer successfully.

    Token counts left at ``None`` are estimated from the text. ``output_tokens`` counts the visible answer
    only; ``thinking_tokens`` are reported separately (Gemini ``thoughtsTokenCount``) or, for Perplexity,
    added to ``output_tokens`` because its usage has no separate field. ``finish_reason`` is Gemini's enum
    name (``STOP``, ``MAX_TOKENS``, ``SAFETY`` ...); ``model`` overrides the model name echoed back.
    """

    text: str = "The fake provider answers."
    citations: Sequence[Source] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    thinking_tokens: int = 0
    finish_reason: str = "STOP"
    model: str | None = None


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error in the vendor's error-body format.

    ``retry_after`` (seconds) is sent as a ``Retry-After`` header and, for Gemini, also as a
    ``google.rpc.RetryInfo`` detail the way Google reports quota errors. ``details`` replaces Gemini's
    ``error.details`` list verbatim (to test body-only retry hints). ``status_name`` overrides Google's
    canonical status (``FAILED_PRECONDITION`` is a 400 too).
    """

    status: int = 500
    message: str | None = None
    status_name: str | None = None
    retry_after: float | None = None
    details: Sequence[Mapping[str, Any]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer (until ``seconds`` pass or the server stops), then drop it."""

    seconds: float | None = None


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with a JSON content type and a body that is not valid JSON (or not the expected shape)."""

    body: bytes | None = None


@dataclass(frozen=True)
class Empty:
    """Answer 200 with a well-formed response that carries no text."""

    finish_reason: str = "STOP"


@dataclass(frozen=True)
class Blocked:
    """Gemini only: refuse the prompt (``promptFeedback.blockReason``, no candidates)."""

    reason: str = "SAFETY"


@dataclass(frozen=True)
class Drop:
    """Close the connection: before any response bytes, or (``partial``) halfway through the body."""

    partial: bool = False


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (interruptible by ``stop()``), then perform ``then``."""

    seconds: float
    then: Action = field(default_factory=Reply)


Action: TypeAlias = Reply | Fail | Hang | Malformed | Empty | Blocked | Drop | Delay


@dataclass
class RecordedRequest:
    """One request as the server saw it; credential headers are redacted, ``action`` names what it got."""

    index: int
    method: str
    path: str
    query: dict[str, list[str]]
    model: str
    headers: dict[str, str]
    body: Any
    received_at: float
    action: str = ""
    # The client's side of the connection: requests on one kept-alive connection share it.
    client_port: int = 0
    # Set when the client closed its connection while the server hung on this request (an aborted call).
    client_gone: threading.Event = field(default_factory=threading.Event)


Behaviour: TypeAlias = Action | Callable[[int, RecordedRequest], Action]

_REDACTED_HEADERS = frozenset({"authorization", "x-goog-api-key", "x-api-key", "api-key"})


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# The server.


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many short-lived client connections arrive at once in a chaos run; the default backlog of 5 drops some.
    request_queue_size = 128
    owner: FakeProviderServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closes its connection (no keep-alive, or an aborted call) is not a server error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a benchmark's clients reuse connections
    # Without it, small writes wait for the client's delayed ACK (tens of ms per response).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    def do_GET(self) -> None:
        self.server.owner._handle(self)


class FakeProviderServer:
    """Threaded HTTP/1.1 server with a script of actions; subclasses render the vendor's wire format."""

    vendor: ClassVar[str] = "fake"

    def __init__(self, *, behaviour: Behaviour | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.behaviour: Behaviour = behaviour if behaviour is not None else Reply()
        self._script: collections.deque[Action] = collections.deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port on the host and serve in a background thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.vendor}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hung requests, close every open connection and free the port."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _shutdown_quietly(conn)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting and inspection -----------------------------------------------------------------------

    def script(self, actions: Iterable[Action]) -> None:
        """Queue actions; each request consumes one, in order, before ``behaviour`` is consulted."""
        with self._lock:
            self._script.extend(actions)

    def reset(self) -> None:
        """Forget queued actions and recorded requests (the behaviour stays)."""
        with self._lock:
            self._script.clear()
            self._requests.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    # -- request handling -------------------------------------------------------------------------------

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {
            name.lower(): ("<redacted>" if name.lower() in _REDACTED_HEADERS else value)
            for name, value in handler.headers.items()
        }
        with self._lock:
            index = len(self._requests)
            request = RecordedRequest(
                index=index,
                method=handler.command,
                path=split.path,
                query=parse_qs(split.query),
                model=self.model_of(split.path, body),
                headers=headers,
                body=body,
                received_at=time.monotonic(),
                client_port=int(handler.client_address[1]),
            )
            self._requests.append(request)
            scripted = self._script.popleft() if self._script else None
        action = scripted if scripted is not None else self._default_action(index, request)
        request.action = _action_name(action)
        try:
            self._perform(handler, request, action)
        except OSError:
            # The client gave up (its own timeout) while we hung or delayed; nobody is left to answer.
            handler.close_connection = True

    def _default_action(self, index: int, request: RecordedRequest) -> Action:
        behaviour = self.behaviour
        if callable(behaviour):
            return behaviour(index, request)
        return behaviour

    def _perform(self, handler: _Handler, request: RecordedRequest, action: Action) -> None:
        while isinstance(action, Delay):
            if self._stopping.wait(action.seconds):
                self._drop(handler)
                return
            action = action.then
        if isinstance(action, Hang):
            self._hang(handler, request, action.seconds)
            self._drop(handler)
            return
        if isinstance(action, Drop):
            if action.partial:
                response = self.render(request, Reply(text="This answer is cut off half-way " * 8))
                self._send(handler, response, cut_at=len(response.body) // 2)
            self._drop(handler)
            return
        self._send(handler, self.render(request, action))

    def _hang(self, handler: _Handler, request: RecordedRequest, seconds: float | None) -> None:
        """Answer nothing until ``seconds`` pass, the server stops, or the client closes its connection (then
        ``request.client_gone`` is set: that is how a test sees a call really aborted, not just abandoned)."""
        ends = None if seconds is None else time.monotonic() + seconds
        conn = handler.connection
        # poll, not select: select() refuses descriptors above 1024, which a long test session reaches.
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        while not self._stopping.is_set():
            left = None if ends is None else ends - time.monotonic()
            if left is not None and left <= 0:
                return
            if poller.poll(50 if left is None else max(1, int(min(0.05, left) * 1000))):
                try:
                    peeked = conn.recv(1, socket.MSG_PEEK)
                except OSError:
                    peeked = b""
                if not peeked:
                    request.client_gone.set()
                    return
                # The client sent more bytes (a pipelined request): keep hanging, without spinning.
                self._stopping.wait(0.05)

    def _send(self, handler: _Handler, response: _Response, cut_at: int | None = None) -> None:
        handler.send_response(response.status)
        handler.send_header("Content-Type", response.content_type)
        handler.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(response.body if cut_at is None else response.body[:cut_at])

    def _drop(self, handler: _Handler) -> None:
        handler.close_connection = True
        _shutdown_quietly(handler.connection)

    # -- vendor hooks -----------------------------------------------------------------------------------

    def model_of(self, path: str, body: Any) -> str:
        """Return the model a request names (path segment or body field)."""
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            return str(body["model"])
        return ""

    def render(self, request: RecordedRequest, action: Action) -> _Response:
        """Turn a terminal action into the vendor's HTTP response."""
        raise NotImplementedError


def _action_name(action: Action) -> str:
    name = type(action).__name__
    while isinstance(action, Delay):
        action = action.then
        name = f"{name}>{type(action).__name__}"
    return name


def _shutdown_quietly(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(payload).encode(), headers=headers or {})


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _retry_headers(fail: Fail) -> dict[str, str]:
    headers = dict(fail.headers)
    if fail.retry_after is not None:
        seconds = fail.retry_after
        headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
    return headers


# ----------------------------------------------------------------------------------------------------------
# Gemini (Generative Language API, as called by google-genai).

_GEMINI_PATH = re.compile(r"^/(?:v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_GOOGLE_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "Method doesn't allow unregistered callers. Please use API Key.",
    404: "models/unknown is not found for API version v1beta.",
    429: "You exceeded your current quota, please check your plan and billing details.",
    500: "An internal error has occurred. Please retry or report in"
    " https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}

_SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
)


def _safety_ratings(blocked_category: str | None = None) -> list[dict[str, Any]]:
    ratings: list[dict[str, Any]] = []
    for category in _SAFETY_CATEGORIES:
        if category == blocked_category:
            ratings.append({"category": category, "probability": "HIGH", "blocked": True})
        else:
            ratings.append({"category": category, "probability": "NEGLIGIBLE"})
    return ratings


class FakeGemini(FakeProviderServer):
    """``POST /{v1,v1beta}/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``."""

    vendor = "gemini"

    def model_of(self, path: str, body: Any) -> str:
        match = _GEMINI_PATH.match(path)
        return match.group("model") if match else ""

    def render(self, request: RecordedRequest, action: Action) -> _Response:
        match = _GEMINI_PATH.match(request.path)
        if request.method != "POST" or match is None:
            return self._error(Fail(status=404, message=f"Path {request.path} was not found."))
        method = match.group("method")
        if method not in ("generateContent", "streamGenerateContent"):
            return self._error(Fail(status=404, message=f"Method {method} is not supported by the fake."))
        if isinstance(action, Fail):
            return self._error(action)
        if isinstance(action, Malformed):
            body = action.body if action.body is not None else b'{"candidates": [{"content": {"parts": [{"te'
            return _Response(200, body)
        payload = self._payload(request, action)
        if method == "streamGenerateContent":
            return self._sse(payload)
        return _json(200, payload)

    def _payload(self, request: RecordedRequest, action: Action) -> dict[str, Any]:
        model = request.model
        prompt_tokens = _estimate_tokens(json.dumps(request.body or {}))
        if isinstance(action, Blocked):
            return {
                "promptFeedback": {
                    "blockReason": action.reason,
                    "safetyRatings": _safety_ratings("HARM_CATEGORY_DANGEROUS_CONTENT"),
                },
                "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
                "modelVersion": model,
                "responseId": uuid.uuid4().hex[:22],
            }
        if isinstance(action, Empty):
            candidate: dict[str, Any] = {
                "content": {"role": "model"},
                "finishReason": action.finish_reason,
                "index": 0,
            }
            if action.finish_reason == "SAFETY":
                candidate["safetyRatings"] = _safety_ratings("HARM_CATEGORY_DANGEROUS_CONTENT")
            return {
                "candidates": [candidate],
                "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
                "modelVersion": model,
                "responseId": uuid.uuid4().hex[:22],
            }
        if not isinstance(action, Reply):
            raise TypeError(f"FakeGemini cannot render {action!r}")
        input_tokens = action.input_tokens if action.input_tokens is not None else prompt_tokens
        output_tokens = action.output_tokens
        if output_tokens is None:
            output_tokens = _estimate_tokens(action.text)
        candidate = {"content": {"role": "model"}, "finishReason": action.finish_reason, "index": 0}
        if action.text:
            candidate["content"]["parts"] = [{"text": action.text}]
        blocked = action.finish_reason in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII")
        candidate["safetyRatings"] = _safety_ratings("HARM_CATEGORY_DANGEROUS_CONTENT" if blocked else None)
        if action.citations:
            chunks = [{"web": {"uri": c.url, "title": c.title or c.url}} for c in action.citations]
            candidate["groundingMetadata"] = {
                "webSearchQueries": ["fake query"],
                "searchEntryPoint": {"renderedContent": "<div>fake</div>"},
                "groundingChunks": chunks,
                "groundingSupports": [
                    {
                        "segment": {"startIndex": 0, "endIndex": len(action.text), "text": action.text},
                        "groundingChunkIndices": list(range(len(action.citations))),
                    }
                ],
            }
        usage: dict[str, Any] = {
            "promptTokenCount": input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": input_tokens + output_tokens + action.thinking_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input_tokens}],
        }
        if action.thinking_tokens:
            usage["thoughtsTokenCount"] = action.thinking_tokens
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": action.model or model,
            "responseId": uuid.uuid4().hex[:22],
        }

    def _sse(self, payload: dict[str, Any]) -> _Response:
        chunks: list[dict[str, Any]] = []
        candidates = payload.get("candidates") or []
        parts = candidates[0].get("content", {}).get("parts", []) if candidates else []
        text = parts[0]["text"] if parts else ""
        if len(text) > 1:
            half = len(text) // 2
            first = json.loads(json.dumps(payload))
            first["candidates"][0]["content"]["parts"] = [{"text": text[:half]}]
            first["candidates"][0].pop("finishReason", None)
            last = json.loads(json.dumps(payload))
            last["candidates"][0]["content"]["parts"] = [{"text": text[half:]}]
            chunks = [first, last]
        else:
            chunks = [payload]
        body = "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks).encode()
        return _Response(200, body, content_type="text/event-stream")

    def _error(self, fail: Fail) -> _Response:
        status_name = fail.status_name or _GOOGLE_STATUS.get(fail.status, "UNKNOWN")
        error: dict[str, Any] = {
            "code": fail.status,
            "message": fail.message or _GOOGLE_MESSAGES.get(fail.status, status_name),
            "status": status_name,
        }
        if fail.details is not None:
            error["details"] = list(fail.details)
        elif fail.retry_after is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaMetric": "generativelanguage/generate_requests"}],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{fail.retry_after:g}s"},
            ]
        elif fail.status == 400:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": []}]
        return _json(fail.status, {"error": error}, _retry_headers(fail))


# ----------------------------------------------------------------------------------------------------------
# Perplexity (Agent API ``POST /v1/responses``; the retired ``POST /chat/completions`` for completeness).

_PPLX_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


_PPLX_PATHS = ("/v1/responses", "/chat/completions", "/v1/chat/completions")


class FakePerplexity(FakeProviderServer):
    """``POST /v1/responses`` (Agent API, Responses-style) and ``POST /chat/completions``."""

    vendor = "perplexity"

    def render(self, request: RecordedRequest, action: Action) -> _Response:
        path = request.path.rstrip("/")
        if request.method != "POST" or path not in _PPLX_PATHS:
            return self._error(Fail(status=404, message=f"Not found: {request.path}"))
        if isinstance(action, Fail):
            return self._error(action)
        if isinstance(action, Malformed):
            body = action.body if action.body is not None else b'{"id": "resp_1", "output": [{"type": "mess'
            return _Response(200, body)
        if isinstance(action, Blocked):
            # Perplexity has no prompt-block wire format; a silent stand-in would make tests lie.
            return self._error(Fail(status=501, message="fake: Blocked is a Gemini-only action"))
        if isinstance(action, Empty):
            action = Reply(text="", output_tokens=0)
        if not isinstance(action, Reply):
            raise TypeError(f"FakePerplexity cannot render {action!r}")
        if path == "/v1/responses":
            if isinstance(request.body, dict) and request.body.get("stream"):
                return responses_sse(self._response(request, action))
            return _json(200, self._response(request, action))
        return _json(200, self._completion(request, action))

    def _tokens(self, request: RecordedRequest, reply: Reply) -> tuple[int, int]:
        input_tokens = reply.input_tokens
        if input_tokens is None:
            input_tokens = _estimate_tokens(json.dumps(request.body or {}))
        output_tokens = reply.output_tokens
        if output_tokens is None:
            output_tokens = _estimate_tokens(reply.text)
        return input_tokens, output_tokens + reply.thinking_tokens

    def _response(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        input_tokens, output_tokens = self._tokens(request, reply)
        output: list[dict[str, Any]] = []
        if reply.citations:
            output.append(
                {
                    "type": "search_results",
                    "queries": ["fake query"],
                    "results": [
                        {
                            "id": number,
                            "url": source.url,
                            "title": source.title,
                            "snippet": source.snippet or source.title,
                            "date": source.date or None,
                            "source": "web",
                        }
                        for number, source in enumerate(reply.citations, start=1)
                    ],
                }
            )
        output.append(
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        )
        input_cost = input_tokens / 1_000_000
        output_cost = output_tokens / 1_000_000
        return {
            "id": f"resp_{uuid.uuid4().hex[:24]}",
            "object": "response",
            "created_at": int(time.time()),
            "model": reply.model or request.model or "perplexity/sonar",
            "status": "completed",
            "output": output,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
                "cost": {
                    "currency": "USD",
                    "input_cost": input_cost,
                    "output_cost": output_cost,
                    "total_cost": input_cost + output_cost,
                },
            },
        }

    def _completion(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        input_tokens, output_tokens = self._tokens(request, reply)
        results = [{"title": c.title, "url": c.url, "date": c.date or None} for c in reply.citations]
        finish = "stop" if reply.finish_reason == "STOP" else reply.finish_reason.lower()
        return {
            "id": uuid.uuid4().hex,
            "model": reply.model or request.model or "sonar",
            "created": int(time.time()),
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "message": {"role": "assistant", "content": reply.text},
                }
            ],
            "usage": {
                "prompt_tokens": input_tokens,
                "completion_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
                "search_context_size": "low",
            },
            "citations": [source.url for source in reply.citations],
            "search_results": results,
        }

    def _error(self, fail: Fail) -> _Response:
        error = {
            "message": fail.message or f"fake error {fail.status}",
            "type": _PPLX_ERROR_TYPES.get(fail.status, "api_error"),
            "code": fail.status,
        }
        return _json(fail.status, {"error": error}, _retry_headers(fail))


# ----------------------------------------------------------------------------------------------------------
# Streaming (``"stream": true``): what the real clients read when a caller streams tokens.


def word_pieces(text: str) -> list[str]:
    """Split a text into the pieces a streaming API sends: words with their following whitespace."""
    return re.findall(r"\S+\s*|\s+", text)


def responses_sse(response: dict[str, Any]) -> _Response:
    """Render a Responses-API answer as its SSE stream: ``response.created``, the search results, one
    ``response.output_text.delta`` per word, ``response.output_text.done``, then ``response.completed`` with the
    whole response (usage included), as the Agent API sends them."""
    events: list[dict[str, Any]] = []
    created = {k: v for k, v in response.items() if k not in ("output", "usage")} | {"status": "in_progress"}
    events.append({"type": "response.created", "response": created | {"output": []}})
    message = next(item for item in response["output"] if item["type"] == "message")
    for item in response["output"]:
        if item["type"] == "search_results":
            events.append({"type": "response.reasoning.search_results", "results": item["results"], "queries": []})
    text = "".join(part.get("text", "") for part in message["content"])
    for piece in word_pieces(text):
        events.append(
            {"type": "response.output_text.delta", "item_id": message["id"], "output_index": 0, "delta": piece}
        )
    events.append({"type": "response.output_text.done", "item_id": message["id"], "output_index": 0, "text": text})
    events.append({"type": "response.completed", "response": response})
    body = "".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events).encode()
    return _Response(200, body, content_type="text/event-stream")
