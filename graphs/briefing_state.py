"""State schemas of the ward-briefing graph: input, internal state, the gather fan-out's task, node updates.

As in the analysis graph (graphs/state.py), state holds JSON-native values only. Lists that parallel branches
write to (``findings``, ``attempts``) have reducers, so each gather branch adds its own and none overwrites
another's. The public pydantic ``Briefing`` and ``BriefingResult`` are in graphs/briefing_result.py.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from typing_extensions import TypedDict

from graphs.state import Attempt, ChainStep, StrategicContext
from providers.config import Depth

Category = Literal["narrative", "opposition", "public_sentiment", "development"]
Origin = Literal["web", "ward_data"]
WriteMode = Literal["structured", "plain"]
Verdict = Literal["supported", "unsupported", "contradicted"]


class BriefingInput(TypedDict):
    ward: str
    depth: NotRequired[Depth]
    context: NotRequired[StrategicContext]


class Question(TypedDict):
    id: str  # "q1", "q2", ...: how findings and sources refer back to the question
    category: Category
    text: str


class SourceDict(TypedDict):
    url: str
    title: str
    date: str
    snippet: str
    origin: Origin


class Finding(TypedDict):
    """What one gather branch (one question) or the ward's own data brought back."""

    question_id: str  # "ward_data" for the backend's own posts and news
    category: Category
    text: str | None  # None: nothing came back (error says why)
    provider: str | None
    model: str | None
    sources: list[SourceDict]
    error: str | None


class ScoredSource(TypedDict):
    """A source as the writer sees it (numbered from 1) and as the briefing cites it."""

    id: int
    url: str
    title: str
    date: str
    snippet: str
    origin: Origin
    credibility: float
    reputation: float
    recency: float | None
    branches: int  # how many gather branches cited it: corroboration
    question_ids: list[str]


class WriteStep(ChainStep):
    mode: WriteMode


class Writer(TypedDict):
    """Who wrote the draft, and what the confidence machinery needs to know about that answer."""

    provider: str
    model: str
    tier: str
    vendor: str
    mode: WriteMode
    finish_reason: str
    mean_logprob: float | None
    stated_confidence: float | None


class ItemVerdict(TypedDict):
    item: int  # index into the draft's key_intelligence
    verdict: Verdict
    note: str


class BriefingCheck(TypedDict):
    provider: str
    model: str
    agreement: float  # share of key intelligence items the checker found supported
    verdicts: list[ItemVerdict]


class GatherTask(TypedDict):
    """What the plan node sends to one gather branch (LangGraph ``Send``): one question and the chain to ask."""

    ward: str
    context: StrategicContext
    question: Question
    chain: list[ChainStep]
    deadline_at: float
    # This question's part of what plan reserved against the spend caps (None: none held; its call is reserved
    # when its branch runs, if it fits then).
    held: NotRequired[dict[str, object] | None]


class WardDataTask(TypedDict):
    ward: str
    deadline_at: float


class BriefingState(BriefingInput):
    started_at: NotRequired[float]
    deadline_at: NotRequired[float]
    gather_deadline_at: NotRequired[float]
    questions: NotRequired[list[Question]]
    gather_chain: NotRequired[list[ChainStep]]
    notes: NotRequired[list[str]]  # why providers were left out of a chain, in words
    findings: Annotated[list[Finding], operator.add]
    attempts: Annotated[list[Attempt], operator.add]
    sources: NotRequired[list[ScoredSource]]
    write_chain: NotRequired[list[WriteStep]]
    write_cursor: NotRequired[int]
    write_tries: NotRequired[int]  # invalid answers from the current step so far (one retry with the error)
    write_feedback: NotRequired[str | None]  # the last validation error, fed back to the retry
    retry_at: NotRequired[float | None]
    write_done: NotRequired[bool]  # the writer chain is exhausted or the deadline passed
    draft: NotRequired[dict[str, Any] | None]  # a validated BriefingDraft (JSON), or the fallback assembly
    writer: NotRequired[Writer | None]
    fallback: NotRequired[bool]
    check_chain: NotRequired[list[ChainStep]]
    check_cursor: NotRequired[int]
    check: NotRequired[BriefingCheck | None]
    sanitised: NotRequired[dict[str, Any]]
    compliance: NotRequired[dict[str, Any]]
    deadline_passed: NotRequired[bool]
    result: NotRequired[dict[str, Any]]
    # Spend caps (nodes/policy/budget.py): what plan holds for the writer, the top-ups reserved before calls
    # (each gather branch adds its own), and why the caps refused the briefing outright (no writer fits).
    budget_reservation: NotRequired[dict[str, object]]
    budget_extra: Annotated[list[dict[str, object]], operator.add]
    question_holds: NotRequired[list[dict[str, object] | None]]  # each question's part, for its gather branch
    budget_refused: NotRequired[str | None]


# --- what each node returns ----------------------------------------------------------------------------------


class PlanUpdate(TypedDict, total=False):
    started_at: float
    deadline_at: float
    gather_deadline_at: float
    questions: list[Question]
    gather_chain: list[ChainStep]
    notes: list[str]
    budget_reservation: dict[str, object]
    budget_extra: list[dict[str, object]]
    question_holds: list[dict[str, object] | None]
    budget_refused: str | None


class GatherUpdate(TypedDict, total=False):
    findings: list[Finding]
    attempts: list[Attempt]
    budget_extra: list[dict[str, object]]


class CredibilityUpdate(TypedDict, total=False):
    sources: list[ScoredSource]
    write_chain: list[WriteStep]
    write_cursor: int
    write_tries: int
    notes: list[str]


class WriteUpdate(TypedDict, total=False):
    attempts: list[Attempt]
    write_cursor: int
    write_tries: int
    write_feedback: str | None
    retry_at: float | None
    write_done: bool
    draft: dict[str, Any] | None
    writer: Writer | None
    fallback: bool
    deadline_passed: bool
    budget_extra: list[dict[str, object]]


class CheckUpdate(TypedDict, total=False):
    attempts: list[Attempt]
    budget_extra: list[dict[str, object]]
    check_chain: list[ChainStep]
    check_cursor: int
    check: BriefingCheck
    deadline_passed: bool


class SanitiseUpdate(TypedDict, total=False):
    sanitised: dict[str, Any]
    compliance: dict[str, Any]


class ScoreBriefingUpdate(TypedDict, total=False):
    result: dict[str, Any]
