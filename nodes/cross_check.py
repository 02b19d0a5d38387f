"""cross_check: a provider of another vendor answers the same query independently; agreement is measured.

Agreement is computed claim by claim: each sentence of one answer is matched to its closest sentence in the
other by content-word overlap, weighted by how informative the words are (rare words count more than
"campaign"), and the two directions are averaged. It is a lexical measure, not an entailment model: it rewards
answers that make the same points in similar words and under-rates paraphrases. One checker call per node
execution, so a completed check is checkpointed and never paid for twice.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, ChainStep
from nodes.call_model import attempt_call, build_prompt, split_stated_confidence

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "they",
        "them",
        "he",
        "she",
        "his",
        "her",
        "we",
        "our",
        "you",
        "your",
        "i",
        "not",
        "no",
        "yes",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "than",
        "then",
        "so",
        "such",
        "also",
        "more",
        "most",
        "very",
        "into",
        "over",
        "about",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "each",
        "other",
        "some",
        "only",
        "own",
        "same",
        "just",
        "confidence",
    ]
)


def _claims(text: str) -> list[list[str]]:
    claims = []
    for sentence in _SENTENCE.split(text):
        words = [w for w in (t.lower() for t in _TOKEN.findall(sentence)) if w not in _STOP and len(w) > 1]
        if len(words) >= 2:
            claims.append(words)
    return claims


def agreement(a: str, b: str) -> float:
    """Return the symmetric claim-level agreement of two answers in [0, 1]."""
    claims_a, claims_b = _claims(a), _claims(b)
    if not claims_a or not claims_b:
        return 0.0
    docs = claims_a + claims_b
    df = Counter(w for claim in docs for w in set(claim))
    idf = {w: math.log((1 + len(docs)) / (1 + n)) + 1 for w, n in df.items()}

    def overlap(x: list[str], y: list[str]) -> float:
        sx, sy = set(x), set(y)
        union = sum(idf[w] for w in sx | sy)
        return sum(idf[w] for w in sx & sy) / union if union else 0.0

    def coverage(src: list[list[str]], dst: list[list[str]]) -> float:
        return sum(max(overlap(c, d) for d in dst) for c in src) / len(src)

    # Overlap of two paraphrased sentences rarely exceeds ~0.5; the square root spreads the useful range.
    return round(math.sqrt((coverage(claims_a, claims_b) + coverage(claims_b, claims_a)) / 2), 4)


def checker_chain(state: AnalysisState, ctx: Context) -> list[ChainStep]:
    """Order the providers of another vendor than the answer's: premium, then realtime, then local."""
    answer = state.get("answer")
    assert answer is not None
    registry = ctx.registry
    steps: list[ChainStep] = []
    for tier in ("premium", "realtime", "local"):
        for name in registry.names():
            if registry.tier_of(name) != tier or name == answer["provider"]:
                continue
            if registry.vendor_of(name) == answer["vendor"] or not registry.availability(name).available:
                continue
            steps.append({"provider": name, "tier": tier, "model": registry.model_of(name), "reason": "checker"})
    return steps


def cross_check(state: AnalysisState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = context_of(runtime)
    answer = state.get("answer")
    assert answer is not None, "cross_check runs only after a validated answer"
    chain = state.get("cross_chain")
    if chain is None:
        chain = checker_chain(state, ctx)
    cursor = state.get("cross_cursor", 0)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    update: dict[str, Any] = {"cross_chain": chain, "cross_cursor": cursor + 1}
    if cursor >= len(chain):
        return update | {"deadline_passed": ctx.clock() >= deadline_at}
    step = chain[cursor]
    runtime.stream_writer({"event": "cross_check_start", "provider": step["provider"]})
    attempt, reply, _ = attempt_call(ctx, step, build_prompt(state), deadline_at, "cross_check")
    update |= {"attempts": [attempt], "deadline_passed": ctx.clock() >= deadline_at}
    if reply is not None:
        text, _stated = split_stated_confidence(reply.text)
        update["cross_check"] = {
            "provider": step["provider"],
            "model": reply.model,
            "agreement": agreement(answer["text"], text),
            "method": "claim-level weighted word overlap against an independent answer",
            "text": text,
        }
    return update


def route_after_cross_check(state: AnalysisState) -> Literal["cross_check", "score"]:
    if state.get("cross_check") is not None or state.get("deadline_passed"):
        return "score"
    return "cross_check" if state.get("cross_cursor", 0) < len(state.get("cross_chain", [])) else "score"
