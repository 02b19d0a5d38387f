"""The checker's verdict on each claim of an answer: the request, its JSON schema, and robust parsing.

The cross-check asks a provider of another vendor to answer the query itself and to judge each numbered claim of
the served answer against what it knows: ``supports``, ``contradicts`` or ``not_addressed``. Its own answer comes
first in the schema, so it commits to it before judging. Agreement is then counted on the checker's verdicts (the
scale of nodes/policy/agreement.py: below 0.5 as soon as a claim is contradicted), with the local claim
comparison of the two answers as a second opinion - shared words are never the only evidence.

Parsing is lenient about the wrapping (code fences, prose around the object, verdict spellings such as
"Supported" or "not addressed") and strict about the content: a reply without a JSON object, or whose verdicts
do not fit the schema, makes the check unusable, and the reason is recorded. A claim the checker skipped counts
as not addressed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from graphs.state import AnalysisState
from nodes.policy.agreement import agreement_score, claim_texts
from nodes.policy.prompt import build_prompt
from providers.base import Prompt

Verdict = Literal["supports", "contradicts", "not_addressed"]
METHOD = "the checker's verdict on each claim"
_SPELLINGS = {
    "supports": "supports", "support": "supports", "supported": "supports", "agrees": "supports",
    "contradicts": "contradicts", "contradict": "contradicts", "contradicted": "contradicts", "refutes": "contradicts",
    "not_addressed": "not_addressed", "not addressed": "not_addressed", "notaddressed": "not_addressed",
    "unaddressed": "not_addressed", "unknown": "not_addressed", "not-addressed": "not_addressed",
}  # fmt: skip
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["answer", "verdicts"],
    "properties": {
        "answer": {"type": "string", "description": "your own answer to the question, written before judging"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "verdicts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["claim", "verdict"],
                "properties": {
                    "claim": {"type": "integer", "minimum": 1},
                    "verdict": {"enum": ["supports", "contradicts", "not_addressed"]},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}


class ClaimVerdict(BaseModel):
    claim: int = Field(ge=1)
    verdict: Verdict
    reason: str = ""

    @field_validator("verdict", mode="before")
    @classmethod
    def _spelling(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _SPELLINGS.get(value.strip().lower().replace("_", " "), _SPELLINGS.get(value.strip().lower(), value))
        return value


class CheckerReply(BaseModel):
    answer: str = ""
    confidence: float | None = Field(default=None, ge=0, le=1)
    verdicts: list[ClaimVerdict]


@dataclass(frozen=True)
class Verdicts:
    """The checker's verdicts, one per claim of the served answer (in claim order), and its own answer."""

    claims: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    reasons: tuple[str, ...]
    answer: str
    confidence: float | None
    missing: int  # claims the checker did not judge (counted as not addressed)

    @property
    def agreement(self) -> float:
        return agreement_score(
            self.verdicts.count("supports"), self.verdicts.count("contradicts"), self.verdicts.count("not_addressed")
        )

    @property
    def detail(self) -> str:
        n = len(self.verdicts)
        text = (
            f"{self.verdicts.count('supports')}/{n} claims supported, {self.verdicts.count('contradicts')} contradicted"
        )
        return text + (f", {self.missing} not judged" if self.missing else "")


class UnusableVerdict(ValueError):
    """The checker's reply is not a verdict this module can read."""


def verdict_prompt(state: AnalysisState, answer: str) -> tuple[Prompt, tuple[str, ...]]:
    """Return the checker's prompt for an answer, and the claims it numbers."""
    claims = tuple(claim_texts(answer)) or (answer.strip(),)
    base = build_prompt(state)
    numbered = "\n".join(f"{i}. {claim}" for i, claim in enumerate(claims, start=1))
    system = (
        f"{base.system} You are checking another analyst's answer. First write your own answer to the question "
        "without relying on theirs; then judge each numbered claim of theirs against what you know: 'supports' if "
        "it is right, 'contradicts' if it is wrong, 'not_addressed' if you cannot tell. Reply with one JSON object "
        f"only, no other text, matching this JSON schema: {json.dumps(SCHEMA, separators=(',', ':'))}"
    )
    user = f"Question: {state['query']}\n\nTheir answer, claim by claim:\n{numbered}"
    return Prompt(system=system, user=user, brief="Reply with the JSON object only."), claims


def _json_object(text: str) -> Any:
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start = body.find("{")
    if start < 0:
        raise UnusableVerdict("invalid JSON: the reply has no JSON object")
    try:
        value, _end = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError as exc:
        raise UnusableVerdict(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    return value


def parse_verdicts(text: str, claims: tuple[str, ...]) -> Verdicts:
    """Read the checker's reply; raise UnusableVerdict when it is not a verdict on these claims."""
    value = _json_object(text)
    try:
        reply = CheckerReply.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnusableVerdict(f"reply does not fit the verdict schema: {where}: {first['msg']}") from None
    by_claim: dict[int, ClaimVerdict] = {}
    for item in reply.verdicts:
        if item.claim <= len(claims):
            by_claim.setdefault(item.claim, item)
    if not by_claim:
        raise UnusableVerdict(f"no verdict on any of the {len(claims)} claims")
    verdicts = tuple(by_claim[i].verdict if i in by_claim else "not_addressed" for i in range(1, len(claims) + 1))
    reasons = tuple(by_claim[i].reason if i in by_claim else "" for i in range(1, len(claims) + 1))
    missing = len(claims) - len(by_claim)
    return Verdicts(claims, verdicts, reasons, reply.answer.strip(), reply.confidence, missing)
