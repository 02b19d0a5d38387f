"""Hostile and edge-case requests (issue 10, item 4), through a real server: nesting, body and header limits,
strict bearer tokens, belief-changing routes without a configured token, and /analyze near its limit.

Each of these failed before the api/ package: a 500 RecursionError, a 20 MB body read whole, an HTML 431,
`Authorization: secret` and `Bearer  secret` accepted, anonymous feedback accepted, the end of a 9,990-character
text cut off silently, and `"text": 123` answered "Text content is required".
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage
from live_server import Live, serve

from api.common import bearer_token
from graphs.request import MAX_QUERY_CHARS
from providers.testing import fake_registry, reply
from providers.testing.briefings import briefing_registry


class Echo:
    """A local model that records the prompt it was sent."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, messages: list[BaseMessage]) -> AIMessage:
        self.prompts.append("\n".join(str(m.content) for m in messages))
        return reply("The text is a complaint about water supply.\nConfidence: 0.6")


@pytest.fixture()
def echo() -> Echo:
    return Echo()


@pytest.fixture()
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo: Echo) -> Iterator[Live]:
    for var in ("STRATEGIST_API_TOKEN", "STRATEGIST_ENABLED", "STRATEGIST_ADMIN_TOKEN", "STRATEGIST_MAX_BODY_BYTES"):
        monkeypatch.delenv(var, raising=False)
    yield from serve(briefing_registry(local=[echo]), tmp_path)


def test_deeply_nested_json_is_a_400(live: Live) -> None:
    for body in (b"[" * 100_000, b'{"text": "long enough text", "context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        response = live.http.post("/analyze", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json() == {"error": "Request body is nested too deeply"}


def test_a_body_over_the_limit_is_a_413_json(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    big = b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = live.http.post("/analyze", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"error": "Request body too large", "limit_bytes": 1024 * 1024}


def test_the_body_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIST_MAX_BODY_BYTES", "100")
    for live in serve(briefing_registry(), tmp_path):
        response = live.http.post("/alerts/priority-score", json={"alert_data": {"title": "x" * 200}})
        assert response.status_code == 413 and response.json()["limit_bytes"] == 100


def _raw_request(base: str, request: bytes) -> tuple[int, str, bytes]:
    host, port = base.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    content_type = next(
        (
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type")
        ),
        "",
    )
    return status, content_type, body


def test_oversized_headers_are_a_431_json_from_the_server_and_from_the_app(live: Live) -> None:
    base = str(live.http.base_url)
    # One header line longer than the server reads (64 KiB): refused before the app, by the server itself.
    line = (
        b"GET /api/v1/strategist/alive HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * 70_000
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, content_type, body = _raw_request(base, line)
    assert status == 431 and content_type == "application/json"
    assert b'"error"' in body and b"<html" not in body.lower()
    # Headers the server accepts but that pass the app's limit (16 KiB in all): refused by the app, as JSON.
    response = live.http.get("/alive", headers={f"X-H{i}": "b" * 1000 for i in range(20)})
    assert response.status_code == 431 and response.json()["error"] == "Request header fields too large"


@pytest.mark.parametrize(
    "header, accepted",
    [
        ("Bearer s3cret", True),
        ("bearer s3cret", True),  # the scheme is case-insensitive (RFC 9110)
        ("s3cret", False),  # no scheme
        ("Bearer  s3cret", False),  # two spaces
        ("Basic s3cret", False),
        ("Bearer s3cre", False),
        ("Bearer s3cret,x", False),
        ("Bearer", False),
    ],
)
def test_bearer_tokens_are_parsed_strictly(
    live: Live, monkeypatch: pytest.MonkeyPatch, header: str, accepted: bool
) -> None:
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "s3cret")
    response = live.http.get("/status", headers={"Authorization": header})
    assert response.status_code == (200 if accepted else 401)
    if not accepted:
        assert response.json() == {"error": "Authentication required"}


def test_bearer_token_grammar() -> None:
    assert bearer_token("Bearer abc-._~+/xyz==") == "abc-._~+/xyz=="
    assert bearer_token("Bearer a=b") is None and bearer_token(None) is None and bearer_token("Bearer é") is None


def test_feedback_needs_a_configured_token(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    response = live.http.post("/feedback", json={"thread_id": "t", "correct": True})
    assert response.status_code == 403
    assert "no API token is configured" in response.json()["error"]
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "tok")
    assert live.http.post("/feedback", json={"thread_id": "t", "correct": True}).status_code == 401
    allowed = live.http.post(
        "/feedback", json={"thread_id": "t", "correct": True}, headers={"Authorization": "Bearer tok"}
    )
    assert allowed.status_code == 409 and "no feedback store" in allowed.json()["error"]  # past the guard


def test_admin_routes_need_the_admin_token_when_one_is_configured(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "tok")
    registry = live.reports.registry
    from providers.config import load_settings

    registry.settings = load_settings({"STRATEGIST_DATA_DIR": "/x", "STRATEGIST_ADMIN_TOKEN": "adm"})
    auth = {"Authorization": "Bearer tok"}
    assert live.http.post("/circuit-breaker/reset", headers=auth).status_code == 403
    ok = live.http.post("/circuit-breaker/reset", headers=auth | {"X-Admin-Token": "adm"})
    assert ok.status_code == 200


def test_analyze_never_cuts_the_users_text(tmp_path: Path, echo: Echo) -> None:
    text = ("Residents of Malakpet complain about water. " * 250)[: MAX_QUERY_CHARS - 10 - len(" END-MARKER")]
    text = text.rstrip() + "x" * (MAX_QUERY_CHARS - 10 - len(" END-MARKER") - len(text.rstrip())) + " END-MARKER"
    assert len(text) == MAX_QUERY_CHARS - 10
    for live in serve(fake_registry({"local": [echo]}), tmp_path):
        response = live.http.post("/analyze", json={"text": text, "ward": "Malakpet"})
        assert response.status_code == 200
        assert response.json()["text_length"] == len(text)
        assert echo.prompts and echo.prompts[-1].rstrip().endswith("END-MARKER")
        assert text in echo.prompts[-1]


def test_analyze_says_what_is_wrong_with_a_field(live: Live) -> None:
    for body, message in (
        ({"text": 123}, "text must be a string"),
        ({"text": "long enough text", "depth": "extreme"}, "depth: Input should be 'quick', 'standard' or 'deep'"),
        ({"text": "long enough text", "deadline_s": -1}, "deadline_s: Input should be greater than 0"),
        ({"text": "long enough text", "cross_check": "yes"}, "cross_check: Input should be a valid boolean"),
        ([1, 2], "Request body must be a JSON object"),
    ):
        response = live.http.post("/analyze", json=body)
        assert (response.status_code, response.json()) == (400, {"error": message})
    not_json = live.http.post("/analyze", content=b"not json", headers={"Content-Type": "text/plain"})
    assert not_json.status_code == 400 and not_json.json() == {"error": "Request body must be a JSON object"}


def test_every_error_the_api_answers_is_json(live: Live) -> None:
    for method, path in (("GET", "/no/such/thing"), ("DELETE", "/analyze"), ("PUT", "/health"), ("GET", "/")):
        response = live.http.request(method, path)
        assert response.status_code >= 400 and response.headers["Content-Type"] == "application/json"
        assert "error" in response.json()
    outside = httpx.get(str(live.http.base_url).removesuffix("/api/v1/strategist/") + "/nothing")
    assert outside.status_code == 404 and outside.headers["Content-Type"] == "application/json"
