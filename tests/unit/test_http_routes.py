"""Every route of the strategist contract through the real HTTP stack (a werkzeug server on a free port, httpx
as the client), with its errors: shapes, status codes, headers, ETag and 304, single flight, the kill switch."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from live_server import Live, serve

from providers.errors import ServerError
from providers.testing import reply
from providers.testing.briefings import briefing_registry


@pytest.fixture()
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    for var in ("STRATEGIST_API_TOKEN", "STRATEGIST_ENABLED", "STRATEGIST_ADMIN_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield from serve(briefing_registry(local=[reply("A local summary of the text.\nConfidence: 0.6")]), tmp_path)


# --- the ward briefing -----------------------------------------------------------------------------------------


def test_briefing_route_answers_the_contract_with_cache_headers(live: Live) -> None:
    response = live.http.get("/Jubilee Hills", params={"depth": "quick", "context": "offensive"})
    assert response.status_code == 200
    body = response.json()
    assert {
        "ward",
        "generated_at",
        "strategic_overview",
        "key_intelligence",
        "confidence_score",
        "fallback_mode",
        "source_citations",
        "compliance",
        "recommended_actions",
        "risks",
        "threats",
        "opportunities",
        "insights",
        "actions",
        "internal_use_only",
    } <= body.keys()
    assert body["ward"] == "Jubilee Hills" and body["analysis"]["context"] == "offensive"
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert (response.headers["X-Ward"], response.headers["X-Analysis-Depth"]) == ("Jubilee Hills", "quick")
    # Cached: the same bytes and the same ETag, from the alias route too.
    again = live.http.get("/ward/Jubilee Hills", params={"depth": "quick", "context": "offensive"})
    assert again.headers["ETag"] == etag and again.content == response.content
    assert live.reports.analyses == 1 and live.reports.hits == 1


@pytest.mark.parametrize(
    "if_none_match, status",
    [
        ("{etag}", 304),
        ("W/{etag}", 304),
        ('"nope", {etag}', 304),
        ("*", 304),
        ('"nope"', 200),
        # Not an entity tag by RFC 9110's grammar; werkzeug's parser reads it as one, leniently (kept: harmless).
        ("{bare}", 304),
    ],
)
def test_if_none_match_follows_rfc_9110(live: Live, if_none_match: str, status: int) -> None:
    first = live.http.get("/Malakpet")
    etag = first.headers["ETag"]
    header = if_none_match.format(etag=etag, bare=etag.strip('"'))
    response = live.http.get("/Malakpet", headers={"If-None-Match": header})
    assert response.status_code == status
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    if status == 304:
        assert response.content == b""


def test_depth_and_context_outside_the_contract_become_the_defaults(live: Live) -> None:
    response = live.http.get("/Amberpet", params={"depth": "extreme", "context": "sideways"})
    assert response.status_code == 200 and response.headers["X-Analysis-Depth"] == "standard"
    assert response.json()["analysis"]["context"] == "neutral"


def test_ward_is_stripped_cut_and_required(live: Live) -> None:
    long = "A" * 80
    response = live.http.get(f"/{long}", params={"depth": "quick"})
    assert response.status_code == 200 and response.json()["ward"] == "A" * 64
    blank = live.http.get("/%20%20")
    assert blank.status_code == 400 and blank.json() == {"error": "Ward parameter is required"}
    telugu = live.http.get("/జూబ్లీ హిల్స్", params={"depth": "quick"})
    assert telugu.status_code == 200 and telugu.json()["ward"] == "జూబ్లీ హిల్స్"
    assert telugu.headers["X-Ward"].startswith("%E0%B0")  # UTF-8, percent-encoded into a Latin-1 header


def test_concurrent_requests_for_one_uncached_briefing_run_one_analysis(live: Live) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda _: live.http.get("/Serilingampally"), range(24)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.headers["ETag"] for r in responses}) == 1
    assert live.reports.analyses == 1


def test_nothing_to_say_is_the_contract_500(tmp_path: Path) -> None:
    registry = briefing_registry(research=[ServerError("down")], writer=[ServerError("down")])
    for live in serve(registry, tmp_path):
        response = live.http.get("/Jubilee Hills", params={"depth": "quick"})
        assert response.status_code == 500
        body = response.json()
        assert (body["error"], body["ward"], body["retry_after"]) == ("Analysis failed", "Jubilee Hills", 60)
        assert body["timestamp"].endswith("+00:00")


def test_no_cloud_tier_is_a_degraded_200(tmp_path: Path) -> None:
    registry = briefing_registry(
        research=[ServerError("down")],
        writer=[ServerError("down")],
        local=[reply("not json")] * 2 + [reply("Malakpet: water and roads matter; little is known this week.")],
    )
    for live in serve(registry, tmp_path):
        response = live.http.get("/Malakpet", params={"depth": "quick"})
        assert response.status_code == 200
        body = response.json()
        assert body["fallback_mode"] is True and body["confidence_score"] <= 0.3


def test_trigger_drops_the_cache_and_runs_a_fresh_briefing(live: Live) -> None:
    first = live.http.get("/Amberpet")
    live.http.get("/Amberpet", params={"context": "defensive"})
    response = live.http.post("/trigger", json={"ward": "Amberpet", "priority": "high"})
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["ward"], body["depth"], body["cache_invalidated"]) == (
        "analysis_triggered",
        "Amberpet",
        "standard",
        2,
    )
    assert body["result"]["ward"] == "Amberpet" and body["timestamp"].endswith("+00:00")
    after = live.http.get("/Amberpet")
    assert after.headers["ETag"] != first.headers["ETag"] and after.json() == body["result"]
    missing = live.http.post("/trigger", json={"depth": "quick"})
    assert missing.status_code == 400 and missing.json() == {"error": "Ward is required"}


# --- content analysis ------------------------------------------------------------------------------------------


def test_analyze_answers_the_analysis_of_the_text(live: Live) -> None:
    text = "The opposition promised free buses in Malakpet; residents are sceptical."
    response = live.http.post("/analyze", json={"text": f"  {text}  ", "ward": "Malakpet", "stream": True})
    assert response.status_code == 200
    body = response.json()
    assert (body["analysis_type"], body["text_length"], body["ward"]) == ("content_analysis", len(text), "Malakpet")
    assert body["analyzed_at"].endswith("+00:00") and body["answer"]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            {"ward": "Malakpet", "depth": "deep", "context": "x", "session_id": "s", "stream": True},
            "Text content is required",
        ),
        ({"text": "  "}, "Text content is required"),
        ({"text": "short"}, "Text too short for meaningful analysis"),
        ({"text": "y" * 10_001}, "Text too long - maximum 10,000 characters"),
        ({"text": 123}, "text must be a string"),
    ],
)
def test_analyze_errors(live: Live, body: dict[str, Any], message: str) -> None:
    response = live.http.post("/analyze", json=body)
    assert response.status_code == 400 and response.json() == {"error": message}


# --- health and operations -------------------------------------------------------------------------------------


def test_health_ready_alive(live: Live) -> None:
    health = live.http.get("/health")
    body = health.json()
    # Every provider available, closed and error-free: the score reaches 100 (it could never pass 50 before).
    assert health.status_code == 200 and body["system_status"] == "healthy"
    assert body["overall_score"] == 100 and body["timestamp"].endswith("+00:00")
    ready = live.http.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert {"providers", "briefing_cache"} <= ready.json()["checks"].keys()
    alive = live.http.get("/alive").json()
    assert alive["alive"] is True and alive["service"] == "political_strategist"


def test_health_is_degraded_while_a_provider_is_missing(tmp_path: Path) -> None:
    for live in serve(briefing_registry(), tmp_path):  # no local model file
        response = live.http.get("/health")
        body = response.json()
        assert response.status_code == 200 and body["system_status"] == "degraded"
        assert body["overall_score"] == pytest.approx(66.7) and body["components"]["local"]["score"] == 0


def test_status_and_cache_stats(live: Live) -> None:
    live.http.get("/Amberpet", params={"depth": "quick"})
    live.http.get("/Amberpet", params={"depth": "quick"})
    status = live.http.get("/status").json()
    assert status["strategist_enabled"] is True and status["cache_enabled"] is True
    assert set(status["ai_services"]) == {"gemini", "perplexity", "local"}
    assert "p95_ms" in status["performance"]["perplexity"]
    stats = live.http.get("/cache/stats").json()
    assert (stats["status"], stats["hits"], stats["misses"], stats["hit_rate"], stats["entries"]) == (
        "available",
        1,
        1,
        0.5,
        1,
    )


def test_cache_invalidate_touches_only_this_services_cache_keys(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    live.http.get("/Amberpet", params={"depth": "quick"})
    live.http.get("/Malakpet", params={"depth": "quick"})
    refused = live.http.post("/cache/invalidate", json={"pattern": "strategist:*"})
    assert refused.status_code == 403 and "STRATEGIST_API_TOKEN" in refused.json()["error"]
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "tok")
    auth = {"Authorization": "Bearer tok"}
    bad = live.http.post("/cache/invalidate", json={"pattern": "*"}, headers=auth)
    assert bad.status_code == 400 and "strategist:" in bad.json()["error"]
    one = live.http.post("/cache/invalidate", json={"pattern": "strategist:ward:Amberpet:*"}, headers=auth)
    assert one.status_code == 200 and one.json()["invalidated_count"] == 1
    assert one.json()["pattern"] == "strategist:ward:Amberpet:*"
    rest = live.http.post("/cache/invalidate", json={}, headers=auth).json()
    assert rest["invalidated_count"] == 1 and rest["pattern"] == "strategist:ward:*"


def test_circuit_breaker_reset(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    assert live.http.post("/circuit-breaker/reset", json={}).status_code == 403
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "tok")
    response = live.http.post("/circuit-breaker/reset", headers={"Authorization": "Bearer tok"})
    body = response.json()
    assert response.status_code == 200 and (body["status"], body["action"]) == ("success", "circuit_breaker_reset")
    assert body["message"] == "All circuit breakers have been reset"
    unknown = live.http.post(
        "/circuit-breaker/reset", json={"provider": "nope"}, headers={"Authorization": "Bearer tok"}
    )
    assert unknown.status_code == 400


# --- alerts ----------------------------------------------------------------------------------------------------


def test_contextual_alerts(live: Live) -> None:
    events = [
        {
            "title": "Clash at the rally",
            "content": "Violence broke out today; police arrested two.",
            "url": "https://www.thehindu.com/clash",
        },
        "The opposition announced a seat-sharing alliance.",
    ]
    response = live.http.post("/alerts/contextual", json={"ward": "Malakpet", "political_events": events})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2 and body["ward"] == "Malakpet"
    first = body["alerts"][0]
    assert (first["category"], first["priority"]) == ("crisis", "critical")
    assert first["evidence_sources"] == ["https://www.thehindu.com/clash"]
    assert all(0 <= a["urgency_score"] <= 1 for a in body["alerts"])
    for bad in ({"ward": "Malakpet", "political_events": []}, {"ward": "Malakpet"}):
        refused = live.http.post("/alerts/contextual", json=bad)
        assert refused.status_code == 400 and refused.json() == {"error": "political_events must be a non-empty list"}


def test_priority_score_stays_within_0_and_1(live: Live) -> None:
    top = {"title": "t", "content": "c", "priority": "critical", "category": "crisis", "confidence_score": 1.0}
    body = live.http.post("/alerts/priority-score", json={"alert_data": top, "ward": "Malakpet"}).json()
    assert body["priority_score"] == 1.0 and body["ward"] == "Malakpet" and body["calculated_at"].endswith("+00:00")
    low = dict(top, priority="informational", category="opportunity", confidence_score=0.0)
    assert 0 <= live.http.post("/alerts/priority-score", json={"alert_data": low}).json()["priority_score"] < 0.2
    missing = live.http.post("/alerts/priority-score", json={"ward": "x"})
    assert missing.status_code == 400 and missing.json() == {"error": "alert_data is required"}


# --- the blueprint's conventions -------------------------------------------------------------------------------


def test_unknown_endpoint_and_wrong_method(live: Live) -> None:
    response = live.http.get("/no/such/endpoint")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "Strategist endpoint not found" and "GET /<ward>" in body["available_endpoints"]
    wrong = live.http.get("/analyze")
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST" and "error" in wrong.json()


def test_unhandled_error_is_the_contract_500(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(live.reports, "report", boom)
    response = live.http.get("/Amberpet")
    assert response.status_code == 500
    body = response.json()
    assert (body["error"], body["support"]) == ("Internal strategist system error", "Check system logs for details")
    assert "secret" not in response.text


ROUTES = [
    ("GET", "/Amberpet"),
    ("GET", "/ward/Amberpet"),
    ("POST", "/analyze"),
    ("POST", "/trigger"),
    ("POST", "/feedback"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/alive"),
    ("GET", "/status"),
    ("GET", "/cache/stats"),
    ("POST", "/cache/invalidate"),
    ("POST", "/circuit-breaker/reset"),
    ("POST", "/alerts/contextual"),
    ("POST", "/alerts/priority-score"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize("method, path", ROUTES)
def test_kill_switch_answers_503_on_every_route(
    live: Live, monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    monkeypatch.setenv("STRATEGIST_ENABLED", "false")
    response = live.http.request(method, path, json={})
    assert response.status_code == 503
    assert response.json() == {
        "error": "Political Strategist system is currently disabled",
        "status": "service_unavailable",
    }


PROTECTED = [r for r in ROUTES if r[1] not in ("/health", "/ready", "/alive", "/openapi.json", "/no/such/route")]


@pytest.mark.parametrize("method, path", PROTECTED)
def test_protected_routes_answer_401_json_without_the_token(
    live: Live, monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "s3cret")
    response = live.http.request(method, path, json={})
    assert response.status_code == 401 and response.json() == {"error": "Authentication required"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_openapi_document_is_3_1_and_lists_every_route(live: Live) -> None:
    doc = live.http.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/{ward}",
        "/ward/{ward}",
        "/analyze",
        "/trigger",
        "/feedback",
        "/health",
        "/ready",
        "/alive",
        "/status",
        "/cache/stats",
        "/cache/invalidate",
        "/circuit-breaker/reset",
        "/alerts/contextual",
        "/alerts/priority-score",
        "/conversation",
        "/conversation/{session_id}",
        "/conversation/message",
        "/conversations",
        "/chat",
        "/playbook/generate",
        "/playbook/opposition-response",
        "/playbook/customize",
        "/scenario/simulate",
        "/scenarios/history",
    }
    assert set(doc["paths"]["/conversation/{session_id}"]) == {"get", "delete"}
    schemas = doc["components"]["schemas"]
    assert {"Briefing", "Conversation", "ChatReply", "Playbook", "Scenario", "ScenarioHistory"} <= set(schemas)
    # The event streams and the broker-backed jobs are left out (api/openapi.py says why).
    assert not any(p.endswith("/stream") or p == "/feed" or p.startswith("/jobs") for p in doc["paths"])
    failed = doc["paths"]["/playbook/generate"]["post"]["responses"]["500"]["content"]["application/json"]
    assert failed["schema"] == {"$ref": "#/components/schemas/PlaybookFailedBody"}
