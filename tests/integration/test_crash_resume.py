"""Crash-safe resume: a real `strategist analyze` process is SIGKILLed mid-analysis and `strategist resume`
finishes it; the fake provider servers count the calls, proving that no completed provider call was repeated.

The analysis is a deep one (premium answer, then a cross-check by another vendor), so the kill points are:

- ``premium-in-flight``: Gemini holds the answer request open; killed once Gemini has it. That call never
  completed, so the resume makes it again (the one repeat allowed: the vendor may bill a request whose
  answer we never received).
- ``after-premium``: Gemini answered; killed when Perplexity receives the cross-check request, i.e. after the
  premium call and the steps after it. Gemini must not be called again.
- ``cross-check-after-fallback``: Gemini refused the prompt (its safety filter: a refusal of this prompt, not a
  provider in trouble, so Gemini may still check), Perplexity answered as the fallback, and Gemini's cross-check
  is in flight when the process dies. The failed call and the fallback answer are not repeated. (A Gemini that
  failed with a 503 or hung is never asked to check the same analysis: tests/integration/test_failover.py.)

Each runs with SQLite, with Redis (AOF, appendfsync always), and with that Redis SIGKILLed and restarted
between the kill and the resume. At each kill the test also reads the store: the calls that completed are
already in the last checkpoint, which is what durability="sync" (graphs/service.py) guarantees.

Also here: Redis lost in the middle of a run (clear error, exit 2, resumable once Redis is back, nothing
acknowledged lost), and an in-process check that the checkpoint of a step is saved before the next step
makes its provider call. Servers and stores are the test's own; the shared Redis on 6379 is never used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.analysis import build_analysis_graph
from graphs.request import parse_request
from graphs.service import Orchestrator
from graphs.stores import open_stores
from providers.config import load_settings
from providers.testing import fake_registry, redis_servers, reply
from providers.testing.checker import verdict_text
from providers.testing.servers import Action, Blocked, FakeGemini, FakePerplexity, Hang, RecordedRequest, Reply

ROOT = Path(__file__).resolve().parents[2]
QUERY = "Design a 12-week mobilisation plan for Jubilee Hills with budget trade-offs and risks"
PREMIUM = Reply(text="Week 1-2: map every booth and name a captain. Week 3-6: door-to-door on water.\nConfidence: 0.7")
# The checker answers in the verdict schema: its own answer, and a verdict on each claim of the served answer.
CHECK = Reply(
    text=verdict_text(
        "Map the booths first and name captains, then canvass door to door on water supply.", ["supports"] * 2
    )
)
# Generous: a loaded 2-core machine starts a CLI process in a few seconds; a healthy run never waits this long.
WAIT_S = 90.0

# Hedges off and per-call limits as long as the deadline allows: a hung fake stays hung until the test ends it.
NO_TIMING_CONFIG = "[resilience.hedge]\nenabled = false\n[resilience.deadlines]\ncold_s = 600.0\nmin_s = 600.0\n"

StoreKind = Literal["sqlite", "redis", "redis-restart"]
Counts = tuple[int, int]  # (gemini requests, perplexity requests)
AttemptKey = tuple[str, str, str]  # (provider, role, outcome)


# ------------------------------------------------------------------------------------------------ helpers


@dataclass
class Store:
    """The checkpoint store a scenario's processes share: SQLite in ``data_dir`` or a Redis of the test's own."""

    kind: StoreKind
    data_dir: Path
    redis: redis_servers.RedisServer | None = None

    def env(self) -> dict[str, str]:
        env = {"STRATEGIST_DATA_DIR": str(self.data_dir)}
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        return env

    def crash_server(self) -> None:
        """For ``redis-restart``: SIGKILL Redis (as in a power cut) and start it again from its AOF."""
        if self.kind == "redis-restart":
            assert self.redis is not None
            self.redis.kill()
            self.redis.restart()


@pytest.fixture()
def servers() -> Iterator[tuple[FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        yield gemini, perplexity


def _require_redis() -> None:
    try:
        redis_servers.redis_server_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "redis", "redis-restart"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind: StoreKind = request.param
    if kind == "sqlite":
        yield Store(kind, tmp_path / "data")
        return
    _require_redis()
    with redis_servers.running("redis-aof", tmp_path / "redis") as server:
        yield Store(kind, tmp_path / "data", server)


def child_env(servers: tuple[FakeGemini, FakePerplexity], store_env: dict[str, str]) -> dict[str, str]:
    """The CLI's environment: fake providers, dummy keys, no local model, the test's stores, nothing inherited
    that could point it elsewhere (a developer's keys, REDIS_URL, config file, proxies)."""
    prefixes = ("GEMINI_", "GOOGLE_", "PERPLEXITY_", "LOCAL_", "STRATEGIST_", "REDIS_", "ROUTING_")
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes) and not k.lower().endswith("_proxy")
    }
    gemini, perplexity = servers
    env |= {
        "GEMINI_API_KEY": "test",
        "PERPLEXITY_API_KEY": "test",
        "GEMINI_BASE_URL": gemini.base_url,
        "PERPLEXITY_BASE_URL": perplexity.base_url,
        # A model file that does not exist: the local tier is unavailable and no model is loaded.
        "LOCAL_MODEL_PATH": str(ROOT / "no-such-model.gguf"),
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    # No hedging and no short per-call limit: on a loaded machine a slow fake answer would start a hedge or time
    # out, adding attempts that depend on speed; what is tested here is which completed calls a resume repeats
    # (hedges and sub-deadlines have their own tests in test_resilience and test_failover).
    config = Path(store_env["STRATEGIST_DATA_DIR"]).parent / "no-hedge.toml"
    config.write_text(NO_TIMING_CONFIG)
    return env | store_env | {"STRATEGIST_CONFIG": str(config)}


def cli(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), *args]


def start_analyze(env: dict[str, str], thread_id: str, log_dir: Path) -> subprocess.Popen[bytes]:
    # Output goes to files, not pipes: a child blocked on a full pipe would look like a hung provider call.
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "analyze.out").open("wb") as out, (log_dir / "analyze.err").open("wb") as err:
        return subprocess.Popen(
            cli("analyze", QUERY, "--depth", "deep", "--thread-id", thread_id, "--json"),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], log_dir: Path, what: str) -> None:
    """Wait (polling, generous timeout) until ``condition`` holds while ``proc`` is still running."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"analyze exited ({proc.returncode}) before {what}:\n{(log_dir / 'analyze.err').read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}:\n{(log_dir / 'analyze.err').read_text()}")
        time.sleep(0.01)


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_S)


def saved_state(store_env: dict[str, str], thread_id: str) -> tuple[tuple[str, ...], list[AttemptKey]]:
    """Read the thread's last checkpoint from the store (as a new process would): next nodes and attempts."""
    settings = load_settings({**store_env, "LOCAL_MODEL_PATH": "/nonexistent/model.gguf"})
    with open_stores(settings) as stores:
        graph = build_analysis_graph().compile(checkpointer=stores.checkpointer)
        snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    return tuple(snapshot.next), attempt_keys(snapshot.values.get("attempts", []))


def attempt_keys(attempts: list[dict[str, Any]]) -> list[AttemptKey]:
    return [(a["provider"], a["role"], a["outcome"]) for a in attempts]


def counts(servers: tuple[FakeGemini, FakePerplexity]) -> Counts:
    return servers[0].request_count, servers[1].request_count


# ------------------------------------------------------------------------------------ kill and resume


@dataclass(frozen=True)
class KillPoint:
    name: str
    gemini: tuple[Action, ...]
    perplexity: tuple[Action, ...]
    kill_when: tuple[Literal["gemini", "perplexity"], int]  # kill once this server has had this many requests
    saved_next: tuple[str, ...]  # the node the last checkpoint says runs next
    saved_attempts: tuple[AttemptKey, ...]  # provider calls that completed before the kill, as checkpointed
    at_kill: Counts
    after_resume: Counts
    final_attempts: tuple[AttemptKey, ...]
    answered_by: str


OK_ANSWER = ("gemini", "answer", "ok")
KILL_POINTS = [
    KillPoint(
        name="premium-in-flight",
        gemini=(Hang(), PREMIUM),
        perplexity=(CHECK,),
        kill_when=("gemini", 1),
        saved_next=("call_model",),
        saved_attempts=(),
        at_kill=(1, 0),
        after_resume=(2, 1),  # the killed, never-answered premium request is made again
        final_attempts=(OK_ANSWER, ("perplexity", "cross_check", "ok")),
        answered_by="gemini",
    ),
    KillPoint(
        name="after-premium",
        gemini=(PREMIUM,),
        perplexity=(Hang(), CHECK),
        kill_when=("perplexity", 1),
        saved_next=("cross_check",),
        saved_attempts=(OK_ANSWER,),
        at_kill=(1, 1),
        after_resume=(1, 2),  # premium not asked again; the killed cross-check request is
        final_attempts=(OK_ANSWER, ("perplexity", "cross_check", "ok")),
        answered_by="gemini",
    ),
    KillPoint(
        name="cross-check-after-fallback",
        gemini=(Blocked(), Hang(), CHECK),
        perplexity=(PREMIUM,),
        kill_when=("gemini", 2),
        saved_next=("cross_check",),
        saved_attempts=(("gemini", "answer", "error"), ("perplexity", "answer", "ok")),
        at_kill=(2, 1),
        after_resume=(3, 1),  # neither the failed premium call nor the fallback answer is repeated
        final_attempts=(("gemini", "answer", "error"), ("perplexity", "answer", "ok"), ("gemini", "cross_check", "ok")),
        answered_by="perplexity",
    ),
]


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.name)
def test_killed_analysis_resumes_without_repeating_completed_calls(
    point: KillPoint, store: Store, servers: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    gemini, perplexity = servers
    gemini.script(point.gemini)
    perplexity.script(point.perplexity)
    env = child_env(servers, store.env())
    thread_id = f"crash-{point.name}"
    target = gemini if point.kill_when[0] == "gemini" else perplexity

    proc = start_analyze(env, thread_id, tmp_path / "logs")
    wait_for(
        lambda: target.request_count >= point.kill_when[1],
        proc,
        tmp_path / "logs",
        f"{point.kill_when[0]} request #{point.kill_when[1]}",
    )
    sigkill(proc)
    at_kill = counts(servers)
    store.crash_server()

    # What the store holds is what a new process starts from: the completed calls are in the last checkpoint.
    saved_next, saved_attempts = saved_state(store.env(), thread_id)
    assert saved_next == point.saved_next
    assert saved_attempts == list(point.saved_attempts)
    assert at_kill == point.at_kill

    resumed = run_cli(env, "resume", thread_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    after = counts(servers)
    print(
        f"\n[{store.kind}] {point.name}: requests at kill gemini={at_kill[0]} perplexity={at_kill[1]}; "
        f"after resume gemini={after[0]} perplexity={after[1]}; attempts {attempt_keys(result['attempts'])}"
    )
    assert after == point.after_resume
    assert result["thread_id"] == thread_id and result["provider"] == point.answered_by
    assert attempt_keys(result["attempts"]) == list(point.final_attempts)
    assert result["cross_check"] is not None and result["cross_check"]["agreement"] > 0
    assert gemini.pending == 0 and perplexity.pending == 0  # every scripted answer was used exactly once


# -------------------------------------------------------------------------------- Redis lost mid-run


def test_redis_lost_mid_run_stops_cleanly_and_resumes_when_back(
    servers: tuple[FakeGemini, FakePerplexity], tmp_path: Path
) -> None:
    _require_redis()
    gemini, perplexity = servers
    redis_gone = threading.Event()

    def cross_check_after_redis_is_gone(index: int, request: RecordedRequest) -> Action:
        # Hold the cross-check until the test has killed Redis, so the step finishes with no store to save to.
        redis_gone.wait(WAIT_S)
        return CHECK

    gemini.script([PREMIUM])
    perplexity.behaviour = cross_check_after_redis_is_gone
    password = "s3cret-pw"
    with redis_servers.running("redis-aof", tmp_path / "redis", password=password) as server:
        store_env = {"STRATEGIST_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": f"{server.url}/0"}
        env = child_env(servers, store_env)
        thread_id = "redis-lost"
        proc = start_analyze(env, thread_id, tmp_path / "logs")
        wait_for(lambda: perplexity.request_count >= 1, proc, tmp_path / "logs", "the cross-check request")
        server.kill()
        redis_gone.set()
        assert proc.wait(timeout=WAIT_S) == 2
        stderr = (tmp_path / "logs" / "analyze.err").read_text()
        print(f"\n[redis lost mid-run] exit 2, stderr: {stderr.strip()}")
        assert f"analysis {thread_id} stopped" in stderr
        # The thread's id first (so a killed run can be resumed), then one line for the failure: no warning from
        # the circuit-breaker store's fallback on the way.
        assert stderr.splitlines()[0] == f"thread {thread_id}" and len(stderr.splitlines()) == 2, stderr
        assert f"Redis at redis://:***@127.0.0.1:{server.port}/0" in stderr
        assert f"resume thread {thread_id}" in stderr
        assert "Traceback" not in stderr and password not in stderr
        assert (tmp_path / "logs" / "analyze.out").read_text() == ""  # nothing was acknowledged

        # While Redis is down, resume fails just as clearly.
        down = run_cli(env, "resume", thread_id, "--json")
        assert down.returncode == 2 and "cannot reach Redis at redis://:***@" in down.stderr
        assert "Traceback" not in down.stderr and password not in down.stderr

        server.restart()
        resumed = run_cli(env, "resume", thread_id, "--json")
        assert resumed.returncode == 0, resumed.stderr
        result = json.loads(resumed.stdout)
        # The premium answer was checkpointed before Redis went: not asked again. The cross-check answered
        # while Redis was gone, so its step could not be saved and is asked again.
        assert counts(servers) == (1, 2)
        assert attempt_keys(result["attempts"]) == [OK_ANSWER, ("perplexity", "cross_check", "ok")]

        # The acknowledged result and its ledger row survive a Redis crash (AOF, appendfsync always).
        server.kill()
        server.restart()
        again = run_cli(env, "resume", thread_id, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == result
        assert counts(servers) == (1, 2)
        costs = run_cli(env, "costs", "--json")
        assert costs.returncode == 0, costs.stderr
        report = json.loads(costs.stdout)
        assert report["analyses"] == 1 and report["cost_usd"] == pytest.approx(result["cost_usd"], abs=1e-6)
        assert report["by_provider"]["gemini"]["calls"] == 1 and report["by_provider"]["perplexity"]["calls"] == 1


# ------------------------------------------------------------------- checkpoint before the next step


class SlowPutSaver(InMemorySaver):
    """Delays every checkpoint save: with "async" durability the next step would overtake it."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return super().put(*args, **kwargs)


def test_a_completed_call_is_checkpointed_before_the_next_call_starts() -> None:
    saver = SlowPutSaver()
    thread_id = f"order-{uuid.uuid4().hex[:8]}"
    seen_at_cross_check: list[list[AttemptKey]] = []

    def cross_check_reply(messages: list[BaseMessage]) -> Any:
        # What a process killed right now would resume from: the latest saved checkpoint of the thread.
        saved = saver.get_tuple({"configurable": {"thread_id": thread_id}})
        attempts = saved.checkpoint["channel_values"].get("attempts", []) if saved is not None else []
        seen_at_cross_check.append(attempt_keys(attempts))  # the test checks what they hold
        return reply(verdict_text("Map the booths first and name captains, then canvass door to door.", ["supports"]))

    registry = fake_registry(
        {
            "gemini": [reply("Week 1-2: map every booth and name a captain.\nConfidence: 0.7")],
            "perplexity": [cross_check_reply],
        }
    )
    orchestrator = Orchestrator(registry, saver)
    result = orchestrator.analyze(parse_request({"query": QUERY, "depth": "deep"}), thread_id=thread_id)
    assert result.cross_check is not None
    assert seen_at_cross_check == [[OK_ANSWER]]
