"""Research-then-reason prompts: what the research step is asked, and how the reasoning step reads its findings.

The research step gathers facts only (a search model is good at that and weaker at strategy); the reasoning step
gets the findings with numbered sources and is told to cite them as [n], so the premium answer's fresh facts
are traceable to the sources the realtime provider found.
"""

from __future__ import annotations

from graphs.state import AnalysisState, ResearchNote
from providers.base import Prompt


def research_prompt(state: AnalysisState) -> Prompt:
    """Ask for the current facts behind the query, with sources; no recommendations."""
    system = (
        "You research for a campaign strategist. List the current, verifiable facts relevant to the question "
        "(recent news, events, statements, figures, dates), each with its source. Do not give recommendations."
    )
    brief = "List the current facts with their sources, no recommendations."
    return Prompt(system=system, user=state["query"], brief=brief)


def with_research(user: str, note: ResearchNote) -> str:
    """Append the research findings and their numbered sources to the reasoning step's user message."""
    sources = "\n".join(f"[{i}] {c['title'] or c['url']} {c['url']}" for i, c in enumerate(note["citations"], 1))
    return f"{user}\n\nFresh facts found by web research (cite them as [n] where you use them):\n{note['text']}" + (
        f"\n\nSources:\n{sources}" if sources else ""
    )
