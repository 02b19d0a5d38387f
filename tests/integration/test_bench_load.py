"""bench/load.py's CPU comparison runs, so its README row can always be measured again.

Its child process once built the bare graph around a chat model where the bare graph takes a call, and the row
could not be measured until someone ran the whole bench. Nothing here reads a time: the bench prints the figures.
"""

from __future__ import annotations

from bench.load import orchestration_cpu
from providers.testing import redis_servers


def test_the_load_bench_compares_orchestration_cpu_with_a_bare_graph(
    redis_server: redis_servers.RedisServer,
) -> None:
    bare, project = orchestration_cpu(f"{redis_server.url}/12", runs=3)
    assert bare > 0 and project > 0
