"""Fakes for unit tests: a scripted chat model, a fixed classifier, and a registry wired to them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from nodes.query_classifier import QueryNeeds
from providers.base import ProviderAdapter
from providers.config import Settings, load_settings
from providers.gemini import GeminiAdapter
from providers.health import HealthBoard
from providers.perplexity import PerplexityAdapter
from providers.registry import ProviderRegistry

Step = AIMessage | Exception | Callable[[list[BaseMessage]], AIMessage]


def reply(
    text: str,
    *,
    tokens: tuple[int, int] = (100, 50),
    finish_reason: str = "stop",
    citations: list[str] | None = None,
    model: str | None = None,
) -> AIMessage:
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


def fake_adapter(name: str, tier: str, vendor: str, script: Iterable[Step], model: str = "") -> ProviderAdapter:
    """Build the vendor's real adapter class (its reply parsing and error mapping) over a scripted chat model."""
    chat = ScriptedChat(script=list(script))
    cls: type[ProviderAdapter] = {"perplexity": PerplexityAdapter, "google": GeminiAdapter}.get(vendor, ProviderAdapter)
    adapter = cls(
        name=name, tier=tier, vendor=vendor, model=model or f"{name}-model", chat_factory=lambda: chat, timeout_s=5.0
    )  # type: ignore[arg-type]
    adapter.fake = chat  # type: ignore[attr-defined]
    return adapter


def needs(fresh: float = 0.05, complexity: str = "simple", task: str = "summary") -> QueryNeeds:
    levels = ("simple", "moderate", "complex")
    complexity_p = {c: (0.9 if c == complexity else 0.05) for c in levels}
    tasks = (
        "briefing",
        "opposition_research",
        "scenario",
        "crisis",
        "messaging",
        "sentiment_tagging",
        "summary",
        "translation",
        "extraction",
        "fact_lookup",
    )
    task_p = {t: (0.91 if t == task else 0.01) for t in tasks}
    return QueryNeeds(fresh_p=fresh, complexity_p=complexity_p, task_p=task_p)


def fake_registry(
    scripts: Mapping[str, Iterable[Step]], settings: Settings | None = None, health: HealthBoard | None = None
) -> ProviderRegistry:
    """Wire fake adapters for the named default providers (gemini, perplexity, local)."""
    # Hermetic: keys in the developer's environment are ignored, and an unscripted local tier points at a
    # model file that does not exist, so no test silently runs a real provider.
    env = {"STRATEGIST_DATA_DIR": "/nonexistent"}
    if "local" not in scripts:
        env["LOCAL_MODEL_PATH"] = "/nonexistent/model.gguf"
    settings = settings or load_settings(env)
    adapters = {}
    for name, script in scripts.items():
        ps = settings.providers[name]
        vendor = {"gemini": "google", "perplexity": "perplexity", "llamacpp": "local"}[ps.kind]
        adapters[name] = fake_adapter(name, ps.tier, vendor, script, ps.model)
    # Providers without a script are left to the real availability check (no key -> unavailable).
    return ProviderRegistry(settings, adapters=adapters, health=health)
