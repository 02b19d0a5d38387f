"""Test doubles that tests and benchmarks both import: a scripted chat model and a registry wired to it.

The wire-level fake servers are beside this module (``servers``: Gemini and Perplexity; ``openai_server``: an
OpenAI-compatible local server), and ``redis_servers`` starts throwaway Redis, Valkey and Redis Cluster servers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from providers.base import ProviderAdapter
from providers.config import Settings, Tier, load_settings
from providers.gemini import GeminiAdapter
from providers.perplexity import PerplexityAdapter
from providers.registry import ProviderRegistry
from providers.resilience.board import HealthBoard

Step = AIMessage | Exception | Callable[[list[BaseMessage]], AIMessage]


def reply(
    text: str,
    *,
    tokens: tuple[int, int] = (100, 50),
    finish_reason: str = "stop",
    citations: list[str] | None = None,
    model: str | None = None,
) -> AIMessage:
    """Build an AI message as a vendor would return it: text, usage, finish reason, citations."""
    meta: dict[str, Any] = {"finish_reason": finish_reason}
    if model:
        meta["model_name"] = model
    return AIMessage(
        content=text,
        usage_metadata={"input_tokens": tokens[0], "output_tokens": tokens[1], "total_tokens": sum(tokens)},
        response_metadata=meta,
        additional_kwargs={"citations": citations} if citations else {},
    )


class ScriptedChat(BaseChatModel):
    """Replays a script of replies and exceptions, then repeats its last step; counts calls."""

    script: list[Any]
    calls: int = 0
    lock: Any = None

    def model_post_init(self, __context: Any) -> None:
        self.lock = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self.lock:
            step = self.script[min(self.calls, len(self.script) - 1)]
            self.calls += 1
        if isinstance(step, Exception):
            raise step
        message = step(messages) if callable(step) else step
        return ChatResult(generations=[ChatGeneration(message=message)])


def billed(
    registry: ProviderRegistry, provider: str, usd: float, text: str, citations: list[str] | None = None
) -> AIMessage:
    """Build a reply whose usage bills as close to ``usd`` at the provider's price as whole tokens allow, never
    more (100 input tokens, the rest output): for tests and benchmarks of spend caps."""
    price = registry.price_of(provider)
    per_token = (price.cost_usd(100, 1_000_000) - price.cost_usd(100, 0)) / 1_000_000
    tokens = int((usd - price.cost_usd(100, 0)) / per_token)
    while price.cost_usd(100, tokens) > usd:
        tokens -= 1
    if tokens <= 0:
        raise ValueError(f"${usd} does not cover {provider}'s 100 input tokens and request fee")
    return reply(text, tokens=(100, tokens), citations=citations)


def fake_adapter(name: str, tier: Tier, vendor: str, script: Iterable[Step], model: str = "") -> ProviderAdapter:
    """Build the vendor's real adapter class (its reply parsing and error mapping) over a scripted chat model."""
    chat = ScriptedChat(script=list(script))
    cls: type[ProviderAdapter] = {"perplexity": PerplexityAdapter, "google": GeminiAdapter}.get(vendor, ProviderAdapter)
    adapter = cls(
        name=name, tier=tier, vendor=vendor, model=model or f"{name}-model", chat_factory=lambda: chat, timeout_s=5.0
    )
    adapter.fake = chat  # type: ignore[attr-defined]  # the script's call count, for tests to read
    return adapter


def fake_registry(
    scripts: Mapping[str, Iterable[Step]], settings: Settings | None = None, health: HealthBoard | None = None
) -> ProviderRegistry:
    """Wire fake adapters for the named default providers (gemini, perplexity, local)."""
    # Hermetic: keys in the developer's environment are ignored, and an unscripted local tier points at a
    # model file that does not exist, so no test silently runs a real provider.
    env = {"STRATEGIST_DATA_DIR": "/nonexistent"}
    if "local" not in scripts:
        env["LOCAL_MODEL_PATH"] = "/nonexistent/model.gguf"
    if settings is None:
        # Hedging off unless the test's own settings turn it on: a hedge starts on a timer (0.3 s before a
        # provider has latency samples), so on a loaded machine a scripted call could race a second scripted call
        # and take the reply meant for the next one.
        loaded = load_settings(env)
        hedge = loaded.resilience.hedge.model_copy(update={"enabled": False})
        settings = loaded.model_copy(update={"resilience": loaded.resilience.model_copy(update={"hedge": hedge})})
    adapters = {}
    for name, script in scripts.items():
        ps = settings.providers[name]
        vendor = {"gemini": "google", "perplexity": "perplexity", "llamacpp": "local"}[ps.kind]
        adapters[name] = fake_adapter(name, ps.tier, vendor, script, ps.model)
    # Providers without a script are left to the real availability check (no key -> unavailable).
    return ProviderRegistry(settings, adapters=adapters, health=health)
