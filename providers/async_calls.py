"""One event loop per process, in a daemon thread, for the cloud clients' async calls.

Why async at all: a blocking HTTP call cannot be stopped from another thread, so an abandoned call (the loser
of a hedge, a call past its sub-deadline) used to hold its connection and a pool thread until the client's own
30 s timeout, and the interpreter joined that thread at exit (the CLI printed at 2.4 s and exited at 33 s).
Cancelling the task of an async call closes its connection at once, and a daemon loop thread is never joined.
Hand-written because it is a loop and a thread; asyncio has no "background loop" helper of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _pid
    with _lock:
        # A forked child (gunicorn, Celery workers) inherits the variable but not the thread: start its own.
        if _loop is None or _pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="provider-async", daemon=True).start()
            _loop, _pid = loop, os.getpid()
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run ``coro`` on the process's loop; cancelling the returned future cancels the task (and its I/O)."""
    return asyncio.run_coroutine_threadsafe(coro, _background_loop())
