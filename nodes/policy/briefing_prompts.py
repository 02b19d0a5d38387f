"""The prompts of the ward briefing: one research question, the structured briefing, the plain fallback, the check.

Sources are shown to the writer and the checker numbered, with their credibility, so the writer can say which
sources each key intelligence item rests on and weigh weak ones less; the numbers are how the briefing's
``source_count`` and per-item confidence are tied to real sources.
"""

from __future__ import annotations

import json

from graphs.briefing_result import BriefingDraft
from graphs.briefing_state import Finding, Question, ScoredSource
from graphs.state import StrategicContext
from nodes.policy.research import STANCE
from nodes.policy.structured import schema_for_prompt
from providers.base import Prompt
from providers.config import Depth

_SNIPPET_CHARS = 400
_FINDING_CHARS = 1500


def gather_prompt(ward: str, context: StrategicContext, question: Question) -> Prompt:
    """Ask one research question about the ward, with sources."""
    system = (
        "You research local politics for a campaign strategist. Answer from recent, verifiable reporting and "
        "official sources; cite every source; say plainly when you find nothing. Never invent facts, polls or "
        f"quotes. {STANCE[context]}"
    )
    return Prompt(
        system=system,
        user=f"Ward: {ward}.\n{question['text']}",
        brief=f"Answer with recent facts about {ward}, citing sources.",
    )


def _sources_block(sources: list[ScoredSource]) -> str:
    lines = []
    for s in sources:
        date = f", {s['date']}" if s["date"] else ""
        snippet = f": {s['snippet'][:_SNIPPET_CHARS]}" if s["snippet"] else ""
        lines.append(f"[{s['id']}] {s['title']} ({s['url']}{date}; credibility {s['credibility']:.2f}){snippet}")
    return "\n".join(lines) or "(no sources were found)"


def _findings_block(questions: list[Question], findings: list[Finding]) -> str:
    asked = {q["id"]: q["text"] for q in questions}
    parts = []
    for f in findings:
        if not f["text"]:
            continue
        title = asked.get(f["question_id"], "The ward's own recent posts and news")
        parts.append(f"Q: {title}\nA: {f['text'][:_FINDING_CHARS]}")
    return "\n\n".join(parts) or "(no research answers came back)"


def write_prompt(
    ward: str,
    depth: Depth,
    context: StrategicContext,
    questions: list[Question],
    findings: list[Finding],
    sources: list[ScoredSource],
    items: int,
    feedback: str | None,
) -> Prompt:
    """Ask for the briefing as one JSON object in BriefingDraft's schema (with the last error, on a retry)."""
    system = (
        "You are a campaign strategist's chief analyst. Write an internal ward briefing as ONE JSON object and "
        "nothing else, matching this JSON Schema exactly:\n"
        f"{schema_for_prompt(BriefingDraft)}\n"
        f"Give about {items} key_intelligence items; each lists in `sources` the numbers of the sources it rests "
        "on (an empty list when none supports it). Prefer credible sources; never invent facts, numbers or "
        "quotes; priorities run from 1 (highest) to 5. `confidence` is your own certainty in [0, 1]. "
        f"{STANCE[context]}"
    )
    user = (
        f"Ward: {ward}. Depth: {depth}.\n\nResearch:\n{_findings_block(questions, findings)}\n\n"
        f"Sources:\n{_sources_block(sources)}"
    )
    if feedback:
        user += f"\n\nYour previous answer was rejected: {feedback}\nAnswer again with one JSON object that fixes this."
    return Prompt(system=system, user=user, brief="Answer with one JSON object only.")


def plain_prompt(ward: str, context: StrategicContext, findings: list[Finding]) -> Prompt:
    """Ask for a short plain-text overview: the degraded path when no structured briefing could be written."""
    known = "\n".join(f"- {f['text'][:300]}" for f in findings if f["text"]) or "(no fresh research is available)"
    return Prompt(
        system=(
            "You are a campaign analyst. In three or four sentences, give a cautious strategic overview of the "
            f"ward from what is known below; say what is uncertain. {STANCE[context]}"
        ),
        user=f"Ward: {ward}.\nKnown:\n{known}",
        brief=f"Summarise the political situation in {ward} in three sentences.",
    )


def check_prompt(ward: str, items: list[str], sources: list[ScoredSource]) -> Prompt:
    """Ask another vendor whether each key intelligence item is supported by the sources and what it knows."""
    numbered = json.dumps([{"item": i, "content": text} for i, text in enumerate(items)], ensure_ascii=False)
    return Prompt(
        system=(
            "You fact-check a campaign briefing. For each item, answer whether the sources and reliable "
            "knowledge support it. Reply with ONE JSON object and nothing else: "
            '{"verdicts": [{"item": <number>, "verdict": "supported" | "unsupported" | "contradicted", '
            '"note": "<one sentence>"}]}'
        ),
        user=f"Ward: {ward}.\nItems:\n{numbered}\n\nSources:\n{_sources_block(sources)}",
        brief="Answer with one JSON object only.",
    )
