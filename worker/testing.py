"""Real worker and web processes for tests and benchmarks: `strategist worker` and `strategist serve` started as
subprocesses over the caller's environment, their pool processes found, killed and stopped.

Nothing here imports pytest: bench/load.py uses the same helpers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# Variables that could point a child at a developer's keys, stores or config rather than the caller's.
_SCRUBBED: tuple[str, ...] = (
    "GEMINI_",
    "GOOGLE_",
    "PERPLEXITY_",
    "LOCAL_",
    "STRATEGIST_",
    "REDIS_",
    "ROUTING_",
    "CELERY_",
    "OTEL_",
)
_SCRUBBED += ("LANGSMITH_", "LANGCHAIN_", "PROMETHEUS_")


def scrubbed_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Return this process's environment without provider, store and tracing settings, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(_SCRUBBED) and not k.lower().endswith("_proxy")
    }
    env |= {"NO_PROXY": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"}
    return env | dict(extra)


class ProcessExited(RuntimeError):
    """A process the caller waits on exited first; carries the tail of its log."""


@dataclass
class Process:
    """A started `strategist` process: its Popen, name and log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 4000) -> str:
        """Return the end of the process's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def children(self) -> list[int]:
        """Return the pids of the process's children (a worker's pool processes)."""
        found: list[int] = []
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                found += [int(pid) for pid in (task / "children").read_text().split()]
        return found

    def kill_all(self) -> None:
        """SIGKILL the process and its children at once (a machine or container dying)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL the group if it lingers."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # leftover pool processes


@dataclass
class Processes:
    """Every process a test or benchmark started, stopped together at the end."""

    env: dict[str, str]
    log_dir: Path
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Process:
        """Start `strategist ARGS...` in its own process group, logging to ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "cli", *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def worker(self, name: str, concurrency: int = 1, pool: str = "prefork", *extra: str) -> Process:
        """Start a worker named ``name@%h``."""
        return self.start(
            name, "worker", "--concurrency", str(concurrency), "--pool", pool, "--hostname", f"{name}@%h", *extra
        )

    def server(self, port: int, workers: int = 1, threads: int = 8) -> Process:
        """Start `strategist serve` (gunicorn) on ``port``."""
        return self.start(
            f"serve-{port}", "serve", "--port", str(port), "--workers", str(workers), "--threads", str(threads)
        )

    def stop_all(self) -> None:
        """Stop every process started, newest first."""
        for process in reversed(self.started):
            process.stop()


@contextlib.contextmanager
def processes(env: dict[str, str], log_dir: Path) -> Iterator[Processes]:
    """Yield a process set over ``env``; every process is stopped on the way out."""
    started = Processes(env, log_dir)
    try:
        yield started
    finally:
        started.stop_all()


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, watch: Iterable[Process] = (), poll_s: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; raise if ``timeout_s`` passes or a watched process exits first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in watch:
            if process.popen.poll() is not None:
                raise ProcessExited(
                    f"{process.name} exited ({process.popen.returncode}) before {what}:\n{process.log_tail()}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in watch)
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}\n{tails}")
        time.sleep(poll_s)


def http_ready(url: str) -> bool:
    """Say whether ``url`` answers at all."""
    try:
        httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return True
