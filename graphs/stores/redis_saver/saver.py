"""Persist LangGraph checkpoints in plain Redis, Valkey or Redis Cluster.

Why this module exists: the official ``langgraph-checkpoint-redis`` needs the
RediSearch and RedisJSON modules (Redis 8 / Redis Stack). Plain Redis 7, Valkey
and most managed Redis services lack them, and that package also fails parts of
``langgraph-checkpoint-conformance`` (namespace filtering, ``before``, metadata
filters, empty prune). This saver uses only hashes, sorted sets and strings and
is held to the whole conformance suite (tests/test_checkpoint_redis.py).

Data layout. Every key of one thread carries the same hash tag, so the keys of
a thread live in one cluster slot, a write is one MULTI/EXEC transaction, and
Redis Cluster never answers CROSSSLOT::

    {prefix}:{<thread>}:cps    sorted set, all scores 0, members "<ns>\\0<checkpoint_id>"
    {prefix}:{<thread>}:cp     hash  "<ns>\\0<checkpoint_id>" -> msgpack record
                               [checkpoint type, checkpoint bytes,
                                metadata type, metadata bytes, parent id]
    {prefix}:{<thread>}:blobs  hash  "<ns>\\0<channel>\\0<version>" -> "<type>\\0<bytes>"
    {prefix}:{<thread>}:w      hash  "<ns>\\0<checkpoint_id>\\0<task_id>\\0<idx>"
                               -> msgpack [task_id, channel, type, bytes, task_path, idx]
    {prefix}:{<thread>}:wi     sorted set, all scores 0, members = the field names of ``w``

``<thread>`` is the percent-encoded thread id (so "{", "}" and ":" in an id can
not break the hash tag or the key grammar); ``<ns>`` is the checkpoint
namespace with NUL bytes escaped. Checkpoint ids are UUIDv6 strings whose
lexicographic order is their creation order, so "latest", ``before`` and
newest-first listing are ZREVRANGEBYLEX range reads: no SCAN/KEYS on the hot
path. Because a thread is always exactly these five keys, ``delete_thread`` is a
single DEL and the per-thread TTL is refreshed by five PEXPIREs inside the same
transaction as every write (a fixed key family is the per-thread index, so no
index set has to be kept in sync).

Round trips: ``put`` and ``put_writes`` are one round trip each (one pipelined
MULTI/EXEC); ``get_tuple`` is two (three when it has to find the latest
checkpoint; one when the thread is empty); a ``list`` page is two or three;
``delete_thread`` is one. Only admin operations that have no thread id to start
from, ``list(None)`` and ``delete_for_runs``, SCAN the key space (every primary
on a cluster). ``prune``/``delete_for_runs``/``copy_thread`` read a whole thread
and rewrite it in one transaction; they are not isolated from a concurrent
writer on the same thread.

Values go through ``self.serde`` (``JsonPlusSerializer`` by default) with
``dumps_typed``/``loads_typed``; the clients must use ``decode_responses=False``
because the stored values are binary.

Cluster: pass a ``redis.cluster.RedisCluster`` (and a
``redis.asyncio.cluster.RedisCluster``) to the constructor, or use
``RedisSaver.from_url`` with ``cluster=True``, a ``redis+cluster://`` URL, or
the default ``cluster=None``, which asks the server (``INFO cluster``) whether
cluster mode is enabled.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import ormsgpack
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from redis.exceptions import (
    AskError,
    MovedError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from providers.redis_connect import async_redis_client, is_cluster, split_cluster_scheme

__all__ = ["CheckpointStoreUnavailable", "RedisSaver"]

SyncRedis: TypeAlias = redis.Redis | redis.cluster.RedisCluster
AsyncRedis: TypeAlias = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

DEFAULT_KEY_PREFIX = "lgcp"
# Listing loads records in pages so that a filtered list over a long thread
# never pulls the whole thread into memory at once.
_LIST_PAGE = 100
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]+")
# Stored in place of a blob for a channel that has a version but no value
# (InMemorySaver stores ("empty", b"") the same way).
_EMPTY_BLOB = b"empty\x00"

_R = TypeVar("_R")


class CheckpointStoreUnavailable(RuntimeError):
    """Raised when the Redis behind a checkpointer cannot be reached."""


@dataclass(frozen=True, slots=True)
class _Batch:
    """Commands sent in one round trip; ``atomic`` wraps them in MULTI/EXEC."""

    cmds: Sequence[tuple[Any, ...]]
    atomic: bool = False


# A plan is the Redis logic of one operation written once, without I/O: it
# yields batches and receives their replies. Running it through a sync or an
# async driver is what keeps the sync and async methods from drifting apart.
_Plan = Generator[_Batch, list[Any], _R]


@dataclass(frozen=True, slots=True)
class _Keys:
    cps: str
    cp: str
    blobs: str
    w: str
    wi: str

    def all(self) -> tuple[str, str, str, str, str]:
        return (self.cps, self.cp, self.blobs, self.w, self.wi)


@dataclass(slots=True)
class _Snapshot:
    """Everything of one thread that the admin operations need to rewrite it."""

    records: dict[bytes, bytes]
    write_fields: list[bytes]
    blob_fields: list[bytes]


def _enc_ns(ns: str) -> bytes:
    # NUL separates the parts of fields and members, so it must not occur in
    # the namespace; \x01 is the escape byte. LangGraph never puts either in a
    # namespace, but a bijective escape keeps odd input from aliasing.
    return ns.encode().replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")


def _dec_ns(raw: bytes) -> str:
    return raw.replace(b"\x01\x01", b"\x00").replace(b"\x01\x02", b"\x01").decode()


def _split_member(member: bytes) -> tuple[str, str]:
    ns_raw, _, cid = member.partition(b"\x00")
    return _dec_ns(ns_raw), cid.decode()


def _member_of_write(field: bytes) -> bytes:
    ns_raw, cid, _ = field.split(b"\x00", 2)
    return ns_raw + b"\x00" + cid


def _blob_field(ns_raw: bytes, channel: str, version: Any) -> bytes:
    return ns_raw + b"\x00" + channel.encode() + b"\x00" + str(version).encode()


def _mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _client_location(client: SyncRedis | AsyncRedis | None) -> str:
    """Name the server a client talks to, without credentials (for error messages)."""
    try:
        if isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster):
            node = client.get_default_node()
            return f"Redis Cluster at {node.host}:{node.port}" if node is not None else "Redis Cluster"
        if client is not None:
            kwargs = client.get_connection_kwargs()
            if kwargs.get("path"):
                return f"Redis at unix://{kwargs['path']}"
            host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
            return f"Redis at redis://{host}:{port}/{db}"
    except (AttributeError, TypeError):  # a client type we do not know: still say it is Redis
        pass
    return "Redis"


# Batches of more than one command go through redis-py pipelines (MULTI/EXEC
# when atomic): one round trip each, and no reliance on redis-py internals. The
# saver used to write hand-packed RESP on a pooled connection instead;
# bench/checkpoint.py times that transport beside this one, interleaved in the
# same runs (its last line). On a loaded 2-core machine (load 10-12), over 7
# runs of 200 deep analyses with instant fake models, pipelines cost +0.3, +1.5,
# -16.9, +7.6, +2.8, +10.2 and +6.4 ms per analysis of 24-56 ms: a few
# milliseconds, under 1% of an analysis that waits seconds on its providers,
# which is not worth a transport of our own. The one exception is a transaction
# on an asyncio cluster client (``_acluster_transaction``), which redis-py 8.1
# cannot run correctly. On a cluster all commands of a batch are on one slot.


def _wire(cmds: Sequence[tuple[Any, ...]], atomic: bool) -> list[tuple[Any, ...]]:
    return [("MULTI",), *cmds, ("EXEC",)] if atomic else list(cmds)


def _pack(wire: Sequence[tuple[Any, ...]]) -> bytes:
    """Encode commands in RESP, for ``_asend_raw``.

    Our arguments are only bytes, ASCII str (keys are percent-encoded) and
    ints, so this is a few joins.
    """
    out: list[bytes] = []
    for cmd in wire:
        out.append(b"*%d\r\n" % len(cmd))
        for arg in cmd:
            if isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, int) and not isinstance(arg, bool):
                data = b"%d" % arg
            else:
                raise TypeError(f"unexpected Redis argument {arg!r}")
            out += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(out)


def _unwrap(replies: list[Any], atomic: bool) -> list[Any]:
    """Return the per-command results, raising the first error reply."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    results = cast(list[Any], replies[-1] if atomic else replies)
    if results is None:  # EXEC aborted; cannot happen without WATCH
        raise RedisError("transaction aborted")
    for result in results:
        if isinstance(result, ResponseError):
            raise result
    return results


async def _asend_raw(get_conn: Any, release: Any, cmds: Sequence[tuple[Any, ...]], atomic: bool) -> list[Any]:
    """Send ``cmds`` as one write on a connection of the caller's node and read every reply.

    Only ``_acluster_transaction`` needs it. A broken connection is retried
    once: every batch this module sends is idempotent (HSET/HSETNX/ZADD/
    PEXPIRE/PERSIST/DEL of fixed values, or reads), so resending a batch whose
    reply was lost is safe.
    """
    wire = _wire(cmds, atomic)
    for attempt in range(2):
        conn = await get_conn()
        replies: list[Any] = []
        try:
            await conn.send_packed_command([_pack(wire)])
            for _ in wire:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except (RedisConnectionError, RedisTimeoutError):
            await conn.disconnect()
            if attempt:
                raise
            continue
        finally:
            result = release(conn)
            if asyncio.iscoroutine(result):
                await result
        return _unwrap(replies, atomic)
    raise AssertionError("unreachable")


async def _acluster_transaction(
    aclient: redis.asyncio.cluster.RedisCluster, cmds: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """Run ``cmds`` (all on one slot) as MULTI/EXEC on that slot's primary.

    Needed, not only faster: redis-py's async ``ClusterPipeline(transaction=True)``
    (8.1) pushes every queued command through ``asyncio.run`` in a new thread,
    which costs a thread per command and, on a client that has not connected
    yet, fails with "attached to a different loop".
    """
    for attempt in range(2):
        await aclient.initialize()  # no-op once the slot map is loaded
        node = aclient.get_node_from_key(cmds[0][1])
        if node is None:
            raise RedisClusterException(f"no node serves key {cmds[0][1]!r}")

        async def acquire(node: Any = node) -> Any:
            return node.acquire_connection()

        try:
            return await _asend_raw(acquire, node.release, cmds, atomic=True)
        except (MovedError, AskError):
            if attempt:
                raise
            # The slot moved (resharding/failover): reload the map, retry once.
            await aclient.nodes_manager.initialize()
    raise AssertionError("unreachable")


def _config(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class RedisSaver(BaseCheckpointSaver[str]):
    """Store LangGraph checkpoints in plain Redis structures (see module doc).

    Args:
        client: sync client (``redis.Redis`` or ``redis.cluster.RedisCluster``)
            created with ``decode_responses=False``; needed by the sync methods.
        aclient: async client (``redis.asyncio.Redis`` or
            ``redis.asyncio.cluster.RedisCluster``) for the ``a*`` methods. It
            must be used from one event loop. Without it the ``a*`` methods run
            the sync code in a worker thread.
        ttl_s: optional time to live of a finished thread, in seconds, set by
            ``expire_thread`` (call it when the thread finished). Every
            ``put``/``put_writes`` clears it again (PERSIST in the same
            transaction), so a running or interrupted, resumable thread never
            expires, however slow its steps: a TTL refreshed by writes alone
            expired a thread in the middle of a long provider call.
        key_prefix: first component of every key (letters, digits, ``_.:-``).
        serde: serializer; defaults to LangGraph's ``JsonPlusSerializer``.
        location: how error messages name this store, e.g. "Redis at
            redis://host:6379/0" (never with a password); ``from_url`` passes
            the masked URL, otherwise it is read off the client.

    ``round_trips`` counts the round trips this saver made (benchmarks read it;
    a SCAN sweep counts as one).
    """

    def __init__(
        self,
        client: SyncRedis | None = None,
        aclient: AsyncRedis | None = None,
        *,
        ttl_s: float | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        serde: SerializerProtocol | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if client is None and aclient is None:
            raise ValueError("RedisSaver needs a sync client, an async client or both")
        for c in (client, aclient):
            # Stored values are binary; a decoding client would corrupt them.
            if c is not None and c.get_connection_kwargs().get("decode_responses"):
                raise ValueError("RedisSaver needs clients with decode_responses=False")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be positive or None")
        if not _PREFIX_RE.fullmatch(key_prefix):
            # Braces would move the hash tag; glob characters would break SCAN.
            raise ValueError(f"invalid key_prefix {key_prefix!r}")
        self.client = client
        self.aclient = aclient
        self.ttl_s = ttl_s
        self.key_prefix = key_prefix
        self._ttl_ms = None if ttl_s is None else max(1, int(ttl_s * 1000))
        self.round_trips = 0
        self.location = location or _client_location(client if client is not None else aclient)

    # ------------------------------------------------------------------ setup

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ttl_s: float | None = None,
        cluster: bool | None = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        **client_kwargs: Any,
    ) -> RedisSaver:
        """Build sync and async clients for ``url``, PING, and return a saver.

        ``cluster``: True/False forces the client type; None (default) uses
        cluster clients for ``redis+cluster://``/``rediss+cluster://`` URLs and
        otherwise asks the server with ``INFO cluster``. Extra keyword
        arguments go to both clients. Raises ``CheckpointStoreUnavailable``
        (with the password masked) when Redis cannot be reached.
        """
        masked = _mask_url(url)
        url, forced = split_cluster_scheme(url)
        if forced and cluster is None:
            cluster = True
        # Binary values need raw bytes back; the timeouts keep a stalled Redis
        # from hanging a graph step forever.
        client_kwargs["decode_responses"] = False
        client_kwargs.setdefault("socket_connect_timeout", 5.0)
        client_kwargs.setdefault("socket_timeout", 10.0)
        client: SyncRedis | None = None
        aclient: AsyncRedis
        try:
            if cluster is None:
                cluster = is_cluster(url, **client_kwargs)
            if cluster:
                client = redis.cluster.RedisCluster.from_url(url, **client_kwargs)
            else:
                client = redis.Redis.from_url(url, **client_kwargs)
            aclient = async_redis_client(url, cluster=cluster, **client_kwargs)
            client.ping()
        except (RedisError, RedisClusterException, OSError) as exc:
            if client is not None:
                client.close()
            detail = str(exc)
            password = urlsplit(url).password if "://" in url else None
            if password:
                detail = detail.replace(password, "***")
            raise CheckpointStoreUnavailable(f"cannot reach Redis at {masked}: {detail}") from exc
        return cls(client, aclient, ttl_s=ttl_s, key_prefix=key_prefix, location=f"Redis at {masked}")

    def close(self) -> None:
        """Close the sync client's connections."""
        if self.client is not None:
            self.client.close()

    async def aclose(self) -> None:
        """Close the async client's connections."""
        if self.aclient is not None:
            await self.aclient.aclose()

    # ---------------------------------------------------------------- drivers

    def _require_client(self) -> SyncRedis:
        if self.client is None:
            raise RuntimeError("this RedisSaver has only an async client: use the a* methods")
        return self.client

    def _execute(self, batch: _Batch) -> list[Any]:
        client = self._require_client()
        self.round_trips += 1
        if len(batch.cmds) == 1 and not batch.atomic:
            return [client.execute_command(*batch.cmds[0])]  # type: ignore[no-untyped-call]  # untyped in redis-py
        pipe: Any = client.pipeline(transaction=batch.atomic)
        for cmd in batch.cmds:
            pipe.execute_command(*cmd)
        return cast(list[Any], pipe.execute())

    async def _aexecute(self, aclient: AsyncRedis, batch: _Batch) -> list[Any]:
        self.round_trips += 1
        if len(batch.cmds) == 1 and not batch.atomic:
            return [await aclient.execute_command(*batch.cmds[0])]
        if batch.atomic and not isinstance(aclient, redis.asyncio.Redis):
            return await _acluster_transaction(aclient, batch.cmds)
        pipe: Any = aclient.pipeline(transaction=batch.atomic)
        for cmd in batch.cmds:
            pipe.execute_command(*cmd)
        return cast(list[Any], await pipe.execute())

    def _run(self, plan: _Plan[_R]) -> _R:
        try:
            batch = next(plan)
            while True:
                reply = self._execute(batch) if batch.cmds else []
                batch = plan.send(reply)
        except StopIteration as stop:
            return cast(_R, stop.value)

    async def _arun(self, plan: _Plan[_R]) -> _R:
        if self.aclient is None:
            return await asyncio.to_thread(self._run, plan)
        try:
            batch = next(plan)
            while True:
                reply = await self._aexecute(self.aclient, batch) if batch.cmds else []
                batch = plan.send(reply)
        except StopIteration as stop:
            return cast(_R, stop.value)

    # ------------------------------------------------------------------- keys

    def _keys(self, thread_id: str) -> _Keys:
        # quote() leaves no "{", "}" or ":" in the tag, so the tag is exactly
        # the thread and all five keys hash to the same slot.
        base = f"{self.key_prefix}:{{{quote(thread_id, safe='')}}}:"
        return _Keys(base + "cps", base + "cp", base + "blobs", base + "w", base + "wi")

    def _thread_of_key(self, key: bytes | str, suffix: str) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        start = len(self.key_prefix) + 2
        return unquote(text[start : len(text) - len(suffix) - 2])

    def _scan_pattern(self, suffix: str) -> str:
        return f"{self.key_prefix}:{{*}}:{suffix}"

    def _expire_cmds(self, keys: _Keys) -> list[tuple[Any, ...]]:
        # A write means the thread runs (or ran and may be resumed): it must not expire. Only a saver that
        # expires finished threads needs to clear a TTL one of its earlier runs set.
        if self._ttl_ms is None:
            return []
        return [("PERSIST", key) for key in keys.all()]

    def expire_thread(self, thread_id: str, ttl_s: float | None = None) -> None:
        """Let a finished thread expire after ``ttl_s`` (default: the saver's ``ttl_s``; no-op without one).

        One transaction of five PEXPIREs. A later write on the thread (it runs again) clears the TTL.
        """
        ttl_ms = self._ttl_ms if ttl_s is None else max(1, int(ttl_s * 1000))
        if ttl_ms is None:
            return
        self._run(self._expire_plan(self._keys(str(thread_id)), ttl_ms))

    def _expire_plan(self, keys: _Keys, ttl_ms: int) -> _Plan[None]:
        yield _Batch([("PEXPIRE", key, ttl_ms) for key in keys.all()], atomic=True)

    # ------------------------------------------------------------------ plans

    def _put_plan(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> _Plan[RunnableConfig]:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        keys = self._keys(thread_id)
        ns_raw = _enc_ns(ns)
        c = checkpoint.copy()
        values: dict[str, Any] = c.pop("channel_values")  # type: ignore[misc]
        blob_args: list[bytes] = []
        for channel, version in new_versions.items():
            blob_args.append(_blob_field(ns_raw, channel, version))
            if channel in values:
                type_, data = self.serde.dumps_typed(values[channel])
                blob_args.append(type_.encode() + b"\x00" + data)
            else:
                blob_args.append(_EMPTY_BLOB)
        cp_type, cp_data = self.serde.dumps_typed(c)
        md_type, md_data = self.serde.dumps_typed(get_serializable_checkpoint_metadata(config, metadata))
        parent = conf.get("checkpoint_id") or ""
        record = ormsgpack.packb([cp_type, cp_data, md_type, md_data, parent])
        member = ns_raw + b"\x00" + checkpoint["id"].encode()
        cmds: list[tuple[Any, ...]] = []
        if blob_args:
            cmds.append(("HSET", keys.blobs, *blob_args))
        cmds.append(("HSET", keys.cp, member, record))
        cmds.append(("ZADD", keys.cps, 0, member))
        cmds.extend(self._expire_cmds(keys))
        yield _Batch(cmds, atomic=True)
        return _config(thread_id, ns, checkpoint["id"])

    def _put_writes_plan(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> _Plan[None]:
        if not writes:
            return
        conf = config["configurable"]
        keys = self._keys(str(conf["thread_id"]))
        prefix = (
            _enc_ns(conf.get("checkpoint_ns", ""))
            + b"\x00"
            + str(conf["checkpoint_id"]).encode()
            + b"\x00"
            + task_id.encode()
            + b"\x00"
        )
        cmds: list[tuple[Any, ...]] = []
        index_args: list[Any] = []
        for position, (channel, value) in enumerate(writes):
            idx = WRITES_IDX_MAP.get(channel, position)
            field = prefix + str(idx).encode()
            type_, data = self.serde.dumps_typed(value)
            record = ormsgpack.packb([task_id, channel, type_, data, task_path, idx])
            # A regular write is kept once per (task, idx), like InMemorySaver:
            # a retried task must not duplicate it. Special writes (errors,
            # interrupts, resume values) replace the previous one.
            cmds.append(("HSET" if idx < 0 else "HSETNX", keys.w, field, record))
            index_args += [0, field]
        cmds.append(("ZADD", keys.wi, *index_args))
        cmds.extend(self._expire_cmds(keys))
        yield _Batch(cmds, atomic=True)

    def _load_plan(
        self,
        thread_id: str,
        members: Sequence[bytes],
        filter: dict[str, Any] | None = None,
    ) -> _Plan[list[CheckpointTuple]]:
        """Turn checkpoint members into tuples (missing ones are skipped)."""
        if not members:
            return []
        keys = self._keys(thread_id)
        cmds: list[tuple[Any, ...]] = []
        for member in members:
            cmds.append(("HGET", keys.cp, member))
            cmds.append(("ZRANGEBYLEX", keys.wi, b"(" + member + b"\x00", b"(" + member + b"\x01"))
        reply = yield _Batch(cmds)
        found: list[tuple[bytes, Checkpoint, CheckpointMetadata, str, list[bytes]]] = []
        for i, member in enumerate(members):
            raw = reply[2 * i]
            if raw is None:
                continue
            cp_type, cp_data, md_type, md_data, parent = ormsgpack.unpackb(raw)
            metadata = self.serde.loads_typed((md_type, md_data))
            if filter and not all(metadata.get(k) == v for k, v in filter.items()):
                continue
            checkpoint = self.serde.loads_typed((cp_type, cp_data))
            found.append((member, checkpoint, metadata, parent, reply[2 * i + 1]))
        if not found:
            return []
        cmds = []
        blob_fields: list[list[bytes]] = []
        for member, checkpoint, _, _, write_fields in found:
            ns_raw = member.partition(b"\x00")[0]
            fields = [
                _blob_field(ns_raw, channel, version) for channel, version in checkpoint["channel_versions"].items()
            ]
            blob_fields.append(fields)
            if fields:
                cmds.append(("HMGET", keys.blobs, *fields))
            if write_fields:
                cmds.append(("HMGET", keys.w, *write_fields))
        reply = yield _Batch(cmds)
        replies = iter(reply)
        out: list[CheckpointTuple] = []
        for (member, checkpoint, metadata, parent, write_fields), fields in zip(found, blob_fields, strict=True):
            ns, cid = _split_member(member)
            values: dict[str, Any] = {}
            if fields:
                for channel, blob in zip(checkpoint["channel_versions"], next(replies), strict=True):
                    if blob is None:
                        continue
                    type_, _, data = blob.partition(b"\x00")
                    if type_ == b"empty":
                        continue
                    values[channel] = self.serde.loads_typed((type_.decode(), data))
            pending: list[PendingWrite] = []
            if write_fields:
                rows = [ormsgpack.unpackb(r) for r in next(replies) if r is not None]
                rows.sort(key=lambda r: writes_sort_key(r[4], r[0], r[5]))
                pending = [(r[0], r[1], self.serde.loads_typed((r[2], r[3]))) for r in rows]
            out.append(
                CheckpointTuple(
                    config=_config(thread_id, ns, cid),
                    checkpoint={**checkpoint, "channel_values": values},
                    metadata=metadata,
                    parent_config=_config(thread_id, ns, parent) if parent else None,
                    pending_writes=pending,
                )
            )
        return out

    def _get_tuple_plan(self, config: RunnableConfig) -> _Plan[CheckpointTuple | None]:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns_raw = _enc_ns(conf.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            member = ns_raw + b"\x00" + checkpoint_id.encode()
        else:
            reply = yield _Batch(
                [
                    (
                        "ZREVRANGEBYLEX",
                        self._keys(thread_id).cps,
                        b"(" + ns_raw + b"\x01",
                        b"(" + ns_raw + b"\x00",
                        "LIMIT",
                        0,
                        1,
                    )
                ]
            )
            if not reply[0]:
                return None
            member = reply[0][0]
        found = yield from self._load_plan(thread_id, [member])
        return found[0] if found else None

    def _members_plan(
        self,
        thread_id: str,
        ns: str | None,
        checkpoint_id: str | None,
        before_id: str | None,
        limit: int | None,
    ) -> _Plan[list[bytes]]:
        """Members of one thread to list, newest first."""
        keys = self._keys(thread_id)
        if ns is not None and checkpoint_id is not None:
            if before_id is not None and checkpoint_id >= before_id:
                return []
            return [_enc_ns(ns) + b"\x00" + checkpoint_id.encode()]
        if ns is not None:
            ns_raw = _enc_ns(ns)
            high = b"(" + ns_raw + (b"\x00" + before_id.encode() if before_id else b"\x01")
            cmd: tuple[Any, ...] = ("ZREVRANGEBYLEX", keys.cps, high, b"(" + ns_raw + b"\x00")
            if limit is not None:
                cmd += ("LIMIT", 0, limit)
            reply = yield _Batch([cmd])
            return list(reply[0])
        # Every namespace of the thread: newest first across namespaces.
        reply = yield _Batch([("ZRANGE", keys.cps, 0, -1)])
        ranked = []
        for member in reply[0]:
            cid = member.partition(b"\x00")[2].decode()
            if checkpoint_id is not None and cid != checkpoint_id:
                continue
            if before_id is not None and cid >= before_id:
                continue
            ranked.append((cid, member))
        ranked.sort(reverse=True)
        members = [member for _, member in ranked]
        return members if limit is None else members[:limit]

    def _snapshot_plan(self, keys: _Keys) -> _Plan[_Snapshot]:
        reply = yield _Batch(
            [
                ("HGETALL", keys.cp),
                ("ZRANGE", keys.wi, 0, -1),
                ("HKEYS", keys.blobs),
            ]
        )
        records = reply[0]
        if isinstance(records, list):  # RESP2 without a response callback
            records = dict(zip(records[::2], records[1::2], strict=True))
        return _Snapshot(dict(records), list(reply[1]), list(reply[2]))

    def _drop_plan(self, keys: _Keys, snap: _Snapshot, drop: set[bytes]) -> _Plan[None]:
        """Delete the ``drop`` checkpoints with their writes and orphaned blobs."""
        if not drop:
            return
        keep = {m: r for m, r in snap.records.items() if m not in drop}
        if not keep:
            yield _Batch([("DEL", *keys.all())])
            return
        referenced: set[bytes] = set()
        for member, raw in keep.items():
            ns_raw = member.partition(b"\x00")[0]
            cp_type, cp_data = ormsgpack.unpackb(raw)[:2]
            checkpoint = self.serde.loads_typed((cp_type, cp_data))
            referenced.update(
                _blob_field(ns_raw, channel, version) for channel, version in checkpoint["channel_versions"].items()
            )
        dropped = sorted(drop)
        writes = [f for f in snap.write_fields if _member_of_write(f) in drop]
        blobs = [f for f in snap.blob_fields if f not in referenced]
        cmds: list[tuple[Any, ...]] = [
            ("ZREM", keys.cps, *dropped),
            ("HDEL", keys.cp, *dropped),
        ]
        if writes:
            cmds += [("HDEL", keys.w, *writes), ("ZREM", keys.wi, *writes)]
        if blobs:
            cmds.append(("HDEL", keys.blobs, *blobs))
        yield _Batch(cmds, atomic=True)

    def _prune_plan(self, thread_id: str, strategy: str) -> _Plan[None]:
        keys = self._keys(thread_id)
        if strategy == "delete":
            yield _Batch([("DEL", *keys.all())])
            return
        snap = yield from self._snapshot_plan(keys)
        latest: dict[bytes, bytes] = {}
        for member in snap.records:
            ns_raw = member.partition(b"\x00")[0]
            if member > latest.get(ns_raw, b""):
                latest[ns_raw] = member
        drop = set(snap.records) - set(latest.values())
        yield from self._drop_plan(keys, snap, drop)

    def _delete_runs_plan(self, thread_id: str, run_ids: set[str]) -> _Plan[None]:
        keys = self._keys(thread_id)
        snap = yield from self._snapshot_plan(keys)
        drop = set()
        for member, raw in snap.records.items():
            md_type, md_data = ormsgpack.unpackb(raw)[2:4]
            if self.serde.loads_typed((md_type, md_data)).get("run_id") in run_ids:
                drop.add(member)
        yield from self._drop_plan(keys, snap, drop)

    def _copy_plan(self, source: str, target: str) -> _Plan[None]:
        src, dst = self._keys(source), self._keys(target)
        reply = yield _Batch(
            [
                ("HGETALL", src.cp),
                ("HGETALL", src.blobs),
                ("HGETALL", src.w),
            ]
        )
        cp, blobs, w = (r if isinstance(r, dict) else dict(zip(r[::2], r[1::2], strict=True)) for r in reply)
        if not cp:
            return
        # Fields hold no thread id (parents are plain checkpoint ids), so the
        # copy is byte for byte; a cross-slot COPY is not possible on a cluster.
        cmds: list[tuple[Any, ...]] = [
            ("HSET", dst.cp, *[x for kv in cp.items() for x in kv]),
            ("ZADD", dst.cps, *[x for m in cp for x in (0, m)]),
        ]
        if blobs:
            cmds.append(("HSET", dst.blobs, *[x for kv in blobs.items() for x in kv]))
        if w:
            cmds.append(("HSET", dst.w, *[x for kv in w.items() for x in kv]))
            cmds.append(("ZADD", dst.wi, *[x for f in w for x in (0, f)]))
        cmds.extend(self._expire_cmds(dst))
        yield _Batch(cmds, atomic=True)

    # ------------------------------------------------------------ sync API

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint named by ``config`` (or the thread's latest)."""
        return self._run(self._get_tuple_plan(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Yield checkpoints newest first, filtered by thread/namespace/metadata."""
        if limit is not None and limit <= 0:
            return
        remaining = limit
        threads: Iterable[str]
        if config is not None:
            threads = [str(config["configurable"]["thread_id"])]
        else:
            client = self._require_client()
            self.round_trips += 1
            threads = sorted({self._thread_of_key(k, "cps") for k in client.scan_iter(match=self._scan_pattern("cps"))})
        ns, cid, before_id = self._list_args(config, before)
        for thread_id in threads:
            members = self._run(self._members_plan(thread_id, ns, cid, before_id, None if filter else remaining))
            for start in range(0, len(members), _LIST_PAGE):
                page = members[start : start + _LIST_PAGE]
                for tup in self._run(self._load_plan(thread_id, page, filter)):
                    yield tup
                    if remaining is not None:
                        remaining -= 1
                        if remaining <= 0:
                            return

    @staticmethod
    def _list_args(
        config: RunnableConfig | None, before: RunnableConfig | None
    ) -> tuple[str | None, str | None, str | None]:
        ns = config["configurable"].get("checkpoint_ns") if config else None
        cid = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        return ns, cid, before_id

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and its new channel values in one transaction."""
        return self._run(self._put_plan(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes for the checkpoint in ``config``."""
        self._run(self._put_writes_plan(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of the thread (one DEL)."""
        self._run(self._prune_plan(str(thread_id), "delete"))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata run_id matches.

        An admin operation: with no thread id to start from it SCANs for threads.
        """
        wanted = {str(r) for r in run_ids}
        if not wanted:
            return
        client = self._require_client()
        self.round_trips += 1
        keys = {k for k in client.scan_iter(match=self._scan_pattern("cp"))}
        for key in sorted(keys):
            self._run(self._delete_runs_plan(self._thread_of_key(key, "cp"), wanted))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy all checkpoints, blobs and writes of a thread onto another thread."""
        self._run(self._copy_plan(str(source_thread_id), str(target_thread_id)))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the latest checkpoint per namespace, or delete everything.

        ``keep_latest`` drops older checkpoints, their writes and the blobs no
        kept checkpoint references. It is not DeltaChannel-aware (no graph of
        ours uses DeltaChannel) and, like the other admin operations, is not
        isolated from a concurrent writer on the same thread.
        """
        self._check_strategy(strategy)
        for thread_id in thread_ids:
            self._run(self._prune_plan(str(thread_id), strategy))

    @staticmethod
    def _check_strategy(strategy: str) -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}")

    # ----------------------------------------------------------- async API

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Return the checkpoint named by ``config`` (or the thread's latest)."""
        return await self._arun(self._get_tuple_plan(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Yield checkpoints newest first, filtered by thread/namespace/metadata."""
        if limit is not None and limit <= 0:
            return
        if self.aclient is None:
            items = await asyncio.to_thread(lambda: [*self.list(config, filter=filter, before=before, limit=limit)])
            for item in items:
                yield item
            return
        remaining = limit
        threads: Iterable[str]
        if config is not None:
            threads = [str(config["configurable"]["thread_id"])]
        else:
            self.round_trips += 1
            found = {
                self._thread_of_key(k, "cps") async for k in self.aclient.scan_iter(match=self._scan_pattern("cps"))
            }
            threads = sorted(found)
        ns, cid, before_id = self._list_args(config, before)
        for thread_id in threads:
            members = await self._arun(self._members_plan(thread_id, ns, cid, before_id, None if filter else remaining))
            for start in range(0, len(members), _LIST_PAGE):
                page = members[start : start + _LIST_PAGE]
                for tup in await self._arun(self._load_plan(thread_id, page, filter)):
                    yield tup
                    if remaining is not None:
                        remaining -= 1
                        if remaining <= 0:
                            return

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and its new channel values in one transaction."""
        return await self._arun(self._put_plan(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes for the checkpoint in ``config``."""
        await self._arun(self._put_writes_plan(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, blob and write of the thread (one DEL)."""
        await self._arun(self._prune_plan(str(thread_id), "delete"))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) whose metadata run_id matches."""
        wanted = {str(r) for r in run_ids}
        if not wanted:
            return
        if self.aclient is None:
            await asyncio.to_thread(self.delete_for_runs, run_ids)
            return
        self.round_trips += 1
        keys = {k async for k in self.aclient.scan_iter(match=self._scan_pattern("cp"))}
        for key in sorted(keys):
            await self._arun(self._delete_runs_plan(self._thread_of_key(key, "cp"), wanted))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy all checkpoints, blobs and writes of a thread onto another thread."""
        await self._arun(self._copy_plan(str(source_thread_id), str(target_thread_id)))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the latest checkpoint per namespace, or delete everything."""
        self._check_strategy(strategy)
        for thread_id in thread_ids:
            await self._arun(self._prune_plan(str(thread_id), strategy))

    # ------------------------------------------------------------- versions

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Return a monotonically increasing, fork-safe channel version.

        The random fraction (as in InMemorySaver) keeps two forks of a thread
        that reach the same integer version from overwriting each other's blob.
        """
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"
