"""Hold RedisSaver to langgraph-checkpoint-conformance on Redis, Valkey and Cluster.

Every capability suite of the conformance package (base and extended) runs
against each server twice: once through the async client (the ``a*`` methods
proper) and once with only a sync client, where the ``a*`` methods run the sync
code in a thread, so the sync path is held to the same suite. Each server is
started by the tests on a free port (providers/testing/redis_servers.py); the shared Redis
on 6379 is never touched.
"""

from __future__ import annotations

import asyncio
import operator
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Protocol, TypedDict

import pytest
import redis
import redis.cluster
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.checkpoint.conformance.spec import test_copy_thread as spec_copy_thread
from langgraph.checkpoint.conformance.spec import (
    test_delete_for_runs as spec_delete_for_runs,
)
from langgraph.checkpoint.conformance.spec import (
    test_delete_thread as spec_delete_thread,
)
from langgraph.checkpoint.conformance.spec import test_get_tuple as spec_get_tuple
from langgraph.checkpoint.conformance.spec import test_list as spec_list
from langgraph.checkpoint.conformance.spec import test_prune as spec_prune
from langgraph.checkpoint.conformance.spec import test_put as spec_put
from langgraph.checkpoint.conformance.spec import test_put_writes as spec_put_writes
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.graph import END, START, StateGraph

from graphs.stores.redis_saver import CheckpointStoreUnavailable, RedisSaver
from providers.testing import redis_servers

SERVER_KINDS: list[redis_servers.Kind] = ["redis", "valkey", "cluster"]

# How many tests each capability suite holds, so a suite that silently ran
# fewer tests (or was skipped as "not implemented") fails here.
EXPECTED_TESTS = {
    Capability.PUT.value: len(spec_put.ALL_PUT_TESTS),
    Capability.PUT_WRITES.value: len(spec_put_writes.ALL_PUT_WRITES_TESTS),
    Capability.GET_TUPLE.value: len(spec_get_tuple.ALL_GET_TUPLE_TESTS),
    Capability.LIST.value: len(spec_list.ALL_LIST_TESTS),
    Capability.DELETE_THREAD.value: len(spec_delete_thread.ALL_DELETE_THREAD_TESTS),
    Capability.DELETE_FOR_RUNS.value: len(spec_delete_for_runs.ALL_DELETE_FOR_RUNS_TESTS),
    Capability.COPY_THREAD.value: len(spec_copy_thread.ALL_COPY_THREAD_TESTS),
    Capability.PRUNE.value: len(spec_prune.ALL_PRUNE_TESTS),
}


def _require_binary(kind: redis_servers.Kind) -> None:
    try:
        redis_servers.binary_for(kind)
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[redis_servers.RedisServer]:
    kind: redis_servers.Kind = request.param
    _require_binary(kind)
    with redis_servers.running(kind, tmp_path_factory.mktemp(kind)) as srv:
        yield srv


@pytest.fixture(scope="module")
def cluster_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[redis_servers.RedisServer]:
    _require_binary("cluster")
    with redis_servers.running("cluster", tmp_path_factory.mktemp("xslot")) as srv:
        yield srv


def _prefix() -> str:
    # A fresh key prefix per saver keeps suites and tests from seeing each
    # other's threads (the conformance helpers reuse ids like "thread-0").
    return "t" + uuid.uuid4().hex[:12]


# --------------------------------------------------------------- conformance


def _registered(make_saver: Callable[[], tuple[RedisSaver, Callable[[], Any]]], name: str) -> Any:
    async def factory() -> AsyncGenerator[BaseCheckpointSaver[Any], None]:
        saver, close = make_saver()
        try:
            yield saver
        finally:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    return checkpointer_test(name=name)(factory)


def _run_suite(registered: Any, capability: str) -> tuple[Any, list[tuple[str, str]]]:
    failures: list[tuple[str, str]] = []

    def on_result(cap: str, name: str, ok: bool, error: str | None) -> None:
        if not ok:
            failures.append((name, error or ""))

    progress = ProgressCallbacks(on_test_result=on_result)
    report = asyncio.run(validate(registered, capabilities={capability}, progress=progress))
    return report.results[capability], failures


def _assert_suite_passed(result: Any, failures: list[tuple[str, str]], cap: str) -> None:
    assert result.detected, f"{cap} not detected as implemented"
    assert not failures, "\n\n".join(f"{name}:\n{err}" for name, err in failures)
    assert result.tests_failed == 0
    assert result.tests_passed == EXPECTED_TESTS[cap]
    assert result.passed is True


@pytest.mark.parametrize("capability", [c.value for c in Capability])
@pytest.mark.parametrize("mode", ["async-client", "sync-client"])
def test_conformance(server: redis_servers.RedisServer, mode: str, capability: str) -> None:
    def make() -> tuple[RedisSaver, Callable[[], Any]]:
        client = server.client()
        if mode == "sync-client":
            return RedisSaver(client, key_prefix=_prefix()), client.close

        aclient = server.async_client()

        async def close() -> None:
            await aclient.aclose()
            client.close()

        return RedisSaver(client, aclient, key_prefix=_prefix()), close

    registered = _registered(make, f"RedisSaver[{server.kind},{mode}]")
    result, failures = _run_suite(registered, capability)
    _assert_suite_passed(result, failures, capability)


@pytest.mark.parametrize("capability", [c.value for c in Capability])
def test_conformance_cluster_node_enforces_no_crossslot(
    cluster_server: redis_servers.RedisServer, capability: str
) -> None:
    """Run the suite through a plain (non-cluster) client against a cluster node.

    A cluster client splits commands by slot on its own and could hide a
    cross-slot command; a plain client sends everything to the node, which
    answers CROSSSLOT for any multi-key command or transaction spanning slots.
    """

    def make() -> tuple[RedisSaver, Callable[[], Any]]:
        client = cluster_server.node_client()
        return RedisSaver(client, key_prefix=_prefix()), client.close

    registered = _registered(make, "RedisSaver[cluster-node]")
    result, failures = _run_suite(registered, capability)
    _assert_suite_passed(result, failures, capability)
    with cluster_server.node_client() as node:
        errors = node.info("errorstats")
    assert not any("CROSSSLOT" in k for k in errors), errors


# ------------------------------------------------------------ focused tests


def _put_sample(saver: RedisSaver, thread_id: str, ns: str = "") -> dict[str, Any]:
    cfg = generate_config(thread_id, checkpoint_ns=ns)
    cp = generate_checkpoint(channel_values={"query": "q", "n": 1})
    cp["channel_versions"] = {"query": 1, "n": 1}
    stored = saver.put(cfg, cp, generate_metadata(), {"query": 1, "n": 1})
    saver.put_writes(stored, [("n", 2), ("query", "q2")], "task-1")
    return dict(stored)


def _thread_keys(server: redis_servers.RedisServer, pattern: str) -> list[bytes]:
    # KEYS is fine here: a test inspecting its own private server.
    with server.node_client() as node:
        return sorted(node.keys(pattern))


def test_ttl_applies_to_finished_threads_only(server: redis_servers.RedisServer) -> None:
    """Issue 10 item 6: a TTL refreshed by writes expired a thread whose step outlasted it (the stored state lost
    its query and two checkpoints). Now writes keep a thread's keys without TTL (running or resumable), and only
    ``expire_thread``, called when it finished, sets one; running it again clears it."""
    prefix = _prefix()
    saver = RedisSaver(server.client(), ttl_s=30, key_prefix=prefix)
    _put_sample(saver, "ttl-thread")
    keys = _thread_keys(server, f"{prefix}:*")
    assert len(keys) == 5, keys
    with server.node_client() as node:
        assert [node.pttl(key) for key in keys] == [-1] * 5  # running: no TTL, however long its steps take
        saver.expire_thread("ttl-thread")  # finished
        for key in keys:
            assert 0 < node.pttl(key) <= 30_000, key
        # It runs again (a resume, or a new question on the thread): a write clears the TTL of all its keys,
        # including the ones this write does not touch.
        saver.put(
            generate_config("ttl-thread"),
            generate_checkpoint(),
            generate_metadata(step=1),
            {},
        )
        assert [node.pttl(key) for key in keys] == [-1] * 5
        saver.expire_thread("ttl-thread", ttl_s=5)
        assert all(0 < node.pttl(key) <= 5_000 for key in keys)

    no_ttl = RedisSaver(server.client(), key_prefix=prefix + "x")
    _put_sample(no_ttl, "no-ttl-thread")
    no_ttl.expire_thread("no-ttl-thread")  # no TTL configured: nothing expires
    with server.node_client() as node:
        for key in _thread_keys(server, f"{prefix}x:*"):
            assert node.pttl(key) == -1, key


def test_delete_thread_leaves_no_keys(server: redis_servers.RedisServer) -> None:
    prefix = _prefix()
    saver = RedisSaver(server.client(), key_prefix=prefix)
    for ns in ("", "child:1"):
        _put_sample(saver, "doomed", ns)
        _put_sample(saver, "kept", ns)
    assert _thread_keys(server, f"{prefix}:{{doomed}}:*")
    saver.delete_thread("doomed")
    assert _thread_keys(server, f"{prefix}:{{doomed}}:*") == []
    assert len(_thread_keys(server, f"{prefix}:{{kept}}:*")) == 5
    saver.prune(["kept"], strategy="delete")
    assert _thread_keys(server, f"{prefix}:*") == []


def test_all_keys_of_a_thread_share_one_slot(
    cluster_server: redis_servers.RedisServer,
) -> None:
    prefix = _prefix()
    odd_thread = "a}b{c:d%20 é"
    saver = RedisSaver(cluster_server.client(), key_prefix=prefix)
    _put_sample(saver, odd_thread, "child:1|grand:2")
    with cluster_server.node_client() as node:
        keys = node.keys(f"{prefix}:*")
        assert len(keys) == 5
        slots = {node.execute_command("CLUSTER", "KEYSLOT", k) for k in keys}
    assert len(slots) == 1, slots
    tup = saver.get_tuple(generate_config(odd_thread, checkpoint_ns="child:1|grand:2"))
    assert (tup.config["configurable"]["thread_id"] if tup else None) == odd_thread
    assert [t.config["configurable"]["thread_id"] for t in saver.list(None)] == [odd_thread]


def test_list_without_config_scans_all_threads(
    server: redis_servers.RedisServer,
) -> None:
    prefix = _prefix()
    saver = RedisSaver(server.client(), key_prefix=prefix)
    for thread_id in ("t1", "t2", "t3"):
        _put_sample(saver, thread_id)
    assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == {
        "t1",
        "t2",
        "t3",
    }
    assert len(list(saver.list(None, limit=2))) == 2
    assert list(saver.list(None, filter={"source": "nope"})) == []


def test_list_across_namespaces_is_newest_first(server: redis_servers.RedisServer) -> None:
    saver = RedisSaver(server.client(), key_prefix=_prefix())
    ids = [_put_sample(saver, "multi-ns", ns)["configurable"]["checkpoint_id"] for ns in ("", "child:1", "", "child:2")]
    everything: Any = {"configurable": {"thread_id": "multi-ns"}}  # no checkpoint_ns: all namespaces
    listed = list(saver.list(everything))
    assert [t.checkpoint["id"] for t in listed] == ids[::-1]
    assert [t.config["configurable"]["checkpoint_ns"] for t in listed] == ["child:2", "", "child:1", ""]
    assert all(t.pending_writes and len(t.pending_writes) == 2 for t in listed)
    before = generate_config("multi-ns", checkpoint_id=ids[2])
    assert [t.checkpoint["id"] for t in saver.list(everything, before=before, limit=1)] == [ids[1]]
    only: Any = {"configurable": {"thread_id": "multi-ns", "checkpoint_id": ids[1]}}
    assert [t.checkpoint["id"] for t in saver.list(only)] == [ids[1]]


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_error_reply_and_dropped_connection_leave_saver_usable(kind: redis_servers.Kind, tmp_path: Path) -> None:
    # A server of its own: the errors provoked here would trip test_server_saw_no_errors.
    _require_binary(kind)
    with redis_servers.running(kind, tmp_path) as server:
        _check_error_recovery(server)


def _check_error_recovery(server: redis_servers.RedisServer) -> None:
    prefix = _prefix()
    client = server.client()
    saver = RedisSaver(client, key_prefix=prefix)
    # A key of the wrong type makes a command inside MULTI/EXEC fail: the error
    # must surface, and the connection must not hand its replies to the next call.
    client.set(f"{prefix}:{{broken}}:cp", b"not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        _put_sample(saver, "broken")
    stored = _put_sample(saver, "healthy")
    tup = saver.get_tuple(stored)  # type: ignore[arg-type]
    assert tup is not None and tup.pending_writes and len(tup.pending_writes) == 2
    # A connection the server dropped is replaced and the (idempotent) batch resent.
    with server.node_client() as node:
        node.client_kill_filter(_type="normal", skipme=True)
    assert saver.get_tuple(stored) is not None  # type: ignore[arg-type]
    _put_sample(saver, "after-kill")

    async def async_side() -> None:
        aclient = server.async_client()
        asaver = RedisSaver(client, aclient, key_prefix=prefix)
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await asaver.aput_writes(
                {"configurable": {"thread_id": "broken", "checkpoint_ns": "", "checkpoint_id": "x"}},
                [("ch", 1)],
                "task",
            )
        client.set(f"{prefix}:{{broken}}:w", b"still not a hash")
        assert (await asaver.aget_tuple(stored)) is not None  # type: ignore[arg-type]
        with server.node_client() as node:
            node.client_kill_filter(_type="normal", skipme=True)
        assert (await asaver.aget_tuple(stored)) is not None  # type: ignore[arg-type]
        await aclient.aclose()

    client.set(f"{prefix}:{{broken}}:w", b"not a hash")
    asyncio.run(async_side())


def test_from_url_masks_password_when_redis_is_down() -> None:
    port = redis_servers.free_port()
    url = f"redis://user:s3cret-pw@127.0.0.1:{port}/0"
    with pytest.raises(CheckpointStoreUnavailable) as info:
        RedisSaver.from_url(url, socket_connect_timeout=0.5)
    message = str(info.value)
    assert message.startswith(f"cannot reach Redis at redis://user:***@127.0.0.1:{port}/0: ")
    assert "s3cret-pw" not in message
    assert isinstance(info.value, RuntimeError)


def test_from_url_detects_cluster(
    server: redis_servers.RedisServer,
) -> None:
    saver = RedisSaver.from_url(server.url, ttl_s=60)
    expected = redis.cluster.RedisCluster if server.is_cluster else redis.Redis
    assert isinstance(saver.client, expected)
    assert saver.ttl_s == 60
    saver.close()
    if server.is_cluster:
        explicit = RedisSaver.from_url(server.url.replace("redis://", "redis+cluster://"))
        assert isinstance(explicit.client, redis.cluster.RedisCluster)
        explicit.close()


# ------------------------------------------------------------ graph resume


class AnalysisState(TypedDict, total=False):
    query: str
    attempts: Annotated[list[dict[str, Any]], operator.add]
    result: dict[str, Any]


class _NodeFn(Protocol):
    def __call__(self, state: AnalysisState) -> dict[str, Any]: ...


def _build_graph(calls: Counter[str], crash: set[str]) -> StateGraph[Any]:
    """classify -> (call_a || call_b) -> score; nodes in ``crash`` fail once."""

    def node(name: str) -> _NodeFn:
        def run(state: AnalysisState) -> dict[str, Any]:
            calls[name] += 1
            if name in crash:
                crash.discard(name)
                raise RuntimeError(f"{name} crashed")
            update: dict[str, Any] = {"attempts": [{"node": name}]}
            if name == "score":
                update["result"] = {"n_attempts": len(state["attempts"]) + 1}
            return update

        return run

    builder = StateGraph(AnalysisState)
    for name in ("classify", "call_a", "call_b", "score"):
        builder.add_node(name, node(name))
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "call_a")
    builder.add_edge("classify", "call_b")
    builder.add_edge(["call_a", "call_b"], "score")
    builder.add_edge("score", END)
    return builder


def _assert_resumed(final: dict[str, Any], calls: Counter[str]) -> None:
    # call_a finished before call_b crashed: its write was checkpointed as a
    # pending write, so resuming must not run (and pay for) it again.
    assert calls == Counter(classify=1, call_a=1, call_b=2, score=1)
    assert sorted(a["node"] for a in final["attempts"]) == [
        "call_a",
        "call_b",
        "classify",
        "score",
    ]
    assert final["result"] == {"n_attempts": 4}


def test_graph_resumes_after_crash(server: redis_servers.RedisServer) -> None:
    prefix = _prefix()
    config: Any = {"configurable": {"thread_id": "analysis-1"}}
    calls: Counter[str] = Counter()
    crash = {"call_b"}
    first = RedisSaver(server.client(), key_prefix=prefix)
    graph = _build_graph(calls, crash).compile(checkpointer=first)
    with pytest.raises(RuntimeError, match="call_b crashed"):
        graph.invoke({"query": "who leads in Ohio?", "attempts": []}, config)
    first.close()

    # A new saver with new connections: only what is in Redis survives.
    second = RedisSaver(server.client(), key_prefix=prefix)
    resumed = _build_graph(calls, crash).compile(checkpointer=second)
    final = resumed.invoke(None, config)
    _assert_resumed(final, calls)
    history = list(resumed.get_state_history(config))
    assert history[0].values["result"] == {"n_attempts": 4}


def test_graph_resumes_after_interrupt_async(server: redis_servers.RedisServer) -> None:
    prefix = _prefix()
    config: Any = {"configurable": {"thread_id": "analysis-2"}}
    calls: Counter[str] = Counter()

    async def scenario() -> None:
        aclient = server.async_client()
        saver = RedisSaver(server.client(), aclient, key_prefix=prefix)
        graph = _build_graph(calls, set()).compile(checkpointer=saver, interrupt_before=["score"])
        await graph.ainvoke({"query": "q", "attempts": []}, config)
        state = await graph.aget_state(config)
        assert state.next == ("score",)
        await aclient.aclose()

        aclient2 = server.async_client()
        saver2 = RedisSaver(server.client(), aclient2, key_prefix=prefix)
        resumed = _build_graph(calls, set()).compile(checkpointer=saver2)
        final = await resumed.ainvoke(None, config)
        assert calls == Counter(classify=1, call_a=1, call_b=1, score=1)
        assert final["result"] == {"n_attempts": 4}
        await aclient2.aclose()

    asyncio.run(scenario())


def test_graph_resumes_after_redis_crash_with_aof(tmp_path: Path) -> None:
    _require_binary("redis-aof")
    with redis_servers.running("redis-aof", tmp_path) as srv:
        config: Any = {"configurable": {"thread_id": "analysis-3"}}
        calls: Counter[str] = Counter()
        crash = {"call_b"}
        saver = RedisSaver(srv.client())
        graph = _build_graph(calls, crash).compile(checkpointer=saver)
        with pytest.raises(RuntimeError, match="call_b crashed"):
            graph.invoke({"query": "q", "attempts": []}, config)
        saver.close()
        srv.kill()  # SIGKILL: only what appendfsync=always put on disk survives
        srv.restart()
        resumed = _build_graph(calls, crash).compile(checkpointer=RedisSaver(srv.client()))
        _assert_resumed(resumed.invoke(None, config), calls)


def test_server_saw_no_errors(server: redis_servers.RedisServer) -> None:
    """Run last per server: no command in this module made the server error.

    errorstats alone is not usable: redis-py's connect handshake sends
    CLIENT SETINFO, which Redis 7.0 rejects; commandstats does not count those.
    """
    with server.node_client() as node:
        failing = {
            name: stats
            for name, stats in node.info("commandstats").items()
            if stats.get("failed_calls") or stats.get("rejected_calls")
        }
        errors = node.info("errorstats")
    assert failing == {}, failing
    assert not any("CROSSSLOT" in k for k in errors), errors
