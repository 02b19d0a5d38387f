"""Over budget over HTTP: 402 for the day's cap, 429 for the caller's, with Retry-After and the cap named."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from werkzeug.serving import make_server

import app as app_module
from api.common import JsonErrorRequestHandler
from graphs.service import Orchestrator
from graphs.stores.briefing_cache import SqliteBriefingCache, cache_key
from graphs.stores.budget import SqliteBudget
from graphs.ward_reports import WardReports, etag_of
from nodes.policy.budget import BudgetCaps
from providers.registry import ProviderRegistry
from providers.testing import fake_registry, reply
from providers.testing.briefings import briefing_registry


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


def serve_briefings(tmp_path: Path, caps: BudgetCaps) -> tuple[Any, WardReports, ProviderRegistry]:
    """The app's briefing routes on a Flask test client, with briefings and analyses sharing one budget store."""
    registry = briefing_registry()
    budget = SqliteBudget(tmp_path / "budget.sqlite", caps)
    orchestrator = Orchestrator(registry, None, budget=budget)
    reports = WardReports(registry, InMemorySaver(), SqliteBriefingCache(tmp_path / "briefings.sqlite"), budget=budget)
    return app_module.create_app(orchestrator, reports).test_client(), reports, registry


@pytest.mark.parametrize(
    "caps, status, named",
    [
        (BudgetCaps(daily_usd=0.0), 402, "the daily spend cap"),
        (BudgetCaps(per_caller_daily_usd=0.0), 429, "this caller's daily spend cap"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/strategist/Malakpet", "/api/v1/strategist/ward/Malakpet"])
def test_a_briefing_over_budget_is_refused_with_the_cap_named_and_not_cached(
    tmp_path: Path, caps: BudgetCaps, status: int, named: str, path: str
) -> None:
    """No writer fits what is left: nothing is asked, the answer is JSON naming the cap (not a 500), and nothing
    is cached, so the next request after the cap resets writes the briefing. Before, the briefing was made."""
    client, reports, registry = serve_briefings(tmp_path, caps)
    response = client.get(path, headers={"X-Session-Id": "s1"})
    assert response.status_code == status
    body = response.get_json()
    assert body["reason"] == "over_budget" and body["error"].startswith(f"over budget: {named}")
    assert "no writer fits" in body["error"] and body["ward"] == "Malakpet"
    assert int(response.headers["Retry-After"]) > 0
    assert reports.cache.get(cache_key("Malakpet", "standard", "neutral")) is None
    assert reports.cache.entries() == 0
    for name in ("gemini", "perplexity"):
        assert registry.adapter(name).chat_model().calls == 0  # type: ignore[attr-defined]  # ScriptedChat


def test_a_trigger_over_budget_is_refused_with_the_cap_named(tmp_path: Path) -> None:
    client, reports, _ = serve_briefings(tmp_path, BudgetCaps(per_caller_daily_usd=0.0))
    response = client.post("/api/v1/strategist/trigger", json={"ward": "Malakpet"}, headers={"X-Session-Id": "s1"})
    assert response.status_code == 429 and response.get_json()["reason"] == "over_budget"
    assert reports.cache.entries() == 0


def test_a_refused_trigger_leaves_the_wards_cached_briefings_in_place(tmp_path: Path) -> None:
    """/trigger dropped the ward's briefings before its fresh run was refused, so the ward was left with none."""
    client, reports, _ = serve_briefings(tmp_path, BudgetCaps(daily_usd=0.0))
    for context in ("neutral", "defensive"):
        body = json.dumps({"ward": "Malakpet", "context": context}).encode()
        reports.cache.put(cache_key("Malakpet", "standard", context), etag_of(body), body, 600)
    response = client.post("/api/v1/strategist/trigger", json={"ward": "Malakpet"}, headers={"X-Session-Id": "s1"})
    assert response.status_code == 402 and response.get_json()["reason"] == "over_budget"
    assert reports.cache.entries() == 2
    served = client.get("/api/v1/strategist/Malakpet", headers={"X-Session-Id": "s1"})
    assert served.status_code == 200 and served.get_json() == {"ward": "Malakpet", "context": "neutral"}


def test_a_cached_briefing_is_served_under_a_spent_cap(tmp_path: Path) -> None:
    """A briefing from the cache costs nothing: a spent cap refuses only the ward that would need a new one."""
    client, reports, _ = serve_briefings(tmp_path, BudgetCaps(daily_usd=0.0))
    body = json.dumps({"ward": "Jubilee Hills", "cached": True}).encode()
    reports.cache.put(cache_key("Jubilee Hills", "standard", "neutral"), etag_of(body), body, 600)
    hit = client.get("/api/v1/strategist/Jubilee Hills", headers={"X-Session-Id": "s1"})
    assert hit.status_code == 200 and hit.get_json() == {"ward": "Jubilee Hills", "cached": True}
    miss = client.get("/api/v1/strategist/Malakpet", headers={"X-Session-Id": "s1"})
    assert miss.status_code == 402 and miss.get_json()["reason"] == "over_budget"
