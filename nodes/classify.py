"""classify: what the query needs (fresh facts? how complex? which task?), as probabilities. No network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Classification

if TYPE_CHECKING:
    from nodes.query_classifier import QueryNeeds


def classification_of(needs: QueryNeeds, fresh_threshold: float) -> Classification:
    """Turn the classifier's probabilities into the routing input (probabilities plus argmax labels)."""
    return {
        "fresh_p": round(needs.fresh_p, 4),
        "complexity_p": {k: round(v, 4) for k, v in needs.complexity_p.items()},
        "task_p": {k: round(v, 4) for k, v in needs.task_p.items()},
        "complexity": needs.complexity,
        "task": needs.task,
        "needs_fresh": needs.fresh_p >= fresh_threshold,
    }


def classify(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = context_of(runtime)
    if ctx.classifier is not None:
        predict = ctx.classifier
    else:
        # Imported here: loading the model artifact is the slowest part of start-up and `route --json`
        # dry runs or tests with an injected classifier should not pay for it twice.
        from nodes.query_classifier import default_classifier

        predict = default_classifier().predict
    settings = ctx.registry.settings
    classification = classification_of(predict(state["query"]), settings.routing.fresh_threshold)
    now = ctx.clock()
    update: dict[str, Any] = {"classification": classification}
    if "started_at" not in state:
        depth = state.get("depth", "standard")
        deadline_s = state.get("constraints", {}).get("deadline_s") or settings.deadlines.for_depth(depth)
        update |= {"started_at": now, "deadline_at": now + deadline_s}
    return update
