"""A ward briefing killed in the middle of its parallel research resumes without asking a finished question again.

A real `strategist brief` process runs against the fake Gemini and Perplexity servers; Perplexity answers three
of the four research questions at once and holds the fourth open. Once the checkpoint store shows the three
finished branches, the process is SIGKILLed; `strategist brief --resume` finishes the briefing. The servers
count the requests: the three finished branches are not asked again, the held one is (its call never
completed), and the writer is called once. With SQLite, and with a Redis of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphs.briefing import build_briefing_graph
from graphs.stores import open_stores
from providers.config import load_settings
from providers.testing import redis_servers
from providers.testing.briefings import draft_json
from providers.testing.servers import Action, FakeGemini, FakePerplexity, Hang, RecordedRequest, Reply, Source
from worker.testing import wait_until

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 90.0  # generous: a loaded 2-core machine starts a CLI process in seconds
HELD = "parties and candidates"  # the third neutral research question
SOURCES = [
    Source(url="https://www.thehindu.com/jh", title="JH", date="2026-11-28"),
    Source(url="https://ghmc.gov.in/n"),
]


@pytest.fixture(params=["sqlite", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"STRATEGIST_DATA_DIR": str(tmp_path / "data")}
    if request.param == "sqlite":
        yield env
        return
    try:
        redis_servers.redis_server_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running("redis", tmp_path / "redis") as server:
        yield env | {"REDIS_URL": server.url}


def _child_env(gemini: FakeGemini, perplexity: FakePerplexity, store_env: dict[str, str]) -> dict[str, str]:
    prefixes = ("GEMINI_", "GOOGLE_", "PERPLEXITY_", "LOCAL_", "STRATEGIST_", "REDIS_", "ROUTING_", "WARD_", "ETAG_")
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes) and not k.lower().endswith("_proxy")
    }
    return (
        env
        | store_env
        | {
            "GEMINI_API_KEY": "test",
            "PERPLEXITY_API_KEY": "test",
            "GEMINI_BASE_URL": gemini.base_url,
            "PERPLEXITY_BASE_URL": perplexity.base_url,
            "LOCAL_MODEL_PATH": str(ROOT / "no-such-model.gguf"),
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )


def finished_branches(store_env: dict[str, str], thread_id: str) -> int:
    """Count the gather branches whose results the checkpoint store holds (as a new process would read it)."""
    settings = load_settings({**store_env, "LOCAL_MODEL_PATH": "/nonexistent/model.gguf"})
    with open_stores(settings) as stores:
        graph = build_briefing_graph().compile(checkpointer=stores.checkpointer)
        snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    return sum(1 for task in snapshot.tasks if task.name == "gather" and task.result is not None)


def test_sigkill_during_gather_resumes_without_repeating_finished_branches(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    released = threading.Event()

    def research(_index: int, request: RecordedRequest) -> Action:
        held = HELD in json.dumps(request.body)
        if held and not released.is_set():
            return Hang(seconds=WAIT_S)
        return Reply(text="Residents report irregular water supply and delayed road works.", citations=SOURCES)

    with FakeGemini(behaviour=Reply(text=draft_json())) as gemini, FakePerplexity(behaviour=research) as perplexity:
        # No hedging: on a loaded machine a slow research answer would be hedged to Gemini, which would make the
        # writer's request count depend on the machine's speed.
        config = tmp_path / "no-hedge.toml"
        config.write_text("[resilience.hedge]\nenabled = false\n")
        env = _child_env(gemini, perplexity, store_env) | {"STRATEGIST_CONFIG": str(config)}
        thread_id = "brief-kill-1"
        log = tmp_path / "brief.err"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "cli.py"), "brief", "Jubilee Hills", "--thread-id", thread_id, "--json"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

        def three_branches_finished() -> bool:
            assert proc.poll() is None, f"brief exited early ({proc.returncode}):\n{log.read_text()}"
            return perplexity.request_count >= 4 and finished_branches(store_env, thread_id) >= 3

        wait_until(three_branches_finished, WAIT_S, f"three finished branches (the CLI's log: {log})")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert (perplexity.request_count, gemini.request_count) == (4, 0)

        released.set()
        resumed = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "brief", "--resume", thread_id, "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert resumed.returncode == 0, resumed.stderr
        briefing: dict[str, Any] = json.loads(resumed.stdout)
        # Only the held question was asked again; the writer once.
        assert (perplexity.request_count, gemini.request_count) == (5, 1)
        asked_again = [r for r in perplexity.requests[4:] if HELD in json.dumps(r.body)]
        assert len(asked_again) == 1
        assert briefing["ward"] == "Jubilee Hills" and briefing["fallback_mode"] is False
        assert len(briefing["analysis"]["questions"]) == 4
