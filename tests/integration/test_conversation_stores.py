"""Conversations, playbooks and scenarios outlive the process: threads in the configured checkpointer (SQLite or
our Redis saver), records in SQLite or Redis; a reopened store continues a conversation where it stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from graphs.context import Context
from graphs.conversation_service import Conversations
from graphs.stores import open_stores
from graphs.stores.lease import FileThreadLeases, RedisThreadLeases, leases_of
from graphs.stores.records import open_records
from providers.config import Settings, load_settings
from providers.testing import fake_registry, redis_servers, reply


@pytest.fixture(params=["sqlite", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    env = {"STRATEGIST_DATA_DIR": str(tmp_path / "data"), "LOCAL_MODEL_PATH": "/nonexistent/model.gguf"}
    if request.param == "sqlite":
        yield load_settings(env)
        return
    try:
        redis_servers.redis_server_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running("redis", tmp_path / "redis") as server:
        yield load_settings(env | {"REDIS_URL": server.url})


def test_records_are_listed_newest_first_by_ward_and_deleted(settings: Settings) -> None:
    records = open_records(settings)
    try:
        for n, ward in enumerate(["Malakpet", "Amberpet", "Malakpet"]):
            records.put("scenario", f"sc_{n}", ward, 100.0 + n, {"scenario_id": f"sc_{n}", "ward": ward})
        assert [r["scenario_id"] for r in records.newest("scenario", None, 10)] == ["sc_2", "sc_1", "sc_0"]
        assert [r["scenario_id"] for r in records.newest("scenario", "Malakpet", 1)] == ["sc_2"]
        assert records.get("scenario", "sc_1") == {"scenario_id": "sc_1", "ward": "Amberpet"}
        assert records.newest("playbook", None, 10) == []
        assert records.delete("scenario", "sc_2") and not records.delete("scenario", "sc_2")
        assert [r["scenario_id"] for r in records.newest("scenario", "Malakpet", 10)] == ["sc_0"]
    finally:
        records.close()


def test_a_conversation_continues_after_the_store_is_reopened(settings: Settings) -> None:
    prompts: list[str] = []

    def answer(messages: list[BaseMessage]) -> Any:
        prompts.append(messages[-1].text)
        return reply(f"Answer {len(prompts)}: booth captains first.\nConfidence: 0.7")

    registry = fake_registry({"gemini": [answer]}, settings)
    with open_stores(settings) as stores:
        records = open_records(settings)
        first = Conversations(registry, stores.checkpointer, records, ledger=stores.ledger)
        session_id = first.create("Malakpet")["session_id"]
        first.add_message(session_id, "Design a 12-week plan for Malakpet")
        assert list(first.stream_reply(session_id))[-1]["type"] == "analysis_complete"
        records.close()
    with open_stores(settings) as stores:  # another process, the same stores
        records = open_records(settings)
        second = Conversations(registry, stores.checkpointer, records, ledger=stores.ledger)
        assert second.get(session_id)["message_count"] == 2
        second.add_message(session_id, "Shorten that")
        done = list(second.stream_reply(session_id))[-1]
        assert done["content"] == "Answer 2: booth captains first."
        assert "User: Design a 12-week plan for Malakpet" in prompts[1]
        assert "Assistant: Answer 1: booth captains first." in prompts[1]
        assert [c["id"] for c in second.newest("Malakpet", 10)] == [session_id]
        # Each turn is its own ledger row, though the turns share the thread.
        assert {e.thread_id for e in stores.ledger.entries()} >= {f"{session_id}#1", f"{session_id}#2"}
        records.close()


class FailsOnce:
    """An outcome source that breaks once after the provider answered (a crash there), then has no outcomes.

    Routing reads the outcomes too (learned adequacy), before any call: only a read once ``answered()`` is true
    breaks.
    """

    def __init__(self, answered: Callable[[], bool]) -> None:
        self.failed = False
        self.answered = answered

    def version(self) -> str:
        if not self.failed and self.answered():
            self.failed = True
            raise RuntimeError("the process died here")
        return "v1"

    def outcomes(self) -> list[Any]:
        return []


def test_a_reply_cut_after_its_provider_answered_resumes_without_paying_again(tmp_path: Path) -> None:
    settings = load_settings({"STRATEGIST_DATA_DIR": str(tmp_path / "data"), "LOCAL_MODEL_PATH": "/nonexistent/m"})
    calls: list[str] = []

    def answer(messages: list[BaseMessage]) -> Any:
        calls.append(messages[-1].text)
        return reply("Booth captains first.\nConfidence: 0.7")

    registry = fake_registry({"gemini": [answer]}, settings)
    broken = FailsOnce(answered=lambda: bool(calls))
    with open_stores(settings) as stores:
        records = open_records(settings)
        conversations = Conversations(
            registry, stores.checkpointer, records, context=lambda: Context(registry=registry, feedback=broken)
        )
        session_id = conversations.create("Malakpet")["session_id"]
        conversations.add_message(session_id, "Design a 12-week plan for Malakpet")
        assert [e["type"] for e in conversations.stream_reply(session_id)][-1] == "error"
        assert len(calls) == 1 and conversations.get(session_id)["message_count"] == 1
        # The next request resumes the checkpointed turn: the finished call is not made again.
        done = list(conversations.stream_reply(session_id))[-1]
        assert done["type"] == "analysis_complete" and done["content"] == "Booth captains first."
        assert len(calls) == 1 and conversations.get(session_id)["message_count"] == 2
        records.close()


def test_a_session_another_runner_holds_is_not_answered_twice(settings: Settings) -> None:
    calls: list[str] = []

    def answer(messages: list[BaseMessage]) -> Any:
        calls.append(messages[-1].text)
        return reply("Booth captains first.\nConfidence: 0.7")

    registry = fake_registry({"gemini": [answer]}, settings)
    with open_stores(settings) as stores:
        records = open_records(settings)
        conversations = Conversations(registry, stores.checkpointer, records)
        session_id = conversations.create("Malakpet")["session_id"]
        conversations.add_message(session_id, "Design a 12-week plan for Malakpet")
        leases = leases_of(stores.checkpointer)
        # The embedded stores lease by file lock, the Redis ones by a Redis key.
        kind = FileThreadLeases if settings.redis_url is None else RedisThreadLeases
        assert isinstance(leases, kind)
        other = leases.acquire(session_id)  # another process is writing this session's reply
        assert other is not None and leases.acquire(session_id) is None  # held: nobody else gets it
        events = list(conversations.stream_reply(session_id))
        assert events[-1]["type"] == "error" and "already running" in events[-1]["message"] and calls == []
        other.release()
        assert list(conversations.stream_reply(session_id))[-1]["type"] == "analysis_complete"
        assert len(calls) == 1
        records.close()
