"""Agreement by meaning: the local claim comparison, the labelled pair set, and the checker's verdict parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes.policy.agreement import agreement_score, claim_texts, compare
from nodes.policy.verdict import UnusableVerdict, parse_verdicts

LOCAL_ANSWER = "Turnout in Malakpet was 62% in 2023. Congress leads in Malakpet with 41% of the vote."
AGREEING = "In 2023, turnout in Malakpet stood at 62 percent. Congress is ahead in Malakpet, taking 41 per cent."
DISAGREEING = "Turnout in Malakpet was 48% in 2023. Congress leads in Malakpet with 41% of the vote."
PAIRS = Path(__file__).resolve().parents[2] / "data" / "agreement_pairs.jsonl"


# --- cross-validation agreement ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        AGREEING,
        "Congress leads in Malakpet with 41% of the vote. Turnout in Malakpet was 61.8% in 2023.",  # rounding
        LOCAL_ANSWER + " Field teams should verify this locally.",  # extra detail
        "Turnout in Malakpet was 62% in 2023, per the ECI. Congress leads in Malakpet with 41% of the vote.",
    ],
)
def test_paraphrases_and_extra_detail_agree(other: str) -> None:
    assert compare(LOCAL_ANSWER, other).agreement >= 0.5


@pytest.mark.parametrize(
    "other, kind",
    [
        (DISAGREEING, "numbers"),
        ("Turnout in Malakpet was 62% in 2023. Congress does not lead in Malakpet with 41% of the vote.", "polarity"),
        ("Turnout in Malakpet was 62% in 2023. BJP leads in Malakpet with 41% of the vote.", "names"),
        ("Turnout in Amberpet was 62% in 2023. Congress leads in Malakpet with 41% of the vote.", "names"),
    ],
)
def test_a_changed_number_negation_or_name_disagrees(other: str, kind: str) -> None:
    result = compare(LOCAL_ANSWER, other)
    assert result.agreement < 0.5 and kind in result.kinds


def test_a_contradiction_is_not_drowned_by_shared_boilerplate() -> None:
    boiler = " Campaign teams should track this closely. Field workers should verify it locally."
    assert compare(LOCAL_ANSWER + boiler, DISAGREEING + boiler).agreement < 0.5


def test_number_words_and_indian_multipliers_are_read_as_numbers() -> None:
    assert compare("Five booths in Uppal reopened today.", "5 booths in Uppal reopened today.").agreement > 0.9
    a, b = "The rally in Uppal drew 1.2 lakh people.", "The rally in Uppal drew 120,000 people."
    assert compare(a, b).agreement > 0.9
    assert "numbers" in compare(a, "The rally in Uppal drew 80,000 people.").kinds


def test_unrelated_or_empty_answers_measure_nothing() -> None:
    # Nothing corroborated, nothing contradicted: the midpoint, which is not a disagreement.
    assert compare(LOCAL_ANSWER, "Cricket scores dominated the evening news cycle.").agreement == 0.5
    assert compare(LOCAL_ANSWER, "").agreement == 0.5


@pytest.mark.parametrize(
    "a, b, consistent",
    [
        # The reported failures: a flipped verb scored 1.00, consistent free-form answers 0.29 and 0.00.
        ("Police confirmed the rally.", "Police cancelled the rally.", False),
        ("Water supply in Amberpet will be cut for two days next week.",
         "Amberpet will have no water supply for two days next week.", True),
        ("Turnout was 62 percent.", "Sixty-two percent voted; turnout was 62 percent.", True),
        ("Turnout fell to 48% in 2023.", "Turnout in 2023 was 48%.", True),
        ("Congress leads in Malakpet.", "Congress trails in Malakpet.", False),
        ("The minister did not deny the allegations.", "The minister denied the allegations.", False),
    ],
)  # fmt: skip
def test_polarity_is_read_from_negations_and_opposites_together(a: str, b: str, consistent: bool) -> None:
    assert (compare(a, b).agreement >= 0.5) == consistent


def test_agreement_scale_has_the_decision_at_its_midpoint() -> None:
    assert agreement_score(4, 0, 0) == 1.0 and agreement_score(0, 0, 4) == 0.5 and agreement_score(2, 0, 2) == 0.75
    assert agreement_score(9, 1, 0) < 0.5 and agreement_score(0, 1, 0) == 0.0 and agreement_score(0, 0, 0) == 0.5


def test_agreement_on_the_labelled_pair_set_is_at_least_090() -> None:
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()]
    assert len(rows) >= 100 and {r["label"] for r in rows} == {"agree", "partial", "contradict"}
    right = sum((compare(r["a"], r["b"]).agreement >= 0.5) == (r["label"] != "contradict") for r in rows)
    assert right / len(rows) >= 0.90


# --- the checker's verdict ----------------------------------------------------------------------------------


def test_claims_are_numbered_sentences_and_bullets() -> None:
    assert claim_texts("- Turnout was 62%.\n- Congress leads in Malakpet; BJP is second.") == [
        "Turnout was 62%.", "Congress leads in Malakpet", "BJP is second."
    ]  # fmt: skip


def test_verdicts_are_read_through_fences_prose_and_spellings() -> None:
    claims = ("Turnout was 62%.", "Congress leads.", "BJP is second.")
    text = (
        "Here is my check:\n```json\n"
        + json.dumps(
            {
                "answer": "Turnout was 62%; Congress leads.",
                "confidence": 0.8,
                "verdicts": [
                    {"claim": 1, "verdict": "Supported", "reason": "matches"},
                    {"claim": 2, "verdict": "not addressed"},
                    {"claim": 2, "verdict": "contradicts"},  # a duplicate: the first counts
                    {"claim": 7, "verdict": "supports"},  # no such claim: ignored
                ],
            }
        )
        + "\n```\nDone."
    )
    verdicts = parse_verdicts(text, claims)
    assert verdicts.verdicts == ("supports", "not_addressed", "not_addressed") and verdicts.missing == 1
    assert verdicts.answer == "Turnout was 62%; Congress leads." and verdicts.confidence == 0.8
    assert verdicts.agreement == agreement_score(1, 0, 2)


@pytest.mark.parametrize(
    "text",
    ["no json here", "{not json}", '{"answer": "x", "verdicts": "all good"}', '{"answer": "x", "verdicts": []}',
     '{"answer": "x", "verdicts": [{"claim": 1, "verdict": "supports"}], "confidence": 7}'],
)  # fmt: skip
def test_an_unreadable_reply_is_unusable(text: str) -> None:
    with pytest.raises(UnusableVerdict):
        parse_verdicts(text, ("a claim here.",))
