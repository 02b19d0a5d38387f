"""The briefing cache on SQLite and on a Redis of the test's own: ETag stable while the entry lives, expiry,
invalidation that touches only cache entries (SCAN, never KEYS), single flight within a process and across two
services sharing one store, and ``get_ward_report`` as the backend imports it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphs.errors import RequestError
from graphs.stores.briefing_cache import (
    BriefingCache,
    RedisBriefingCache,
    SqliteBriefingCache,
    cache_key,
    redis_glob,
)
from graphs.ward_reports import WardReports
from providers.testing import redis_servers, reply
from providers.testing.briefings import briefing_registry, draft_json


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BriefingCache]:
    if request.param == "sqlite":
        yield SqliteBriefingCache(tmp_path / "briefings.sqlite")
        return
    try:
        redis_servers.redis_server_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running("redis", tmp_path / "redis") as server:
        store = RedisBriefingCache.from_url(server.url)
        yield store
        store.close()


def test_entries_expire_and_keep_their_etag(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteBriefingCache(tmp_path / "c.sqlite", clock=clock)
    key = cache_key("Jubilee Hills", "standard", "neutral")
    assert key == "strategist:ward:Jubilee Hills:standard:neutral"
    store.put(key, '"abc"', b"{}", 60)
    clock.now += 59
    entry = store.get(key)
    assert entry is not None and entry.etag == '"abc"' and entry.ttl_s(clock.now) == 1
    clock.now += 1
    assert store.get(key) is None


def test_invalidation_matches_redis_globs_and_only_cache_keys(cache: BriefingCache) -> None:
    for ward in ("Amberpet", "Amber:pet", "Malakpet"):
        for depth in ("quick", "deep"):
            cache.put(cache_key(ward, depth, "neutral"), '"e"', b"{}", 60)
    if isinstance(cache, RedisBriefingCache):
        # Keys of other parts of the service under the same prefix: never touched by a cache invalidation.
        cache._client.set("strategist:ledger:x", "1")
        cache._client.set("strategist:ward-lock:strategist:ward:Amberpet:quick:neutral", "t")
    assert cache.delete_matching("strategist:ward:Amberpet:*", ward="Amberpet") == 2  # not Amber:pet's
    assert cache.delete_matching("strategist:ward:*:deep:*") == 2
    assert cache.delete_matching("strategist:*") == 2
    assert cache.entries() == 0
    if isinstance(cache, RedisBriefingCache):
        assert cache._client.get("strategist:ledger:x") == b"1"
        assert cache._client.exists("strategist:ward-lock:strategist:ward:Amberpet:quick:neutral") == 1


def test_redis_glob_semantics() -> None:
    assert redis_glob("strategist:ward:[A-M]*").fullmatch("strategist:ward:Malakpet:quick:neutral")
    assert not redis_glob("strategist:ward:[^A-M]*").fullmatch("strategist:ward:Malakpet:quick:neutral")
    assert redis_glob(r"strategist:ward:a\*b:?:x").fullmatch("strategist:ward:a*b:q:x")
    assert not redis_glob(r"strategist:ward:a\*b:*").fullmatch("strategist:ward:aXb:q:x")


def test_leases_exclude_each_other_and_expire(cache: BriefingCache) -> None:
    token = cache.acquire("k", 0.5)
    assert token is not None and cache.acquire("k", 0.5) is None
    assert cache.renew("k", token, 30) and not cache.renew("k", "not-mine", 30)
    cache.release("k", "not-mine")
    assert cache.acquire("k", 30) is None
    cache.release("k", token)
    assert cache.acquire("k", 30) is not None


def _reports(cache: BriefingCache, gate: threading.Event | None = None) -> WardReports:
    def write(_messages: object) -> object:
        if gate is not None:
            gate.wait(60)
        return reply(draft_json())

    registry = briefing_registry(writer=[write])
    return WardReports(registry, InMemorySaver(), cache)


def test_two_services_sharing_a_store_run_one_analysis(cache: BriefingCache) -> None:
    # Two WardReports on one store stand for two processes: each has its own in-process single flight, so only
    # the store's lease keeps the second from running its own analysis.
    gate = threading.Event()
    first, second = _reports(cache, gate), _reports(cache)
    with ThreadPoolExecutor(max_workers=8) as pool:
        leaders = pool.submit(first.report, "Amberpet")
        while first.analyses == 0:
            threading.Event().wait(0.01)
        followers = [pool.submit(second.report, "Amberpet") for _ in range(6)]
        gate.set()
        reports = [leaders.result(timeout=60)] + [f.result(timeout=60) for f in followers]
    assert (first.analyses, second.analyses) == (1, 0)
    assert len({r.etag for r in reports}) == 1
    assert not reports[0].cached and all(r.cached for r in reports[1:])


def test_get_ward_report_is_synchronous_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphs import ward_reports

    service = _reports(SqliteBriefingCache(tmp_path / "c.sqlite"))
    monkeypatch.setattr(ward_reports, "default_reports", lambda: service)
    data, etag, ttl = ward_reports.get_ward_report("  Jubilee Hills  ", "nonsense")
    assert data["ward"] == "Jubilee Hills" and data["analysis"]["depth"] == "standard"
    assert etag.startswith('"') and ttl == 60
    again = ward_reports.get_ward_report("Jubilee Hills")
    assert again[1] == etag and service.analyses == 1
    with pytest.raises(RequestError, match="Ward parameter is required"):
        ward_reports.get_ward_report("   ")
