"""Request and response bodies of the playbook and scenario routes (api/playbook.py, api/scenario.py).

The responses are the writer's validated document (graphs/playbook_result.py ``PlaybookContent`` and
``ScenarioContent``, inherited so the field types cannot drift from what the writer is held to) plus what
graphs/playbook_service.py adds around it: ids, ward, times, confidence, sources. Extra keys are allowed: a
customised playbook says which it came from, a counter-playbook carries the opposition message.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from api.common import BodyModel
from api.models import NonBlank, Stamp, one_of
from graphs.conversation_state import Language
from graphs.playbook_result import (
    PLAYBOOK_TYPES,
    SCENARIO_TYPES,
    TIMEFRAMES,
    PlaybookContent,
    PlaybookType,
    ScenarioContent,
    ScenarioType,
    Timeframe,
)

_Open = ConfigDict(extra="allow")
MIN_QUERY_CHARS = 10
# An opposition message or scenario query: at least MIN_QUERY_CHARS characters once stripped (else the route's 400).
Query = Annotated[
    str | None,
    WithJsonSchema(
        {"type": "string", "pattern": rf"\S[\s\S]{{{MIN_QUERY_CHARS - 2},}}\S", "description": "10+ characters"},
        mode="validation",
    ),
]
# The client's copy of a playbook: any object, its type (when it names one) one of the playbook types.
_BASE_PLAYBOOK = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "playbook_type": {"type": "string", "enum": list(PLAYBOOK_TYPES)},
        "playbook_id": {"type": "string"},
        "ward": {"type": "string"},
        "language": {"type": "string"},
    },
}

# --- requests ------------------------------------------------------------------------------------------------


class GenerateBody(BodyModel):
    """``POST /playbook/generate``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["playbook_type", "ward"]})
    playbook_type: Annotated[str | None, one_of(PLAYBOOK_TYPES)] = None
    ward: NonBlank = None
    context: dict[str, Any] = Field(default_factory=dict)
    language: str | None = Field(default=None, description="en | hi | te | ur; anything else: en")
    conversation_context: list[Any] = Field(default_factory=list)


class OppositionBody(BodyModel):
    """``POST /playbook/opposition-response``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["opposition_message", "ward"]})
    opposition_message: Query = None
    ward: NonBlank = None
    opposition_context: dict[str, Any] = Field(default_factory=dict)
    language: str | None = Field(default=None, description="en | hi | te | ur; anything else: en")


class CustomizeBody(BodyModel):
    """``POST /playbook/customize``: a playbook as ``POST /playbook/generate`` answered it, to be rewritten."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["base_playbook"]})
    base_playbook: Annotated[dict[str, Any] | None, WithJsonSchema(_BASE_PLAYBOOK, mode="validation")] = None
    conversation_history: list[Any] = Field(default_factory=list)
    user_preferences: dict[str, Any] = Field(default_factory=dict)


class SimulateBody(BodyModel):
    """``POST /scenario/simulate``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"required": ["scenario_query", "ward"]})
    scenario_query: Query = None
    scenario_type: Annotated[str, one_of(SCENARIO_TYPES)] = "electoral"
    ward: NonBlank = None
    timeframe: Annotated[str, one_of(TIMEFRAMES)] = "3_months"
    metrics: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)


# --- responses -----------------------------------------------------------------------------------------------


class Source(BaseModel):
    url: str
    title: str


class Playbook(PlaybookContent):
    model_config = _Open
    playbook_id: str = Field(pattern=r"^pb_[0-9a-f]{12}$")
    playbook_type: PlaybookType
    ward: str
    language: Language
    confidence_score: float = Field(ge=0, le=1, description="the writer's, capped at 0.3 for the local model")
    sources: list[Source] = Field(description="the fresh facts' sources (crisis and opposition playbooks)")
    provider: str | None
    generated_at: Stamp


class OppositionPlaybook(Playbook):
    playbook_type: Literal["opposition_counter"]
    opposition_message: str


class CustomizedPlaybook(Playbook):
    customized_from: str | None = Field(description="the base playbook's playbook_id, when it had one")


class ConfidenceInterval(BaseModel):
    low: float = Field(ge=0, le=1)
    high: float = Field(ge=0, le=1)


class VisualizationData(BaseModel):
    labels: list[str]
    baseline: list[float]
    projected: list[float]


class Scenario(ScenarioContent):
    model_config = _Open
    scenario_id: str = Field(pattern=r"^sc_[0-9a-f]{12}$")
    confidence_score: float = Field(ge=0, le=1)
    confidence_intervals: ConfidenceInterval
    visualization_data: VisualizationData
    sources: list[Source]
    provider: str | None
    simulated_at: Stamp
    ward: str
    scenario_type: ScenarioType
    timeframe: Timeframe
    scenario_query: str


class ScenarioHistory(BaseModel):
    scenarios: list[Scenario]
    total: int = Field(ge=0)
    ward_filter: str | None
    limit: int = Field(ge=1, le=100)


class PlaybookFailedBody(BaseModel):
    """The 500 when no provider wrote a valid playbook; ``detail`` says what each writer got wrong."""

    error: Literal["Playbook generation failed"]
    detail: str


class ScenarioFailedBody(BaseModel):
    """The 500 when no provider wrote a valid scenario; ``detail`` says what each writer got wrong."""

    error: Literal["Scenario simulation failed"]
    detail: str
