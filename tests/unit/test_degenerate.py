"""Degenerate output: each kind is detected, sound answers are not flagged."""

from __future__ import annotations

import pytest

from nodes.policy.degenerate import degeneracy

PROMPT = "Answer briefly. Extract the ward and reply with it only: 'The rally in Malakpet drew 3,000 people.'"


@pytest.mark.parametrize(
    "answer, prompt, finish, kind",
    [
        ("The rally in Malakpet drew 3,000 people.", PROMPT, "stop", "echo"),
        ("Vote for change. Vote for change. Vote for change.", "Write a slogan.", "stop", "repetition"),
        ("the ward the ward the ward the ward the ward the ward the ward", "Which ward?", "stop", "repetition"),
        ("Turnout in Malakpet was 62% and Congress", "What was turnout?", "length", "truncated"),
        ("Turnout in Malakpet was 62% and Congress", "What was turnout?", "MAX_TOKENS", "truncated"),
        ("Je vous ajoute le début de la cours des élections avec plaisir mais sans doute", "Who leads in Malakpet?",
         "stop", "wrong_language"),
        ("మలక్‌పేట్‌లో కాంగ్రెస్ ముందంజలో ఉంది", "Who leads in Malakpet?", "stop", "wrong_language"),
        ("Congress leads in Malakpet.", "Translate into Telugu: Congress leads in Malakpet.", "stop", "wrong_language"),
        ("A campaign strategy analyst will be happy to assist.", "What is 7 + 5?", "stop", "empty"),
        ("I could not find any information about this rally.", "Is the rally on?", "stop", "empty"),
        ("Sure, okay.", "What is 7 + 5?", "stop", "empty"),
    ],
)  # fmt: skip
def test_each_kind_is_detected(answer: str, prompt: str, finish: str, kind: str) -> None:
    found = degeneracy(answer, prompt, finish)
    assert kind in found.kinds and kind in found.detail


@pytest.mark.parametrize(
    "answer, prompt",
    [
        ("Malakpet", PROMPT),
        ("The candidate has visited the ward yesterday.", "Fix: 'The candidate have visited the ward yesterday.'"),
        ("The capital of India is New Delhi.", "What is the capital of India?"),
        ("12 times 3 is equal to 36.", "What is 12 times 3?"),
        ("మలక్‌పేట్‌లో కాంగ్రెస్ ముందంజలో ఉంది", "Translate into Telugu: Congress leads in Malakpet."),
        ("Turnout in Malakpet was 62% in 2023, up from 58% in 2018; Congress leads with 41% of the vote.",
         "What was turnout in Malakpet?"),
        ("No.", "Do these two statements agree? Answer yes or no."),
        ("Yes, it is.", "Is the rally still on?"),
    ],
)  # fmt: skip
def test_sound_answers_are_not_flagged(answer: str, prompt: str) -> None:
    assert not degeneracy(answer, prompt, "stop"), degeneracy(answer, prompt, "stop").detail
