"""The progress hub on Redis (worker/hub.py): what one process publishes, another process's subscribers get, in
order, with the replay of what they missed (``after``), each event once, and the buffer capped. Each hub here has
its own connection, as a worker and a web process would; the Redis is the test's own."""

from __future__ import annotations

from graphs.progress_hub import Published, Subscription
from providers.testing import redis_servers
from worker.hub import RedisHub


def drain(subscription: Subscription, count: int) -> list[Published]:
    got: list[Published] = []
    for _ in range(count):
        item = subscription.get(30.0)
        assert item is not None, got
        got.append(item)
    return got


def test_a_subscriber_in_another_process_gets_the_missed_events_then_the_live_ones_once(
    redis_server: redis_servers.RedisServer,
) -> None:
    worker, web = RedisHub.from_url(redis_server.url), RedisHub.from_url(redis_server.url)
    for n in range(1, 4):
        published = worker.publish("Jubilee Hills", {"event": "node", "n": n}, thread_id="t-1")
        assert published.seq == n
    assert web.last_seq("Jubilee Hills") == 3 and web.last_seq("Malakpet") == 0
    feed = web.subscribe("Jubilee Hills", after=1)
    worker.publish("Jubilee Hills", {"event": "node", "n": 4}, thread_id="t-1")
    worker.publish("Malakpet", {"event": "node", "n": 99})
    got = drain(feed, 3)
    assert [(p.seq, p.event["n"], p.thread_id, p.ward) for p in got] == [
        (2, 2, "t-1", "Jubilee Hills"),
        (3, 3, "t-1", "Jubilee Hills"),
        (4, 4, "t-1", "Jubilee Hills"),
    ]
    assert feed.get(0.2) is None  # nothing twice, nothing of another ward
    feed.close()
    feed.close()


def test_without_after_only_new_events_come_and_the_buffer_is_capped(redis_server: redis_servers.RedisServer) -> None:
    hub = RedisHub.from_url(redis_server.url)
    small = RedisHub(hub.client, buffer=2)
    for n in range(5):
        small.publish("Ward", {"event": "node", "n": n})
    live = hub.subscribe("Ward")
    hub.publish("Ward", {"event": "node", "n": 5})
    assert [p.seq for p in drain(live, 1)] == [6]
    replay = hub.subscribe("Ward", after=0)
    # The buffer kept the last two of the first five, then the sixth was added (the hub's own cap is larger).
    assert [p.seq for p in drain(replay, 3)] == [4, 5, 6]
    live.close()
    replay.close()
