"""The cost ledger: SQLite and Redis stores (idempotent per thread id), the report, and `strategist costs`
over analyses run through the real graph against the local fake provider servers."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli
from graphs.stores.ledger import Ledger, LedgerEntry, RedisLedger, SqliteLedger, report
from providers.testing.openai_server import Answer, FakeOpenAIServer
from providers.testing.servers import FakeGemini, FakePerplexity, Reply, Source

DAY1 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC).timestamp()
DAY2 = dt.datetime(2026, 11, 21, 23, 30, tzinfo=dt.UTC).timestamp()


def entry(thread_id: str, at: float, *attempts: tuple[str, str, float], **fields: Any) -> LedgerEntry:
    """A ledger row whose cost is the sum of its attempts (provider, tier, cost)."""
    rows = [{"provider": p, "tier": t, "cost_usd": c} for p, t, c in attempts]
    values: dict[str, Any] = {
        "thread_id": thread_id,
        "at": at,
        "provider": attempts[-1][0] if attempts else None,
        "tier": attempts[-1][1] if attempts else None,
        "mode": "intelligent",
        "cost_usd": sum(c for _, _, c in attempts),
        "baseline_cost_usd": 0.01,
        "shadow_intelligent_usd": None,
        "attempts": rows,
    }
    return LedgerEntry(**(values | fields))


@pytest.fixture(params=["sqlite", "redis"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        store = SqliteLedger(tmp_path / "ledger.sqlite")
        yield store
        store.close()
        return
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisLedger(client)
    client.close()


# --- the stores ---------------------------------------------------------------------------------------------


def test_records_and_reads_back_in_time_order(ledger: Ledger) -> None:
    second = entry("t-2", DAY2, ("local", "local", 0.0))
    first = entry("t-1", DAY1, ("gemini", "premium", 0.004), ("perplexity", "realtime", 0.006))
    ledger.record(second)
    ledger.record(first)
    assert ledger.entries() == [first, second]
    assert ledger.entries(since=DAY1 + 1) == [second]
    assert ledger.entries(since=DAY2 + 1) == []


def test_recording_a_thread_again_replaces_its_row(ledger: Ledger) -> None:
    ledger.record(entry("t-1", DAY1, ("gemini", "premium", 0.004)))
    ledger.record(entry("t-2", DAY1 + 5, ("local", "local", 0.0)))
    for _ in range(3):  # a resume that finds the analysis complete, a retried HTTP request
        ledger.record(entry("t-1", DAY2, ("gemini", "premium", 0.004)))
    rows = ledger.entries()
    assert [e.thread_id for e in rows] == ["t-2", "t-1"]
    assert report(rows)["cost_usd"] == pytest.approx(0.004)
    assert rows[1].at == DAY2  # the last record wins, and the time index follows it


def test_a_losers_real_cost_corrects_its_estimate_whether_it_arrives_before_or_after_the_row(ledger: Ledger) -> None:
    """Issue 11 item 4: a hedge's loser is recorded at its estimate, then completes; its real cost replaces it."""
    ledger.correct("t-1", 0, 0.0011)  # the loser completed before the analysis's row was written
    ledger.record(entry("t-1", DAY1, ("gemini", "premium", 0.02), ("perplexity", "realtime", 0.006)))
    ledger.correct("t-2", 0, 0.5)  # a thread without a row changes nothing
    [row] = ledger.entries()
    assert [a["cost_usd"] for a in row.attempts] == [0.0011, 0.006]
    assert row.cost_usd == pytest.approx(0.0071)
    ledger.record(entry("t-1", DAY1, ("gemini", "premium", 0.02), ("perplexity", "realtime", 0.006)))  # a resume
    ledger.correct("t-1", 1, 0.0065)  # after the row
    [row] = ledger.entries()
    assert [a["cost_usd"] for a in row.attempts] == [0.0011, 0.0065]
    assert report([row])["cost_usd"] == pytest.approx(0.0076)
    assert report([row])["by_provider"]["gemini"] == {"calls": 1, "cost_usd": 0.0011}


def test_sqlite_ledger_survives_reopening_and_reads_rows_of_other_versions(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    store = SqliteLedger(path)
    store.record(entry("t-1", DAY1, ("gemini", "premium", 0.004)))
    store.close()
    # A row written before the shadow estimates existed, and one from a newer version with a field unknown here.
    old = {k: v for k, v in json.loads(entry("t-old", DAY1 + 1).to_json()).items() if not k.startswith("shadow_")}
    old["shadow_intelligent_usd"] = None
    new = json.loads(entry("t-new", DAY1 + 2).to_json()) | {"field_from_the_future": 1}
    with sqlite3.connect(path) as conn:
        for row in (old, new):
            conn.execute("INSERT INTO cost_ledger VALUES (?, ?, ?)", (row["thread_id"], row["at"], json.dumps(row)))
    store = SqliteLedger(path)
    assert [e.thread_id for e in store.entries()] == ["t-1", "t-old", "t-new"]
    assert store.entries()[1].shadow_served_estimate_usd is None
    store.close()


# --- the report -----------------------------------------------------------------------------------------------


def test_report_totals_per_provider_tier_day_mode_and_savings() -> None:
    rows = [
        # A premium failure then a realtime answer: both attempts count per provider, the failed one free.
        entry("a", DAY1, ("gemini", "premium", 0.0), ("perplexity", "realtime", 0.006), baseline_cost_usd=0.004),
        entry("b", DAY1 + 60, ("local", "local", 0.0), baseline_cost_usd=0.001),
        entry("c", DAY2, ("gemini", "premium", 0.007), baseline_cost_usd=0.007, mode="legacy"),
    ]
    r = report(rows)
    assert r["analyses"] == 3
    assert r["cost_usd"] == pytest.approx(0.013)
    assert r["baseline_cost_usd"] == pytest.approx(0.012)
    assert r["savings_usd"] == pytest.approx(-0.001) and r["savings_pct"] == pytest.approx(-8.33)
    assert r["by_provider"] == {
        "gemini": {"calls": 2, "cost_usd": 0.007},
        "local": {"calls": 1, "cost_usd": 0.0},
        "perplexity": {"calls": 1, "cost_usd": 0.006},
    }
    assert r["by_tier"]["premium"] == {"calls": 2, "cost_usd": 0.007}
    assert r["by_day"] == {
        "2026-11-20": {"analyses": 2, "cost_usd": 0.006, "baseline_cost_usd": 0.005},
        "2026-11-21": {"analyses": 1, "cost_usd": 0.007, "baseline_cost_usd": 0.007},
    }
    assert r["by_mode"]["legacy"] == {"analyses": 1, "cost_usd": 0.007, "baseline_cost_usd": 0.007}
    assert r["shadow"]["analyses"] == 0


def test_report_shadow_section_compares_estimates_with_estimates() -> None:
    served = ("gemini", "premium", 0.0012)

    def shadow_row(thread_id: str, intelligent: float, served_estimate: float | None, tier: str | None) -> LedgerEntry:
        return entry(
            thread_id,
            DAY1,
            served,
            mode="shadow",
            shadow_intelligent_usd=intelligent,
            shadow_served_estimate_usd=served_estimate,
            shadow_tier=tier,
        )

    rows = [
        shadow_row("s1", 0.0, 0.001, "local"),
        shadow_row("s2", 0.006, 0.004, "realtime"),
        # Written before served estimates were recorded: counted, but not in the like-for-like savings.
        shadow_row("s3", 0.0, None, None),
        entry("i1", DAY1, ("local", "local", 0.0)),
    ]
    shadow = report(rows)["shadow"]
    assert shadow["analyses"] == 3
    assert shadow["served_cost_usd"] == pytest.approx(0.0036)
    assert shadow["served_estimate_usd"] == pytest.approx(0.005)
    assert shadow["intelligent_estimate_usd"] == pytest.approx(0.006)
    assert shadow["estimated_savings_usd"] == pytest.approx(-0.001)
    assert shadow["estimated_savings_pct"] == pytest.approx(-20.0)
    assert shadow["intelligent_tiers"] == {"local": 1, "realtime": 1, "unknown": 1}


def test_report_of_an_empty_ledger_is_zeros() -> None:
    r = report([])
    assert (r["analyses"], r["cost_usd"], r["savings_pct"], r["by_day"]) == (0, 0.0, 0.0, {})
    assert r["shadow"]["estimated_savings_pct"] == 0.0


# --- `strategist costs` after real analyses -----------------------------------------------------------------

FRESH = "Who is leading in Serilingampally right now?"
COMPLEX = "Design a 12-week mobilisation plan for Jubilee Hills"
SIMPLE = "Translate this leaflet line into Telugu: Vote for clean water and safe roads."


@pytest.fixture(params=["sqlite", "redis"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeGemini, FakePerplexity, FakeOpenAIServer]]:
    """The three providers behind local fake servers, the stores in tmp_path (or a Redis of our own)."""
    with FakeGemini() as gemini, FakePerplexity() as perplexity, FakeOpenAIServer() as local:
        env = {
            "GEMINI_API_KEY": "test-key",
            "GEMINI_BASE_URL": gemini.base_url,
            "PERPLEXITY_API_KEY": "test-key",
            "PERPLEXITY_BASE_URL": perplexity.base_url,
            # The local tier through its OpenAI-compatible server path: fast, and no model file needed.
            "LOCAL_BASE_URL": local.base_url,
            "STRATEGIST_DATA_DIR": str(tmp_path / "data"),
        }
        if request.param == "redis":
            env["REDIS_URL"] = request.getfixturevalue("redis_url")
        else:
            monkeypatch.delenv("REDIS_URL", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for var in ("LOCAL_MODEL_PATH", "ROUTING_MODE", "ROUTING_ROLLOUT_PERCENT"):
            monkeypatch.delenv(var, raising=False)
        # No hedging: a cold process hedges after 0.3 s, and on a loaded machine the first Gemini call (the SDK's
        # client built on first use) can take longer, so Perplexity's hedge answered the complex query. This test
        # is about what the ledger reports of the tiers routed, not about failover.
        config = tmp_path / "no-hedging.toml"
        config.write_text("[resilience.hedge]\nenabled = false\n")
        monkeypatch.setenv("STRATEGIST_CONFIG", str(config))
        # Stated confidences and cited, dated sources: answers good enough that no cascade adds calls.
        gemini.behaviour = Reply(
            text="Weeks 1-2: map every booth.\nConfidence: 0.9",
            input_tokens=1500,
            output_tokens=800,
            thinking_tokens=1000,
        )
        perplexity.behaviour = Reply(
            text="The incumbent leads narrowly in two surveys this week.\nConfidence: 0.9",
            citations=[
                Source("https://epaper.thehindu.com/news/survey", "Survey", dt.date.today().isoformat()),
                Source("https://news.telanganatoday.com/race", "Race", dt.date.today().isoformat()),
                Source("https://ceotelangana.nic.in/results", "CEO", dt.date.today().isoformat()),
            ],
        )
        local.script([Answer(text="Shubhram neeru, surakshitha rodlu ku vote veyandi.\nConfidence: 0.9")] * 10)
        yield gemini, perplexity, local


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    status = cli.main([*argv, "--json"])
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert status == 0, out
    return out


def test_costs_reports_the_analyses_run_through_the_graph(
    deployment: tuple[FakeGemini, FakePerplexity, FakeOpenAIServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    results = [
        cli_json(capsys, "analyze", FRESH, "--thread-id", "fresh-1"),
        cli_json(capsys, "analyze", COMPLEX, "--thread-id", "complex-1"),
        cli_json(capsys, "analyze", SIMPLE, "--thread-id", "simple-1"),
    ]
    assert [r["tier"] for r in results] == ["realtime", "premium", "local"]
    monkeypatch.setenv("ROUTING_MODE", "shadow")
    results.append(cli_json(capsys, "analyze", SIMPLE, "--thread-id", "shadow-1"))
    assert results[-1]["tier"] == "premium" and results[-1]["routing"]["shadow"]["tier"] == "local"
    # Resuming a finished analysis returns it again and never adds a second ledger row.
    assert cli_json(capsys, "resume", "complex-1")["thread_id"] == "complex-1"

    today = dt.datetime.now(dt.UTC).date()
    costs = cli_json(capsys, "costs", "--since", today.isoformat())
    assert costs["analyses"] == 4
    assert costs["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in results), abs=1e-6)
    assert costs["baseline_cost_usd"] == pytest.approx(sum(r["baseline_cost_usd"] for r in results), abs=1e-6)
    assert costs["savings_usd"] == pytest.approx(costs["baseline_cost_usd"] - costs["cost_usd"], abs=1e-6)
    calls = sum(len(r["attempts"]) for r in results)
    assert sum(row["calls"] for row in costs["by_provider"].values()) == calls
    assert {"premium", "realtime", "local"} <= set(costs["by_tier"])
    assert costs["by_tier"]["local"]["cost_usd"] == 0.0
    assert costs["by_day"][today.isoformat()]["analyses"] == 4
    assert costs["by_mode"]["intelligent"]["analyses"] == 3 and costs["by_mode"]["shadow"]["analyses"] == 1
    assert costs["shadow"]["analyses"] == 1 and costs["shadow"]["intelligent_tiers"] == {"local": 1}
    assert costs["shadow"]["estimated_savings_pct"] == 100.0

    # A window that starts after the analyses holds none of them.
    assert cli_json(capsys, "costs", "--since", (today + dt.timedelta(days=1)).isoformat())["analyses"] == 0
    # The readable form says the same.
    assert cli.main(["costs", "--since", "24h"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("4 analyses:") and "shadow mode: 1 analyses" in text
