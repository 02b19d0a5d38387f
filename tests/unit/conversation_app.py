"""A live app for the conversation, playbook and scenario routes: the real Flask app on a werkzeug server on a
free port, its Conversations given an injected clock, and an SSE client (httpx-sse) to read streams."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse
from langgraph.checkpoint.memory import InMemorySaver
from werkzeug.serving import make_server

import app as app_module
from api.common import JsonErrorRequestHandler
from graphs.conversation_service import Conversations
from graphs.playbook_service import Playbooks
from graphs.service import Orchestrator
from graphs.stores.briefing_cache import SqliteBriefingCache
from graphs.stores.records import SqliteRecords
from graphs.ward_reports import WardReports
from providers.registry import ProviderRegistry

API = "/api/v1/strategist"


class Clock:
    """A clock the test moves by hand (session expiry)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ChatApp:
    """A running app: an httpx client on the blueprint, the Conversations behind it and its clock."""

    def __init__(self, base: str, conversations: Conversations, clock: Clock) -> None:
        self.http = httpx.Client(base_url=base + API, timeout=120)
        self.conversations = conversations
        self.clock = clock

    def events(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Read a whole SSE stream; return each event's JSON data, in order."""
        with connect_sse(self.http, "GET", path, params=params) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            assert source.response.headers["cache-control"] == "no-cache"
            return [json.loads(event.data) for event in source.iter_sse()]

    def session(self, ward: str = "Malakpet", **extra: Any) -> str:
        response = self.http.post("/conversation", json={"ward": ward, **extra})
        assert response.status_code == 200, response.text
        session_id: str = response.json()["session_id"]
        return session_id

    def say(self, session_id: str, text: str) -> None:
        response = self.http.post(
            "/conversation/message", json={"sessionId": session_id, "message": {"type": "user", "content": text}}
        )
        assert response.status_code == 200, response.text


def serve_chat(registry: ProviderRegistry, tmp_path: Path, ttl_s: float = 7200.0) -> Iterator[ChatApp]:
    clock = Clock()
    orchestrator = Orchestrator(registry, None)
    reports = WardReports(registry, InMemorySaver(), SqliteBriefingCache(tmp_path / "briefings.sqlite"))
    conversations = Conversations(
        registry, InMemorySaver(), SqliteRecords(tmp_path / "records.sqlite"), clock=clock, ttl_s=ttl_s
    )
    flask_app = app_module.create_app(orchestrator, reports)
    flask_app.extensions["strategist_conversations"] = conversations
    flask_app.extensions["strategist_playbooks"] = Playbooks(
        registry, InMemorySaver(), SqliteRecords(tmp_path / "records.sqlite"), clock=clock
    )
    server = make_server("127.0.0.1", 0, flask_app, threaded=True, request_handler=JsonErrorRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        chat = ChatApp(f"http://127.0.0.1:{server.server_port}", conversations, clock)
        yield chat
        chat.http.close()
    finally:
        server.shutdown()
