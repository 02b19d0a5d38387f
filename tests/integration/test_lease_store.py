"""The lease stores themselves (graphs/stores/lease.py): exclusive per thread, renewed while held, noticed when
lost, taken over from a dead holder of this host, and released for the next runner. On a Redis of the test's own
(and a file-lock directory in tmp); the two-process behaviour is in test_thread_lease.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from graphs.errors import ThreadBusy
from graphs.stores.lease import FileThreadLeases, RedisThreadLeases, ThreadLeases, holding
from providers.testing import redis_servers

# Generous: a heartbeat every second must have run within this on a loaded machine.
PATIENCE_S = 60.0


@pytest.fixture(params=["file", "redis"])
def leases(request: pytest.FixtureRequest, tmp_path: Path) -> ThreadLeases:
    if request.param == "file":
        return FileThreadLeases(tmp_path / "leases")
    redis_server: redis_servers.RedisServer = request.getfixturevalue("redis_server")
    return RedisThreadLeases(redis_server.client(), ttl_s=30)


def test_one_holder_per_thread_until_released(leases: ThreadLeases) -> None:
    first = leases.acquire("t-1")
    assert first is not None and not first.lost
    assert leases.acquire("t-1") is None
    other = leases.acquire("t-2")  # another thread is not affected
    assert other is not None and leases.acquire("t-2") is None
    first.release()
    again = leases.acquire("t-1")  # released: the next runner gets it, and holds it
    assert again is not None and not again.lost and leases.acquire("t-1") is None
    again.release()
    other.release()


def test_holding_refuses_or_waits_with_an_injected_clock(leases: ThreadLeases) -> None:
    held = leases.acquire("busy")
    assert held is not None and not held.lost
    refused = pytest.raises(ThreadBusy, match=r"thread busy is already running in another process.*--wait SECONDS")
    with refused, holding(leases, "busy"):
        pass

    now = [0.0]
    notices: list[str] = []

    def sleep(seconds: float) -> None:  # the other runner finishes while we wait
        now[0] += seconds
        held.release()

    with holding(leases, "busy", wait_s=5, clock=lambda: now[0], sleep=sleep, on_wait=lambda: notices.append("w")):
        assert leases.acquire("busy") is None  # we hold it now
    assert notices == ["w"] and now[0] > 0

    blocker = leases.acquire("busy")
    assert blocker is not None and leases.acquire("busy") is None  # held: a second runner is refused

    def tick(seconds: float) -> None:
        now[0] += seconds

    waiting = holding(leases, "busy", wait_s=1, clock=lambda: now[0], sleep=tick)
    with pytest.raises(ThreadBusy, match="after waiting 1s"), waiting:
        pass
    blocker.release()


def test_redis_lease_is_renewed_past_its_ttl_and_noticed_when_lost(redis_server: redis_servers.RedisServer) -> None:
    client = redis_server.client()
    leases = RedisThreadLeases(client, ttl_s=1.5)
    lease = leases.acquire("long-run")
    key = leases.key("long-run")
    assert lease is not None and client.get(key) == lease.value.encode()  # the key holds our token
    # Wait for two renewals (each puts the TTL back near 1.5 s) instead of sleeping a fixed time.
    deadline = time.monotonic() + PATIENCE_S
    renewals = 0
    last = int(client.pttl(key))
    while renewals < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        current = int(client.pttl(key))
        renewals += current > last
        last = current
    assert renewals >= 2 and client.exists(key)
    # Someone else's lease replaces ours (ours had expired): the next renewal sees it and marks ours lost.
    client.set(key, "someone-else")
    while not lease.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease.lost
    lease.release()
    assert client.get(key) == b"someone-else"  # release is compare-and-delete: the other's lease stays


def test_redis_lease_of_a_dead_process_on_this_host_is_taken_over(redis_server: redis_servers.RedisServer) -> None:
    client = redis_server.client()
    leases = RedisThreadLeases(client, ttl_s=300)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    # A lease written by a process that no longer exists (as a SIGKILLed runner leaves it).
    holder = leases.acquire("crashed")
    assert holder is not None and leases.acquire("crashed") is None
    holder._stop.set()  # stop its heartbeat without releasing, as a killed process would
    token = holder.value.split(" ")[0]
    client.set(leases.key("crashed"), f"{token} {socket.gethostname()} {dead_pid}", px=300_000)
    taken = leases.acquire("crashed")
    assert taken is not None and client.get(leases.key("crashed")) == taken.value.encode()  # now ours
    taken.release()
    # A live holder (this process, another lease object) is not taken over.
    live = leases.acquire("alive")
    assert live is not None and leases.acquire("alive") is None
    live.release()


def test_lease_keys_share_the_thread_hash_tag(redis_server: redis_servers.RedisServer) -> None:
    leases = RedisThreadLeases(redis.Redis(host=redis_server.host, port=redis_server.port), ttl_s=30)
    assert leases.key("a{b}:c") == "strategist:lease:{a%7Bb%7D%3Ac}"
