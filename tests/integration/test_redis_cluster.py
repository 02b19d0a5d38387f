"""Every Redis user of the project on a real three-master Redis Cluster reached by a plain ``redis://`` URL
(issue 10 item 7): the checkpoint saver, the ledger, feedback, the circuit-breaker store, the briefing cache and
thread leases all get cluster clients (providers/redis_connect.py), their keys really live on several nodes, and
nothing answers MOVED or falls back to in-process state.

Before the shared connection factory, the breaker store built a plain client from a plain URL: every command on
a key of another node answered MOVED, it logged "circuit breaker store unreachable" and kept state per process
(only ``redis+cluster://`` worked). The cluster is the test's own: three ``redis-server --cluster-enabled yes``
joined by ``redis-cli --cluster create`` (providers/testing/redis_servers.py, kind ``cluster3``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.cluster

from graphs.request import parse_request
from graphs.service import Orchestrator
from graphs.stores import open_stores
from graphs.stores.briefing_cache import RedisBriefingCache
from graphs.stores.lease import RedisThreadLeases
from graphs.stores.redis_saver import RedisSaver
from providers.config import load_settings
from providers.redis_connect import redis_client
from providers.resilience.breaker_store import BreakerPolicy, RedisBreakerStore
from providers.testing import fake_registry, redis_servers, reply

QUERY = "Summarise: the rally in Malakpet went well and turnout was high."
# Enough names that their hash slots fall on every node of three.
PROVIDERS = [f"provider-{i}" for i in range(12)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis_servers.RedisClusterGroup]:
    try:
        redis_servers.redis_server_binary()
        redis_servers.redis_cli_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running_cluster(tmp_path_factory.mktemp("cluster3")) as group:
        yield group


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: redis_servers.RedisClusterGroup) -> str:
    for var in list(os.environ):
        if var.startswith(("GEMINI_", "GOOGLE_", "PERPLEXITY_", "LOCAL_", "STRATEGIST_", "REDIS_", "ROUTING_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOCAL_MODEL_PATH", str(tmp_path / "missing.gguf"))
    assert cluster.url.startswith("redis://") and "cluster" not in cluster.url
    monkeypatch.setenv("REDIS_URL", cluster.url)
    return cluster.url


def test_a_plain_url_of_a_cluster_node_gets_cluster_clients_everywhere(env: str) -> None:
    assert isinstance(redis_client(env), redis.cluster.RedisCluster)
    breaker = RedisBreakerStore.from_url(env, BreakerPolicy())
    assert isinstance(breaker._client, redis.cluster.RedisCluster)
    cache = RedisBriefingCache.from_url(env)
    assert isinstance(cache._client, redis.cluster.RedisCluster)
    cache.close()
    with open_stores(load_settings()) as stores:
        assert isinstance(stores.checkpointer, RedisSaver)
        assert isinstance(stores.checkpointer.client, redis.cluster.RedisCluster)
        assert isinstance(stores.leases, RedisThreadLeases)


def test_breaker_state_is_shared_across_nodes_with_no_moved_and_no_fallback(
    env: str, cluster: redis_servers.RedisClusterGroup, caplog: pytest.LogCaptureFixture
) -> None:
    policy = BreakerPolicy(failure_threshold=3)
    one, other = RedisBreakerStore.from_url(env, policy), RedisBreakerStore.from_url(env, policy)
    with caplog.at_level(logging.WARNING):
        for provider in PROVIDERS:
            for _ in range(3):
                one.add(provider, 1000.0, ok=False, latency_ms=5.0)
            assert one.transition(provider, expect_opened_at=None, open_at=1000.0)
            # The other process sees what this one wrote: the state lives in the cluster, not in either process.
            assert other.read_state(provider) == ("open", 1000.0)
            assert other.view(provider, 1001.0).failed == 3
            assert other.claim_probe(provider, 1031.0, 60.0) and not one.claim_probe(provider, 1031.0, 60.0)
    assert "unreachable" not in caplog.text and "MOVED" not in caplog.text
    assert one._down_until == 0.0 and other._down_until == 0.0  # never fell back to in-process state
    spread = cluster.keys_per_node("strategist:breaker:*")
    assert sum(1 for n in spread if n > 0) >= 2, spread  # keys really on several masters
    for provider in PROVIDERS:
        one.reset(provider)


def test_analyses_checkpoints_ledger_feedback_and_leases_on_three_masters(
    env: str, cluster: redis_servers.RedisClusterGroup
) -> None:
    threads = [f"cluster-thread-{i}" for i in range(6)]
    answers = [reply("Turnout was high and the rally went well.\nConfidence: 0.7") for _ in threads]
    with open_stores(load_settings()) as stores:
        orch = Orchestrator(fake_registry({"local": answers}), stores.checkpointer, stores.ledger, stores.feedback)
        for thread_id in threads:
            result = orch.analyze(parse_request({"query": QUERY}), thread_id=thread_id)
            assert result.answer is not None
        assert all(orch.status(thread_id) == "complete" for thread_id in threads)
        assert {e.thread_id for e in stores.ledger.entries()} >= set(threads)
        orch.record_feedback(threads[0], True, note="on a cluster")
        assert [o.thread_id for o in stores.feedback.outcomes()] == [threads[0]]
        # Leases: one holder per thread, wherever the thread's slot lives; released when the run ended.
        assert stores.leases is not None
        held = [lease for thread_id in threads if (lease := stores.leases.acquire(thread_id)) is not None]
        assert len(held) == len(threads)  # every thread's lease was free once its run ended
        assert all(stores.leases.acquire(thread_id) is None for thread_id in threads)
        for lease in held:
            lease.release()
        saver = stores.checkpointer
        assert isinstance(saver, RedisSaver)
        saver.delete_thread(threads[-1])
        assert orch.graph.get_state({"configurable": {"thread_id": threads[-1]}}).values == {}
    spread = cluster.keys_per_node("lgcp:*")
    assert sum(1 for n in spread if n > 0) >= 2, spread
