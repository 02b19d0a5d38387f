"""The synthetic calibration harness (bench/calibration.py) as a unit test: both worlds run through the real graph,
the cascade escalates, the checker's verdicts are read, and confidence stays a probability."""

from __future__ import annotations

from dataclasses import replace

from bench.calibration import default_profile, simulate
from providers.config import load_settings


def test_the_synthetic_harness_runs_with_and_without_its_built_in_links() -> None:
    settings = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent"})
    profile = default_profile()
    for variant in (profile, replace(profile, name="no links", links=False)):
        sim = simulate(variant, 3, settings, 30, 20)
        assert len(sim.learning.correct) == 30
        for run in sim.runs.values():
            assert len(run.correct) == 20 and all(0.0 <= v <= 1.0 for v in run.calibrated)
        # "always" cross-checks every answer; the checker answers in the verdict schema, so no check is unusable.
        assert all(sim.runs["always"].escalated)
        assert sim.calibration.startswith(("uncalibrated", "base rates", "Platt", "sign-constrained", "the raw"))
