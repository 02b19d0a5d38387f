"""The progress hub across processes: a briefing running on a Celery worker publishes its events, and the live
feeds (``GET /feed``) of every web process see them. It implements graphs/progress_hub.py's ``ProgressHub`` on
Redis (the broker's, or the stores'):

- publish: one Lua script, atomic, takes the ward's next sequence number (``INCR``), appends the event to the
  ward's replay buffer (a list capped with ``LTRIM``) and ``PUBLISH``es it on the ward's channel, so the buffer and
  the channel agree on the order and numbers.
- subscribe: subscribe to the channel first, then read the buffer for what came after ``after``; events that
  arrive both ways are told apart by their sequence number and given once.

Every key of a ward shares a hash tag, so the script also runs on Redis Cluster.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from graphs.progress_hub import BUFFER, Published, Subscription
from worker.config import broker_url

PREFIX = "strategist:feed"
_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
local payload = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('RPUSH', KEYS[2], payload)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', ARGV[3], payload)
return seq
"""


def _keys(ward: str) -> tuple[str, str, str]:
    tag = "{" + ward.replace("}", ")") + "}"
    return f"{PREFIX}:{tag}:seq", f"{PREFIX}:{tag}:buffer", f"{PREFIX}:{tag}:events"


def _published(raw: bytes | str) -> Published:
    data = json.loads(raw)
    return Published(int(data["seq"]), data["ward"], data.get("thread_id"), float(data["at"]), data["event"])


class _RedisSubscription:
    def __init__(self, client: redis.Redis, ward: str, after: int | None) -> None:
        _, buffer_key, channel = _keys(ward)
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(channel)
        self._pending: collections.deque[Published] = collections.deque()
        self._last = 0
        if after is not None:
            self._last = after
            for raw in client.lrange(buffer_key, 0, -1):
                item = _published(raw)
                if item.seq > self._last:
                    self._pending.append(item)
                    self._last = item.seq
            # What the live channel brings from here must come after the replay.
        self._closed = False

    def get(self, timeout_s: float) -> Published | None:
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._closed:
            left = deadline - time.monotonic()
            message = self._pubsub.get_message(timeout=max(0.0, left))
            if message is not None and message.get("type") == "message":
                item = _published(message["data"])
                if item.seq > self._last:
                    self._last = item.seq
                    return item
            if time.monotonic() >= deadline:
                return None
        return None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pubsub.close()


class RedisHub:
    """A ProgressHub on Redis pub/sub with a per-ward sequence and replay buffer (see the module docstring)."""

    def __init__(self, client: redis.Redis, *, buffer: int = BUFFER, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.buffer = buffer
        self._clock = clock
        self._script = client.register_script(_PUBLISH)

    @classmethod
    def from_url(cls, url: str) -> RedisHub:
        """Connect to the Redis at ``url``."""
        return cls(redis.Redis.from_url(url))

    def publish(self, ward: str, event: dict[str, Any], thread_id: str | None = None) -> Published:
        at = self._clock()
        body = json.dumps({"ward": ward, "thread_id": thread_id, "at": at, "event": event}, default=str)
        seq_key, buffer_key, channel = _keys(ward)
        seq = int(self._script(keys=[seq_key, buffer_key], args=[body, self.buffer, channel]))
        return Published(seq, ward, thread_id, at, event)

    def subscribe(self, ward: str, after: int | None = None) -> Subscription:
        return _RedisSubscription(self.client, ward, after)

    def last_seq(self, ward: str) -> int:
        raw = self.client.get(_keys(ward)[0])
        return int(raw) if raw is not None else 0


def shared_hub() -> RedisHub | None:
    """Return the hub on the configured broker (``CELERY_BROKER_URL`` or ``REDIS_URL``), or None without one."""
    url = broker_url()
    return RedisHub.from_url(url) if url else None
