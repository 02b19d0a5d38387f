"""Progress events of a job, from the worker that runs it to any web process: Redis pub/sub on the broker's Redis.

Each event is published as JSON on ``strategist:events:<thread id>``; a web process subscribes to the channel of
the job a client watches (SSE). Pub/sub keeps nothing: a subscriber sees the events published while it listens,
and the job's state and result are in its record (``GET /jobs/<id>``), so a late watcher loses nothing it needs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import redis

from worker.config import broker_url

CHANNEL = "strategist:events:{thread_id}"
log = logging.getLogger("strategist.worker.events")

_clients: dict[tuple[int, str], redis.Redis] = {}
_lock = threading.Lock()


def channel(thread_id: str) -> str:
    """Return the pub/sub channel of a thread's events."""
    return CHANNEL.format(thread_id=thread_id)


def client(url: str) -> redis.Redis:
    """Return this process's connection to the Redis at ``url``."""
    key = (os.getpid(), url)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = redis.Redis.from_url(url)
        return client


def publisher(thread_id: str, url: str | None = None) -> Callable[[dict[str, Any]], None]:
    """Return an event sink that publishes a thread's events; without a broker, events are dropped."""
    url = url or broker_url()
    if url is None:
        return lambda event: None
    connection = client(url)
    name = channel(thread_id)

    def publish(event: dict[str, Any]) -> None:
        try:
            connection.publish(name, json.dumps({**event, "thread_id": thread_id}, default=str))
        except redis.RedisError as exc:
            # Progress is best effort: the analysis and its checkpoints must not stop because a watcher's
            # channel could not be reached.
            log.warning("could not publish a progress event of %s: %s", thread_id, exc)

    return publish


def subscribe(thread_id: str, url: str, *, timeout_s: float = 1.0) -> Iterator[dict[str, Any] | None]:
    """Yield a thread's events as they are published (None every ``timeout_s`` without one, for keep-alives)."""
    pubsub = client(url).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(channel(thread_id))
    try:
        while True:
            message = pubsub.get_message(timeout=timeout_s)
            if message is None:
                yield None
                continue
            yield json.loads(message["data"])
    finally:
        pubsub.close()
