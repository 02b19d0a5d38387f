"""The live ward feed: ``GET /feed?ward=...&priority=all|high|critical``, Server-Sent Events.

What a client gets, in order (the contract's shapes; unnamed events carry ``{"type", "data", "timestamp",
"connection_id"}``):

1. ``connection``;
2. ``intelligence`` items for the ward, newest first, filtered by priority: the key intelligence of its latest
   cached briefing (any depth or context) and its own posts and news (the ward data source);
3. then, for as long as the client stays: the progress of every briefing of that ward that runs meanwhile
   (whoever triggered it) as the named events ``analysis-progress``, ``confidence-update`` and
   ``multimodel-analysis`` (graphs/progress_hub.py), and a ``heartbeat`` every ``STRATEGIST_FEED_HEARTBEAT_S``
   seconds (30) without other traffic;
4. ``complete`` after ``STRATEGIST_FEED_MAX_S`` seconds (3600; proxies cut long connections anyway, and clients
   reconnect), then the stream ends.

Items and progress events carry ``id: <progress seq>:<last intelligence item id>``: a client reconnecting with
``Last-Event-ID`` gets the connection event again, the intelligence items after the last one it saw, and the
progress events it missed that the hub still buffers. Bad input is one ``error`` event (after ``retry: 5000``),
then the stream ends. A client that goes away is noticed within ``STRATEGIST_FEED_POLL_S`` (1 s) even while
the stream waits: the generator ends and unsubscribes; a briefing it was watching runs on, checkpointed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response, request

from api.common import bp, protected, reports
from api.sse import HEADERS, MIMETYPE, client_gone, frame
from graphs.briefing_result import Briefing
from graphs.progress_hub import ProgressHub, Published, Subscription
from graphs.stores.briefing_cache import cache_key
from graphs.ward_reports import CONTEXTS, DEPTHS, MAX_WARD_CHARS
from providers.ward_data import WardDataError

log = logging.getLogger("strategist.feed")
PRIORITIES = ("all", "high", "critical")
MAX_WARD_INPUT = 100
RETRY_MS = 5000
# Which impact levels each priority filter lets through.
_LEVELS = {"all": None, "high": {"high", "critical"}, "critical": {"critical"}}
# Named events by progress event: confidence and agreement, the run's outcome, everything else is progress.
_NAMED = {"confidence": "confidence-update", "cross_checked": "multimodel-analysis", "complete": "multimodel-analysis"}
WARD_DATA_ITEMS = 20

# The running streams themselves, not their connection ids: the contract's id is "<ward>_<ms>", which two streams
# of one ward opened in the same millisecond share (and a stream ending would take the other's entry with it).
_active: set[object] = set()
_active_lock = threading.Lock()


def active_feeds() -> int:
    """Return how many feed streams are running in this process (a closed one is gone at once)."""
    with _active_lock:
        return len(_active)


@dataclass(frozen=True)
class FeedSettings:
    heartbeat_s: float
    max_s: float
    poll_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> FeedSettings:
        """Read the intervals (seconds) from the environment; a bad value falls back to the default."""

        def seconds(name: str, default: float) -> float:
            try:
                value = float(env.get(name, default))
            except ValueError:
                return default
            return value if value > 0 else default

        return cls(
            heartbeat_s=seconds("STRATEGIST_FEED_HEARTBEAT_S", 30.0),
            max_s=seconds("STRATEGIST_FEED_MAX_S", 3600.0),
            poll_s=seconds("STRATEGIST_FEED_POLL_S", 1.0),
        )


def _problem(ward: str, priority: str) -> str | None:
    if not ward:
        return "Ward parameter is required"
    if len(ward) > MAX_WARD_INPUT:
        return f"Ward must be at most {MAX_WARD_INPUT} characters"
    if priority not in PRIORITIES:
        return f"Invalid priority. Must be one of: {list(PRIORITIES)}"
    return None


def _item_id(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def intelligence(ward: str, priority: str) -> list[dict[str, Any]]:
    """Return the ward's intelligence items, newest first, filtered by priority (the contract's item shape)."""
    service = reports()
    items: list[dict[str, Any]] = []
    latest: Briefing | None = None
    for depth in DEPTHS:
        for context in CONTEXTS:
            entry = service.cache.get(cache_key(ward, depth, context))
            if entry is not None:
                found = Briefing.model_validate_json(entry.body)
                if latest is None or found.generated_at > latest.generated_at:
                    latest = found
    if latest is not None:
        for ki in latest.key_intelligence:
            items.append(
                {
                    "id": _item_id("briefing", ki.category, ki.content),
                    "ward": ward,
                    "priority": ki.impact_level,
                    "title": ki.category.replace("_", " ").capitalize(),
                    "content": ki.content,
                    "source": "ward_briefing",
                    "confidence": ki.confidence,
                    "created_at": latest.generated_at,
                    "category": ki.category,
                }
            )
    if service.ward_data is not None:
        try:
            posts = service.ward_data.recent(ward, WARD_DATA_ITEMS)
        except WardDataError as exc:
            log.warning("feed for %s without the ward's own data: %s", ward, exc)
            posts = []
        for post in posts:
            items.append(
                {
                    "id": _item_id("ward_data", post.url, post.title, post.content),
                    "ward": ward,
                    "priority": "medium",  # a post is news, not an assessment: only the "all" filter shows it
                    "title": post.title,
                    "content": post.content,
                    "source": post.source or post.url,
                    "created_at": post.date or None,
                    "category": "news",
                }
            )
    levels = _LEVELS[priority]
    items = [i for i in items if levels is None or i["priority"] in levels]
    # Newest first; a stable sort keeps the briefing's own order (most important first) within one timestamp.
    return sorted(items, key=lambda i: i.get("created_at") or "", reverse=True)


def _parse_last_id(value: str | None) -> tuple[int | None, str]:
    """Split ``Last-Event-ID`` into the progress sequence and the last intelligence item id (lenient)."""
    if not value:
        return None, ""
    seq, _, item = value.partition(":")
    try:
        return int(seq), item
    except ValueError:
        return None, ""


class FeedStream:
    """One client's feed; iterate it for the SSE text. Closing it (the server does) unsubscribes."""

    def __init__(
        self,
        ward: str,
        priority: str,
        hub: ProgressHub,
        items: list[dict[str, Any]],
        settings: FeedSettings,
        *,
        last_event_id: str | None = None,
        gone: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ward, self.priority, self.hub, self.settings = ward, priority, hub, settings
        self.items = items
        self.last_seq, self.last_item = _parse_last_id(last_event_id)
        self.gone, self.clock, self.monotonic = gone, clock, monotonic
        self.connection_id = f"{ward}_{int(clock() * 1000)}"
        self.sent = 0

    def _unnamed(self, kind: str, data: dict[str, Any], id: str | None = None) -> str:
        self.sent += 1
        body = {"type": kind, "data": data, "timestamp": round(self.clock(), 3), "connection_id": self.connection_id}
        return frame(body, id=id)

    def _id(self, seq: int) -> str:
        return f"{seq}:{self.last_item}"

    def __iter__(self) -> Iterator[str]:
        # Subscribed before anything is sent, from where this client stopped (or from now): no progress event
        # published while the items go out is missed.
        after = self.last_seq if self.last_seq is not None else self.hub.last_seq(self.ward)
        seq = after
        subscription = self.hub.subscribe(self.ward, after=after)
        with _active_lock:
            _active.add(self)
        try:
            yield from self._events(subscription, seq)
        except Exception as exc:  # the hub failed (its Redis went away): say so; the client reconnects and resumes
            log.warning("feed %s stopped: %s", self.connection_id, exc, exc_info=True)
            yield _error_frame(self.ward, "The live feed failed; reconnect to resume", self.clock)
        finally:
            subscription.close()
            with _active_lock:
                _active.discard(self)

    def _events(self, subscription: Subscription, seq: int) -> Iterator[str]:
        """Yield the connection, the items, then progress events and heartbeats until the end."""
        server_time = dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat()
        yield self._unnamed(
            "connection",
            {"status": "connected", "ward": self.ward, "priority": self.priority, "server_time": server_time},
        )
        items = self.items
        if self.last_item:
            ids = [i["id"] for i in items]
            items = items[ids.index(self.last_item) + 1 :] if self.last_item in ids else items
        for item in items:
            self.last_item = item["id"]
            yield self._unnamed("intelligence", item, id=self._id(seq))
        start = self.monotonic()
        next_beat = start + self.settings.heartbeat_s
        while True:
            now = self.monotonic()
            if now - start >= self.settings.max_s:
                log.info("feed %s ended: its maximum duration (%.0f s) passed", self.connection_id, self.settings.max_s)
                yield self._unnamed(
                    "complete", {"ward": self.ward, "total_events": self.sent + 1, "reason": "max_duration"}
                )
                return
            if self.gone():
                log.info("feed %s ended: the client hung up", self.connection_id)
                return
            published = subscription.get(min(self.settings.poll_s, max(0.0, next_beat - now)))
            if published is not None:
                seq = published.seq
                yield self._named(published)
                next_beat = self.monotonic() + self.settings.heartbeat_s
            elif self.monotonic() >= next_beat:
                self.sent += 1
                beat = {
                    "type": "heartbeat",
                    "timestamp": round(self.clock(), 3),
                    "connection_id": self.connection_id,
                    "ward": self.ward,
                }
                yield frame(beat)
                next_beat = self.monotonic() + self.settings.heartbeat_s

    def _named(self, published: Published) -> str:
        self.sent += 1
        name = _NAMED.get(str(published.event.get("event")), "analysis-progress")
        body = {
            "type": name,
            "ward": self.ward,
            "thread_id": published.thread_id,
            "data": published.event,
            "timestamp": round(published.at, 3),
            "connection_id": self.connection_id,
        }
        return frame(body, event=name, id=self._id(published.seq))


def _error_frame(ward: str, message: str, clock: Callable[[], float]) -> str:
    now = clock()
    body = {
        "type": "error",
        "data": {"message": message, "ward": ward},
        "timestamp": round(now, 3),
        "connection_id": f"{ward}_{int(now * 1000)}",
    }
    return frame(body, retry_ms=RETRY_MS)


def error_stream(ward: str, message: str, clock: Callable[[], float] = time.time) -> Iterator[str]:
    """Yield the one error event of a refused feed (after ``retry: 5000``)."""
    yield _error_frame(ward, message, clock)


@bp.get("/feed")
@protected
def feed() -> Response:
    """Stream the ward's intelligence and the live progress of its briefings as Server-Sent Events."""
    ward = request.args.get("ward", "").strip()
    priority = request.args.get("priority", "all").strip().lower() or "all"
    problem = _problem(ward, priority)
    if problem is not None:
        return Response(error_stream(ward[:MAX_WARD_INPUT], problem), mimetype=MIMETYPE, headers=HEADERS)
    # The briefing's own key: what a briefing of this ward publishes under (graphs/ward_reports.py).
    key = ward[:MAX_WARD_CHARS].strip()
    environ = request.environ
    stream = FeedStream(
        key,
        priority,
        reports().hub,
        intelligence(key, priority),
        FeedSettings.from_env(),
        last_event_id=request.headers.get("Last-Event-ID") or request.args.get("lastEventId"),
        gone=lambda: client_gone(environ),
    )
    return Response(iter(stream), mimetype=MIMETYPE, headers=HEADERS)
