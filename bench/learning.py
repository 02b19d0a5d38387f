"""Benchmark learning from outcomes: routes shift after enough simulated outcomes, and not before.

A light summary job is routed at the default prices, where the embedded model's measured summary accuracy
(nodes/policy/local_adequacy.json) sends it to premium. Simulated feedback then says the local model's
summaries are right 9 times in 10 (deterministic, no randomness): the table shows, after each number of
outcomes, the local model's adequacy as the router sees it and the primary it picks; nothing moves below
MIN_EVIDENCE outcomes. A second run feeds outcomes as poor as the measurement (1 in 3 right): the route must not
move at all. A third feeds no feedback, only cross-check verdicts (another vendor's checker supporting the local
summary's claims 9 times in 10, contradicting one), turned into outcomes by the same code the service uses on a
finished cross-check (nodes/policy/learned_adequacy.py: verdict_outcome). No model is called.

    PYTHONPATH=. python bench/learning.py
"""

from __future__ import annotations

import sys

from bench.routing import bench_registry
from nodes.classify import classification_of
from nodes.policy.calibration import Outcome
from nodes.policy.learned_adequacy import MIN_EVIDENCE, PRIOR_STRENGTH, Learned, verdict_outcome
from nodes.policy.query_classifier import QueryNeeds
from nodes.route import intelligent_chain

QUERY = "Summarise in one line: the ward office will stay open on Saturday for ration card corrections."
STEPS = (0, 3, 6, 9, 10, 12, 15, 20, 30, 40)


def outcomes(n: int, right_every: int, of: int) -> list[Outcome]:
    """n outcomes of the local model on summaries, ``right_every`` right in every ``of`` (deterministic)."""
    return [
        Outcome(thread_id=f"t{i}", at=float(i), provider="local", task="summary", raw=0.5, correct=i % of < right_every)
        for i in range(n)
    ]


def verdicts(n: int, right_every: int, of: int) -> list[Outcome]:
    """n cross-checks of local summaries: the checker supports the claims ``right_every`` in every ``of``."""
    out = []
    for i in range(n):
        verdict = "supports" if i % of < right_every else "contradicts"
        check = {"agreement": 0.5, "verdicts": [{"claim": "1", "verdict": verdict, "reason": ""}]}
        outcome = verdict_outcome(f"t{i}", float(i), "local", "summary", check)
        assert outcome is not None
        out.append(outcome)
    return out


def main() -> int:
    registry = bench_registry()
    c = classification_of(QueryNeeds.confident(0.02, "simple", "summary"), registry.settings.routing.fresh_threshold)
    print(
        f"learning bench: prior strength {PRIOR_STRENGTH:g} outcomes, evidence needed {MIN_EVIDENCE}; "
        "default prices; one light summary job"
    )
    print(f"{'scenario':<26}{'outcomes':>9}{'right':>7}{'local adequacy':>16}{'primary':>10}")
    scenarios = (
        ("feedback: right 9 in 10", outcomes, 9, 10),
        ("feedback: right 1 in 3", outcomes, 1, 3),
        ("cross-check: 9 in 10", verdicts, 9, 10),
    )
    for name, make, right, of in scenarios:
        for n in STEPS:
            evidence = make(n, right, of)
            learned = Learned.from_outcomes(evidence)
            _, _, options = intelligent_chain(registry, c, QUERY, {}, learned=learned)
            local = next(o for o in options if o.provider == "local")
            print(
                f"{name:<26}{n:>9}{sum(o.correct for o in evidence):>7}{local.p_adequate:>16.2f}"
                f"{options[0].provider:>10}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
