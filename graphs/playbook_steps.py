"""The document graph's steps: plan (writers, deadline, whether fresh facts are needed) and draft (one
structured attempt per execution: validated against the pydantic model, retried once with the validation error,
then the next provider), as the briefing's writer does. At the nodes' layer; they import no node."""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from pydantic import BaseModel

from graphs.context import Context, context_of
from graphs.playbook_result import PlaybookDraft, ScenarioDraft
from graphs.playbook_state import DocumentState, DraftUpdate, PlanUpdate
from nodes.policy.attempts import attempt_call, attempt_timeout_s
from nodes.policy.briefing_chains import WRITE_TIERS, _chain
from nodes.policy.events import AttemptStarted
from nodes.policy.playbook_prompts import document_prompt
from nodes.policy.progress import emit
from nodes.policy.structured import parse_structured

MODELS: dict[str, type[BaseModel]] = {"playbook": PlaybookDraft, "scenario": ScenarioDraft}
DEADLINE_S = 120.0


def plan(state: DocumentState, runtime: Runtime[Context]) -> PlanUpdate:
    """Order the writers (premium, realtime, local); set the grounding analysis's input when facts are needed."""
    ctx = context_of(runtime)
    chain, _ = _chain(ctx.registry, WRITE_TIERS, "writer")
    update: PlanUpdate = {"chain": chain, "cursor": 0, "deadline_at": ctx.deadline_at or ctx.clock() + DEADLINE_S}
    if state.get("grounding_query"):
        update |= {
            "query": str(state["grounding_query"]),
            "depth": "quick",
            "context": "defensive",
            "constraints": {"require_citations": True},
        }
    return update


def route_after_plan(state: DocumentState) -> Literal["ground", "draft"]:
    """Gather fresh facts first when the type needs them."""
    return "ground" if state.get("grounding_query") else "draft"


def draft(state: DocumentState, runtime: Runtime[Context]) -> DraftUpdate:
    """Make one structured attempt; record an invalid answer and retry once with its error, then move on."""
    ctx = context_of(runtime)
    chain, cursor, tries = state.get("chain", []), state.get("cursor", 0), state.get("tries", 0)
    deadline_at = state["deadline_at"]
    if cursor >= len(chain) or ctx.clock() >= deadline_at:
        return {"done": True, "document": None, "writer": None}
    step = chain[cursor]
    model = MODELS[state["kind"]]
    prompt = document_prompt(
        model, state["ward"], state["brief"], state.get("language", "en"), state.get("result"), state.get("feedback")
    )
    policy = ctx.registry.settings.resilience.retry
    timeout_s = attempt_timeout_s(deadline_at - ctx.clock(), cursor + 1 < len(chain), policy)
    emit(runtime, AttemptStarted(provider=step["provider"], model=step["model"], stage="write"))
    attempt, reply, _error = attempt_call(ctx.registry, ctx.clock, step, prompt, timeout_s, "write")
    move_on: DraftUpdate = {"cursor": cursor + 1, "tries": 0, "feedback": None}
    if reply is None:
        return {"attempts": [attempt], **move_on}
    document, problem = parse_structured(reply.text, model)
    if document is None:
        attempt |= {"outcome": "invalid", "error_class": "invalid_answer", "error": f"invalid answer: {problem}"}
        if tries == 0:
            return {"attempts": [attempt], "tries": 1, "feedback": problem}
        return {"attempts": [attempt], **move_on}
    writer = {"provider": step["provider"], "model": reply.model, "tier": step["tier"]}
    return {"attempts": [attempt], "document": document.model_dump(mode="json"), "writer": writer, "done": True}


def route_after_draft(state: DocumentState) -> Literal["draft", "__end__"]:
    """Stop with a valid document or with no writer left."""
    return "__end__" if state.get("done") else "draft"
