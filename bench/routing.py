"""Benchmark the router: adequacy, cost against all-premium and legacy routing, and the confusion table.

Runs the deployed classifier and ``nodes.route`` on the test split of data/queries.jsonl and on
bench/routing_holdout.jsonl (queries written for this benchmark, labelled before the router saw them), each as
is and reweighted to a production-like mix. All three providers are available (dummy keys, a local server URL
that is never called); no model is called. Costs use the configured price table and the token model of
nodes/policy/costing.py, with the query's *labelled* complexity (the size of the job), while the router decides on
its own estimates; the primary provider is assumed to answer.

Prints one table and exits 0. Run from the repository root:

    PYTHONPATH=. python bench/routing.py [--failures]

The environment's configuration applies (STRATEGIST_CONFIG, GEMINI_MODEL, ROUTING_* ...), so a policy or a
price table can be evaluated before it is deployed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from graphs.state import Constraints
from nodes.classify import classification_of
from nodes.policy.costing import (
    call_cost,
    describe_token_model,
    estimate_input_tokens,
    expected_output_tokens,
    grounding_fee,
    research_chain_cost,
    research_input_tokens,
)
from nodes.policy.local_adequacy import default_local_adequacy, language_of
from nodes.policy.query_classifier import default_classifier
from nodes.route import NEEDS, SERVES, Need, Plan, intelligent_chain, legacy_chain, need_of
from providers.config import Settings, load_settings
from providers.registry import ProviderRegistry

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "data" / "queries.jsonl"
HOLDOUT = ROOT / "bench" / "routing_holdout.jsonl"
TIERS: tuple[Plan, ...] = ("realtime", "premium", "local", "research")
# The production-like mix of the issue, by labelled class. Moderate jobs without fresh facts belong to none of
# its three classes and weigh nothing in it (they count in the "as is" rows).
PRODUCTION_MIX = {"simple": 0.60, "fresh": 0.25, "complex": 0.15, "moderate": 0.0}
NEED_ROWS: dict[Need, str] = {
    "research": "fresh+complex -> rsrch",
    "fresh": "fresh -> realtime",
    "complex": "complex -> premium",
    "moderate": "moderate -> prem|rt",
    "light": "light -> any",
}


@dataclass(frozen=True)
class Routed:
    """One labelled query, where the router sent it and what each policy would pay for it."""

    text: str
    need: Need
    mix_class: str
    tier: Plan
    provider: str
    adequate: bool
    # Adequate by the labels, and for a local answer times the local model's measured accuracy on the job's task.
    measured_adequacy: float
    routed_usd: float
    premium_usd: float  # all-premium, with search grounding for fresh-fact queries (the same need served)
    premium_tokens_usd: float  # all-premium, tokens only (fresh-fact queries answered without search)
    legacy_usd: float
    oracle_usd: float
    reason: str
    # Billed tokens of the routed plan (both calls of research-then-reason) and of the all-premium call.
    routed_tokens: tuple[int, int] = (0, 0)
    premium_tokens: tuple[int, int] = (0, 0)


def bench_registry(gemini_model: str | None = None) -> ProviderRegistry:
    """Build a registry in which every provider is available and none can be reached by accident."""
    env = dict(os.environ)
    if gemini_model is not None:
        env["GEMINI_MODEL"] = gemini_model
    env |= {
        "GEMINI_API_KEY": "bench-dummy-key",
        "PERPLEXITY_API_KEY": "bench-dummy-key",
        # A URL nothing listens on: availability is checked without a socket, and no call is made.
        "LOCAL_BASE_URL": "http://127.0.0.1:9/v1",
        "STRATEGIST_DATA_DIR": "/nonexistent/strategist-bench",
    }
    env.pop("REDIS_URL", None)
    return ProviderRegistry(load_settings(env))


def load_rows(path: Path, split: str | None) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def route_rows(registry: ProviderRegistry, rows: Sequence[Mapping[str, object]]) -> list[Routed]:
    routing = registry.settings.routing
    predict = default_classifier().predict
    legacy, _ = legacy_chain(registry)
    local = default_local_adequacy()
    no_constraints: Constraints = {}
    out: list[Routed] = []
    for row in rows:
        text, complexity, task = str(row["text"]), str(row["complexity"]), str(row["task"])
        fresh = bool(row["fresh"])
        need = need_of(fresh, complexity, task, routing)
        c = classification_of(predict(text), routing.fresh_threshold)
        chain, reasons, options = intelligent_chain(registry, c, text, no_constraints)
        primary = chain[0]
        best = options[0]
        price = {name: call_cost(registry, name, text, complexity) for name in registry.names()}
        premium = next(n for n in registry.names() if registry.tier_of(n) == "premium")
        realtime = next(n for n in registry.names() if registry.tier_of(n) == "realtime")
        label_p = {complexity: 1.0}
        price["research"] = research_chain_cost(registry, realtime, premium, text, label_p)
        plan: Plan = best.plan
        oracle = min(
            [price[n] for n in registry.names() if need in SERVES[registry.tier_of(n)]]
            + ([price["research"]] if need in SERVES["research"] else [])
        )
        adequate = need in SERVES[plan]
        tokens_in = estimate_input_tokens(text)
        if plan == "research":
            extra = int(research_input_tokens(registry, realtime, label_p))
            routed_tokens = (
                2 * tokens_in + extra,
                expected_output_tokens(registry, realtime, complexity)
                + expected_output_tokens(registry, premium, complexity),
            )
        else:
            routed_tokens = (tokens_in, expected_output_tokens(registry, primary["provider"], complexity))
        measured = float(adequate)
        if plan == "local" and adequate:
            measured = local.adequacy(task, language_of(text))
        out.append(
            Routed(
                text=text,
                need=need,
                mix_class="fresh" if fresh else complexity,
                tier=plan,
                provider=primary["provider"],
                adequate=adequate,
                measured_adequacy=measured,
                routed_usd=price["research" if plan == "research" else primary["provider"]],
                premium_usd=price[premium] + grounding_fee(registry, premium, fresh),
                premium_tokens_usd=price[premium],
                legacy_usd=price[legacy[0]["provider"]],
                oracle_usd=oracle,
                reason=reasons[-1],
                routed_tokens=routed_tokens,
                premium_tokens=(tokens_in, expected_output_tokens(registry, premium, complexity)),
            )
        )
    return out


def weights(rows: Sequence[Routed], mix: Mapping[str, float] | None) -> list[float]:
    """Return per-row weights summing to 1: uniform, or reweighted so each labelled class has its mix share."""
    if mix is None:
        return [1 / len(rows)] * len(rows)
    counts = Counter(r.mix_class for r in rows)
    return [mix.get(r.mix_class, 0.0) / counts[r.mix_class] for r in rows]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_cells(rows: Sequence[Routed], w: Sequence[float]) -> list[str]:
    total = sum(w)
    adequacy = sum(wi for r, wi in zip(rows, w, strict=True) if r.adequate) / total
    measured = sum(wi * r.measured_adequacy for r, wi in zip(rows, w, strict=True)) / total
    per_1k = {
        key: 1000 * sum(getattr(r, key) * wi for r, wi in zip(rows, w, strict=True)) / total
        for key in ("routed_usd", "premium_usd", "premium_tokens_usd", "legacy_usd", "oracle_usd")
    }

    def cut(base: str) -> str:
        return f"{1 - per_1k['routed_usd'] / per_1k[base]:+.1%}" if per_1k[base] else "n/a"

    return [
        pct(adequacy),
        pct(measured),
        f"{per_1k['routed_usd']:.3f}",
        f"{per_1k['premium_tokens_usd']:.3f}",
        cut("premium_tokens_usd"),
        cut("premium_usd"),
        cut("legacy_usd"),
        f"{1 - per_1k['oracle_usd'] / per_1k['premium_tokens_usd']:+.1%}" if per_1k["premium_tokens_usd"] else "n/a",
    ]


HEADER = [
    "prices",
    "set",
    "rows",
    "n",
    "->rt",
    "->prem",
    "->local",
    "->rsrch",
    "adequate",
    "measured",
    "$/1k routed",
    "$/1k all-prem tok",
    "cut vs all-prem tok",
    "cut vs all-prem grounded",
    "cut vs legacy",
    "oracle cut",
]


def table_rows(prices: str, name: str, rows: Sequence[Routed]) -> list[list[str]]:
    """Confusion rows (labelled need x routed primary tier, counts) and the two summary rows of one set."""
    out: list[list[str]] = []
    uniform = weights(rows, None)
    for need in NEEDS:
        members = [(r, w) for r, w in zip(rows, uniform, strict=True) if r.need == need]
        if not members:
            continue
        routed = Counter(r.tier for r, _ in members)
        cells = summary_cells([r for r, _ in members], [w for _, w in members])
        out.append([prices, name, NEED_ROWS[need], str(len(members)), *(str(routed[t]) for t in TIERS), *cells])
    totals = Counter(r.tier for r in rows)
    tier_cells = [str(totals[t]) for t in TIERS]
    out.append([prices, name, "ALL, as is", str(len(rows)), *tier_cells, *summary_cells(rows, uniform)])
    production = weights(rows, PRODUCTION_MIX)
    shares = [pct(sum(w for r, w in zip(rows, production, strict=True) if r.tier == t)) for t in TIERS]
    out.append([prices, name, "ALL, production mix", str(len(rows)), *shares, *summary_cells(rows, production)])
    return out


SPEND_HEADER = [
    "prices",
    "set",
    "class -> plan",
    "mix share",
    "tokens in/out routed",
    "tokens in/out all-prem",
    "$/1k routed",
    "$/1k all-prem tok",
    "share of routed spend",
]


def spend_rows(prices: str, name: str, rows: Sequence[Routed]) -> list[list[str]]:
    """Where the production mix's spend goes: per labelled class and routed plan, tokens and dollars."""
    production = weights(rows, PRODUCTION_MIX)
    total_routed = sum(r.routed_usd * w for r, w in zip(rows, production, strict=True))
    out: list[list[str]] = []
    for mix_class in ("simple", "fresh", "complex"):
        for tier in TIERS:
            members = [
                (r, w) for r, w in zip(rows, production, strict=True) if r.mix_class == mix_class and r.tier == tier
            ]
            share = sum(w for _, w in members)
            if not members or share == 0:
                continue

            def mean_tokens(key: str, members: list[tuple[Routed, float]] = members, share: float = share) -> str:
                ins = sum(getattr(r, key)[0] * w for r, w in members) / share
                outs = sum(getattr(r, key)[1] * w for r, w in members) / share
                return f"{ins:.0f}/{outs:.0f}"

            routed = 1000 * sum(r.routed_usd * w for r, w in members)
            premium = 1000 * sum(r.premium_tokens_usd * w for r, w in members)
            out.append(
                [
                    prices,
                    name,
                    f"{mix_class} -> {tier}",
                    pct(share),
                    mean_tokens("routed_tokens"),
                    mean_tokens("premium_tokens"),
                    f"{routed:.3f}",
                    f"{premium:.3f}",
                    pct(routed / 1000 / total_routed) if total_routed else "n/a",
                ]
            )
    return out


def render(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(widths[j]) if j < 3 else c.rjust(widths[j]) for j, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe(settings: Settings, registry: ProviderRegistry) -> list[str]:
    today = dt.date.today().isoformat()
    prices = []
    for name in registry.names():
        p = registry.price_of(name)
        fee = f" + ${p.request_fee_usd:.4f}/request" if p.request_fee_usd else ""
        prices.append(
            f"{name} ({registry.tier_of(name)}) {registry.model_of(name)} ${p.input_per_m:g} in / "
            f"${p.output_per_m:g} out per 1M{fee}"
        )
    routing = settings.routing
    local_tasks = ", ".join(routing.local_moderate_tasks) or "none"
    return [
        f"prices in force on {today}: " + "; ".join(prices),
        f"token model: {describe_token_model(settings)}",
        "adequacy (labels): fresh and complex -> research-then-reason only; fresh -> realtime; complex without "
        "fresh facts -> premium; moderate without fresh facts -> premium or realtime, or local for the policy's "
        f"local tasks ({local_tasks}), which makes it 'light'; simple without fresh facts -> any tier ('light'); "
        "research-then-reason serves every need. 'measured' counts a local answer as adequate with the local "
        "model's measured accuracy on its task (nodes/policy/local_adequacy.json, bench/local.py)",
        "production mix: 60% simple text jobs (simple, not fresh), 25% fresh-fact (fresh), 15% complex analysis "
        "(complex, not fresh); moderate rows without fresh facts weigh 0 in it",
        f"policy: wrong_answer_cost_usd {dict(routing.wrong_answer_cost_usd)}; 'all-prem tok' = every query on "
        "the premium model, tokens only; 'grounded' adds the search-grounding fee to fresh-fact queries (the same "
        "need served); legacy = premium first, as before; oracle = cheapest plan that serves the labelled need",
        "confusion rows count queries by labelled need (rows) and routed plan (->columns); the production "
        "row gives the plan shares of the reweighted mix",
    ]


# The reference price set, and the configured default; the router decides at the prices it is given.
PRICE_SETS: dict[str, str | None] = {"2.5-pro": "gemini-2.5-pro", "default": None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="also list the queries routed inadequately")
    args = parser.parse_args(argv)

    body: list[list[str]] = [HEADER]
    spend: list[list[str]] = [SPEND_HEADER]
    failures: list[str] = []
    for label, model in PRICE_SETS.items():
        registry = bench_registry(model)
        sets = {
            "test split": route_rows(registry, load_rows(DATASET, "test")),
            "holdout": route_rows(registry, load_rows(HOLDOUT, None)),
        }
        print(f"[{label}] " + describe(registry.settings, registry)[0])
        for name, rows in sets.items():
            body += table_rows(label, name, rows)
            spend += spend_rows(label, name, rows)
            failures += [
                f"  [{label} {name}: {r.need} -> {r.tier}] {r.text[:100]}\n      {r.reason}"
                for r in rows
                if not r.adequate
            ]
    for line in describe(registry.settings, registry)[1:]:
        print(line)
    print()
    print(render(body))
    print(
        "\nwhere the production mix's spend goes (per 1k queries of the mix; tokens are per query, billed output "
        "includes thinking):"
    )
    print(render(spend))
    if args.failures:
        print("\ninadequate primaries:")
        print("\n".join(failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
