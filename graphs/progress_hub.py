"""Progress of running briefings, by ward: publish here, and every live feed of that ward sees it.

A briefing publishes each progress event (graphs/events.py, JSON form) under its ward; ``GET /feed`` subscribes
to the ward and sends them as named SSE events, whichever client triggered the briefing. Each published event
gets the ward's next sequence number, which is its SSE id: a reconnecting client names the last one it saw
(``Last-Event-ID``) and subscribes ``after`` it, getting the events it missed that are still buffered.

``LocalHub`` serves one process (threads). ``ProgressHub`` is the interface a cross-process hub implements (a
Celery worker publishing, a web process on another machine subscribing): Redis pub/sub for delivery, with a
per-ward sequence (INCR) and a capped list or stream for the replay buffer.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# How many events per ward are kept for reconnecting clients (a deep briefing sends about a hundred).
BUFFER = 1000


@dataclass(frozen=True)
class Published:
    """One event as published: its ward's sequence number, the run it belongs to, when, and the event."""

    seq: int
    ward: str
    thread_id: str | None
    at: float
    event: dict[str, Any]


class Subscription(Protocol):
    def get(self, timeout_s: float) -> Published | None:
        """Return the next event, or None when none came within ``timeout_s``."""
        ...

    def close(self) -> None:
        """Stop receiving (idempotent); the hub forgets the subscription."""
        ...


class ProgressHub(Protocol):
    def publish(self, ward: str, event: dict[str, Any], thread_id: str | None = None) -> Published:
        """Publish one event (JSON form) under the ward; return it with its sequence number."""
        ...

    def subscribe(self, ward: str, after: int | None = None) -> Subscription:
        """Subscribe to the ward's events; with ``after``, first the buffered ones with a higher sequence."""
        ...

    def last_seq(self, ward: str) -> int:
        """Return the ward's last sequence number (0 before any event)."""
        ...


class _LocalSubscription:
    def __init__(self, hub: LocalHub, ward: str) -> None:
        self._hub = hub
        self.ward = ward
        self.queue: queue.Queue[Published] = queue.Queue()

    def get(self, timeout_s: float) -> Published | None:
        try:
            return self.queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def close(self) -> None:
        self._hub._drop(self)


class LocalHub:
    """The in-process hub: a bounded replay buffer and a queue per subscriber, per ward."""

    def __init__(self, clock: Callable[[], float] = time.time, buffer: int = BUFFER) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seq: dict[str, int] = collections.defaultdict(int)
        self._buffers: dict[str, collections.deque[Published]] = collections.defaultdict(
            lambda: collections.deque(maxlen=buffer)
        )
        self._subscribers: dict[str, list[_LocalSubscription]] = collections.defaultdict(list)

    def publish(self, ward: str, event: dict[str, Any], thread_id: str | None = None) -> Published:
        with self._lock:
            self._seq[ward] += 1
            item = Published(self._seq[ward], ward, thread_id, self._clock(), event)
            self._buffers[ward].append(item)
            for sub in self._subscribers[ward]:
                sub.queue.put(item)
        return item

    def subscribe(self, ward: str, after: int | None = None) -> Subscription:
        sub = _LocalSubscription(self, ward)
        with self._lock:  # replay and registration under one lock: no event is missed or seen twice
            if after is not None:
                for item in self._buffers[ward]:
                    if item.seq > after:
                        sub.queue.put(item)
            self._subscribers[ward].append(sub)
        return sub

    def last_seq(self, ward: str) -> int:
        with self._lock:
            return self._seq.get(ward, 0)

    def subscribers(self, ward: str) -> int:
        """Return how many subscriptions of the ward are open (tests: a closed feed leaves none)."""
        with self._lock:
            return len(self._subscribers.get(ward, []))

    def _drop(self, sub: _LocalSubscription) -> None:
        with self._lock:
            subs = self._subscribers.get(sub.ward, [])
            if sub in subs:
                subs.remove(sub)
