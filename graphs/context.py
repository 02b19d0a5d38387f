"""The run-time context of one analysis: injected dependencies and request-level settings.

Passed as LangGraph's ``context_schema`` so nodes never read ad-hoc ``configurable`` keys, and so tests inject
fake providers and a fake classifier. A resumed analysis gets a fresh context (and so a fresh deadline).

The dependencies (registry, clock, sleep, random source, classifier, outcome source) are not data: they are
left out of the JSON schema LangGraph Studio shows for the assistant, which describes only what a caller can
set from outside (the deadline and the caller key).
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from langgraph.runtime import Runtime
from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from nodes.policy.budget import ANONYMOUS, BudgetStore, Cover
from nodes.policy.calibration import OutcomeSource, learned_from
from nodes.policy.confidence import Judge
from nodes.policy.query_classifier import QueryNeeds
from providers.config import load_settings
from providers.registry import ProviderRegistry
from providers.ward_data import WardDataSource


@functools.cache
def default_registry() -> ProviderRegistry:
    """Build the registry from the environment once per process (for `langgraph dev` and the CLI)."""
    return ProviderRegistry(load_settings())


@dataclass(kw_only=True)
class Context:
    """What one analysis runs with; every field has a default, so Studio and tests set only what they need."""

    # Lets pydantic (which LangGraph asks for the context's JSON schema) accept the dependency types; their
    # SkipJsonSchema marks keep them out of the schema itself.
    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)

    # Wall-clock deadline of this invocation (epoch seconds); None: derived from the request's depth at classify.
    deadline_at: float | None = None
    # Stable key of the caller (user or session) for percentage rollouts of intelligent routing.
    caller_key: str | None = None
    registry: SkipJsonSchema[ProviderRegistry] = field(default_factory=default_registry)
    clock: SkipJsonSchema[Callable[[], float]] = time.time
    # How call_model waits before a same-provider retry, and the jitter of its backoff: injected by tests so no
    # test sleeps or depends on chance.
    sleep: SkipJsonSchema[Callable[[float], None]] = time.sleep
    rng: SkipJsonSchema[random.Random] = field(default_factory=random.Random)
    classifier: SkipJsonSchema[Callable[[str], QueryNeeds] | None] = None
    # Recorded outcomes (graphs/stores/feedback.py): historical accuracy and the calibration map are learned
    # from them. None: no track record, identity calibration.
    feedback: SkipJsonSchema[OutcomeSource | None] = None
    # The ward's own posts and news (providers/ward_data.py), merged into briefings; None: web research only.
    ward_data: SkipJsonSchema[WardDataSource | None] = None
    # Spend caps (graphs/stores/budget.py): route reserves the plan's estimate, score settles the actual cost.
    budget: SkipJsonSchema[BudgetStore | None] = None
    # Corrects the cost ledger (thread id, attempt index, real cost) when a hedge's loser, recorded at its
    # estimate, completes after the analysis moved on (nodes/policy/hedging.py); None: no ledger to correct.
    correct_cost: SkipJsonSchema[Callable[[str, int, float], None] | None] = None

    def cover(self, state: Mapping[str, object]) -> Cover:
        """Return what this analysis (or briefing) may still spend, for the paid calls of one node execution."""
        return Cover(self.budget, self.caller_key or ANONYMOUS, self.clock(), state)

    def judge(self) -> Judge:
        """Return the judge of answers: the settings, what was learned from outcomes so far, and today."""
        settings = self.registry.settings
        return Judge(settings, learned_from(self.feedback, settings.confidence), dt.date.fromtimestamp(self.clock()))


def context_of(runtime: Runtime[Context] | None) -> Context:
    """Return the runtime's context, or the default one when a caller (e.g. Studio) passed none."""
    ctx = getattr(runtime, "context", None)
    return ctx if isinstance(ctx, Context) else Context()
