"""Operations on a running deployment: the health report and closing circuits (CLI `health`, HTTP health and
circuit-breaker reset)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from providers.registry import ProviderRegistry


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def component_score(available: bool, circuit: str, error_rate: float) -> float:
    """Score one provider in [0, 1]: 0 when it cannot be used, else its recent success rate, halved while its
    circuit is half-open (one probe call decides)."""
    if not available:
        return 0.0
    return round(max(0.0, 1.0 - error_rate) * (0.5 if circuit == "half_open" else 1.0), 4)


def health_report(registry: ProviderRegistry) -> dict[str, Any]:
    """Describe every provider: availability, circuit, recent error rate, latency percentiles, hedge budget.

    The shape extends the contract's ``GET /health`` body (``system_status``, ``components``, ``overall_score``,
    ``timestamp``); serve it with status 200 while any provider can answer, 503 otherwise.
    """
    components: dict[str, Any] = {}
    hedge = registry.settings.resilience.hedge
    for name, avail in registry.all_availability().items():
        breaker = registry.health.breaker(name)
        snap = breaker.snapshot()
        components[name] = {
            "tier": avail.tier,
            "available": avail.available,
            "reason": avail.reason or None,
            "circuit": snap.state,
            "probe_in_s": snap.probe_in_s,
            "recent_calls": snap.calls,
            "error_rate": round(snap.error_rate, 4),
            "consecutive_failures": snap.consecutive_failures,
            "retries": snap.retries,
            "p50_ms": snap.p50_ms,
            "p95_ms": snap.p95_ms,
            "p99_ms": snap.p99_ms,
            "latency_samples": snap.latency_samples,
            "hedge_after_ms": round(breaker.hedge_timing(registry.settings).hedge_after_s * 1000, 1),
        }
    usable = [c for c in components.values() if c["available"]]
    for c in components.values():
        c["score"] = component_score(c["available"], c["circuit"], c["error_rate"])
    # 0-100, the contract's scale: 100 when every provider is available, closed and error-free.
    score = 100 * sum(c["score"] for c in components.values()) / len(components) if components else 0.0
    return {
        "system_status": "healthy" if score >= 99.95 else ("degraded" if usable else "unhealthy"),
        "components": components,
        "overall_score": round(score, 1),
        "circuit_store": registry.health.store.name,
        "hedging": {"enabled": hedge.enabled, **registry.hedge_budget.totals()},
        "window_s": registry.health.policy.window_s,
        "timestamp": _now_iso(),
    }


class UnknownProvider(LookupError):
    """A reset named a provider that is not configured."""


def reset_circuits(registry: ProviderRegistry, provider: str | None = None) -> dict[str, Any]:
    """Close the circuit of one provider, or of all; return the contract's response body.

    Contract body for all: ``{"status": "success", "message": "All circuit breakers have been reset",
    "timestamp", "action": "circuit_breaker_reset"}``; ``providers`` lists what was reset.
    """
    names = registry.names()
    if provider is not None and provider not in names:
        raise UnknownProvider(f"unknown provider {provider!r}; configured: {', '.join(names)}")
    reset = registry.health.reset([provider] if provider else names)
    message = f"Circuit breaker of {provider} has been reset" if provider else "All circuit breakers have been reset"
    return {
        "status": "success",
        "message": message,
        "timestamp": _now_iso(),
        "action": "circuit_breaker_reset",
        "providers": reset,
    }
