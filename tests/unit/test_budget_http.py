"""Over budget over HTTP: 402 for the day's cap, 429 for the caller's, with Retry-After and the cap named."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from werkzeug.serving import make_server

import app as app_module
from api.common import JsonErrorRequestHandler
from graphs.service import Orchestrator
from graphs.stores.briefing_cache import SqliteBriefingCache
from graphs.stores.budget import SqliteBudget
from graphs.ward_reports import WardReports
from nodes.policy.budget import BudgetCaps
from providers.testing import fake_registry, reply


def serve(tmp_path: Path, caps: BudgetCaps) -> Iterator[httpx.Client]:
    # No local tier: nothing is free, so a spent cap refuses the analysis outright.
    registry = fake_registry(
        {"gemini": [reply("Premium plan.")], "perplexity": [reply("x y", citations=["https://a.org"])]}
    )
    orchestrator = Orchestrator(registry, None, budget=SqliteBudget(tmp_path / "budget.sqlite", caps))
    orchestrator.graph = orchestrator.graph.builder.compile(checkpointer=InMemorySaver())
    reports = WardReports(registry, InMemorySaver(), SqliteBriefingCache(tmp_path / "briefings.sqlite"))
    app = app_module.create_app(orchestrator, reports)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=JsonErrorRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}/api/v1/strategist", timeout=60) as c:
            yield c
    finally:
        server.shutdown()


@pytest.fixture(autouse=True)
def _open_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STRATEGIST_API_TOKEN", "STRATEGIST_ENABLED", "STRATEGIST_ADMIN_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "caps, status, named",
    [
        (BudgetCaps(daily_usd=0.0), 402, "the daily spend cap"),
        (BudgetCaps(per_caller_daily_usd=0.0), 429, "this caller's daily spend cap"),
    ],
)
def test_an_analysis_over_budget_is_refused_with_the_cap_named(
    tmp_path: Path, caps: BudgetCaps, status: int, named: str
) -> None:
    for client in serve(tmp_path, caps):
        response = client.post("/analyze", json={"text": "Plan our week in Malakpet."}, headers={"X-Session-Id": "s1"})
        assert response.status_code == status
        body = response.json()
        assert body["reason"] == "over_budget" and body["error"].startswith(f"over budget: {named}")
        assert int(response.headers["Retry-After"]) > 0
