"""GET /feed through the real HTTP stack (werkzeug on a free port) with an SSE client (httpx-sse): event order
and shapes, priority filter, heartbeats, bad input, live progress of a briefing another client triggered,
disconnect (the generator and its subscription end at once; the briefing runs on, checkpointed), and a reconnect
with Last-Event-ID. Intervals are configured short; nothing asserts on elapsed time."""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from live_server import Live, serve

from api.feed import active_feeds
from graphs.events import NodeFinished
from graphs.progress_hub import LocalHub
from providers.testing import fake_registry, reply
from providers.testing.briefings import draft_json, research_reply, verdicts_json
from providers.ward_data import JsonlWardData

WARD = "Jubilee Hills"
# Generous: how long a test waits for something that should happen at once on an idle machine.
PATIENCE_S = 60.0


def deep_registry() -> Any:
    """Fake providers for one deep briefing: six research answers, then the checker's verdicts (Perplexity);
    the writer (Gemini)."""
    return fake_registry(
        {"perplexity": [research_reply()] * 6 + [reply(verdicts_json(3))], "gemini": [reply(draft_json(WARD))]}
    )


@pytest.fixture()
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    for var in ("STRATEGIST_API_TOKEN", "STRATEGIST_ENABLED", "STRATEGIST_ADMIN_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STRATEGIST_FEED_HEARTBEAT_S", "3600")
    monkeypatch.setenv("STRATEGIST_FEED_POLL_S", "0.02")
    yield from serve(deep_registry(), tmp_path)


def data(sse: ServerSentEvent) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(sse.data)
    return value


def read(live: Live, count: int, *, headers: dict[str, str] | None = None, **params: str) -> list[ServerSentEvent]:
    """Open the feed, read ``count`` events (or until it ends), and hang up."""
    got: list[ServerSentEvent] = []
    with connect_sse(live.http, "GET", "/feed", params=params, headers=dict(headers or {})) as source:
        for sse in source.iter_sse():
            got.append(sse)
            if len(got) == count:
                break
    return got


def until_heartbeat(live: Live, **params: str) -> list[dict[str, Any]]:
    """Open the feed and return the bodies of the events before its first heartbeat (set a short interval)."""
    got: list[dict[str, Any]] = []
    with connect_sse(live.http, "GET", "/feed", params=params) as source:
        for sse in source.iter_sse():
            if data(sse)["type"] == "heartbeat":
                break
            got.append(data(sse))
    return got


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def feed_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def test_connection_first_then_intelligence_newest_first(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATEGIST_FEED_HEARTBEAT_S", "0.05")
    posts = tmp_path / "posts.jsonl"
    rows = [
        {
            "ward": WARD,
            "title": "Older post",
            "content": "Ward committee met.",
            "url": "https://a.in/1",
            "date": "2026-01-02",
        },
        {
            "ward": WARD,
            "title": "Newer post",
            "content": "Tankers arrived.",
            "url": "https://a.in/2",
            "date": "2026-02-03",
        },
    ]
    posts.write_text("\n".join(json.dumps(r) for r in rows))
    live.reports.ward_data = JsonlWardData(posts)
    assert live.http.get(f"/{WARD}", params={"depth": "deep"}).status_code == 200
    events = read(live, 7, ward=WARD)
    assert data(events[6])["type"] == "heartbeat"
    events = events[:6]
    first = data(events[0])
    assert events[0].event == "message" and events[0].id == ""
    assert first["type"] == "connection" and first["connection_id"].startswith(f"{WARD}_")
    assert first["data"] | {"server_time": None} == {
        "status": "connected",
        "ward": WARD,
        "priority": "all",
        "server_time": None,
    }
    items = [data(e) for e in events[1:]]
    assert [i["type"] for i in items] == ["intelligence"] * 5
    assert {i["connection_id"] for i in items} == {first["connection_id"]}
    # The briefing's three items (made today), then the ward's posts, newest first.
    assert [i["data"]["source"] for i in items] == ["ward_briefing"] * 3 + ["https://a.in/2", "https://a.in/1"]
    assert {"id", "ward", "priority", "title", "content", "source", "confidence", "created_at", "category"} <= set(
        items[0]["data"]
    )
    assert all(e.id for e in events[1:])  # every item can be resumed from

    high = until_heartbeat(live, ward=WARD, priority="high")
    assert [(b["type"], b["data"].get("priority")) for b in high[1:]] == [("intelligence", "high")] * 3
    assert [b["type"] for b in until_heartbeat(live, ward=WARD, priority="critical")] == ["connection"]


def test_heartbeats_arrive_at_the_configured_interval(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIST_FEED_HEARTBEAT_S", "0.05")
    events = read(live, 4, ward="Malakpet")
    beats = [data(e) for e in events[1:]]
    assert [b["type"] for b in beats] == ["heartbeat"] * 3
    # Flat, as the contract says: no "data" wrapper.
    assert set(beats[0]) == {"type", "timestamp", "connection_id", "ward"} and beats[0]["ward"] == "Malakpet"


def test_the_feed_completes_after_its_maximum_duration(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIST_FEED_HEARTBEAT_S", "0.05")
    monkeypatch.setenv("STRATEGIST_FEED_MAX_S", "0.3")
    events = read(live, 1000, ward="Malakpet")
    last = data(events[-1])
    assert last["type"] == "complete" and last["data"]["reason"] == "max_duration"
    assert last["data"]["total_events"] == len(events)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"ward": ""}, "Ward parameter is required"),
        ({}, "Ward parameter is required"),
        ({"ward": "x" * 101}, "Ward must be at most 100 characters"),
        ({"ward": WARD, "priority": "urgent"}, "Invalid priority"),
    ],
)
def test_bad_input_is_one_error_event(live: Live, params: dict[str, str], message: str) -> None:
    with connect_sse(live.http, "GET", "/feed", params=params) as source:
        response = source.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
        events = list(source.iter_sse())  # the server ends the stream
    assert len(events) == 1 and events[0].retry == 5000
    body = data(events[0])
    assert body["type"] == "error" and body["data"]["message"].startswith(message)


def test_protected_like_every_route(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIST_API_TOKEN", "s3cret")
    assert live.http.get("/feed", params={"ward": WARD}).status_code == 401


def test_progress_of_a_briefing_another_client_triggered(live: Live) -> None:
    named: list[ServerSentEvent] = []
    triggered: list[httpx.Response] = []
    with connect_sse(live.http, "GET", "/feed", params={"ward": WARD}) as source:
        events = source.iter_sse()
        assert data(next(events))["type"] == "connection"
        other = httpx.Client(base_url=str(live.http.base_url), timeout=PATIENCE_S)
        worker = threading.Thread(
            target=lambda: triggered.append(other.post("/trigger", json={"ward": WARD, "depth": "deep"}))
        )
        worker.start()
        for sse in events:
            named.append(sse)
            body = data(sse)
            if body["data"].get("event") == "complete":
                break
        worker.join(PATIENCE_S)
        other.close()
    assert triggered[0].status_code == 200
    names = [e.event for e in named]
    assert set(names) == {"analysis-progress", "confidence-update", "multimodel-analysis"}
    kinds = [data(e)["data"]["event"] for e in named]
    assert kinds[0] == "thread" and kinds[1] == "plan" and kinds[-1] == "complete"
    assert kinds.count("gather_start") == 6 and "cross_checked" in kinds and "confidence" in kinds
    assert {"attempt_start", "attempt_end", "cost", "credibility", "sanitise", "node"} <= set(kinds)
    seqs = [int(e.id.split(":")[0]) for e in named]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    bodies = [data(e) for e in named]
    assert all(b["type"] == e.event and b["ward"] == WARD for b, e in zip(bodies, named, strict=True))
    assert {b["thread_id"] for b in bodies} == {bodies[0]["data"]["thread_id"]}
    done = bodies[-1]["data"]
    assert done["providers"] and done["error"] is None and 0 < done["confidence"] <= 1


def test_a_client_that_hangs_up_ends_its_idle_stream_at_once(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    hub = live.reports.hub
    assert isinstance(hub, LocalHub)
    before = feed_threads()
    caplog.set_level("INFO", logger="strategist.feed")
    with connect_sse(live.http, "GET", "/feed", params={"ward": WARD}) as source:
        assert data(next(source.iter_sse()))["type"] == "connection"
        # This failed in 2 of 3 full fresh-clone runs on a loaded machine (never alone): the stream had already
        # ended. The feed logs why a stream ends; the message carries it for whoever meets it next.
        ended = [r.getMessage() for r in caplog.records if "feed" in r.getMessage()]
        assert active_feeds() == 1, ended
        assert hub.subscribers(WARD) == 1 and feed_threads() == before + 1
    # Nothing is published and the next heartbeat is an hour away: only noticing the hang-up ends the stream.
    assert eventually(lambda: active_feeds() == 0 and hub.subscribers(WARD) == 0)
    assert eventually(lambda: feed_threads() == before)  # the request's thread is gone too


def test_a_stream_whose_socket_number_is_above_1024_stays_open(live: Live) -> None:
    """A long-running server holds many descriptors; select() refused those above 1024, which ended the stream."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1200:
        pytest.skip(f"the open-files limit ({soft}) does not allow a descriptor above 1024")
    filler: list[int] = []
    try:
        while not filler or filler[-1] < 1030:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        with connect_sse(live.http, "GET", "/feed", params={"ward": WARD}) as source:
            events = source.iter_sse()
            assert data(next(events))["type"] == "connection"
            live.reports.hub.publish(WARD, NodeFinished(node="plan").wire(), "t-1")
            assert data(next(events))["data"]["node"] == "plan"  # still streaming: not taken for a hang-up
            assert active_feeds() == 1
    finally:
        for fd in filler:
            os.close(fd)
    assert eventually(lambda: active_feeds() == 0)


def test_a_briefing_runs_on_after_its_watcher_left(live: Live) -> None:
    result: list[httpx.Response] = []
    with connect_sse(live.http, "GET", "/feed", params={"ward": WARD}) as source:
        events = source.iter_sse()
        assert data(next(events))["type"] == "connection"
        other = httpx.Client(base_url=str(live.http.base_url), timeout=PATIENCE_S)
        worker = threading.Thread(target=lambda: result.append(other.post("/trigger", json={"ward": WARD})))
        worker.start()
        assert next(events).event == "analysis-progress"
    worker.join(PATIENCE_S)
    other.close()
    assert result[0].status_code == 200
    thread_id = result[0].json()["result"]["analysis"]["thread_id"]
    snapshot = live.reports.graph.get_state({"configurable": {"thread_id": thread_id}})
    assert snapshot.values["result"] and not snapshot.next  # finished and checkpointed
    assert eventually(lambda: active_feeds() == 0)


def test_reconnect_with_last_event_id_resumes_where_it_stopped(live: Live) -> None:
    assert live.http.get(f"/{WARD}", params={"depth": "deep"}).status_code == 200
    first = read(live, 2, ward=WARD)  # the connection and the first item
    last_id = first[1].id
    hub = live.reports.hub
    missed = [hub.publish(WARD, NodeFinished(node=n).wire(), "t-1") for n in ("plan", "gather")]
    again = read(live, 5, headers={"Last-Event-ID": last_id}, ward=WARD)
    bodies = [data(e) for e in again]
    assert bodies[0]["type"] == "connection"
    # Items 2 and 3, not item 1 again; then the two progress events published while it was away.
    assert [b["type"] for b in bodies[1:3]] == ["intelligence"] * 2
    assert data(first[1])["data"]["id"] not in {b["data"]["id"] for b in bodies[1:3]}
    assert [b["data"]["node"] for b in bodies[3:]] == ["plan", "gather"]
    assert [int(e.id.split(":")[0]) for e in again[3:]] == [m.seq for m in missed]
    # A Last-Event-ID it cannot read starts over, from now.
    fresh = read(live, 4, headers={"Last-Event-ID": "garbage"}, ward=WARD)
    assert [data(e)["type"] for e in fresh] == ["connection"] + ["intelligence"] * 3
