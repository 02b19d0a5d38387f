"""Connection pools that belong to the process, shared by every provider client it builds.

Why: a client's own pool lives and dies with the client, and an async pool cannot be closed from a garbage
collector (its connections belong to an event loop), so the adapters used to turn keep-alive off and opened a new
connection for every call: about 5 ms of a quick analysis's 17 on a local fake (bench/overhead.py), and a TCP and
TLS handshake per call against a real endpoint. Here the pools are the process's: one for blocking calls and one
per event loop for async ones (pooled connections are bound to the loop that opened them), rebuilt after a fork
(gunicorn and Celery workers must not share their parent's sockets). A client that is dropped or closed leaves
them open for the others; idle connections expire after ``keepalive_expiry``. Cancelling a call in flight still
closes its connection (httpcore never returns a connection in an unknown state to the pool), so an abandoned call
is still aborted (providers/async_calls.py).

Hand-written because neither httpx nor the vendor SDKs share one pool between the clients they build; a transport
handed to each client (httpx's documented ``transport=`` argument) is the way in. One class serves both httpx
(the Perplexity SDK) and httpx2 (google-genai), whose transport APIs are the same.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from typing import Any

import httpx
import httpx2

# No cap on connections: each adapter's bulkhead already bounds its calls in flight, and a pool-wide cap would let
# one hung provider's calls hold the connections the healthy providers need.
_LIMITS = {"max_connections": None, "max_keepalive_connections": 64, "keepalive_expiry": 5.0}
# How long exit waits for a loop to close its pool (the CLI must exit within a second of its answer).
_EXIT_WAIT_S = 0.2


class _SharedPools:
    """A transport for both a blocking and an async client that sends through the process's pools."""

    _module: Any  # httpx or httpx2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._blocking: Any = None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _fresh_after_fork(self) -> None:
        if self._pid != os.getpid():
            self._pid, self._blocking, self._by_loop = os.getpid(), None, weakref.WeakKeyDictionary()

    def _blocking_pool(self) -> Any:
        with self._lock:
            self._fresh_after_fork()
            if self._blocking is None:
                self._blocking = self._module.HTTPTransport(limits=self._module.Limits(**_LIMITS))
            return self._blocking

    def _loop_pool(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._fresh_after_fork()
            pool = self._by_loop.get(loop)
            if pool is None:
                pool = self._by_loop[loop] = self._module.AsyncHTTPTransport(limits=self._module.Limits(**_LIMITS))
            return pool

    def close_all(self, wait_s: float = _EXIT_WAIT_S) -> None:
        """Close every pool of this process (at its exit): idle sockets closed, not left to the collector's
        warnings. An async pool is closed on its own loop, waiting at most ``wait_s``: exit is never held up."""
        with self._lock:
            if self._pid != os.getpid():
                return  # a forked child never used its parent's pools: nothing of its own to close
            blocking, by_loop = self._blocking, list(self._by_loop.items())
            self._blocking, self._by_loop = None, weakref.WeakKeyDictionary()
        if blocking is not None:
            blocking.close()
        for loop, pool in by_loop:
            with contextlib.suppress(Exception):  # exit goes on whatever a half-closed socket says
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(pool.aclose(), loop).result(timeout=wait_s)
                elif not loop.is_closed():  # stopped at exit (providers/async_calls.py): run it here, briefly
                    loop.run_until_complete(asyncio.wait_for(pool.aclose(), wait_s))

    def handle_request(self, request: Any) -> Any:
        return self._blocking_pool().handle_request(request)

    async def handle_async_request(self, request: Any) -> Any:
        return await self._loop_pool().handle_async_request(request)

    def close(self) -> None:
        """Leave the pools open: a client closing (or collected) must not close those the others use."""

    async def aclose(self) -> None:
        """Leave the pools open, as ``close`` does."""


class Httpx2Pools(_SharedPools, httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    _module = httpx2


class HttpxPools(_SharedPools, httpx.BaseTransport, httpx.AsyncBaseTransport):
    _module = httpx


HTTPX2_POOLS = Httpx2Pools()
HTTPX_POOLS = HttpxPools()
atexit.register(HTTPX2_POOLS.close_all)
atexit.register(HTTPX_POOLS.close_all)
