"""The structured documents of playbooks and scenarios: what a writer must answer (validated by pydantic, the
schema rendered into its prompt), and what the routes add around it (ids, ward, times, confidence)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

PlaybookType = Literal[
    "crisis_response",
    "policy_announcement",
    "opposition_counter",
    "community_engagement",
    "media_relations",
    "campaign_messaging",
    "stakeholder_communication",
]
PLAYBOOK_TYPES: tuple[str, ...] = get_args(PlaybookType)
ScenarioType = Literal["electoral", "policy", "crisis", "opposition", "coalition"]
SCENARIO_TYPES: tuple[str, ...] = get_args(ScenarioType)
Timeframe = Literal["1_month", "3_months", "6_months", "1_year"]
TIMEFRAMES: tuple[str, ...] = get_args(Timeframe)


class _Draft(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TimelineStep(_Draft):
    when: str = Field(min_length=1, description="e.g. 'Day 1', 'Week 2'")
    action: str = Field(min_length=3)


class PlaybookRisk(_Draft):
    # Not "Risk": the briefing has one too, and the OpenAPI document names its schemas by class.
    risk: str = Field(min_length=3)
    mitigation: str = Field(min_length=3)


class PlaybookContent(_Draft):
    """What a playbook says: the writer's answer without its confidence (the route answers it with these fields,
    api/playbook_models.py, so the two cannot drift apart)."""

    title: str = Field(min_length=3)
    objectives: list[str] = Field(min_length=1)
    key_messages: list[str] = Field(min_length=1)
    talking_points: list[str] = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    timeline: list[TimelineStep] = Field(min_length=1)
    success_metrics: list[str] = Field(min_length=1)
    risks: list[PlaybookRisk] = Field(default_factory=list)


class PlaybookDraft(PlaybookContent):
    """A communication playbook, as the writer must answer it."""

    confidence: float = Field(ge=0, le=1, description="how sure you are this playbook fits the ward, 0 to 1")


class Impact(_Draft):
    metric: str = Field(min_length=2, description="e.g. 'vote share', 'turnout'")
    baseline: float
    projected: float


class Projection(_Draft):
    group: str = Field(min_length=1, description="a party, candidate or voter group")
    projected_share: float = Field(ge=0, le=1)


class ScenarioContent(_Draft):
    """What a scenario says: the writer's answer without its confidence figures (the route turns those into
    ``confidence_score`` and ``confidence_intervals``)."""

    key_impact: str = Field(min_length=10)
    strategic_recommendations: list[str] = Field(min_length=1)
    impact_breakdown: list[Impact] = Field(min_length=1)
    electoral_projections: list[Projection] = Field(default_factory=list)
    risk_factors: list[str] = Field(min_length=1)
    mitigation_strategies: list[str] = Field(min_length=1)


class ScenarioDraft(ScenarioContent):
    """A scenario simulation, as the writer must answer it."""

    confidence: float = Field(ge=0, le=1)
    confidence_low: float = Field(ge=0, le=1, description="lower bound of the projected change's confidence interval")
    confidence_high: float = Field(ge=0, le=1)
