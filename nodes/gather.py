"""gather: one research question, answered with its sources by the research chain (one parallel branch).

The branch walks the chain with the analysis graph's hedged calls (nodes/policy/hedging.py): when the realtime
provider is slower than it usually is, the next provider starts in parallel and the first usable answer wins.
An answer from a search-backed provider without sources is unusable (fresh facts answered from memory) and the
next provider is asked; the premium fallback answers from its own knowledge, without sources.

The branch is one LangGraph task: its attempts and finding are checkpointed when it finishes, so a briefing
resumed after a crash does not ask a finished question again (only the branches that were still running).
"""

from __future__ import annotations

from typing import cast

from langgraph.runtime import Runtime

from graphs.briefing_state import Finding, GatherTask, GatherUpdate, SourceDict
from graphs.context import Context, context_of
from graphs.state import AnalysisState, Attempt, Classification
from nodes.policy.briefing_prompts import gather_prompt
from nodes.policy.events import GatherStarted
from nodes.policy.hedging import race, record_group
from nodes.policy.progress import emit

# What a research question needs, in the analysis graph's terms: fresh facts, with sources where the provider
# can give them (validated by nodes/policy/answers.py, as every answer is).
RESEARCH_NEEDS: Classification = {
    "fresh_p": 1.0,
    "complexity_p": {"moderate": 1.0},
    "task_p": {"fact_lookup": 1.0},
    "complexity": "moderate",
    "task": "fact_lookup",
    "needs_fresh": True,
}


def gather(task: GatherTask, runtime: Runtime[Context]) -> GatherUpdate:
    """Answer one research question: walk the chain (hedged) until a usable answer with its sources."""
    ctx = context_of(runtime)
    registry = ctx.registry
    question = task["question"]
    deadline_at = task["deadline_at"]
    if ctx.deadline_at is not None:
        # A resumed briefing has a fresh deadline: the research gets its share of what is left.
        now = ctx.clock()
        deadline_at = now + (ctx.deadline_at - now) * registry.settings.briefing.gather_share
    prompt = gather_prompt(task["ward"], task["context"], question)
    chain = task["chain"]
    # The hedging machinery reads the chain, the query (for cost estimates) and the needs from an analysis state.
    view = cast(
        AnalysisState,
        {"query": prompt.user, "chain": chain, "classification": RESEARCH_NEEDS, "constraints": {}, "attempts": []},
    )
    emit(runtime, GatherStarted(question=question["id"], text=question["text"]))
    attempts: list[Attempt] = []
    finding: Finding = {
        "question_id": question["id"],
        "category": question["category"],
        "text": None,
        "provider": None,
        "model": None,
        "sources": [],
        "error": "no research provider is available" if not chain else None,
    }
    cursor = 0
    while cursor < len(chain) and ctx.clock() < deadline_at:
        group, reservation = race(
            registry, ctx.clock, view, cursor, prompt, deadline_at, runtime.stream_writer, "gather"
        )
        recorded: list[Attempt] = [a | {"role": "gather"} for a in record_group(registry, view, group, reservation)]
        attempts += recorded
        chosen = group.chosen
        if chosen is not None and chosen.reply is not None and chosen.problem is None:
            reply = chosen.reply
            sources: list[SourceDict] = [
                {"url": c.url, "title": c.title, "date": c.date, "snippet": "", "origin": "web"}
                for c in reply.citations
            ]
            finding |= {
                "text": reply.text.strip(),
                "provider": chosen.step["provider"],
                "model": reply.model,
                "sources": sources,
                "error": None,
            }
            break
        failures = [a for a in recorded if a["outcome"] != "ok"]
        finding["error"] = "; ".join(f"{a['provider']}: {a['error'] or a['error_class']}" for a in failures) or None
        cursor += len(group.calls)
    if finding["text"] is None and finding["error"] is None:
        finding["error"] = "the research deadline passed"
    return {"findings": [finding], "attempts": attempts}
