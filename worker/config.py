"""Celery's configuration from the environment: broker and result backend URLs, and timeouts tied to deadlines.

Redelivery rests on three settings together: ``task_acks_late`` (a task is acknowledged only once it has
finished), ``task_reject_on_worker_lost`` (a pool process that dies mid-task has its task put back on the queue at
once) and the Redis transport's ``visibility_timeout`` (a message taken by a worker that disappears entirely, with
its parent process, comes back to the queue after this many seconds). The visibility timeout must outlast the
longest task, or a task still running would be handed to a second worker: it is derived from the longest
deadline (every retry, fallback and cross-check of an analysis or briefing fits in its deadline) with a margin,
and refused when configured below it. A duplicate delivery is harmless anyway: the task resumes the thread from
its checkpoint, and the thread lease lets one runner at a time in.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from providers.config import ConfigError, Settings

QUEUE = "strategist"
# How long finished jobs' results and records are kept.
RESULT_TTL_S = 24 * 3600


def broker_url(env: Mapping[str, str] | None = None) -> str | None:
    """Return the broker URL: ``CELERY_BROKER_URL``, else ``REDIS_URL`` (the stores' Redis), else None."""
    env = os.environ if env is None else env
    return env.get("CELERY_BROKER_URL") or env.get("REDIS_URL") or None


def longest_deadline_s(settings: Settings) -> float:
    """Return the longest deadline any task can have (the deepest depth's)."""
    return max(settings.deadlines.for_depth(depth) for depth in ("quick", "standard", "deep"))


def visibility_timeout_s(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """Return the broker's visibility timeout: ``STRATEGIST_VISIBILITY_TIMEOUT`` or 1.5 x the longest deadline + 60.

    Raises ConfigError when the configured value is not above the longest deadline (a running task would be
    redelivered to a second worker while the first still runs it).
    """
    env = os.environ if env is None else env
    longest = longest_deadline_s(settings)
    raw = env.get("STRATEGIST_VISIBILITY_TIMEOUT")
    if not raw:
        return math.ceil(longest * 1.5 + 60)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"STRATEGIST_VISIBILITY_TIMEOUT={raw!r}: expected whole seconds") from None
    if value <= longest:
        raise ConfigError(
            f"STRATEGIST_VISIBILITY_TIMEOUT={value} must exceed the longest deadline ({longest:g} s): a task "
            "still running would be delivered to a second worker"
        )
    return value


def celery_config(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the Celery settings; raises ConfigError when no broker is configured."""
    env = os.environ if env is None else env
    broker = broker_url(env)
    if broker is None:
        raise ConfigError("async jobs need a Redis broker: set CELERY_BROKER_URL (or REDIS_URL)")
    visibility = visibility_timeout_s(settings, env)
    return {
        "broker_url": broker,
        "result_backend": env.get("CELERY_RESULT_BACKEND") or broker,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message at a time per pool process: a prefetched message would wait behind a long analysis.
        "worker_prefetch_multiplier": 1,
        # Sweep for messages of vanished workers often enough that one comes back soon after its visibility
        # timeout (kombu's default sweep is every 10 x 10 s).
        "broker_transport_options": {
            "visibility_timeout": visibility,
            "unacked_restore_interval": max(1, min(30, visibility // 10)),
            "unacked_restore_throttle": 1,
        },
        "result_backend_transport_options": {"visibility_timeout": visibility},
        "task_track_started": True,
        "result_extended": True,
        "result_expires": RESULT_TTL_S,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": QUEUE,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        # Task-level time limits stay off: the deadline inside the graph bounds the work and records why it
        # stopped; a hard kill at a time limit would lose that and look like a crash.
    }
