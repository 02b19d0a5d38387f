"""Secrets never leave the process: upstreams that echo our keys back, through the real clients, the HTTP app, the
CLI and both stores; and Google's answer to a bad key (400 API_KEY_INVALID) fails over instead of stopping."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import app as app_module
import cli
from providers.secrets import redact
from providers.testing import redis_servers
from providers.testing.servers import Fail, FakeGemini, FakePerplexity, Reply

GEMINI_KEY = "AIzaDUMMYKEY123456"
PERPLEXITY_KEY = "pplx-DUMMY456789"
API_TOKEN = "http-token-7f3a9c"
SECRETS = (GEMINI_KEY, PERPLEXITY_KEY, API_TOKEN)
COMPLEX = "Design a 12-week mobilisation plan for Jubilee Hills"
# How Google refuses a bad key: 400 INVALID_ARGUMENT whose details carry reason API_KEY_INVALID, and (as some
# proxies and older endpoints do) the key itself in the message.
BAD_KEY = Fail(
    status=400,
    message=f"API key not valid. Please pass a valid API key. (key={GEMINI_KEY})",
    details=[
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage"},
        }
    ],
)
ECHOING_401 = Fail(status=401, message=f"Invalid API key provided: Bearer {PERPLEXITY_KEY}")


@pytest.fixture()
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGemini, FakePerplexity]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity:
        env = {
            "GEMINI_API_KEY": GEMINI_KEY,
            "GEMINI_BASE_URL": gemini.base_url,
            "PERPLEXITY_API_KEY": PERPLEXITY_KEY,
            "PERPLEXITY_BASE_URL": perplexity.base_url,
            "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
            "STRATEGIST_API_TOKEN": API_TOKEN,
            "LOCAL_MODEL_PATH": str(tmp_path / "no-model.gguf"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for var in ("REDIS_URL", "STRATEGIST_CONFIG", "LOCAL_BASE_URL", "ROUTING_MODE"):
            monkeypatch.delenv(var, raising=False)
        yield gemini, perplexity


def leaks(blob: bytes | str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [secret for secret in SECRETS if secret.encode() in data]


def stored_bytes(data_dir: Path) -> bytes:
    """Every byte the embedded store wrote: the database, its WAL and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(data_dir.rglob("*")) if path.is_file())


def redis_bytes(server: redis_servers.RedisServer) -> bytes:
    """Every key and value in a Redis of the test's own, read by type."""
    client: Any = server.client()
    chunks: list[bytes] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        chunks.append(key)
        if kind == "string":
            chunks.append(client.get(key) or b"")
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                chunks += [field, value]
        elif kind == "zset":
            chunks += client.zrange(key, 0, -1)
        elif kind == "list":
            chunks += client.lrange(key, 0, -1)
        elif kind == "set":
            chunks += list(client.smembers(key))
    return b"\n".join(chunks)


def analyze_over_http() -> tuple[int, str]:
    client = app_module.create_app().test_client()
    response = client.post(
        "/api/v1/strategist/analyze",
        json={"text": f"{COMPLEX}: booths, volunteers, water supply."},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    return response.status_code, response.get_data(as_text=True)


def test_redaction_covers_configured_secrets_and_key_shapes() -> None:
    from providers.config import load_settings

    load_settings({"GEMINI_API_KEY": GEMINI_KEY, "REDIS_URL": "redis://:hunter22hunter@127.0.0.1:7000/0"})
    assert redact(f"perplexity: 401: Invalid API key provided: Bearer {PERPLEXITY_KEY}") == (
        "perplexity: 401: Invalid API key provided: Bearer [REDACTED]"
    )
    assert GEMINI_KEY not in redact(f"quota for {GEMINI_KEY} exceeded")
    assert redact("x-goog-api-key: abcdef12345") == "x-goog-api-key: [REDACTED]"
    assert redact("lost redis://:hunter22hunter@127.0.0.1:7000/0") == "lost redis://:***@127.0.0.1:7000/0"
    assert redact("the password hunter22hunter leaked") == "the password [REDACTED] leaked"
    assert redact("an ordinary sentence about booths") == "an ordinary sentence about booths"


def test_bad_gemini_key_fails_over_and_echoed_keys_leak_nowhere(
    servers: tuple[FakeGemini, FakePerplexity], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gemini, perplexity = servers
    gemini.behaviour = BAD_KEY
    perplexity.behaviour = Reply(
        text=f"Booth mapping first, then volunteers (debug: your key is {PERPLEXITY_KEY}).\nConfidence: 0.9"
    )
    caplog.set_level(logging.DEBUG)

    status, body = analyze_over_http()
    assert status == 200, body
    result = json.loads(body)
    # The bad key is an auth failure: the analysis moves on instead of stopping as a bad request.
    first = result["attempts"][0]
    assert (first["provider"], first["error_class"]) == ("gemini", "auth_error")
    assert "request was refused" not in (result["error"] or "")
    assert gemini.request_count == 1 and perplexity.request_count >= 1
    assert result["provider"] == "perplexity" and "[REDACTED]" in result["answer"]
    assert any("[REDACTED]" in (a["error"] or "") for a in result["attempts"])

    assert leaks(body) == []
    assert leaks(caplog.text) == []
    assert leaks(stored_bytes(tmp_path / "data")) == []


def test_cli_output_and_redis_store_carry_no_echoed_key(
    servers: tuple[FakeGemini, FakePerplexity],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        redis_servers.binary_for("redis")
    except redis_servers.ServerBinaryMissing as exc:
        pytest.skip(str(exc))
    gemini, perplexity = servers
    gemini.behaviour = BAD_KEY
    perplexity.behaviour = ECHOING_401
    with redis_servers.running("redis", tmp_path / "redis") as server:
        monkeypatch.setenv("REDIS_URL", f"{server.url}/0")
        assert cli.main(["analyze", COMPLEX, "--json", "--thread-id", "leak-check"]) == 1  # nobody can answer
        out = capsys.readouterr()
        result = json.loads(out.out)
        assert [a["error_class"] for a in result["attempts"]][:2] == ["auth_error", "auth_error"]
        assert leaks(out.out) == [] and leaks(out.err) == []
        status, body = analyze_over_http()
        assert status == 200 and leaks(body) == []
        assert leaks(redis_bytes(server)) == []
