"""One runner per thread: a lease taken before an analysis or briefing runs or resumes, held until it ends.

Without it two ``strategist resume`` of one thread both ran from the same checkpoint: every provider call was paid
twice, the thread forked into two heads and the ledger kept one of the two spends. Now the second runner is
refused (``ThreadBusy``: CLI exit 2, HTTP 409) or, when asked to, waits for the first to finish (and then finds
the thread complete, or resumes what is left).

Two backends, chosen with the checkpoint store:

- Redis: ``SET key token NX PX ttl``; a heartbeat thread renews it (compare-and-``PEXPIRE`` in Lua, by token)
  every third of the TTL while the run lasts, and release is a compare-and-``DEL``. A process that dies leaves
  its lease to expire after at most the TTL; the value also names the holder (host and pid), so a runner on the
  same host takes over a lease whose process is gone at once instead of waiting (crash, then resume). The key
  carries the thread in a hash tag like the saver's keys, so a cluster needs no special case.
  Written by hand rather than with ``redis.lock.Lock`` because that lock's value is an opaque token (it cannot
  say who holds it, nor let a successor recognise a dead holder) and it has no notion of a lost lease that a
  running graph must notice; the few lines of Lua are the same ones ``Lock`` uses.
- SQLite: an OS file lock per thread (``filelock``, which uses ``flock``) in ``<data dir>/leases``. The kernel
  releases it when the process dies, however it dies, so no TTL, heartbeat or takeover is needed; SQLite lives
  on one machine, so a machine-local lock covers every runner that can reach it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from filelock import FileLock, Timeout

from graphs.errors import ThreadBusy

DEFAULT_TTL_S = 30.0
LEASE_PREFIX = "strategist:lease"


class Lease(Protocol):
    """A held lease; ``lost`` turns true when a renewal found it taken or expired."""

    @property
    def lost(self) -> bool: ...

    def release(self) -> None: ...


class ThreadLeases(Protocol):
    """Where leases live; ``acquire`` returns a held lease or None when another runner holds the thread."""

    def acquire(self, thread_id: str) -> Lease | None: ...


@contextmanager
def holding(
    leases: ThreadLeases | None,
    thread_id: str,
    *,
    wait_s: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 0.2,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[Lease | None]:
    """Hold the thread's lease for the block; raise ``ThreadBusy`` if another runner keeps it past ``wait_s``.

    ``on_wait`` is called once when the lease is busy and the caller has chosen to wait (to tell the user why
    nothing happens yet).
    """
    if leases is None:
        yield None
        return
    deadline = clock() + max(0.0, wait_s)
    lease = leases.acquire(thread_id)
    while lease is None:
        if clock() >= deadline:
            waited = f" after waiting {wait_s:g}s" if wait_s > 0 else ""
            raise ThreadBusy(
                f"thread {thread_id} is already running in another process{waited}; wait for it to finish "
                "(or pass --wait SECONDS) and resume it then",
                thread_id=thread_id,
            )
        if on_wait is not None:
            on_wait()
            on_wait = None
        sleep(poll_s)
        lease = leases.acquire(thread_id)
    try:
        yield lease
    finally:
        lease.release()


# --- Redis ----------------------------------------------------------------------------------------------------

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _holder() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _dead_local_holder(value: str) -> bool:
    """Say whether a lease value names a process of this host that no longer exists."""
    parts = value.split(" ")
    if len(parts) != 3 or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return False
    pid = int(parts[2])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


@dataclass
class RedisLease:
    """A Redis lease held by this process, renewed by a daemon thread until released."""

    client: Any
    key: str
    value: str
    ttl_ms: int
    renew_script: Any
    release_script: Any
    _stop: threading.Event = field(default_factory=threading.Event)
    _lost: bool = False
    _thread: threading.Thread | None = None

    @property
    def lost(self) -> bool:
        return self._lost

    def start(self) -> None:
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease {self.key}", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.renew_script(keys=[self.key], args=[self.value, self.ttl_ms]):
                    self._lost = True
                    return
            except Exception:  # Redis unreachable for now: the run notices through its own store calls
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # Redis gone: the lease expires on its own after the TTL.
        with contextlib.suppress(Exception):
            self.release_script(keys=[self.key], args=[self.value])


class RedisThreadLeases:
    """Leases in Redis, shared by every process that uses the same server (or cluster)."""

    def __init__(self, client: Any, *, ttl_s: float = DEFAULT_TTL_S, prefix: str = LEASE_PREFIX) -> None:
        self._client = client
        self._ttl_ms = max(30, int(ttl_s * 1000))
        self._prefix = prefix
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    def key(self, thread_id: str) -> str:
        # Percent-encoded inside the hash tag, as the saver does, so "{" or "}" in an id cannot break the tag.
        return f"{self._prefix}:{{{quote(thread_id, safe='')}}}"

    def acquire(self, thread_id: str) -> RedisLease | None:
        key = self.key(thread_id)
        value = f"{uuid.uuid4().hex} {_holder()}"
        if not self._client.set(key, value, nx=True, px=self._ttl_ms):
            current = self._client.get(key)
            text = current.decode() if isinstance(current, bytes) else (current or "")
            # The holder crashed on this host: take over at once (compare-and-delete, so a lease renewed or
            # retaken meanwhile is left alone), rather than make a resume wait out the TTL.
            if not (text and _dead_local_holder(text) and self._release(keys=[key], args=[text])):
                return None
            if not self._client.set(key, value, nx=True, px=self._ttl_ms):
                return None
        lease = RedisLease(self._client, key, value, self._ttl_ms, self._renew, self._release)
        lease.start()
        return lease


# --- SQLite (file locks) ----------------------------------------------------------------------------------------


@dataclass
class FileLease:
    """A held OS file lock; never lost while the process lives."""

    lock: FileLock

    @property
    def lost(self) -> bool:
        return False

    def release(self) -> None:
        self.lock.release()


class FileThreadLeases:
    """Leases as OS file locks in ``directory``, one file per thread (named by a hash of its id)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, thread_id: str) -> Path:
        return self.directory / f"{hashlib.sha256(thread_id.encode()).hexdigest()[:32]}.lock"

    def acquire(self, thread_id: str) -> FileLease | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # thread_local=False: the lease is taken and released by one call chain, but LangGraph may finish on
        # another thread of the same process; is_singleton=False keeps two runners of one process apart.
        lock = FileLock(self.path(thread_id), thread_local=False, is_singleton=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        return FileLease(lock)


# --- finding a checkpointer's leases -----------------------------------------------------------------------------

_ATTRIBUTE = "thread_leases"


def attach_leases(checkpointer: object, leases: ThreadLeases) -> None:
    """Give a checkpointer the leases of its store, so every service compiled on it (analyses, briefings, the
    Python API, HTTP) takes them without each constructor growing a parameter."""
    setattr(checkpointer, _ATTRIBUTE, leases)


def leases_of(checkpointer: object) -> ThreadLeases | None:
    """Return the leases attached to ``checkpointer`` (None: a saver of the caller's own, no leases)."""
    leases = getattr(checkpointer, _ATTRIBUTE, None)
    return leases if isinstance(leases, RedisThreadLeases | FileThreadLeases) else None


def check_held(lease: Lease | None, thread_id: str) -> None:
    """Raise ThreadBusy if the run's lease was lost (it expired and another runner took the thread): stop
    before this runner writes another step onto a thread someone else now runs."""
    if lease is not None and lease.lost:
        raise ThreadBusy(
            f"thread {thread_id} stopped: its lease expired and another runner took it over; the steps saved so far "
            "are kept",
            thread_id=thread_id,
        )
