"""State of the document graph (playbooks, opposition responses, customised playbooks, scenarios)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

from typing_extensions import TypedDict

from graphs.state import Attempt, ChainStep, Constraints, StrategicContext
from providers.config import Depth

DocumentKind = Literal["playbook", "scenario"]


class DocumentInput(TypedDict):
    kind: DocumentKind
    ward: str
    brief: str  # what to write, in words (the type, the request's fields)
    language: NotRequired[str]
    grounding_query: NotRequired[str | None]  # set when the type needs fresh facts (crisis, opposition)


class DocumentState(DocumentInput):
    # The grounding analysis (the analysis graph as a subgraph) reads these and writes ``result``.
    query: NotRequired[str]
    depth: NotRequired[Depth]
    context: NotRequired[StrategicContext]
    constraints: NotRequired[Constraints]
    result: NotRequired[dict[str, Any]]
    deadline_at: NotRequired[float]
    chain: NotRequired[list[ChainStep]]
    cursor: NotRequired[int]
    tries: NotRequired[int]
    feedback: NotRequired[str | None]  # why the last structured answer was invalid, for the retry
    attempts: Annotated[list[Attempt], operator.add]
    document: NotRequired[dict[str, Any] | None]
    writer: NotRequired[dict[str, Any] | None]
    done: NotRequired[bool]


class PlanUpdate(TypedDict, total=False):
    query: str
    depth: Depth
    context: StrategicContext
    constraints: Constraints
    deadline_at: float
    chain: list[ChainStep]
    cursor: int


class DraftUpdate(TypedDict, total=False):
    attempts: list[Attempt]
    cursor: int
    tries: int
    feedback: str | None
    document: dict[str, Any] | None
    writer: dict[str, Any] | None
    done: bool
