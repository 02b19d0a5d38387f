"""One event loop per process, in a daemon thread, for the cloud clients' async calls.

Why async at all: a blocking HTTP call cannot be stopped from another thread, so an abandoned call (the loser
of a hedge, a call past its sub-deadline) used to hold its connection and a pool thread until the client's own
30 s timeout, and the interpreter joined that thread at exit (the CLI printed at 2.4 s and exited at 33 s).
Cancelling the task of an async call closes its connection at once, and a daemon loop thread is never joined.
Hand-written because it is a loop and a thread; asyncio has no "background loop" helper of its own.

At exit the loop is wound down and its thread ended (``_stop_at_exit``): a daemon thread still running when the
interpreter finalizes is killed where it next takes the GIL, and inside pydantic-core's Rust frames (validating a
response on the loop) that kill aborts the whole process (SIGABRT after the answer was printed: README's asyncio
example, 5 exits in 60 on a loaded machine).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None
_exiting = False  # set at exit: no new loop is started then (its daemon thread would be killed at finalization)
# How long exit waits for the loop's tasks, cancelled, to end and its thread to leave: cancelled, a call's task ends
# in milliseconds; only a callback that runs on (a response being validated) holds it up.
_EXIT_WAIT_S = 2.0


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread, _pid
    with _lock:
        if _exiting and _pid == os.getpid():
            raise RuntimeError("the process is exiting: no new provider calls")
        # A forked child (gunicorn, Celery workers) inherits the variable but not the thread: start its own.
        if _loop is None or _pid != os.getpid() or _loop.is_closed() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="provider-async", daemon=True)
            thread.start()
            _loop, _thread, _pid = loop, thread, os.getpid()
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run ``coro`` on the process's loop; cancelling the returned future cancels the task (and its I/O)."""
    return asyncio.run_coroutine_threadsafe(coro, _background_loop())


async def _wind_down() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=_EXIT_WAIT_S)
    asyncio.get_running_loop().stop()


@atexit.register
def _stop_at_exit() -> None:
    """Cancel the loop's tasks, stop it and wait for its thread to leave (at most about 2 x ``_EXIT_WAIT_S``).

    The loop is left open, stopped: an exit handler may still run a coroutine on it from its own thread (the
    connection pools close theirs, providers/pools.py)."""
    global _exiting
    with _lock:
        _exiting = True
        loop, thread = _loop, _thread
        if loop is None or thread is None or _pid != os.getpid() or not thread.is_alive():
            return
    with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing left to stop
        asyncio.run_coroutine_threadsafe(_wind_down(), loop)
    thread.join(2 * _EXIT_WAIT_S)
