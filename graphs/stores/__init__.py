"""Store wiring: checkpoints and the cost ledger in SQLite in the data directory by default, both in Redis
(our own saver) when ``REDIS_URL`` is set.

Every entry point (``strategist analyze|resume|costs`` and the HTTP app of ``strategist serve``) opens its
stores here, so they all read and write the same place. Store failures are reported as
``CheckpointStoreError`` with the store named (a Redis password masked), which the CLI turns into a one-line
message and exit status 2.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from graphs.errors import CheckpointStoreError
from graphs.stores.feedback import FeedbackStore, RedisFeedback, SqliteFeedback
from graphs.stores.lease import FileThreadLeases, RedisThreadLeases, ThreadLeases, attach_leases
from graphs.stores.ledger import Ledger, RedisLedger, SqliteLedger
from providers.config import Settings


@dataclass(frozen=True)
class Stores:
    checkpointer: BaseCheckpointSaver[str]
    ledger: Ledger
    # Where the stores live, for messages: "Redis at redis://host:6379/0" (password masked) or
    # "SQLite database /path".
    location: str
    # Outcome feedback (was an analysis right?), which confidence learns from: beside the ledger.
    feedback: FeedbackStore
    # One runner per thread (graphs/stores/lease.py): Redis keys beside the checkpoints, or file locks beside
    # the SQLite database.
    leases: ThreadLeases | None = None


def is_store_failure(exc: BaseException) -> bool:
    """Say whether ``exc`` means the checkpoint store (Redis or SQLite) failed, not our code."""
    if isinstance(exc, sqlite3.OperationalError):  # disk full, I/O error, database locked too long
        return True
    # redis is imported only when REDIS_URL is set; if it was never imported, no Redis error can exist.
    redis_exceptions: Any = sys.modules.get("redis.exceptions")
    return redis_exceptions is not None and isinstance(
        exc, redis_exceptions.RedisError | redis_exceptions.RedisClusterException
    )


def describe_store(checkpointer: BaseCheckpointSaver[Any] | None) -> str:
    """Name a checkpointer's store for an error message (a Redis password is masked)."""
    location = getattr(checkpointer, "location", None)
    if isinstance(location, str) and location:
        return location
    return type(checkpointer).__name__ if checkpointer is not None else "no checkpoint store"


class LocatedSqliteSaver(SqliteSaver):
    """A SqliteSaver that knows its file, so errors during an analysis can name it."""

    def __init__(self, conn: sqlite3.Connection, location: str) -> None:
        super().__init__(conn)
        self.location = location  # "SQLite database /path", as RedisSaver.location names its server


def store_failure_text(exc: BaseException) -> str:
    """Return the exception's message as one sentence ending in a full stop (redis's may or may not)."""
    text = str(exc).strip() or type(exc).__name__
    return text if text.endswith(".") else text + "."


@contextmanager
def open_stores(settings: Settings) -> Iterator[Stores]:
    """Open the configured checkpoint store and cost ledger for the lifetime of the block.

    A store failure inside the block that nothing more specific caught (``strategist costs`` reading the
    ledger, say) comes out as ``CheckpointStoreError`` naming the store.
    """
    with _open(settings) as stores:
        try:
            yield stores
        except CheckpointStoreError:
            raise
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            raise CheckpointStoreError(
                f"the checkpoint store ({stores.location}) failed: {store_failure_text(exc)}"
            ) from exc


@contextmanager
def _open(settings: Settings) -> Iterator[Stores]:
    if settings.redis_url:
        from graphs.stores.redis_saver import CheckpointStoreUnavailable, RedisSaver

        try:
            # A finished thread's keys expire after keep_days (set when it finishes; running ones never expire).
            keep_days = settings.retention.keep_days
            saver = RedisSaver.from_url(settings.redis_url, ttl_s=keep_days * 86_400 if keep_days else None)
        except CheckpointStoreUnavailable as exc:
            raise CheckpointStoreError(f"{exc} (REDIS_URL; unset it to keep checkpoints in SQLite)") from None
        # The ledger shares the saver's client: one connection pool, the same timeouts, and a cluster client
        # when the URL names a cluster (the ledger's keys share one hash tag, so one slot).
        assert saver.client is not None  # from_url always builds the sync client
        try:
            leases = RedisThreadLeases(saver.client, ttl_s=settings.retention.lease_ttl_s)
            attach_leases(saver, leases)
            yield Stores(saver, RedisLedger(saver.client), saver.location, RedisFeedback(saver.client), leases)
        finally:
            saver.close()
        return

    path = settings.data_dir / "checkpoints.sqlite"
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the HTTP server and the provider worker threads share one connection;
        # SqliteSaver serialises access with its own lock.
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    except (OSError, sqlite3.Error) as exc:
        raise CheckpointStoreError(f"cannot open the checkpoint database {path}: {exc}") from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        ledger = SqliteLedger(path)
        feedback = SqliteFeedback(path)
    except (OSError, sqlite3.Error) as exc:
        conn.close()
        raise CheckpointStoreError(f"cannot open the checkpoint database {path}: {exc}") from None
    sqlite_saver = LocatedSqliteSaver(conn, f"SQLite database {path}")
    file_leases = FileThreadLeases(settings.data_dir / "leases")
    attach_leases(sqlite_saver, file_leases)
    try:
        yield Stores(sqlite_saver, ledger, sqlite_saver.location, feedback, file_leases)
    finally:
        feedback.close()
        ledger.close()
        conn.close()
