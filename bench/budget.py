"""Spend caps under concurrency: N analyses at once whose primaries fail and fall back, against one daily cap.

Every primary (Gemini) bills an answer validate rejects (no usable text), Perplexity's fallback answers, and in
``deep`` analyses the second opinion must come from another vendor than the served answer's: Gemini again, dearer
than the check the plan's reservation holds. ``--overrun`` makes each primary bill past its estimate (a thinking
model that spent its tokens thinking). Replies bill at most their estimates otherwise, so whatever passes the cap
is spend that no reservation held before its call was made. (A call billed past its estimate can still pass the cap
by its overrun when nothing is called after it: estimates are reserved, and cloud answers have no output cap.)

Prints, per backend: the cap, what was settled, the overshoot, how many analyses were answered, how many calls
the caps kept from being made, and the wall time. Providers are the scripted fakes (providers/testing): no network,
no latency; the SQLite store is a temporary file and Redis a throwaway server (never the shared one).

``--briefings``: N standard ward briefings of N wards at once instead (graphs/briefing.py), the cap in full
briefings (the writer's hold plus every question's research): research and writer bill their estimates, so
whatever passes the cap is spend no reservation held; prints how many were written whole, written without some
research (which they name), or refused (the 402/429 of GET /<ward>).

    PYTHONPATH=. .venv/bin/python bench/budget.py [--analyses 50] [--caps 10] [--depth deep] [--overrun]
    PYTHONPATH=. .venv/bin/python bench/budget.py --briefings [--analyses 20] [--caps 5]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import cast

import redis
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.analysis import build_analysis_graph
from graphs.briefing import build_briefing_graph
from graphs.briefing_result import BriefingResult
from graphs.briefing_state import BriefingInput
from graphs.context import Context
from graphs.result import AnalysisResult
from graphs.state import AnalysisInput
from graphs.stores.budget import RedisBudget, SqliteBudget
from nodes.classify import classification_of
from nodes.policy.briefing_budget import research_estimate, research_tokens, write_estimate
from nodes.policy.briefing_chains import gather_chain, write_chain
from nodes.policy.briefing_prompts import write_prompt
from nodes.policy.budget import BudgetCaps, BudgetStore
from nodes.policy.query_classifier import QueryNeeds
from nodes.policy.research import ITEMS_BY_DEPTH, plan_questions
from nodes.route import plan
from providers.registry import ProviderRegistry
from providers.testing import billed, fake_registry, reply
from providers.testing.briefings import draft_json
from providers.testing.redis_servers import ServerBinaryMissing, redis_server_binary, running

AT = 1_764_633_600.0  # a fixed day: the caps are per UTC day
QUERY = "Plan our week"
NEEDS = QueryNeeds.confident(0.02, "complex", "scenario")
OVER = "over budget"  # how a refusal starts (nodes/policy/budget.py)


def run(store: BudgetStore, args: argparse.Namespace) -> dict[str, float]:
    n, depth, overrun = args.analyses, args.depth, args.overrun
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    gemini, perplexity = plan(probe, classification_of(NEEDS, 0.5), QUERY, {})["step_costs_usd"]
    primary = gemini + perplexity / 2 if overrun else gemini
    registry = fake_registry(
        {
            "gemini": [billed(probe, "gemini", primary, "Understood.")],
            "perplexity": [
                billed(
                    probe,
                    "perplexity",
                    perplexity,
                    "Book the halls and print the booth slips.",
                    citations=["https://eci.gov.in/turnout"],
                )
            ],
        }
    )
    graph = build_analysis_graph().compile(checkpointer=InMemorySaver())
    barrier = threading.Barrier(n)
    results: list[AnalysisResult] = []
    lock = threading.Lock()

    def one() -> None:
        ctx = Context(registry=registry, classifier=lambda _q: NEEDS, caller_key="bench", budget=store)
        ctx.clock = lambda: AT
        barrier.wait()
        graph_input = cast(AnalysisInput, {"query": QUERY, "depth": depth})
        out = graph.invoke(graph_input, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
        with lock:
            results.append(AnalysisResult.model_validate(out["result"]))

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (daily,) = store.usage(AT)
    return {
        "settled": daily.spent_usd,
        "reserved": daily.reserved_usd,
        "answered": sum(r.answer is not None for r in results),
        "not_made": sum(
            a.outcome == "skipped" and (a.error or "").startswith(OVER) for r in results for a in r.attempts
        ),
        "wall_s": time.perf_counter() - started,
    }


def briefing_prices(registry: ProviderRegistry, ward: str) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Return what plan holds for each structured writer and what each question's research is priced at."""
    asked = plan_questions(ward, "standard", "neutral")
    prompt = write_prompt(ward, "standard", "neutral", asked, [], [], ITEMS_BY_DEPTH["standard"], None)
    pending = research_tokens(registry, asked)
    holds = {
        s["provider"]: write_estimate(registry, s, prompt, pending)
        for s in write_chain(registry)[0]
        if s["mode"] == "structured"
    }
    research = {
        s["provider"]: [research_estimate(registry, [s], ward, "neutral", q) for q in asked]
        for s in gather_chain(registry)[0]
    }
    return holds, research


def full_briefing(ward: str) -> float:
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    holds, research = briefing_prices(probe, ward)
    return max(holds.values()) + sum(research["perplexity"])


def run_briefings(store: BudgetStore, args: argparse.Namespace) -> dict[str, float]:
    wards = [f"Ward {i:03d}" for i in range(args.analyses)]  # one length: one price for all
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    holds, research = briefing_prices(probe, wards[0])
    researched = billed(
        probe,
        "perplexity",
        min(research["perplexity"]),
        "Water supply is irregular.",
        citations=["https://eci.gov.in/turnout"],
    )
    writer = billed(probe, "gemini", min(holds.values()), draft_json())
    premium_research = billed(probe, "gemini", min(research["gemini"]), "Road works divide residents.")

    def gemini(messages: list[BaseMessage]) -> AIMessage:
        return writer if "JSON Schema" in str(messages[0].content) else premium_research

    registry = fake_registry({"perplexity": [researched], "gemini": [gemini]})
    graph = build_briefing_graph().compile(checkpointer=InMemorySaver())
    barrier = threading.Barrier(len(wards))
    results: list[BriefingResult] = []
    lock = threading.Lock()

    def one(ward: str) -> None:
        ctx = Context(registry=registry, caller_key="bench", budget=store)
        ctx.clock = lambda: AT
        barrier.wait()
        graph_input = cast(BriefingInput, {"ward": ward, "depth": "standard"})
        out = graph.invoke(graph_input, {"configurable": {"thread_id": str(uuid.uuid4())}}, context=ctx)
        with lock:
            results.append(BriefingResult.model_validate(out["result"]))

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(w,)) for w in wards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (daily,) = store.usage(AT)
    written = [r.briefing for r in results if r.briefing is not None]
    return {
        "settled": daily.spent_usd,
        "cost": sum(r.cost_usd for r in results),
        "reserved": daily.reserved_usd,
        "whole": sum(not b.analysis.not_researched for b in written),
        "partial": sum(bool(b.analysis.not_researched) for b in written),
        "refused": sum(r.briefing is None and (r.error or "").startswith(OVER) for r in results),
        "not_asked": sum(len(b.analysis.not_researched) for b in written),
        "wall_s": time.perf_counter() - started,
    }


def main_briefings(args: argparse.Namespace) -> None:
    full = full_briefing("Ward 000")
    cap = round(args.caps * full, 6)
    print(f"{args.analyses} concurrent standard briefings of as many wards; a whole briefing holds ${full:.6f}")
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = {"sqlite": run_briefings(SqliteBudget(Path(tmp) / "b.sqlite", BudgetCaps(cap)), args)}
        try:
            redis_server_binary()
            with running("redis", Path(tmp) / "redis") as server:
                outcomes["redis"] = run_briefings(RedisBudget(redis.Redis.from_url(server.url), BudgetCaps(cap)), args)
        except ServerBinaryMissing as exc:
            print(f"redis: skipped ({exc})")
    for name, o in outcomes.items():
        # Overshoot by what the briefings cost: a briefing that reserves nothing settles nothing and still spends.
        over = max(0.0, o["cost"] - cap)
        print(
            f"{name:<6} cap ${cap:.6f}  cost ${o['cost']:.6f}  settled ${o['settled']:.6f}  "
            f"overshoot ${over:.6f} ({over / cap:.1%})  "
            f"written {o['whole']:.0f} whole + {o['partial']:.0f} without some research ({o['not_asked']:.0f} "
            f"questions not asked)  refused {o['refused']:.0f}  left reserved ${o['reserved']:.6f}  {o['wall_s']:.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analyses", type=int, default=50)
    parser.add_argument("--caps", type=float, default=10.0, help="the daily cap, in plans' reservations")
    parser.add_argument("--depth", default="deep", choices=["quick", "standard", "deep"])
    parser.add_argument("--overrun", action="store_true", help="primaries bill past their estimates")
    parser.add_argument("--briefings", action="store_true", help="concurrent ward briefings instead of analyses")
    args = parser.parse_args()
    if args.briefings:
        main_briefings(args)
        return
    probe = fake_registry({"gemini": [reply("x")], "perplexity": [reply("x")]})
    ceiling = plan(probe, classification_of(NEEDS, 0.5), QUERY, {}, checking=args.depth == "deep")["spend_ceiling_usd"]
    cap = round(args.caps * ceiling, 6)
    print(
        f"{args.analyses} concurrent {args.depth} analyses, primaries fail and fall back; plan reserves ${ceiling:.6f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = {"sqlite": run(SqliteBudget(Path(tmp) / "b.sqlite", BudgetCaps(cap)), args)}
        try:
            redis_server_binary()
            with running("redis", Path(tmp) / "redis") as server:
                outcomes["redis"] = run(RedisBudget(redis.Redis.from_url(server.url), BudgetCaps(cap)), args)
        except ServerBinaryMissing as exc:
            print(f"redis: skipped ({exc})")
    for name, outcome in outcomes.items():
        over = max(0.0, outcome["settled"] - cap)
        print(
            f"{name:<6} cap ${cap:.6f}  settled ${outcome['settled']:.6f}  overshoot ${over:.6f} ({over / cap:.1%})  "
            f"answered {outcome['answered']:.0f}/{args.analyses}  calls not made {outcome['not_made']:.0f}  "
            f"left reserved ${outcome['reserved']:.6f}  {outcome['wall_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
