"""Store selection and Redis trouble at start: REDIS_URL set -> RedisSaver and RedisLedger, unset -> SQLite;
`strategist analyze`, `resume`, `costs` and the HTTP app of `strategist serve` all go through
graphs.checkpointing.open_stores; an unreachable Redis is one clear line and exit status 2.

Analyses here need no provider: with no API keys and a missing local model file the graph runs every step
and checkpoints a "no answer" result (exit 1), which is all store selection needs. Redis servers are the
test's own (providers/testing/redis_servers.py); the shared Redis on 6379 is never used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.cluster

import app as app_module
import cli
from graphs.analysis import build_analysis_graph
from graphs.errors import CheckpointStoreError
from graphs.stores import LocatedSqliteSaver, Stores, open_stores
from graphs.stores.ledger import RedisLedger, SqliteLedger
from graphs.stores.redis_saver import RedisSaver
from providers.config import load_settings
from providers.testing import redis_servers

ROOT = Path(__file__).resolve().parents[2]
QUERY = "Summarise: the rally in Malakpet went well and turnout was high."
PASSWORD = "s3cret-pw"


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hermetic environment: data in tmp_path, no provider keys, no REDIS_URL, no local model file."""
    for var in list(os.environ):
        if var.startswith(("GEMINI_", "GOOGLE_", "PERPLEXITY_", "LOCAL_", "STRATEGIST_", "REDIS_", "ROUTING_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOCAL_MODEL_PATH", str(tmp_path / "missing.gguf"))
    return tmp_path / "data"


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[redis_servers.RedisServer]:
    try:
        redis_servers.redis_server_binary()
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running("redis", tmp_path / "redis", password=PASSWORD) as server:
        yield server


def down_url() -> str:
    """A Redis URL with a password on a port where nothing listens."""
    return f"redis://user:{PASSWORD}@127.0.0.1:{redis_servers.free_port()}/0"


def saved_threads(stores: Stores, *thread_ids: str) -> dict[str, bool]:
    graph = build_analysis_graph().compile(checkpointer=stores.checkpointer)
    out = {}
    for thread_id in thread_ids:
        snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
        out[thread_id] = bool(snapshot.values) and not snapshot.next and "result" in snapshot.values
    return out


def analyze_via_cli_and_http(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Run one analysis through `strategist analyze` and one through the app `strategist serve` runs."""
    assert cli.main(["analyze", QUERY, "--thread-id", "via-cli", "--json"]) == 1  # no provider: no answer
    capsys.readouterr()
    client = app_module.create_app().test_client()  # what cmd_serve serves, with its own stores
    response = client.post("/api/v1/strategist/analyze", json={"text": QUERY})
    assert response.status_code == 200, response.get_json()
    return "via-cli", response.get_json()["thread_id"]


@pytest.mark.parametrize("redis_url", [None, ""], ids=["unset", "empty"])
def test_without_redis_url_both_stores_are_sqlite_in_the_data_dir(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], redis_url: str | None
) -> None:
    if redis_url is not None:
        monkeypatch.setenv("REDIS_URL", redis_url)
    cli_thread, http_thread = analyze_via_cli_and_http(capsys)
    with open_stores(load_settings()) as stores:
        assert isinstance(stores.checkpointer, LocatedSqliteSaver)
        assert isinstance(stores.ledger, SqliteLedger)
        assert stores.location == f"SQLite database {env / 'checkpoints.sqlite'}"
        assert saved_threads(stores, cli_thread, http_thread) == {cli_thread: True, http_thread: True}
        assert {e.thread_id for e in stores.ledger.entries()} == {cli_thread, http_thread}
    assert cli.main(["costs", "--json"]) == 0
    assert '"analyses": 2' in capsys.readouterr().out


def test_with_redis_url_checkpoints_and_ledger_move_to_redis(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_server: redis_servers.RedisServer,
) -> None:
    monkeypatch.setenv("REDIS_URL", f"{redis_server.url}/0")
    cli_thread, http_thread = analyze_via_cli_and_http(capsys)
    with open_stores(load_settings()) as stores:
        assert isinstance(stores.checkpointer, RedisSaver)
        assert isinstance(stores.ledger, RedisLedger)
        assert stores.location == f"Redis at redis://:***@127.0.0.1:{redis_server.port}/0"
        assert saved_threads(stores, cli_thread, http_thread) == {cli_thread: True, http_thread: True}
        assert {e.thread_id for e in stores.ledger.entries()} == {cli_thread, http_thread}
    assert cli.main(["costs", "--json"]) == 0
    assert '"analyses": 2' in capsys.readouterr().out
    # Nothing went to SQLite: the data directory holds no checkpoint database.
    assert not (env / "checkpoints.sqlite").exists()
    # The ledger shares the saver's one client (and so its timeouts and cluster awareness).
    with open_stores(load_settings()) as stores:
        assert isinstance(stores.checkpointer, RedisSaver)
        assert stores.ledger._client is stores.checkpointer.client  # type: ignore[attr-defined]


def test_a_cluster_url_gets_cluster_clients_for_checkpoints_and_ledger(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    try:
        redis_servers.binary_for("cluster")
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    with redis_servers.running("cluster", tmp_path / "cluster") as cluster:
        monkeypatch.setenv("REDIS_URL", cluster.url)
        assert cli.main(["analyze", QUERY, "--thread-id", "on-cluster", "--json"]) == 1
        with open_stores(load_settings()) as stores:
            assert isinstance(stores.checkpointer, RedisSaver)
            assert isinstance(stores.checkpointer.client, redis.cluster.RedisCluster)
            assert saved_threads(stores, "on-cluster") == {"on-cluster": True}
            assert [e.thread_id for e in stores.ledger.entries()] == ["on-cluster"]


def test_resume_finds_an_analysis_only_in_the_store_it_was_saved_in(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_server: redis_servers.RedisServer,
) -> None:
    monkeypatch.setenv("REDIS_URL", f"{redis_server.url}/0")
    assert cli.main(["analyze", QUERY, "--thread-id", "in-redis", "--json"]) == 1
    assert cli.main(["resume", "in-redis", "--json"]) == 1  # found, complete, still no answer
    monkeypatch.delenv("REDIS_URL")
    capsys.readouterr()
    assert cli.main(["resume", "in-redis", "--json"]) == 2
    assert "no analysis with thread id 'in-redis'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["analyze", QUERY], ["resume", "some-thread"], ["costs"], ["serve", "--port", "0"]],
    ids=["analyze", "resume", "costs", "serve"],
)
def test_redis_down_at_start_is_one_clear_line_and_exit_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    url = down_url()
    monkeypatch.setenv("REDIS_URL", url)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    masked = url.replace(PASSWORD, "***")
    assert err.startswith(f"strategist: error: cannot reach Redis at {masked}: ")
    assert "Connection refused" in err and "REDIS_URL" in err
    assert PASSWORD not in err and "Traceback" not in err and err.count("\n") == 1
    assert not (env / "checkpoints.sqlite").exists()  # no silent fallback to SQLite


def test_redis_down_at_start_in_a_real_process(env: Path) -> None:
    url = down_url()
    child_env = {**os.environ, "REDIS_URL": url}
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "analyze", QUERY, "--json"],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"strategist: error: cannot reach Redis at {url.replace(PASSWORD, '***')}: ")
    assert PASSWORD not in done.stderr and "Traceback" not in done.stderr


def test_http_app_does_not_start_without_its_redis(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", down_url())
    with pytest.raises(CheckpointStoreError, match=r"cannot reach Redis at redis://user:\*\*\*@127\.0\.0\.1:"):
        app_module.create_app()


def test_wrong_redis_password_is_reported_masked(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_server: redis_servers.RedisServer,
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:not-the-password@127.0.0.1:{redis_server.port}/0")
    assert cli.main(["costs"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{redis_server.port}/0: " in err
    assert "not-the-password" not in err and "Traceback" not in err


def test_redis_lost_while_the_stores_are_open_is_a_store_error(
    env: Path, monkeypatch: pytest.MonkeyPatch, redis_server: redis_servers.RedisServer
) -> None:
    # `strategist costs` (and anything else reading the stores directly) gets the same clean error.
    monkeypatch.setenv("REDIS_URL", f"{redis_server.url}/0")
    with pytest.raises(CheckpointStoreError) as info, open_stores(load_settings()) as stores:
        redis_server.kill()
        stores.ledger.entries()
    message = str(info.value)
    assert message.startswith(f"the checkpoint store (Redis at redis://:***@127.0.0.1:{redis_server.port}/0) failed: ")
    assert isinstance(info.value.__cause__, redis.ConnectionError)


def test_unusable_data_dir_is_a_store_error(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_dir = env.parent / "a-file"
    not_a_dir.write_text("")
    monkeypatch.setenv("STRATEGIST_DATA_DIR", str(not_a_dir))
    with pytest.raises(CheckpointStoreError, match="cannot open the checkpoint database"), open_stores(load_settings()):
        pass
