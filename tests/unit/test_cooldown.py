"""providers/resilience/cooldown.py and the health board: a 429 keeps a provider out of new work for as long as it
asked, and never opens its circuit. The clock is injected; nothing waits."""

from __future__ import annotations

from providers.config import load_settings
from providers.registry import ProviderRegistry
from providers.resilience.board import HealthBoard
from providers.resilience.cooldown import Cooldowns
from providers.testing import fake_registry, reply


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cooldown_lasts_as_long_as_asked_by_default_without_retry_after_and_never_past_the_cap() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock, default_s=1.0, max_s=30.0, after=1)
    cooldowns.limited("perplexity", 2.5)
    cooldowns.limited("perplexity", 0.5)  # a shorter ask does not end a longer one
    cooldowns.limited("gemini", None)
    cooldowns.limited("local", 3600.0)
    assert cooldowns.left_s("perplexity") == 2.5 and cooldowns.left_s("gemini") == 1.0
    assert cooldowns.left_s("local") == 30.0 and cooldowns.left_s("nobody") == 0.0
    clock.now += 2.5
    assert cooldowns.left_s("perplexity") == 0.0


def test_one_429_among_answers_is_bad_luck_the_second_in_a_row_starts_a_cooldown() -> None:
    clock = Clock()
    board = HealthBoard(clock=clock)
    for _ in range(3):
        board.record("perplexity", ok=False, latency_ms=20.0, error_class="rate_limited", retry_after_s=2.0)
        board.record("perplexity", ok=True, latency_ms=20.0)
    assert board.cooldowns.left_s("perplexity") == 0.0
    board.record("perplexity", ok=False, latency_ms=20.0, error_class="rate_limited", retry_after_s=2.0)
    board.record("perplexity", ok=False, latency_ms=20.0, error_class="server_error")  # not an answer
    board.record("perplexity", ok=False, latency_ms=20.0, error_class="rate_limited", retry_after_s=2.0)
    assert board.cooldowns.left_s("perplexity") == 2.0


def test_a_429_storm_cools_a_provider_down_and_does_not_open_its_circuit() -> None:
    """Before, eight 429s opened the circuit for 30 s although the provider had said to come back in seconds."""
    clock = Clock()
    board = HealthBoard(clock=clock)
    for _ in range(3 * board.policy.failure_threshold):
        board.record("perplexity", ok=False, latency_ms=20.0, error_class="rate_limited", retry_after_s=2.0)
    assert board.breaker("perplexity").state() == "closed"
    assert board.breaker("perplexity").snapshot().consecutive_failures == 0
    registry = registry_with(board)
    cooling = registry.availability("perplexity")
    assert not cooling.available and cooling.cooling and cooling.reason.startswith("rate limited")
    clock.now += 2.0
    assert registry.availability("perplexity").available


def test_a_circuit_reset_also_ends_a_cooldown() -> None:
    board = HealthBoard(clock=Clock())
    for _ in range(2):
        board.record("gemini", ok=False, latency_ms=20.0, error_class="rate_limited", retry_after_s=20.0)
    assert board.cooldowns.left_s("gemini") == 20.0
    board.reset(["gemini"])
    assert board.cooldowns.left_s("gemini") == 0.0 and registry_with(board).availability("gemini").available


def test_an_open_circuit_is_not_a_cooldown() -> None:
    clock = Clock()
    board = HealthBoard(clock=clock)
    for _ in range(board.policy.failure_threshold):
        board.record("perplexity", ok=False, latency_ms=20.0, error_class="server_error")
    availability = registry_with(board).availability("perplexity")
    assert not availability.available and not availability.cooling


def registry_with(board: HealthBoard) -> ProviderRegistry:
    settings = load_settings({"STRATEGIST_DATA_DIR": "/nonexistent", "LOCAL_MODEL_PATH": "/nonexistent/m.gguf"})
    return fake_registry({"perplexity": [reply("x")], "gemini": [reply("y")]}, settings=settings, health=board)
