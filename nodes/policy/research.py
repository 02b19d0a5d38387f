"""The research plan of a ward briefing: which questions to ask, by depth and strategic context.

Depth sets the breadth (how many questions, how many key intelligence items the writer gives, whether another
vendor cross-checks); context sets the questions themselves and the stance the writer takes. The plan is data
and a pure function, no model call: it is instant, free and the same for the same request, so a cached
briefing and a fresh one answer the same questions.

Each context has its questions in priority order, one per category at a time (narrative, opposition, public
sentiment, development), so a quick briefing still covers the two categories that matter most for its stance.
"""

from __future__ import annotations

from graphs.briefing_state import Category, Question
from graphs.state import StrategicContext
from providers.config import Depth

QUESTIONS_BY_DEPTH: dict[Depth, int] = {"quick": 2, "standard": 4, "deep": 6}
ITEMS_BY_DEPTH: dict[Depth, int] = {"quick": 3, "standard": 5, "deep": 8}

_BANK: dict[StrategicContext, list[tuple[Category, str]]] = {
    "defensive": [
        (
            "opposition",
            "What attacks, allegations or criticism have opponents made against our party or candidate "
            "in {ward} in the last 30 days, and how widely have they spread?",
        ),
        (
            "public_sentiment",
            "Which local grievances in {ward} (water, roads, drainage, power, jobs) are voters "
            "blaming on the incumbent, and how strongly?",
        ),
        (
            "narrative",
            "What false or misleading claims about our record in {ward} are circulating, and what do "
            "verifiable facts say?",
        ),
        (
            "development",
            "Which promised works in {ward} are delayed or incomplete, and what do official sources report on them?",
        ),
        ("opposition", "Which local leaders or groups in {ward} have switched sides or shown discontent recently?"),
        (
            "public_sentiment",
            "What do recent local news reports and community meetings in {ward} say about trust "
            "in our local representatives?",
        ),
    ],
    "neutral": [
        ("narrative", "What are the main political stories and issues in {ward} over the last 30 days?"),
        ("public_sentiment", "What do residents of {ward} say are their most pressing civic problems right now?"),
        (
            "opposition",
            "What are the main parties and candidates active in {ward} doing: rallies, promises, alliances?",
        ),
        (
            "development",
            "What development works, schemes or budget allocations affect {ward} this year, and what is their status?",
        ),
        ("narrative", "How have local and regional media covered {ward} recently, and which outlets lead?"),
        ("public_sentiment", "Which communities or voter groups in {ward} are shifting, and on what issues?"),
    ],
    "offensive": [
        (
            "opposition",
            "What weaknesses, broken promises or controversies of the sitting representative and "
            "rival parties in {ward} are documented in recent news?",
        ),
        (
            "public_sentiment",
            "Which voter groups in {ward} are dissatisfied with the incumbent and open to a change, and why?",
        ),
        (
            "development",
            "Which needs in {ward} (infrastructure, services, schemes) are unmet and could anchor a credible promise?",
        ),
        ("narrative", "Which local issues in {ward} are gaining media attention that our campaign could lead on?"),
        ("opposition", "Where are rival parties in {ward} divided or losing local leaders?"),
        ("public_sentiment", "What events or gatherings in {ward} in the coming weeks offer outreach opportunities?"),
    ],
}

STANCE: dict[StrategicContext, str] = {
    "defensive": (
        "Stance: defensive. The campaign is under pressure in this ward: put threats and risks first, with "
        "rebuttals grounded in facts and concrete damage control; opportunities only where they shore up support."
    ),
    "neutral": "Stance: neutral. Give a balanced picture of opportunities and risks, ranked by impact.",
    "offensive": (
        "Stance: offensive. The campaign is on the attack in this ward: put opportunities and the opponents' "
        "documented weaknesses first, with actions that take the initiative; risks only as guardrails."
    ),
}


def plan_questions(ward: str, depth: Depth, context: StrategicContext) -> list[Question]:
    """Return the research questions for a ward: as many as the depth asks, from the context's bank."""
    bank = _BANK[context]
    return [
        {"id": f"q{i + 1}", "category": category, "text": text.format(ward=ward)}
        for i, (category, text) in enumerate(bank[: QUESTIONS_BY_DEPTH[depth]])
    ]


def cross_checked(depth: Depth) -> bool:
    """Say whether a briefing of this depth has its key intelligence checked by another vendor."""
    return depth == "deep"
