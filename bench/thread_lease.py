"""Two runners on one thread, before and after the thread leases (issue 10 item 5), counted at the fake servers.

A real `strategist analyze --depth deep` starts a thread whose Gemini answer takes 20 seconds (far longer than
a CLI process needs to start, even on a loaded machine); while it waits,
a second real process runs `strategist resume` of the same thread. The script counts the provider requests the
fake Gemini and Perplexity servers received (providers/testing/servers.py), the exit status of each runner, and
the thread's checkpoints and heads (checkpoints no other checkpoint names as parent: more than one is a fork).
It runs each store (SQLite; Redis on a throwaway server, never 6379) with the code under ``--root`` (default this
checkout; point it at a checkout from before the leases to see "before"), and prints one table.

These are counts, not timings: they do not depend on machine load.

Run: ``.venv/bin/python bench/thread_lease.py [--root PATH] [--stores sqlite,redis]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from providers.config import load_settings
from providers.testing import redis_servers
from providers.testing.checker import verdict_text
from providers.testing.servers import Delay, FakeGemini, FakePerplexity, Reply

HERE = Path(__file__).resolve().parents[1]
QUERY = "Design a 12-week mobilisation plan for Jubilee Hills with budget trade-offs and risks"
PREMIUM = Reply(text="Week 1-2: map every booth and name a captain. Week 3-6: door-to-door on water.\nConfidence: 0.7")
CHECK = Reply(text=verdict_text("Map the booths first, then canvass door to door on water supply.", ["supports"] * 2))
THREAD = "two-runners"


def _env(
    gemini: FakeGemini, perplexity: FakePerplexity, data: Path, redis_url: str | None, config: Path
) -> dict[str, str]:
    prefixes = ("GEMINI_", "GOOGLE_", "PERPLEXITY_", "LOCAL_", "STRATEGIST_", "REDIS_", "ROUTING_")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}
    env |= {
        "GEMINI_API_KEY": "test",
        "PERPLEXITY_API_KEY": "test",
        "GEMINI_BASE_URL": gemini.base_url,
        "PERPLEXITY_BASE_URL": perplexity.base_url,
        "LOCAL_MODEL_PATH": str(data / "no-such-model.gguf"),
        "NO_PROXY": "127.0.0.1,localhost",
        "STRATEGIST_DATA_DIR": str(data),
        "STRATEGIST_CONFIG": str(config),  # no hedge, no early per-call deadline: the first stays in its slow call
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def _checkpoints(data: Path, redis_url: str | None) -> tuple[int, int]:
    """Return (checkpoints, heads) of the thread, read with this checkout's stores."""
    from graphs.stores import open_stores

    env = {"STRATEGIST_DATA_DIR": str(data), "LOCAL_MODEL_PATH": "/nonexistent/model.gguf"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    with open_stores(load_settings(env)) as stores:
        tuples = list(stores.checkpointer.list({"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}))
    ids = {t.config["configurable"]["checkpoint_id"] for t in tuples}
    parents = {t.parent_config["configurable"]["checkpoint_id"] for t in tuples if t.parent_config}
    return len(ids), len(ids - parents)


def run(root: Path, store: str, work: Path) -> dict[str, object]:
    data = work / store / "data"
    data.mkdir(parents=True)
    config = work / store / "strategist.toml"
    text = "[resilience.hedge]\nenabled = false\n"
    if "[resilience.deadlines]" in (root / "providers" / "defaults.toml").read_text():  # older checkouts lack it
        text += "\n[resilience.deadlines]\ncold_s = 600.0\n"
    config.write_text(text)
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        gemini.script([Delay(seconds=20.0, then=PREMIUM), Delay(seconds=20.0, then=PREMIUM)])
        perplexity.script([CHECK, CHECK])
        server = redis_servers.start_server("redis", work / store / "redis") if store == "redis" else None
        try:
            env = _env(gemini, perplexity, data, server.url if server else None, config)
            cli = [sys.executable, str(root / "cli.py")]
            out = subprocess.DEVNULL
            first = subprocess.Popen(
                [*cli, "analyze", QUERY, "--depth", "deep", "--thread-id", THREAD, "--json"],
                cwd=root, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 120
            while gemini.request_count < 1 and time.monotonic() < deadline and first.poll() is None:
                time.sleep(0.01)
            launched_while_running = first.poll() is None
            second = subprocess.run(
                [*cli, "resume", THREAD, "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=300
            )
            first_rc = first.wait(timeout=300)
            checkpoints, heads = _checkpoints(data, server.url if server else None)
            return {
                "store": store,
                "first exit": first_rc,
                "second exit": second.returncode,
                "first still running at second's launch": "yes" if launched_while_running else "no",
                "gemini requests": gemini.request_count,
                "perplexity requests": perplexity.request_count,
                "checkpoints": checkpoints,
                "heads": heads,
                "second said": (second.stderr.strip().splitlines() or [""])[-1][:90],
            }
        finally:
            if server is not None:
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE, help="checkout whose cli.py the runners execute")
    parser.add_argument("--stores", default="sqlite,redis")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            rows.append(run(args.root.resolve(), store, Path(tmp)))
    print(f"code under test: {args.root.resolve()}")
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))


if __name__ == "__main__":
    main()
