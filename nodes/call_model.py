"""call_model: one attempt on the next provider of the chain. It never raises: it records the outcome.

One attempt per node execution, so each completed provider call is checkpointed before the next step: a killed
process that resumes never pays for a completed call again.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Attempt, Candidate, ChainStep, Role
from providers.base import ModelReply, Prompt
from providers.errors import ProviderError, ProviderUnavailable
from providers.registry import ProviderRegistry

_DEPTH_BRIEF = {
    "quick": "in two or three sentences",
    "standard": "in a few bullet points",
    "deep": "step by step, with risks and a recommendation",
}
_DEPTH_GUIDANCE = {
    "quick": "Answer briefly: the essentials in a few sentences or bullets.",
    "standard": "Give a focused analysis with concrete, actionable points.",
    "deep": "Give a thorough multi-step analysis: assumptions, evidence, options, risks and a recommendation.",
}
_CONTEXT_GUIDANCE = {
    "defensive": "The campaign is on the defensive: weigh risks, threats and rebuttals first.",
    "neutral": "Take a balanced view of opportunities and risks.",
    "offensive": "The campaign is on the offensive: weigh opportunities and openings first.",
}
_CONFIDENCE_LINE = re.compile(r"^\s*confidence\s*[:=]\s*([01](?:\.\d+)?)\s*$", re.IGNORECASE | re.MULTILINE)


def build_prompt(state: AnalysisState) -> Prompt:
    """Render the query with its depth, strategic context, ward and task into a provider-neutral prompt."""
    depth = state.get("depth", "standard")
    context = state.get("context", "neutral")
    task = state.get("classification", {}).get("task", "")
    # One short paragraph: small local models echo long multi-line instructions instead of following them.
    parts = [
        "Answer as a campaign strategist's analyst: factual, specific, non-partisan; never invent facts, polls"
        " or quotes.",
        _DEPTH_GUIDANCE[depth],
        _CONTEXT_GUIDANCE.get(context, _CONTEXT_GUIDANCE["neutral"]),
    ]
    if task:
        parts.append(f"Task: {task.replace('_', ' ')}.")
    if state.get("ward"):
        parts.append(f"Ward: {state['ward']}.")
    parts.append("Finish with a line 'Confidence: <0 to 1>'.")
    brief = f"Answer as a campaign strategy analyst, {_DEPTH_BRIEF[depth]}."
    return Prompt(system=" ".join(parts), user=state["query"], brief=brief)


def split_stated_confidence(text: str) -> tuple[str, float | None]:
    """Remove the model's trailing confidence line and return it as a number (None when absent)."""
    matches = list(_CONFIDENCE_LINE.finditer(text))
    if not matches:
        return text.strip(), None
    last = matches[-1]
    value = float(last.group(1))
    cleaned = (text[: last.start()] + text[last.end() :]).strip()
    return cleaned, value if 0.0 <= value <= 1.0 else None


def make_attempt(
    registry: ProviderRegistry,
    step: ChainStep,
    role: Role,
    *,
    reply: ModelReply | None,
    error: ProviderError | None,
    latency_ms: float,
) -> Attempt:
    price = registry.price_of(step["provider"])
    tokens_in = reply.input_tokens if reply else 0
    tokens_out = reply.output_tokens if reply else 0
    # A failed call that got no usage back is recorded at zero cost: the vendors do not bill errors, and a
    # timed-out call's usage is unknowable from our side.
    cost = price.cost_usd(tokens_in, tokens_out) if reply else 0.0
    return {
        "provider": step["provider"],
        "model": reply.model if reply else step["model"],
        "tier": step["tier"],
        "role": role,
        "outcome": "ok" if reply else "error",
        "error_class": error.error_class if error else None,
        "error": str(error) if error else None,
        "latency_ms": round(latency_ms, 1),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cost_usd": round(cost, 8),
    }


def attempt_call(
    ctx: Context, step: ChainStep, prompt: Prompt, deadline_at: float, role: Role
) -> tuple[Attempt, ModelReply | None, ProviderError | None]:
    """Make one bounded call and record it; shared by call_model and cross_check."""
    registry = ctx.registry
    remaining = deadline_at - ctx.clock()
    started = time.monotonic()
    reply: ModelReply | None = None
    error: ProviderError | None = None
    try:
        if not registry.availability(step["provider"]).available:
            # Availability changed since routing (a circuit opened): do not send the call.
            raise ProviderUnavailable(registry.availability(step["provider"]).reason, provider=step["provider"])
        reply = registry.adapter(step["provider"]).invoke(prompt, timeout_s=remaining)
    except ProviderError as exc:
        error = exc
    latency_ms = (time.monotonic() - started) * 1000
    registry.health.record(
        step["provider"], ok=reply is not None, latency_ms=latency_ms, error_class=error.error_class if error else None
    )
    return make_attempt(registry, step, role, reply=reply, error=error, latency_ms=latency_ms), reply, error


def candidate_from(reply: ModelReply, step: ChainStep, vendor: str) -> Candidate:
    text, stated = split_stated_confidence(reply.text)
    return {
        "text": text,
        "provider": step["provider"],
        "model": reply.model,
        "tier": step["tier"],
        "vendor": vendor,
        "finish_reason": reply.finish_reason,
        "citations": [{"url": c.url, "title": c.title, "date": c.date} for c in reply.citations],
        "mean_logprob": reply.mean_logprob,
        "stated_confidence": stated,
    }


def call_model(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = context_of(runtime)
    cursor = state.get("cursor", 0)
    step = state["chain"][cursor]
    deadline_at = ctx.deadline_at or state["deadline_at"]
    runtime.stream_writer({"event": "attempt_start", "provider": step["provider"], "model": step["model"]})
    attempt, reply, error = attempt_call(ctx, step, build_prompt(state), deadline_at, "answer")
    runtime.stream_writer({"event": "attempt_end", **attempt})
    return {
        "attempts": [attempt],
        "cursor": cursor + 1,
        "candidate": candidate_from(reply, step, ctx.registry.vendor_of(step["provider"])) if reply else None,
        "stop_reason": str(error) if error is not None and error.disposition == "stop" else None,
        "deadline_passed": ctx.clock() >= deadline_at,
    }


def route_after_call(state: AnalysisState) -> Literal["validate", "call_model", "score"]:
    """Validate a successful answer; on failure try the next provider while the chain and deadline allow."""
    if state.get("candidate") is not None:
        return "validate"
    if state.get("stop_reason") or state.get("deadline_passed"):
        return "score"
    return "call_model" if state.get("cursor", 0) < len(state.get("chain", [])) else "score"


def route_after_route(state: AnalysisState) -> Literal["call_model", "score"]:
    return "call_model" if state.get("chain") else "score"
