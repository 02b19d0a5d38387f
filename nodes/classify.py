"""classify: what the query needs (fresh facts? how complex? which task?), as probabilities. No network."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Classification, ClassifyUpdate
from nodes.policy.query_classifier import QueryNeeds, default_classifier


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


def classify(state: AnalysisState, runtime: Runtime[Context]) -> ClassifyUpdate:
    """Estimate what the query needs; on the first run, also fix the analysis's start and deadline."""
    ctx = context_of(runtime)
    # The default classifier's artifact loads on first use (default_classifier is cached), so tests that inject
    # a classifier never pay for it.
    predict = ctx.classifier if ctx.classifier is not None else default_classifier().predict
    settings = ctx.registry.settings
    # Content to analyse is classified with what is to be done with it: "analyse this post" needs no fresh facts
    # even when the post is about the news.
    instructions = state.get("instructions")
    text = f"{instructions}\n\nContent:\n{state['query']}" if instructions else state["query"]
    classification = classification_of(predict(text), settings.routing.fresh_threshold)
    now = ctx.clock()
    update: ClassifyUpdate = {"classification": classification}
    if "started_at" not in state:
        depth = state.get("depth", "standard")
        deadline_s = state.get("constraints", {}).get("deadline_s") or settings.deadlines.for_depth(depth)
        update["started_at"] = now
        update["deadline_at"] = now + deadline_s
    return update
