"""One way to open Redis for every part of the project: a plain ``redis://`` URL that names a cluster node gets a
cluster client.

Why this exists: redis-py has two client classes and ``redis.from_url`` never picks ``RedisCluster`` by itself.
A plain client pointed at one node of a cluster works for the keys that node happens to own and answers
``MOVED`` for the rest, so each Redis user (checkpoint saver, ledger, feedback, breaker store, briefing cache,
thread leases) would have to detect the mode on its own; the breaker store did not, and silently fell back to
in-process state on a cluster. Here the mode is decided once per URL: ``redis+cluster://`` (or
``rediss+cluster://``) forces a cluster client, and any other URL asks the server (``INFO cluster``,
``cluster_enabled``), which every Redis since 3.0 and Valkey answer, clustered or not.

Lives in ``providers`` (the bottom floor) because the breaker store uses it; graphs import it from here.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

SyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster
AsyncRedis: TypeAlias = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


def split_cluster_scheme(url: str) -> tuple[str, bool]:
    """Return the URL redis-py understands and whether its scheme forces cluster mode (``redis+cluster://``)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.endswith("+cluster"):
        return f"{scheme.removesuffix('+cluster')}://{rest}", True
    return url, False


def is_cluster(url: str, **options: Any) -> bool:
    """Ask the server at ``url`` whether cluster mode is enabled (``INFO cluster``); raises what redis-py raises.

    ``options`` are client options (timeouts, TLS); ``decode_responses`` does not matter for INFO.
    """
    plain, forced = split_cluster_scheme(url)
    if forced:
        return True
    probe = redis.Redis.from_url(plain, **options)
    try:
        info = probe.info("cluster")
    finally:
        probe.close()
    return bool(int(info.get("cluster_enabled", 0)))


def detect_cluster(url: str, *, unreachable_as_plain: bool = False, **options: Any) -> bool:
    """Like ``is_cluster``; with ``unreachable_as_plain``, a server that does not answer counts as not a cluster.

    That suits stores that must open lazily and degrade (the breaker store): the first real command reports the
    outage. Stores that must work (checkpoints) let the error out so the caller says Redis is unreachable.
    """
    try:
        return is_cluster(url, **options)
    except (redis.RedisError, OSError):
        if unreachable_as_plain:
            return False
        raise


def redis_client(url: str, *, unreachable_as_plain: bool = False, **options: Any) -> SyncRedis:
    """Return a sync client for ``url``: ``RedisCluster`` when the server is a cluster node, else ``Redis``."""
    plain, _ = split_cluster_scheme(url)
    if detect_cluster(url, unreachable_as_plain=unreachable_as_plain, **options):
        return redis.cluster.RedisCluster.from_url(plain, **options)
    return redis.Redis.from_url(plain, **options)


def async_redis_client(url: str, *, cluster: bool, **options: Any) -> AsyncRedis:
    """Return an asyncio client for ``url`` of the mode already decided (``cluster``), for use in one loop."""
    plain, _ = split_cluster_scheme(url)
    if cluster:
        return redis.asyncio.cluster.RedisCluster.from_url(plain, **options)
    return redis.asyncio.Redis.from_url(plain, **options)
