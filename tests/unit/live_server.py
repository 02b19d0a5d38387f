"""A live app for HTTP tests: the real Flask app on a werkzeug server (the JSON error handler included) on a free
port, with an httpx client; fake providers and a throwaway briefing cache behind it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
from langgraph.checkpoint.memory import InMemorySaver
from werkzeug.serving import make_server

import app as app_module
from api.common import JsonErrorRequestHandler
from graphs.service import Orchestrator
from graphs.stores.briefing_cache import SqliteBriefingCache
from graphs.ward_reports import WardReports
from providers.registry import ProviderRegistry

API = "/api/v1/strategist"


class Live:
    """A running app: its base URL, an httpx client, and the services behind it."""

    def __init__(self, base: str, reports: WardReports) -> None:
        self.http = httpx.Client(base_url=base + API, timeout=60)
        self.reports = reports


def serve(registry: ProviderRegistry, tmp_path: Path) -> Iterator[Live]:
    orchestrator = Orchestrator(registry, None)
    orchestrator.graph = orchestrator.graph.builder.compile(checkpointer=InMemorySaver())
    reports = WardReports(registry, InMemorySaver(), SqliteBriefingCache(tmp_path / "briefings.sqlite"))
    server = make_server(
        "127.0.0.1",
        0,
        app_module.create_app(orchestrator, reports),
        threaded=True,
        request_handler=JsonErrorRequestHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        live = Live(f"http://127.0.0.1:{server.server_port}", reports)
        yield live
        live.http.close()
    finally:
        server.shutdown()
