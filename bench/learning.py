"""Benchmark learning from outcomes: routes shift after enough simulated outcomes, and not before.

A light summary job is routed at the default prices, where the embedded model's measured summary accuracy
(nodes/policy/local_adequacy.json) sends it to premium. Simulated feedback then says the local model's
summaries are right 9 times in 10 (deterministic, no randomness): the table shows, after each number of
outcomes, the weighted evidence, the subject's adequacy as the router sees it and the primary it picks; nothing
moves below MIN_EVIDENCE. A second run feeds outcomes as poor as the measurement (1 in 3 right): the route must
not move at all. The cross-check runs feed no feedback, only verdicts, turned into outcomes by the same code the
service uses on a finished cross-check (nodes/policy/learned_adequacy.py: verdict_outcome): Gemini checking the
local summaries (a checker above the answer's tier: half an outcome each, so twice as many are needed), 9 in 10
and 1 in 3 supported; and Perplexity checking Gemini's summaries and contradicting three in four (a checker a
tier below: a quarter of an outcome each, four times as many needed; Gemini's estimate starts so high that the
route moves only well after it does). No model is called.

    PYTHONPATH=. python bench/learning.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from bench.routing import bench_registry
from nodes.classify import classification_of
from nodes.policy.calibration import Outcome
from nodes.policy.learned_adequacy import MIN_EVIDENCE, PRIOR_STRENGTH, Learned, verdict_outcome, verdict_weight
from nodes.policy.query_classifier import QueryNeeds
from nodes.route import intelligent_chain
from providers.config import Tier

QUERY = "Summarise in one line: the ward office will stay open on Saturday for ration card corrections."
STEPS = (0, 5, 9, 10, 15, 19, 20, 30, 39, 40, 60, 80)


def outcomes(n: int, right_every: int, of: int) -> list[Outcome]:
    """n people's judgments of the local model's summaries, ``right_every`` right in every ``of``."""
    return [
        Outcome(thread_id=f"t{i}", at=float(i), provider="local", task="summary", raw=0.5, correct=i % of < right_every)
        for i in range(n)
    ]


def verdicts(provider: str, answered_by: Tier, checked_by: Tier) -> Callable[[int, int, int], list[Outcome]]:
    """n cross-checks of ``provider``'s summaries: the checker supports the claims ``right_every`` in every ``of``."""

    def make(n: int, right_every: int, of: int) -> list[Outcome]:
        out = []
        for i in range(n):
            verdict = "supports" if i % of < right_every else "contradicts"
            check = {"agreement": 0.5, "verdicts": [{"claim": "1", "verdict": verdict, "reason": ""}]}
            outcome = verdict_outcome(
                f"t{i}", float(i), provider, "summary", check, answered_by=answered_by, checked_by=checked_by
            )
            assert outcome is not None
            out.append(outcome)
        return out

    return make


def main() -> int:
    registry = bench_registry()
    c = classification_of(QueryNeeds.confident(0.02, "simple", "summary"), registry.settings.routing.fresh_threshold)
    print(
        f"learning bench: prior strength {PRIOR_STRENGTH:g} outcomes, evidence needed {MIN_EVIDENCE} "
        f"(a person's judgment counts 1, a verdict {verdict_weight('local', 'premium'):g} from a checker at or "
        f"above the answer's tier, {verdict_weight('premium', 'realtime'):g} from one a tier below); "
        "default prices; one light summary job"
    )
    print(f"{'scenario':<36}{'outcomes':>9}{'right':>7}{'evidence':>10}{'subject':>9}{'adequacy':>10}{'primary':>10}")
    scenarios = (
        ("feedback on local: right 9 in 10", "local", outcomes, 9, 10),
        ("feedback on local: right 1 in 3", "local", outcomes, 1, 3),
        ("gemini checks local: 9 in 10", "local", verdicts("local", "local", "premium"), 9, 10),
        ("gemini checks local: 1 in 3", "local", verdicts("local", "local", "premium"), 1, 3),
        ("perplexity checks gemini: 1 in 4", "gemini", verdicts("gemini", "premium", "realtime"), 1, 4),
    )
    for name, subject, make, right, of in scenarios:
        for n in STEPS:
            evidence = make(n, right, of)
            learned = Learned.from_outcomes(evidence)
            _, _, options = intelligent_chain(registry, c, QUERY, {}, learned=learned)
            seen = next(o for o in options if o.provider == subject)
            record = learned.records.get((subject, "summary"))
            print(
                f"{name:<36}{n:>9}{sum(o.correct for o in evidence):>7}{record.n if record else 0:>10g}"
                f"{subject:>9}{seen.p_adequate:>10.2f}{options[0].provider:>10}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
