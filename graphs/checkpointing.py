"""Store wiring: checkpoints and the cost ledger in SQLite in the data directory by default, both in Redis
(our own saver) when ``REDIS_URL`` is set."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from langgraph.checkpoint.base import BaseCheckpointSaver

from graphs.ledger import Ledger, RedisLedger, SqliteLedger
from providers.config import Settings


class CheckpointStoreError(RuntimeError):
    """The checkpoint store cannot be opened or used; the message names it."""


@dataclass(frozen=True)
class Stores:
    checkpointer: BaseCheckpointSaver[str]
    ledger: Ledger


@contextmanager
def open_stores(settings: Settings) -> Iterator[Stores]:
    """Open the configured checkpoint store and cost ledger for the lifetime of the block."""
    if settings.redis_url:
        import redis

        from graphs.checkpoint_redis import CheckpointStoreUnavailable, RedisSaver

        try:
            saver = RedisSaver.from_url(settings.redis_url)
        except CheckpointStoreUnavailable as exc:
            raise CheckpointStoreError(str(exc)) from None
        client = redis.Redis.from_url(settings.redis_url)
        try:
            yield Stores(saver, RedisLedger(client))
        finally:
            client.close()
            saver.close()
        return

    from langgraph.checkpoint.sqlite import SqliteSaver

    path = settings.data_dir / "checkpoints.sqlite"
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the HTTP server and the provider worker threads share one connection;
        # SqliteSaver serialises access with its own lock.
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise CheckpointStoreError(f"cannot open the checkpoint database {path}: {exc}") from None
    ledger = SqliteLedger(path)
    try:
        yield Stores(SqliteSaver(conn), ledger)
    finally:
        ledger.close()
        conn.close()
