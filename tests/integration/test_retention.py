"""Retention (issue 10 item 6) on SQLite and on a Redis of the test's own: a TTL only ever starts when a thread
has finished (running and resumable threads never carry one), and `strategist prune` deletes finished threads
older than ``keep_days`` or trims younger ones to their final checkpoint, never touching a running or interrupted
thread, keeping ledger rows and feedback outcomes, and reporting counts and bytes (a dry run deletes nothing).

Before: the saver's TTL was refreshed by writes only (a step longer than the TTL lost the thread's state), the
project never set one, and nothing was ever cleaned (about 58 KiB and 5 keys per analysis in Redis, forever).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli
from graphs.request import parse_request
from graphs.service import Orchestrator
from graphs.stores import Stores, open_stores
from graphs.stores.lease import FileThreadLeases, RedisThreadLeases, leases_of
from graphs.stores.redis_saver import RedisSaver
from graphs.stores.retention import DAY_S, prune
from providers.config import Settings, load_settings
from providers.testing import fake_registry, redis_servers, reply

QUERY = "Summarise: the rally in Malakpet went well and turnout was high."


@pytest.fixture(params=["sqlite", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"STRATEGIST_DATA_DIR": str(tmp_path / "data"), "LOCAL_MODEL_PATH": str(tmp_path / "missing.gguf")}
    if request.param == "sqlite":
        yield env
        return
    try:
        redis_servers.redis_server_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running("redis", tmp_path / "redis") as server:
        yield env | {"REDIS_URL": server.url}


def _orchestrator(stores: Stores, answers: int) -> Orchestrator:
    script = [reply("Turnout was high and the rally went well.\nConfidence: 0.7") for _ in range(answers)]
    return Orchestrator(fake_registry({"local": script}), stores.checkpointer, stores.ledger, stores.feedback)


def _interrupted(orch: Orchestrator, thread_id: str) -> None:
    """Leave a thread stopped after its first step, as a killed process would: resumable, not in the ledger."""
    request = parse_request({"query": QUERY})
    graph_input: Any = request.graph_input()
    config: Any = {"configurable": {"thread_id": thread_id}}
    orch.graph.invoke(graph_input, config, context=orch._context(), interrupt_after=["classify"], durability="sync")
    assert orch.status(thread_id) == "interrupted"


def _checkpoints(orch: Orchestrator, thread_id: str) -> int:
    return sum(1 for _ in orch.graph.get_state_history({"configurable": {"thread_id": thread_id}}))


def _pttls(stores: Stores, thread_id: str) -> list[int]:
    saver = stores.checkpointer
    assert isinstance(saver, RedisSaver) and saver.client is not None
    return [int(saver.client.pttl(key)) for key in saver._keys(thread_id).all()]


def test_ttl_starts_only_when_a_thread_has_finished(env: dict[str, str]) -> None:
    if "REDIS_URL" not in env:
        pytest.skip("SQLite has no TTL: `strategist prune` applies the policy there")
    settings = load_settings(env)
    with open_stores(settings) as stores:
        orch = _orchestrator(stores, 2)
        _interrupted(orch, "resumable")
        assert _pttls(stores, "resumable") == [-1] * 5  # interrupted: never expires
        orch.analyze(parse_request({"query": QUERY}), thread_id="finished")
        keep_ms = settings.retention.keep_days * DAY_S * 1000
        assert all(0 < ttl <= keep_ms for ttl in _pttls(stores, "finished"))
        orch.resume("resumable")  # runs again and finishes: its TTL starts now
        assert all(0 < ttl <= keep_ms for ttl in _pttls(stores, "resumable"))


def test_prune_deletes_old_finished_threads_and_nothing_else(env: dict[str, str], capsys: Any) -> None:
    settings: Settings = load_settings(env)
    with open_stores(settings) as stores:
        orch = _orchestrator(stores, 3)
        for thread_id in ("old-1", "old-2", "busy"):
            orch.analyze(parse_request({"query": QUERY}), thread_id=thread_id)
        orch.record_feedback("old-1", True, note="kept after the thread goes")
        _interrupted(orch, "resumable")
        before = {t: _checkpoints(orch, t) for t in ("old-1", "old-2", "busy", "resumable")}
        assert all(before.values())
        later = time.time() + 40 * DAY_S  # 40 days on: past keep_days = 30

        leases = leases_of(stores.checkpointer)
        # The embedded stores lease threads in the store's own kind: Redis keys with Redis, lock files with SQLite.
        assert isinstance(leases, RedisThreadLeases if "REDIS_URL" in env else FileThreadLeases)
        running = leases.acquire("busy")  # someone runs it again right now
        assert running is not None and leases.acquire("busy") is None  # held: a second runner is refused
        try:
            dry = prune(stores.checkpointer, stores.ledger, settings.retention, now=later, dry_run=True)
            assert (dry.finished, dry.deleted_threads, dry.skipped_busy) == (3, 2, 1)
            assert dry.checkpoints_removed == before["old-1"] + before["old-2"] and dry.bytes_freed > 0
            assert {t: _checkpoints(orch, t) for t in before} == before  # a dry run deletes nothing

            done = prune(stores.checkpointer, stores.ledger, settings.retention, now=later)
        finally:
            running.release()
        assert (done.deleted_threads, done.checkpoints_removed, done.bytes_freed) == (
            2,
            dry.checkpoints_removed,
            dry.bytes_freed,
        )
        after = {t: _checkpoints(orch, t) for t in before}
        assert after == before | {"old-1": 0, "old-2": 0}  # the running and the resumable threads are untouched
        # The ledger and the outcomes stay: spend and learning, not conversation content.
        assert {e.thread_id for e in stores.ledger.entries()} == {"old-1", "old-2", "busy"}
        assert [o.thread_id for o in stores.feedback.outcomes()] == ["old-1"]
        # Nothing young enough is deleted.
        again = prune(stores.checkpointer, stores.ledger, settings.retention, now=time.time())
        assert again.deleted_threads == 0 and _checkpoints(orch, "busy") == before["busy"]


def test_keep_final_trims_finished_threads_to_what_results_and_feedback_need(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(env)
    with open_stores(settings) as stores:
        orch = _orchestrator(stores, 1)
        result = orch.analyze(parse_request({"query": QUERY}), thread_id="finished")
        _interrupted(orch, "resumable")
        steps, resumable_steps = _checkpoints(orch, "finished"), _checkpoints(orch, "resumable")
        assert steps > 1
    for var in ("REDIS_URL", "STRATEGIST_CONFIG", "GEMINI_API_KEY", "PERPLEXITY_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    assert cli.main(["prune", "--keep", "final", "--dry-run"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("dry run: 1 finished threads; deleted 0, trimmed 1") and "would free" in line
    assert cli.main(["prune", "--keep", "final", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trimmed_threads"] == 1 and report["checkpoints_removed"] == steps - 1
    assert report["bytes_freed"] > 0 and not report["bytes_estimated"]

    with open_stores(settings) as stores:
        orch = _orchestrator(stores, 1)
        assert _checkpoints(orch, "finished") == 1 and _checkpoints(orch, "resumable") == resumable_steps
        # The final checkpoint is enough: the result comes back, and the analysis can still be judged.
        assert orch.resume("finished").answer == result.answer
        assert orch.record_feedback("finished", False).thread_id == "finished"
    assert cli.main(["prune", "--keep-days", "-1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
