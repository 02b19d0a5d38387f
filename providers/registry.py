"""The provider registry: which providers exist, which can be used right now and why not, and their adapters."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from providers.base import ProviderAdapter
from providers.config import Price, ProviderSettings, Settings, Tier
from providers.resilience.board import HealthBoard
from providers.resilience.hedge_budget import HedgeBudget

KINDS = ("gemini", "perplexity", "llamacpp")


@dataclass(frozen=True)
class Availability:
    provider: str
    tier: Tier
    available: bool
    reason: str = ""
    # Unavailable for new work only: it answered 429 and asked to wait (a call already planned may still go).
    cooling: bool = False


def build_adapter(ps: ProviderSettings) -> ProviderAdapter:
    """Build the adapter for one configured provider; vendor SDKs are imported only when used."""
    key = ps.api_key.get_secret_value() if ps.api_key else ""
    if ps.kind == "gemini":
        from providers.gemini import build_gemini_adapter

        return build_gemini_adapter(
            name=ps.name, model=ps.model, api_key=key, base_url=ps.base_url, timeout_s=ps.timeout_s
        )
    if ps.kind == "perplexity":
        from providers.perplexity import build_perplexity_adapter

        return build_perplexity_adapter(
            name=ps.name, model=ps.model, api_key=key, base_url=ps.base_url, timeout_s=ps.timeout_s
        )
    if ps.kind == "llamacpp":
        from providers.local.adapter import build_local_adapter

        return build_local_adapter(
            name=ps.name,
            model_path=ps.model_path,
            base_url=ps.base_url,
            model=ps.model,
            timeout_s=ps.timeout_s,
            max_tokens=ps.max_tokens,
            n_ctx=ps.n_ctx,
            queue_limit=ps.queue_limit,
            # Token log-probabilities are the local model's certainty signal, read at full generation speed.
            logprobs=True,
        )
    raise ValueError(f"unknown provider kind {ps.kind!r}; valid kinds: {', '.join(KINDS)}")


def configuration_problem(ps: ProviderSettings) -> str | None:
    """Say why a configured provider cannot be used in this process, without loading or calling it."""
    if ps.kind in ("gemini", "perplexity"):
        if ps.api_key is None or not ps.api_key.get_secret_value().strip():
            return f"no API key (set {ps.name.upper()}_API_KEY)"
        return None
    from providers.local.model_file import check_local_available

    return check_local_available(ps.model_path, ps.base_url)


class ProviderRegistry:
    """Providers by name. Adapters may be injected (tests pass adapters over fake chat models)."""

    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, ProviderAdapter] | None = None,
        health: HealthBoard | None = None,
        hedge_budget: HedgeBudget | None = None,
    ) -> None:
        self.settings = settings
        # Shared through Redis when settings.redis_url is set, so every process skips the same open circuits.
        self.health = health or HealthBoard.from_settings(settings)
        hedge = settings.resilience.hedge
        self.hedge_budget = hedge_budget or HedgeBudget(
            max_extra_ratio=hedge.max_extra_ratio,
            window_s=hedge.window_s,
            burst_usd=hedge.burst_usd,
            burst_hedges=hedge.burst_hedges,
            burst_refill_s=hedge.burst_refill_s,
        )
        self._injected = dict(adapters or {})
        self._built: dict[str, ProviderAdapter] = {}
        self._problems: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self.settings.providers)

    def provider_settings(self, name: str) -> ProviderSettings:
        try:
            return self.settings.providers[name]
        except KeyError:
            raise KeyError(f"unknown provider {name!r}; configured: {', '.join(self.names())}") from None

    def tier_of(self, name: str) -> Tier:
        return self.provider_settings(name).tier

    def model_of(self, name: str) -> str:
        if name in self._injected:
            return self._injected[name].model
        return self.provider_settings(name).model

    def vendor_of(self, name: str) -> str:
        if name in self._injected:
            return self._injected[name].vendor
        return self.provider_settings(name).kind

    def price_of(self, name: str, answered_by: str | None = None) -> Price:
        """Return the price of a call to ``name``: of the model that answered (``answered_by``, as the provider
        reported it) when the price table knows it, else of the configured model.

        A provider may serve another model than the one asked for (an alias that moved, a fallback of its own);
        it bills what answered.
        """
        model = self.model_of(name)
        if answered_by and answered_by != model:
            model = self.settings.priced_model(answered_by) or model
        return self.settings.price_for(model, self.tier_of(name))

    def adapter(self, name: str) -> ProviderAdapter:
        if name in self._injected:
            return self._injected[name]
        with self._lock:
            if name not in self._built:
                self._built[name] = build_adapter(self.provider_settings(name))
            return self._built[name]

    def expected_wait_s(self, name: str) -> float:
        """Return how long a new call to ``name`` would queue before it starts (the local model's queue length x
        its observed latency); 0 for providers that do not queue, or whose adapter is not built yet."""
        with self._lock:
            adapter = self._injected.get(name) or self._built.get(name)
        return adapter.expected_wait_s() if adapter is not None else 0.0

    def availability(self, name: str) -> Availability:
        tier = self.tier_of(name)
        if name not in self._injected:
            with self._lock:
                if name not in self._problems:
                    self._problems[name] = configuration_problem(self.provider_settings(name))
                problem = self._problems[name]
            if problem:
                return Availability(name, tier, False, problem)
        # One store read (a dict lookup, or one Redis round trip): skipping an open circuit costs well under 10 ms.
        state = self.health.breaker(name).state()
        if state == "open":
            return Availability(name, tier, False, "circuit open after recent failures")
        cooling = self.health.cooldowns.left_s(name)
        if cooling > 0:
            return Availability(name, tier, False, f"rate limited: it asked to wait {cooling:.1f} s more", cooling=True)
        if state == "half_open":
            return Availability(name, tier, True, "circuit half-open: the next call is a probe")
        return Availability(name, tier, True)

    def all_availability(self) -> dict[str, Availability]:
        return {name: self.availability(name) for name in self.names()}
