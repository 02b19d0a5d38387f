"""State schemas of the analysis graph: input, internal state, output, and one partial update per node.

State holds JSON-native values only (TypedDicts, lists, numbers, strings): checkpoints then survive any
serializer and any upgrade of our own classes. The public pydantic ``AnalysisResult`` (graphs/result.py) is
built from the final state; the output channel (graphs/result.py ``AnalysisOutput``) carries its JSON form.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from typing_extensions import TypedDict

from providers.config import Depth, Tier

# "cancelled": the loser of a hedged pair, abandoned when the other answered first (its cost is estimated).
Outcome = Literal["ok", "error", "invalid", "skipped", "cancelled"]
# "gather" and "write": the ward briefing's research calls and its writer (graphs/briefing.py).
Role = Literal["answer", "cross_check", "gather", "write", "research"]
StrategicContext = Literal["defensive", "neutral", "offensive"]


class Constraints(TypedDict, total=False):
    max_cost_usd: float
    deadline_s: float
    require_citations: bool
    cost_sensitive: bool
    cross_check: bool


class AnalysisInput(TypedDict):
    query: str
    instructions: NotRequired[str | None]  # set when the query is content to analyse (graphs/request.py)
    depth: NotRequired[Depth]
    ward: NotRequired[str | None]
    context: NotRequired[StrategicContext]
    constraints: NotRequired[Constraints]
    # A conversation's earlier turns, already trimmed to a token budget (graphs/conversation.py); the query is
    # the latest message, classified and routed on its own.
    history: NotRequired[str | None]


class ChainStep(TypedDict):
    provider: str
    tier: Tier
    model: str
    reason: str
    # Inadequate for the query's need (its answer is degraded): asked only after every adequate step failed.
    last_resort: NotRequired[bool]
    # It had stopped answering when the analysis was routed (nodes/route.py put it behind the ones that answer):
    # it is not asked for a second opinion either (nodes/policy/checkers.py).
    silent: NotRequired[bool]


class Attempt(TypedDict):
    provider: str
    model: str
    tier: Tier
    role: Role
    outcome: Outcome
    error_class: str | None
    error: str | None
    latency_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    # The model asked for; ``model`` is the one that answered (as the provider reported it), and is what is priced.
    configured_model: NotRequired[str]
    started_at: NotRequired[float]  # wall-clock epoch seconds (the context's clock) when the call went out
    hedge: NotRequired[bool]  # started in parallel with the previous chain step, which was slow to answer


class CitationDict(TypedDict):
    url: str
    title: str
    date: str


class Candidate(TypedDict):
    """The answer of the last successful attempt, before validation."""

    text: str
    provider: str
    model: str
    tier: Tier
    vendor: str
    finish_reason: str
    citations: list[CitationDict]
    mean_logprob: float | None
    stated_confidence: float | None  # the model's own "Confidence: x" line, when it gave one


class Rejection(TypedDict):
    attempt_index: int
    reason: str


class Classification(TypedDict):
    fresh_p: float
    complexity_p: dict[str, float]
    task_p: dict[str, float]
    complexity: str
    task: str
    needs_fresh: bool


class ClaimVerdictDict(TypedDict):
    claim: str
    verdict: Literal["supports", "contradicts", "not_addressed"]
    reason: str


class CrossCheck(TypedDict):
    provider: str
    model: str
    agreement: float
    method: str
    text: str
    verdicts: NotRequired[list[ClaimVerdictDict]]  # the checker's verdict on each claim of the served answer
    local_agreement: NotRequired[float]  # the local claim comparison of the two answers (the second opinion)
    detail: NotRequired[str]


class Superseded(TypedDict):
    """The first answer, when a disagreeing checker's answer was better supported and served instead."""

    provider: str
    model: str
    text: str


class Escalation(TypedDict):
    """The confidence-gated cascade's decision on the first validated answer, and what came of it."""

    decision: Literal["requested", "escalate", "accept", "not_possible", "off"]
    reason: str
    raw: float | None  # preliminary raw confidence of the first answer, before any cross-check
    calibrated: float
    threshold: float
    outcome: NotRequired[str]  # set by cross_check: agreement, and which answer is served
    superseded: NotRequired[Superseded]


class AnalysisState(AnalysisInput):
    deadline_at: NotRequired[float]  # wall-clock epoch seconds
    started_at: NotRequired[float]
    classification: NotRequired[Classification]
    chain: NotRequired[list[ChainStep]]
    reasons: NotRequired[list[str]]
    routing_mode: NotRequired[str]
    shadow: NotRequired[dict[str, object] | None]  # what intelligent routing would have done (shadow mode)
    estimated_cost_usd: NotRequired[float]
    # What the plan can spend at most (every chain step, the research step and a second opinion), reserved
    # against the spend caps; step_costs_usd is each chain step's estimate (the first includes the research).
    spend_ceiling_usd: NotRequired[float]
    step_costs_usd: NotRequired[list[float]]
    baseline_estimate_usd: NotRequired[float]
    cursor: NotRequired[int]  # index of the next chain step to try
    research_step: NotRequired[ChainStep | None]  # research-then-reason: the realtime step run before the chain
    research: NotRequired[ResearchNote | None]  # what the research step found (None: it failed)
    budget_reservation: NotRequired[dict[str, object]]  # spend reserved by route, settled by score
    # Spend reserved on top before a call route's reservation does not hold (nodes/policy/budget.py: Cover).
    budget_extra: Annotated[list[dict[str, object]], operator.add]
    attempts: Annotated[list[Attempt], operator.add]
    candidate: NotRequired[Candidate | None]
    answer: NotRequired[Candidate | None]  # the validated answer
    rejections: Annotated[list[Rejection], operator.add]
    deadline_passed: NotRequired[bool]  # measured by the last node, so routers stay pure
    retry_at: NotRequired[float | None]  # set by call_model: retry the same chain step, not before this time
    stop_reason: NotRequired[str | None]  # set when an error ends the analysis (bad request)
    cross_chain: NotRequired[list[ChainStep]]
    cross_cursor: NotRequired[int]
    cross_check: NotRequired[CrossCheck | None]
    escalation: NotRequired[Escalation | None]  # computed by validate, so route_after_validate stays pure
    result: NotRequired[dict[str, Any]]


# --- what each node returns: a partial update of AnalysisState ----------------------------------------------


class ClassifyUpdate(TypedDict, total=False):
    classification: Classification
    started_at: float
    deadline_at: float


class RouteUpdate(TypedDict, total=False):
    chain: list[ChainStep]
    reasons: list[str]
    routing_mode: str
    shadow: dict[str, object] | None
    estimated_cost_usd: float
    spend_ceiling_usd: float
    step_costs_usd: list[float]
    baseline_estimate_usd: float
    cursor: int
    # Research, then reason: the realtime step whose cited facts the chain's premium answer reasons over.
    research_step: ChainStep | None
    # The spend reserved against the caps for this analysis (graphs/stores/budget.py), settled by score.
    budget_reservation: dict[str, object]


class CallUpdate(TypedDict, total=False):
    attempts: list[Attempt]
    budget_extra: list[dict[str, object]]
    candidate: Candidate | None
    retry_at: float | None
    stop_reason: str | None
    cursor: int
    deadline_passed: bool


class ValidateUpdate(TypedDict, total=False):
    answer: Candidate
    candidate: Candidate | None
    rejections: list[Rejection]
    escalation: Escalation
    cross_chain: list[ChainStep]
    deadline_passed: bool


class ResearchNote(TypedDict):
    """The research step's findings: fresh facts with their sources, for the reasoning step to cite."""

    provider: str
    text: str
    citations: list[CitationDict]


class ResearchUpdate(TypedDict, total=False):
    attempts: list[Attempt]
    budget_extra: list[dict[str, object]]
    research: ResearchNote | None
    deadline_passed: bool


class CrossCheckUpdate(TypedDict, total=False):
    attempts: list[Attempt]
    budget_extra: list[dict[str, object]]
    rejections: list[Rejection]  # a check whose verdict could not be read
    answer: Candidate
    cross_chain: list[ChainStep]
    cross_cursor: int
    cross_check: CrossCheck
    escalation: Escalation
    deadline_passed: bool


class ScoreUpdate(TypedDict, total=False):
    result: dict[str, Any]
