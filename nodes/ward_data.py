"""ward_data: the ward's own recent posts and news (the backend's database or a JSONL file), as a finding.

Runs beside the gather branches. Its items are cited like web sources; without a configured source, or when
it cannot be read, the briefing rests on web research alone (the reason is kept in the finding).
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graphs.briefing_state import Finding, GatherUpdate, SourceDict, WardDataTask
from graphs.context import Context, context_of
from nodes.policy.events import WardDataRead
from nodes.policy.progress import emit
from providers.ward_data import WardDataError


def ward_data(task: WardDataTask, runtime: Runtime[Context]) -> GatherUpdate:
    """Read the ward's recent items and turn them into one finding with its sources."""
    ctx = context_of(runtime)
    source = ctx.ward_data
    if source is None:
        return {"findings": []}
    limit = ctx.registry.settings.briefing.ward_data_limit
    try:
        items = source.recent(task["ward"], limit)
    except WardDataError as exc:
        emit(runtime, WardDataRead(items=0, error=str(exc)))
        return {"findings": [_finding(None, [], str(exc))]}
    emit(runtime, WardDataRead(items=len(items)))
    if not items:
        return {"findings": []}
    sources: list[SourceDict] = [
        {
            # An item without a URL still needs a stable identity to be cited and corroborated.
            "url": item.url or f"ward-data:{task['ward']}/{i}",
            "title": item.title + (f" ({item.source})" if item.source else ""),
            "date": item.date,
            "snippet": item.content[:400],
            "origin": "ward_data",
        }
        for i, item in enumerate(items)
    ]
    text = "\n".join(f"- {item.date or 'undated'}: {item.title}: {item.content[:300]}" for item in items)
    return {"findings": [_finding(text, sources, None)]}


def _finding(text: str | None, sources: list[SourceDict], error: str | None) -> Finding:
    return {
        "question_id": "ward_data",
        "category": "narrative",
        "text": text,
        "provider": None,
        "model": None,
        "sources": sources,
        "error": error,
    }
