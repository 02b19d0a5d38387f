"""The run-time context of one analysis: injected dependencies and request-level settings.

Passed as LangGraph's ``context_schema`` so nodes never read ad-hoc ``configurable`` keys, and so tests inject
fake providers and a fake classifier. A resumed analysis gets a fresh context (and so a fresh deadline).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from providers.config import load_settings
from providers.registry import ProviderRegistry

if TYPE_CHECKING:
    from langgraph.runtime import Runtime

    from nodes.calibration import OutcomeSource
    from nodes.query_classifier import QueryNeeds


@functools.cache
def default_registry() -> ProviderRegistry:
    """Build the registry from the environment once per process (for `langgraph dev` and the CLI)."""
    return ProviderRegistry(load_settings())


@dataclass
class Context:
    registry: ProviderRegistry = field(default_factory=default_registry)
    # Wall-clock deadline of this invocation; None means "derive it from the request's depth at classify".
    deadline_at: float | None = None
    clock: Callable[[], float] = time.time
    # How call_model waits before a same-provider retry, and the jitter of its backoff: injected by tests so no
    # test sleeps or depends on chance.
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    classifier: Callable[[str], QueryNeeds] | None = None
    # Stable key of the caller (user or session) for percentage rollouts of intelligent routing.
    caller_key: str | None = None
    # Recorded outcomes (graphs/feedback.py): historical accuracy and the calibration map are learned from them.
    # None: no track record, identity calibration.
    feedback: OutcomeSource | None = None


def context_of(runtime: Runtime[Context] | None) -> Context:
    """Return the runtime's context, or the default one when a caller (e.g. Studio) passed none."""
    ctx = getattr(runtime, "context", None)
    return ctx if isinstance(ctx, Context) else Context()
