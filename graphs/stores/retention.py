"""Retention of finished threads: what `strategist prune` deletes or trims, and the TTL a finished thread gets.

The policy (``[retention]`` in providers/defaults.toml) only ever touches *finished* threads: an analysis or
briefing whose final result is in the cost ledger, and whose last checkpoint is not newer than that ledger row
(a thread run again after it finished is running or resumable again, and is left alone). Running and
interrupted threads are never expired nor pruned. Each thread is pruned under its lease (graphs/stores/lease.py),
so a runner that starts on it meanwhile is never cut short; a busy thread is skipped and counted.

- ``keep_days``: a finished thread older than this is deleted (every checkpoint, blob and write).
- ``keep = "final"``: a younger finished thread keeps only its final checkpoint, which is all that its result,
  outcome feedback and a resume need (time travel through its earlier steps is what is given up).

Ledger rows and feedback outcomes of deleted threads are kept: they are aggregates (spend, savings) and what
calibration learns from, not conversation content, and the outcome carries what was scored, so it no longer needs
the thread. Whoever must erase a person's content deletes the thread; the ledger row names only thread id,
providers and costs.

Bytes freed are measured from the store: on SQLite the stored lengths of the rows deleted (the file itself
shrinks only after ``VACUUM``; its free pages are reused first); on Redis ``MEMORY USAGE`` of the thread's keys
before and after. A dry run measures and deletes nothing (on Redis, the saving of trimming to the final
checkpoint is then estimated as the share of the thread's records that would go).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from graphs.stores.lease import leases_of
from graphs.stores.ledger import Ledger
from providers.config import RetentionSettings

DAY_S = 86_400.0


@dataclass
class PruneReport:
    """What a prune did (or, dry, would do)."""

    dry_run: bool
    finished: int = 0  # finished threads considered (ledger rows)
    deleted_threads: int = 0
    trimmed_threads: int = 0
    checkpoints_removed: int = 0
    bytes_freed: int = 0
    skipped_busy: int = 0  # running right now (lease held elsewhere)
    skipped_rerun: int = 0  # written after they finished: running or resumable again
    bytes_estimated: bool = False

    def render(self) -> str:
        """One line a person reads: what went (or would go) and what was left alone."""
        verb = "would free" if self.dry_run else "freed"
        about = "about " if self.bytes_estimated else ""
        return (
            f"{'dry run: ' if self.dry_run else ''}{self.finished} finished threads; deleted {self.deleted_threads}, "
            f"trimmed {self.trimmed_threads} to their final checkpoint; {self.checkpoints_removed} checkpoints, "
            f"{verb} {about}{self.bytes_freed} bytes; skipped {self.skipped_busy} running, {self.skipped_rerun} "
            "run again since they finished"
        )


class ThreadStore(Protocol):
    """The few store operations retention needs, per backend."""

    def size(self, thread_id: str) -> tuple[int, int]:
        """Return (checkpoints, bytes) the thread holds."""
        ...

    def delete(self, thread_id: str) -> None: ...

    def keep_final(self, thread_id: str, dry_run: bool) -> tuple[int, int, bool]:
        """Drop all but the latest checkpoint (per namespace); return (checkpoints, bytes, estimated)."""
        ...


def _latest_ts(checkpointer: Any, thread_id: str) -> float | None:
    """When the thread's latest checkpoint was written (None: the thread has none)."""
    found = checkpointer.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    ts = found.checkpoint.get("ts") if found is not None else None
    return dt.datetime.fromisoformat(ts).timestamp() if isinstance(ts, str) else None


class SqliteThreads:
    """Retention on LangGraph's SqliteSaver tables (``checkpoints``, ``writes``; blobs are inline)."""

    def __init__(self, conn: sqlite3.Connection, lock: Any) -> None:
        self._conn = conn
        self._lock = lock

    def _measure(self, thread_id: str, keep_latest: bool) -> tuple[int, int]:
        keep = (
            " AND checkpoint_id NOT IN (SELECT MAX(checkpoint_id) FROM checkpoints WHERE thread_id = ? "
            "GROUP BY checkpoint_ns)"
            if keep_latest
            else ""
        )
        args = (thread_id, thread_id) if keep_latest else (thread_id,)
        with self._lock:
            count, cp_bytes = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints "
                f"WHERE thread_id = ?{keep}",
                args,
            ).fetchone()
            (w_bytes,) = self._conn.execute(
                f"SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id = ?{keep}", args
            ).fetchone()
        return int(count), int(cp_bytes) + int(w_bytes)

    def size(self, thread_id: str) -> tuple[int, int]:
        return self._measure(thread_id, keep_latest=False)

    def delete(self, thread_id: str) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM checkpoints WHERE thread_id = ?", (thread_id,))
            self._conn.execute("DELETE FROM writes WHERE thread_id = ?", (thread_id,))

    def keep_final(self, thread_id: str, dry_run: bool) -> tuple[int, int, bool]:
        count, size = self._measure(thread_id, keep_latest=True)
        if not dry_run and count:
            keep = (
                "checkpoint_id NOT IN (SELECT MAX(checkpoint_id) FROM checkpoints WHERE thread_id = ? "
                "GROUP BY checkpoint_ns)"
            )
            with self._lock, self._conn:
                for table in ("writes", "checkpoints"):  # writes first: the subquery reads checkpoints
                    self._conn.execute(f"DELETE FROM {table} WHERE thread_id = ? AND {keep}", (thread_id, thread_id))
        return count, size, False


class RedisThreads:
    """Retention on our RedisSaver: its five keys per thread (graphs/stores/redis_saver)."""

    def __init__(self, saver: Any) -> None:
        self._saver = saver

    def _memory(self, thread_id: str) -> int:
        client = self._saver.client
        return sum(int(client.memory_usage(key) or 0) for key in self._saver._keys(thread_id).all())

    def size(self, thread_id: str) -> tuple[int, int]:
        keys = self._saver._keys(thread_id)
        return int(self._saver.client.zcard(keys.cps)), self._memory(thread_id)

    def delete(self, thread_id: str) -> None:
        self._saver.delete_thread(thread_id)

    def keep_final(self, thread_id: str, dry_run: bool) -> tuple[int, int, bool]:
        count, before = self.size(thread_id)
        members = self._saver.client.zrange(self._saver._keys(thread_id).cps, 0, -1)
        namespaces = {bytes(member).split(b"\0", 1)[0] for member in members}
        removed = max(0, count - len(namespaces))
        if dry_run or not removed:
            return removed, (before * removed // count) if count else 0, bool(removed)
        self._saver.prune([thread_id], strategy="keep_latest")
        return removed, max(0, before - self._memory(thread_id)), False


def thread_store(checkpointer: Any) -> ThreadStore:
    """Return the retention operations for the project's checkpointer (SQLite or our Redis saver)."""
    from graphs.stores.redis_saver import RedisSaver

    if isinstance(checkpointer, RedisSaver):
        return RedisThreads(checkpointer)
    conn = getattr(checkpointer, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        return SqliteThreads(conn, checkpointer.lock)
    raise TypeError(f"no retention for a {type(checkpointer).__name__}")


def prune(
    checkpointer: Any,
    ledger: Ledger,
    policy: RetentionSettings,
    *,
    now: float,
    dry_run: bool = False,
    keep_days: float | None = None,
    keep: Literal["all", "final"] | None = None,
    store: Callable[[Any], ThreadStore] = thread_store,
) -> PruneReport:
    """Apply the retention policy (``keep_days``/``keep`` override it) to every finished thread."""
    days = policy.keep_days if keep_days is None else keep_days
    mode = policy.keep if keep is None else keep
    threads = store(checkpointer)
    leases = leases_of(checkpointer)
    report = PruneReport(dry_run=dry_run)
    for entry in ledger.entries():
        report.finished += 1
        expired = days > 0 and entry.at < now - days * DAY_S
        if not expired and mode == "all":
            continue
        lease = leases.acquire(entry.thread_id) if leases is not None else None
        if leases is not None and lease is None:
            report.skipped_busy += 1
            continue
        try:
            latest = _latest_ts(checkpointer, entry.thread_id)
            if latest is None:
                continue  # deleted already (or never checkpointed)
            # Tolerance for the clock read: the ledger row is dated just after the final checkpoint was written.
            if latest > entry.at + 1.0:
                report.skipped_rerun += 1
                continue
            if expired:
                count, size = threads.size(entry.thread_id)
                if not dry_run:
                    threads.delete(entry.thread_id)
                report.deleted_threads += 1
                report.checkpoints_removed += count
                report.bytes_freed += size
            else:
                count, size, estimated = threads.keep_final(entry.thread_id, dry_run)
                if count:
                    report.trimmed_threads += 1
                    report.checkpoints_removed += count
                    report.bytes_freed += size
                    report.bytes_estimated |= estimated
        finally:
            if lease is not None:
                lease.release()
    return report


def expire_finished(checkpointer: Any, thread_id: str) -> None:
    """Give a thread that just finished its time to live (Redis: keys expire after ``keep_days``; a saver with no
    TTL, or SQLite, where `strategist prune` applies the policy, does nothing)."""
    expire = getattr(checkpointer, "expire_thread", None)
    if callable(expire):
        expire(thread_id)
