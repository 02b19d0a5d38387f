"""One runner per thread, with real processes: while `strategist analyze` runs a thread, a second `resume` or
`analyze` of that thread is refused (one line, exit 2) and makes no provider call; with ``--wait`` it says so
and waits, then carries on where the first left the thread. A runner that was killed does not block the next one
(SQLite: the kernel drops its file lock; Redis: the lease names a dead process of this host and is taken over at
once).

Before the leases, the second runner resumed from the same checkpoint: it called Gemini again (the fake server
counted 2 requests where 1 was made) and the thread forked into two heads. Servers and stores are the test's
own (providers/testing/servers.py counts the calls; redis_servers starts Redis on a free port).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_crash_resume import (
    CHECK,
    PREMIUM,
    ROOT,
    WAIT_S,
    Store,
    child_env,
    cli,
    counts,
    run_cli,
    sigkill,
    start_analyze,
    wait_for,
)

from providers.testing import redis_servers
from providers.testing.servers import FakeGemini, FakePerplexity, Hang


@pytest.fixture()
def servers() -> Iterator[tuple[FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        yield gemini, perplexity


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store("sqlite", tmp_path / "data")
        return
    try:
        redis_servers.redis_server_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running("redis", tmp_path / "redis") as server:
        yield Store("redis", tmp_path / "data", server)


def _env(servers: tuple[FakeGemini, FakePerplexity], store: Store, tmp_path: Path) -> dict[str, str]:
    # child_env turns off hedges and short per-call limits: the first runner must stay inside its hung Gemini
    # call (a hedge or a timeout would finish the analysis early, and the second runner would find it complete).
    return child_env(servers, store.env())


def _one_line_refusal(done: subprocess.CompletedProcess[str], thread_id: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("thread ")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("strategist: error: ") and f"thread {thread_id} is already running" in lines[0]
    assert "--wait SECONDS" in lines[0]
    assert done.stdout == ""


def test_second_runner_is_refused_and_makes_no_call(
    store: Store, servers: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    gemini, perplexity = servers
    gemini.script([Hang(), PREMIUM])
    perplexity.script([CHECK])
    env = _env(servers, store, tmp_path)
    thread_id = "leased-thread"
    logs = tmp_path / "logs"

    first = start_analyze(env, thread_id, logs)
    wait_for(lambda: gemini.request_count >= 1, first, logs, "the first runner's Gemini request")

    # The first runner is inside its premium call: a resume and a second analyze of the thread are refused.
    _one_line_refusal(run_cli(env, "resume", thread_id, "--json"), thread_id)
    _one_line_refusal(run_cli(env, "analyze", "another question", "--thread-id", thread_id, "--json"), thread_id)
    assert first.poll() is None
    assert counts(servers) == (1, 0)  # before the leases: (2, 0), the resume asked Gemini again

    # The first runner dies holding the thread: the next resume is not blocked and finishes the analysis.
    sigkill(first)
    resumed = run_cli(env, "resume", thread_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["provider"] == "gemini"
    assert counts(servers) == (2, 1)  # the killed, never-answered request once more; nothing else twice


def test_wait_makes_the_second_runner_wait_for_the_first(
    store: Store, servers: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    gemini, perplexity = servers
    gemini.script([Hang(), PREMIUM])
    perplexity.script([CHECK])
    env = _env(servers, store, tmp_path)
    thread_id = "waited-thread"
    logs = tmp_path / "logs"

    first = start_analyze(env, thread_id, logs)
    wait_for(lambda: gemini.request_count >= 1, first, logs, "the first runner's Gemini request")
    err = logs / "second.err"
    with err.open("wb") as err_file, (logs / "second.out").open("wb") as out_file:
        second = subprocess.Popen(
            cli("resume", thread_id, "--json", "--wait", str(WAIT_S)),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
        )
    try:
        # It says it waits (no timing involved: the first runner is hung until we end it) and calls nobody.
        wait_for(lambda: b"is running in another process: waiting" in err.read_bytes(), second, logs, "the notice")
        assert counts(servers) == (1, 0)
        # The first runner ends (killed here; finishing works the same): the waiting one takes the thread over.
        sigkill(first)
        assert second.wait(timeout=WAIT_S) == 0, err.read_text()
    finally:
        if second.poll() is None:
            second.kill()
    result = json.loads((logs / "second.out").read_text())
    assert result["thread_id"] == thread_id and result["provider"] == "gemini"
    assert counts(servers) == (2, 1)  # the killed, never-answered request once more; nothing else twice
