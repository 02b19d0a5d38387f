"""credibility: score every source the research brought back (nodes/policy/credibility.py); plan the writers.

Runs once all gather branches have finished (the fan-in). Sources are merged across branches, so one that
several questions brought back is scored once, corroborated.
"""

from __future__ import annotations

import datetime as dt

from langgraph.runtime import Runtime

from graphs.briefing_state import BriefingState, CredibilityUpdate
from graphs.context import Context, context_of
from nodes.policy.briefing_chains import write_chain
from nodes.policy.credibility import score_sources
from nodes.policy.events import CredibilityScored
from nodes.policy.progress import emit


def credibility(state: BriefingState, runtime: Runtime[Context]) -> CredibilityUpdate:
    """Score the merged sources (reputation, recency, corroboration) and order the writers."""
    ctx = context_of(runtime)
    today = dt.date.fromtimestamp(ctx.clock())
    sources = score_sources(state.get("findings", []), ctx.registry.settings.sources, today)
    chain, notes = write_chain(ctx.registry)
    weak = sum(1 for s in sources if s["credibility"] < 0.5)
    emit(runtime, CredibilityScored(sources=len(sources), weak=weak))
    return {
        "sources": sources,
        "write_chain": chain,
        "write_cursor": 0,
        "write_tries": 0,
        "notes": list(dict.fromkeys(state.get("notes", []) + notes)),
    }
