"""Health and operations: ``/health``, ``/ready``, ``/alive`` (public), ``/status``, ``/cache/stats``,
``/cache/invalidate`` and ``/circuit-breaker/reset``."""

from __future__ import annotations

import time
from typing import Any

from flask import jsonify

from api.common import ApiError, bp, changes_beliefs, now_iso, orchestrator, parse_body, protected, reports
from api.models import InvalidateBody, ResetBody
from graphs.ops import UnknownProvider, health_report, reset_circuits
from graphs.stores.ledger import report as ledger_report

DAY_S = 86_400


@bp.get("/health")
def health() -> Any:
    """Report provider health; 200 while any provider can answer, 503 otherwise."""
    report = health_report(orchestrator().registry)
    usable = any(c["available"] for c in report["components"].values())
    return jsonify(report), 200 if usable else 503


def _check(probe: Any) -> dict[str, Any]:
    try:
        probe()
    except Exception as exc:  # a readiness probe reports any failure, it never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True}


@bp.get("/ready")
def ready() -> Any:
    """Say whether the service can take traffic: a provider is available and the stores answer."""
    orch = orchestrator()
    checks: dict[str, Any] = {}
    available = [n for n, a in orch.registry.all_availability().items() if a.available]
    checks["providers"] = {"ok": bool(available), "available": available}
    if orch.checkpointer is not None:
        checks["checkpoint_store"] = _check(
            lambda: orch.checkpointer.get_tuple({"configurable": {"thread_id": "__ready__"}})
        )
    checks["briefing_cache"] = _check(lambda: reports().cache.ping())
    ok = all(c["ok"] for c in checks.values())
    return jsonify({"ready": ok, "checks": checks, "timestamp": now_iso()}), 200 if ok else 503


@bp.get("/alive")
def alive() -> Any:
    """Answer that the process is up (no dependency is checked)."""
    return jsonify({"alive": True, "timestamp": now_iso(), "service": "political_strategist"}), 200


@bp.get("/status")
@protected
def status() -> Any:
    """Describe the service: providers, cache, routing over the last day, per-provider performance."""
    orch = orchestrator()
    registry = orch.registry
    health = health_report(registry)
    routing: dict[str, Any] = {
        "mode": registry.settings.routing.mode,
        "rollout_percent": registry.settings.routing.rollout_percent,
    }
    if orch.ledger is not None:
        try:
            summary = ledger_report(orch.ledger.entries(time.time() - DAY_S))
        except Exception as exc:  # the ledger's store is down: the rest of the status still answers
            routing["last_24h"] = {"error": str(exc)[:300]}
        else:
            keys = ("analyses", "cost_usd", "baseline_cost_usd", "savings_usd", "savings_pct", "by_tier")
            routing["last_24h"] = {k: summary[k] for k in keys if k in summary}
    performance = {
        name: {k: c[k] for k in ("tier", "circuit", "recent_calls", "error_rate", "p50_ms", "p95_ms", "score")}
        for name, c in health["components"].items()
    }
    service = reports()
    return jsonify(
        {
            "strategist_enabled": True,
            "ai_services": {name: c["available"] for name, c in health["components"].items()},
            "cache_enabled": True,
            "cache_backend": service.cache.name,
            "routing": routing,
            "performance": performance,
            "overall_score": health["overall_score"],
            "timestamp": now_iso(),
        }
    ), 200


@bp.get("/cache/stats")
@protected
def cache_stats() -> Any:
    """Describe the briefing cache, or say it is unavailable."""
    try:
        stats = reports().stats()
    except Exception as exc:  # the cache's store is down: say so rather than fail
        return jsonify({"status": "unavailable", "error": str(exc)[:300]}), 200
    return jsonify(stats), 200


@bp.post("/cache/invalidate")
@changes_beliefs(admin=True)
def cache_invalidate() -> Any:
    """Drop the cached briefings whose key matches the pattern (only this service's cache entries)."""
    body = parse_body(InvalidateBody)
    count = reports().invalidate(body.pattern)
    return jsonify({"invalidated_count": count, "pattern": body.pattern, "timestamp": now_iso()}), 200


@bp.post("/circuit-breaker/reset")
@changes_beliefs(admin=True)
def circuit_breaker_reset() -> Any:
    """Close every circuit, or one (body {"provider": name})."""
    body = parse_body(ResetBody)
    try:
        return jsonify(reset_circuits(orchestrator().registry, body.provider)), 200
    except UnknownProvider as exc:
        raise ApiError(400, str(exc)) from None
