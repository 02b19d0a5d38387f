"""Integration tests: provider clients share the process's connection pools (providers/pools.py).

Keep-alive used to be off (a client's async pool could not be closed when the client was dropped), so every call
opened a new connection. The fake servers record each request's client port: requests on one kept-alive
connection share it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx2
import pytest

from providers import async_calls, pools
from providers.base import Prompt, ProviderAdapter
from providers.errors import CallAborted
from providers.gemini import build_gemini_adapter
from providers.perplexity import build_perplexity_adapter
from providers.testing.servers import FakeGemini, FakePerplexity, FakeProviderServer, Hang, Reply

PROMPT = Prompt(system="You are a campaign analyst.", user="Summarise this week's polling in Ohio.")
KEY = "dummy-key-not-secret"
TIMEOUT_S = 60.0  # never reached: every scripted answer is immediate, the hang is aborted
PROMPTLY_S = 30.0


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(behaviour=Reply()) as server:
        yield server


@pytest.fixture
def perplexity() -> Iterator[FakePerplexity]:
    with FakePerplexity(behaviour=Reply()) as server:
        yield server


def gemini_adapter(server: FakeProviderServer) -> ProviderAdapter:
    return build_gemini_adapter(model="gemini-2.5-pro", api_key=KEY, base_url=server.base_url, timeout_s=TIMEOUT_S)


def perplexity_adapter(server: FakeProviderServer) -> ProviderAdapter:
    return build_perplexity_adapter(
        model="perplexity/sonar", api_key=KEY, base_url=server.base_url, timeout_s=TIMEOUT_S
    )


def ports(server: FakeProviderServer) -> list[int]:
    return [r.client_port for r in server.requests]


@pytest.mark.parametrize(
    ("server_name", "make"), [("gemini", gemini_adapter), ("perplexity", perplexity_adapter)], ids=["gemini", "pplx"]
)
def test_calls_of_separate_clients_share_one_kept_alive_connection(
    server_name: str, make: object, request: pytest.FixtureRequest
) -> None:
    server: FakeProviderServer = request.getfixturevalue(server_name)
    assert callable(make)
    first, second = make(server), make(server)  # two registries' adapters: two clients of the SDK
    for _ in range(3):
        first.invoke(PROMPT)
        second.invoke(PROMPT)
    assert len(server.requests) == 6
    # Sequential calls never need a second connection (a new one per call was the old behaviour).
    assert len(set(ports(server))) == 1, ports(server)


def test_a_closed_client_leaves_the_pool_to_the_others(gemini: FakeGemini) -> None:
    first, second = gemini_adapter(gemini), gemini_adapter(gemini)
    first.invoke(PROMPT)
    client = first.chat_model().client  # type: ignore[attr-defined]  # langchain-google-genai's genai.Client
    client.close()
    async_calls.submit(client.aio.aclose()).result(timeout=PROMPTLY_S)
    second.invoke(PROMPT)
    assert len(set(ports(gemini))) == 1, ports(gemini)


def test_an_aborted_call_still_closes_its_connection(gemini: FakeGemini) -> None:
    adapter = gemini_adapter(gemini)
    adapter.invoke(PROMPT)  # a kept-alive connection exists: the hung call below goes out on it
    gemini.script([Hang()])
    abort = threading.Event()
    failure: list[BaseException] = []

    def call() -> None:
        try:
            adapter.invoke(PROMPT, abort=abort)
        except CallAborted as exc:
            failure.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    hung = None
    for _ in range(int(PROMPTLY_S / 0.01)):  # wait until the server holds the request, then abort the call
        hung = next((r for r in gemini.requests if r.action == "Hang"), None)
        if hung is not None:
            break
        threading.Event().wait(0.01)
    assert hung is not None, "the hung request never reached the server"
    abort.set()
    caller.join(PROMPTLY_S)
    assert len(failure) == 1
    # The server sees the client close the connection: the call is over at both ends, not left to its timeout.
    assert hung.client_gone.wait(PROMPTLY_S)
    adapter.invoke(PROMPT)  # and the pool opens a fresh connection for the next call
    assert gemini.requests[-1].client_port != hung.client_port


def test_a_forked_process_builds_its_own_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = pools.Httpx2Pools()
    parent = shared._blocking_pool()
    assert shared._blocking_pool() is parent
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)  # as a gunicorn or Celery child sees it
    child = shared._blocking_pool()
    assert child is not parent  # the parent's sockets are not shared with the child


def test_closing_the_pools_closes_their_idle_connections(gemini: FakeGemini) -> None:
    shared = pools.Httpx2Pools()  # a private instance: what exit does to the process's (atexit), here in a test
    url = f"{gemini.base_url}/v1beta/models/gemini-2.5-pro:generateContent"
    pool = async_calls.submit(_post_and_pool(shared, url)).result(timeout=PROMPTLY_S)
    assert async_calls.submit(_connections(pool)).result(timeout=PROMPTLY_S) == 1  # kept alive, idle
    shared.close_all(wait_s=PROMPTLY_S)
    assert async_calls.submit(_connections(pool)).result(timeout=PROMPTLY_S) == 0


async def _post_and_pool(shared: pools.Httpx2Pools, url: str) -> object:
    async with httpx2.AsyncClient(transport=shared) as client:  # closing the client leaves the pool open
        response = await client.post(url, json={"contents": [{"parts": [{"text": "hello"}]}]})
        assert response.status_code == 200
    return shared._loop_pool()


async def _connections(pool: object) -> int:
    return len(pool._pool.connections)  # type: ignore[attr-defined]  # httpcore's pool


_EXIT_SCRIPT = """
import asyncio, sys
from providers import async_calls

async def running_call() -> None:
    try:
        await asyncio.sleep(3600)  # a call in flight when the program ends
    except asyncio.CancelledError:
        print("cancelled", flush=True)
        raise
    finally:
        print("left", flush=True)

async def started() -> None:
    pass

async_calls.submit(running_call())
async_calls.submit(started()).result(timeout=60)  # the call's task has begun: the loop runs tasks in order
print("exiting", flush=True)
"""


def test_at_exit_the_loop_cancels_its_tasks_and_its_thread_leaves_before_the_interpreter_finalizes() -> None:
    """A daemon loop thread killed at finalization inside pydantic-core (validating a response) aborted the whole
    process: SIGABRT after README's asyncio example printed its answer, 5-8 exits in 60 on a loaded machine. The
    exit handler cancels the loop's tasks, stops it and waits for its thread."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,  # generous: without the handler the process exits at once, the task never cancelled
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["exiting", "cancelled", "left"]
    assert "Task was destroyed" not in done.stderr


def test_pools_of_a_loop_stopped_at_exit_are_still_closed(gemini: FakeGemini) -> None:
    """Exit handlers run in either order: the pools are closed on their loop even once it has been stopped."""
    shared = pools.Httpx2Pools()
    loop = asyncio.new_event_loop()
    url = f"{gemini.base_url}/v1beta/models/gemini-2.5-pro:generateContent"
    try:
        pool = loop.run_until_complete(_post_and_pool(shared, url))  # the loop ran, and is now stopped
        assert loop.run_until_complete(_connections(pool)) == 1
        shared.close_all(wait_s=PROMPTLY_S)
        assert loop.run_until_complete(_connections(pool)) == 0
    finally:
        loop.close()
