"""Emit a progress event from a node: one line at the call site, harmless when nobody streams.

LangGraph hands a node a ``StreamWriter`` on its runtime (a no-op when the run is not streamed with the
"custom" mode); a node called directly in a test may have no runtime at all. Events go out in their JSON form
(nodes/policy/events.py), which is what every consumer reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodes.policy.events import Event

Writer = Callable[[Any], None]


def emit(runtime: object, event: Event) -> None:
    """Write ``event`` to the runtime's custom stream, if it has one."""
    writer: Writer | None = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer(event.wire())
