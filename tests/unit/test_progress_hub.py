"""The progress hub (by ward, replay after a sequence number) and the feed stream on injected clocks."""

from __future__ import annotations

import json
from typing import Any

from api.feed import FeedSettings, FeedStream, active_feeds
from graphs.events import NodeFinished
from graphs.progress_hub import LocalHub, Published


def node(name: str) -> dict[str, Any]:
    return NodeFinished(node=name).wire()


def test_subscribers_get_their_ward_only_and_replay_starts_after_the_given_sequence() -> None:
    hub = LocalHub(clock=lambda: 100.0)
    first = hub.publish("A", node("plan"), "t-1")
    hub.publish("B", node("other ward"))
    live = hub.subscribe("A")
    second = hub.publish("A", node("gather"), "t-1")
    assert (first.seq, second.seq, hub.last_seq("A"), hub.last_seq("B"), hub.last_seq("C")) == (1, 2, 2, 1, 0)
    assert live.get(0) == second and live.get(0) is None
    replay = hub.subscribe("A", after=0)
    assert [replay.get(0), replay.get(0), replay.get(0)] == [first, second, None]
    assert hub.subscribers("A") == 2
    live.close()
    live.close()  # idempotent
    replay.close()
    assert hub.subscribers("A") == 0


def test_the_replay_buffer_is_bounded() -> None:
    hub = LocalHub(buffer=3)
    for i in range(5):
        hub.publish("A", node(str(i)))
    replay = hub.subscribe("A", after=0)
    got = [replay.get(0) for _ in range(4)]
    assert [p.seq for p in got if p is not None] == [3, 4, 5] and got[-1] is None


class Ticks:
    """A monotonic clock that moves only when the stream waits (each wait advances it by the wait)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class WaitingHub(LocalHub):
    """A hub whose subscriptions advance the fake clock instead of sleeping."""

    def __init__(self, ticks: Ticks, fail_after: int | None = None) -> None:
        super().__init__(clock=lambda: 1_700_000_000.0)
        self.ticks = ticks
        self.fail_after = fail_after

    def subscribe(self, ward: str, after: int | None = None) -> Any:
        inner = super().subscribe(ward, after)
        hub = self

        class Sub:
            waits = 0

            def get(self, timeout_s: float) -> Published | None:
                Sub.waits += 1
                if hub.fail_after is not None and Sub.waits > hub.fail_after:
                    raise ConnectionError("redis went away")
                got = inner.get(0)
                if got is None:
                    hub.ticks.now += timeout_s
                return got

            def close(self) -> None:
                inner.close()

        return Sub()


def bodies(chunks: list[str]) -> list[dict[str, Any]]:
    return [json.loads(c.split("data: ", 1)[1]) for c in chunks]


def test_heartbeats_follow_the_interval_on_the_injected_clock_and_the_stream_completes() -> None:
    ticks = Ticks()
    hub = WaitingHub(ticks)
    settings = FeedSettings(heartbeat_s=30.0, max_s=100.0, poll_s=1.0)
    stream = FeedStream("A", "all", hub, [], settings, clock=lambda: 1_700_000_000.0, monotonic=ticks)
    got = bodies(list(stream))
    assert [b["type"] for b in got] == ["connection", "heartbeat", "heartbeat", "heartbeat", "complete"]
    assert got[-1]["data"] == {"ward": "A", "total_events": 5, "reason": "max_duration"}
    assert active_feeds() == 0 and hub.subscribers("A") == 0


def test_a_failing_hub_ends_the_stream_with_an_error_event_to_retry() -> None:
    ticks = Ticks()
    hub = WaitingHub(ticks, fail_after=2)
    settings = FeedSettings(heartbeat_s=30.0, max_s=1000.0, poll_s=1.0)
    chunks = list(FeedStream("A", "all", hub, [], settings, monotonic=ticks))
    assert chunks[-1].startswith("retry: 5000\n")
    assert bodies(chunks)[-1]["type"] == "error" and "reconnect" in bodies(chunks)[-1]["data"]["message"]
    assert hub.subscribers("A") == 0
