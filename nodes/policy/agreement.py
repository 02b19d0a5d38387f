"""Claim-level comparison of two answers by what they assert: the local evidence of the cross-check.

The cross-check's main evidence is the checking provider's verdict on each claim (nodes/policy/verdict.py). This
module is the local second opinion, and it reads meaning, not only shared words: each answer is split into claims
(sentences, clauses, bullets); each claim is aligned with the other answer's closest claim by their weighted
stemmed content words (alignment only decides *which* claims are about the same thing); an aligned pair then
*contradicts* when it states

- different numbers (62% against 58%, with a 2% tolerance; number words, "sixty-two", lakh and crore are read);
- opposite polarity: negations and words that assert the opposite ("cancelled", "denied", "trails", "fell",
  "lost", "cut", ...) are counted together, so "police cancelled the rally" contradicts "police confirmed the
  rally" while "water will be cut" agrees with "there will be no water". An opposite word against a claim that
  asserts nothing else ("turnout fell to 48%" against "turnout was 48%") is a direction, not a contradiction;
- different names where the rest matches ("BJP leads in Malakpet" against "Congress leads in Malakpet").

Agreement is on a scale whose midpoint is the decision: with no contradicted claim it is in [0.5, 1] (1 when
every claim of both answers is corroborated, 0.5 when none is addressed by the other), with any contradicted
claim it is below 0.5 (lower the more is contradicted). So a partial overlap stays consistent, and one flipped
figure makes a near-identical answer disagree.

Why rules and not an entailment model: no NLI or cross-encoder model on PyPI ships its weights (they download
them from a hub at run time, which this system must not need), and the one sentence-embedding package that ships
its weights needs torch and scores "X won" and "X lost" as near-identical. data/agreement_pairs.jsonl measures
this module (bench/confidence.py). What it misses: opposites outside its lexicon, synonyms that share no stem,
contradictions between claims too differently worded to be aligned.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

_CLAIM_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+|;\s+|\s+[-*\u2022]\s+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_TOKEN = re.compile(r"\d[\d,]*(?:\.\d+)?|[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_NEGATIONS = frozenset(
    ["not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "nowhere"]
)
# Words that assert the opposite of a plain positive statement, in the forms they are written in. Counted with
# the negations: an even number of the two keeps a claim positive ("did not cancel").
_OPPOSITES = frozenset(
    (  # noqa: SIM905 - a word list reads better as text than as 100 quoted strings
        "cancel cancels cancelled canceled cancelling canceling cancellation postpone postpones postponed "
        "postponing scrap scraps scrapped suspend suspends suspended halt halts halted stop stops stopped cut "
        "cuts cutting ban bans banned deny denies denied denying reject rejects rejected refuse refuses "
        "refused oppose opposes opposed lose loses lost losing fall falls fell fallen falling drop drops "
        "dropped decline declines declined decrease decreases decreased reduce reduces reduced trail trails "
        "trailed trailing lag lags lagged fail fails failed withdraw withdraws withdrew withdrawn close "
        "closes closed shut delay delays delayed absent behind down fewer less lower below worse false fake "
        "unavailable off overturn overturns overturned quit quits resign resigns resigned lowest least worst "
        "minimum"
    ).split()
)
# fmt: off
_SMALL_NUMBERS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)
# fmt: on
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBER_WORDS = {w: float(i) for i, w in enumerate(_SMALL_NUMBERS)} | {
    w: float(10 * i) for i, w in enumerate(_TENS, start=3)
}
_MULTIPLIERS = {
    "hundred": 1e2,
    "thousand": 1e3,
    "lakh": 1e5,
    "lakhs": 1e5,
    "million": 1e6,
    "crore": 1e7,
    "crores": 1e7,
    "billion": 1e9,
}
_UNIT_WORDS = frozenset(["percent", "per", "cent", "pc", "pct"])
# Two numbers within 2% of each other are the same figure rounded differently (61.8% and 62%).
NUMBER_TOLERANCE = 0.02
# A claim pair must share this much weighted vocabulary to be about the same thing.
MATCH_THRESHOLD = 0.3
METHOD = "claim by claim: claims aligned, then numbers, polarity (negations and opposites) and names compared"

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


def _stem(word: str) -> str:
    """Strip common English inflections so that "votes", "voted" and "voting" meet (a light Porter step)."""
    if len(word) <= 3:
        return word
    for suffix in (
        "ingly",
        "edly",
        "ations",
        "ation",
        "ments",
        "ment",
        "ness",
        "ings",
        "ing",
        "ies",
        "ied",
        "es",
        "ed",
        "ly",
        "s",
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] in "ey":
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    return word


@dataclass(frozen=True)
class Claim:
    words: frozenset[str]  # stemmed content words, and the numbers as "#62" (a shared figure ties claims too)
    numbers: tuple[float, ...]
    negated: bool  # an odd number of negations and opposite words
    names: frozenset[str]  # proper names, lower-cased
    negations: int  # explicit negation words ("not", "no", ...)
    opposites: frozenset[str]  # the opposite words it uses


def _numbers(tokens: list[str]) -> tuple[float, ...]:
    values: list[float] = []
    i = 0
    while i < len(tokens):
        tok, low = tokens[i], tokens[i].lower()
        if _NUMBER.fullmatch(tok):
            value = float(tok.replace(",", ""))
        elif low in _NUMBER_WORDS:
            value = _NUMBER_WORDS[low]
            # "sixty two" (from "sixty-two"): tens and units are one number.
            nxt = tokens[i + 1].lower() if i + 1 < len(tokens) else ""
            if value >= 20 and value % 10 == 0 and nxt in _NUMBER_WORDS and _NUMBER_WORDS[nxt] < 10:
                value += _NUMBER_WORDS[nxt]
                i += 1
        else:
            i += 1
            continue
        if i + 1 < len(tokens) and tokens[i + 1].lower() in _MULTIPLIERS:
            value *= _MULTIPLIERS[tokens[i + 1].lower()]
        values.append(value)
        i += 1
    return tuple(values)


def _tokens(sentence: str) -> list[str]:
    return _TOKEN.findall(_BULLET.sub("", sentence.replace("n't", " not").replace("\u2019", "'")).strip())


def _claim(sentence: str, common: frozenset[str]) -> Claim | None:
    """Read one claim; ``common`` holds the stems of words seen in lower case (a capitalised first word among them
    is not a name)."""
    tokens = _tokens(sentence)
    words: set[str] = set()
    names: set[str] = set()
    opposites: set[str] = set()
    negations = 0
    numbers = _numbers(tokens)
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if low in _NEGATIONS:
            negations += 1
            continue
        if low in _OPPOSITES:
            opposites.add(low)
            continue
        if _NUMBER.fullmatch(tok) or low in _NUMBER_WORDS or low in _MULTIPLIERS or low in _UNIT_WORDS:
            continue
        if low in _STOP or len(low) < 2:
            continue
        words.add(_stem(low))
        # A name is capitalised inside the sentence, or in capitals (BJP), or starts the sentence and is never
        # written in lower case in either answer, in any inflection ("Secunderabad has ..." but not "Counting
        # will ..." beside "counted").
        if tok[0].isupper() and (i > 0 or (len(tok) > 1 and tok.isupper()) or _stem(low) not in common):
            names.add(low)
    words |= {f"#{n:g}" for n in numbers}
    if len(words) < 2 and not (words and (negations or opposites)):
        return None
    negated = (negations + sum(tok.lower() in _OPPOSITES for tok in tokens)) % 2 == 1
    return Claim(frozenset(words), numbers, negated, frozenset(names), negations, frozenset(opposites))


def claim_texts(text: str) -> list[str]:
    """Split an answer into the texts of its claims (what a checker is asked to judge one by one)."""
    common = frozenset(_stem(t) for t in _TOKEN.findall(text) if t.islower())
    parts = [_BULLET.sub("", part).strip() for part in _CLAIM_SPLIT.split(text)]
    return [part for part in parts if part and _claim(part, common) is not None]


def claims(text: str, common: frozenset[str] | None = None) -> list[Claim]:
    """Split an answer into claims: sentences, clauses after semicolons, bullet points."""
    parts = _CLAIM_SPLIT.split(text)
    if common is None:
        common = frozenset(_stem(t) for part in parts for t in _tokens(part) if t.islower())
    return [c for c in (_claim(part, common) for part in parts) if c is not None]


def _same_number(x: float, y: float) -> bool:
    return abs(x - y) <= NUMBER_TOLERANCE * max(abs(x), abs(y), 1e-9)


def conflict(a: Claim, b: Claim) -> str | None:
    """Say how two claims about the same thing contradict each other, or None when they do not."""
    only_a = [x for x in a.numbers if not any(_same_number(x, y) for y in b.numbers)]
    only_b = [y for y in b.numbers if not any(_same_number(x, y) for x in a.numbers)]
    # A number on one side only is extra detail; a number on each side that the other lacks is a different figure.
    if only_a and only_b:
        return "numbers"
    if a.negated != b.negated:
        odd, other = (a, b) if a.negated else (b, a)
        # An opposite word against a claim that asserts nothing more is a direction ("fell to 48%" against
        # "was 48%"), not a contradiction; a negation always is one.
        if odd.negations or (other.words - odd.words) or other.opposites:
            return "polarity"
    # A name on one side only is extra detail too; a differing name on each side is a different actor or place.
    if a.names - b.names and b.names - a.names:
        return "names"
    return None


@dataclass(frozen=True)
class Comparison:
    agreement: float
    corroborated: int
    contradicted: int
    unaddressed: int
    kinds: tuple[str, ...]  # what the contradictions were: numbers, polarity, names

    @property
    def detail(self) -> str:
        total = self.corroborated + self.contradicted + self.unaddressed
        text = f"{self.corroborated}/{total} claims corroborated"
        if self.contradicted:
            text += f", {self.contradicted} contradicted ({', '.join(sorted(set(self.kinds)))})"
        return text


def agreement_score(corroborated: int, contradicted: int, unaddressed: int) -> float:
    """Return agreement on the scale whose midpoint 0.5 separates consistent answers from contradicting ones."""
    total = corroborated + contradicted + unaddressed
    if total == 0:
        return 0.5
    if contradicted:
        return round(0.5 * corroborated / total, 4)
    return round((corroborated + 0.5 * unaddressed) / total, 4)


def compare(a: str, b: str) -> Comparison:
    """Compare two answers claim by claim; see the module docstring for the scoring."""
    common = frozenset(_stem(t) for text in (a, b) for t in _TOKEN.findall(text) if t.islower())
    claims_a, claims_b = claims(a, common), claims(b, common)
    if not claims_a or not claims_b:
        return Comparison(0.5, 0, 0, len(claims_a) + len(claims_b), ())
    docs = claims_a + claims_b
    df = Counter(w for claim in docs for w in claim.words)
    idf = {w: math.log((1 + len(docs)) / (1 + n)) + 1 for w, n in df.items()}

    def similarity(x: Claim, y: Claim) -> float:
        # Weighted Dice: a short claim inside a longer one scores between Jaccard and containment.
        shared = sum(idf[w] for w in x.words & y.words)
        return 2 * shared / (sum(idf[w] for w in x.words) + sum(idf[w] for w in y.words))

    kinds: list[str] = []
    counts = {"corroborated": 0, "contradicted": 0, "unaddressed": 0}
    for src, dst in ((claims_a, claims_b), (claims_b, claims_a)):
        for claim in src:
            best = max(dst, key=lambda other: similarity(claim, other))
            if similarity(claim, best) < MATCH_THRESHOLD:
                counts["unaddressed"] += 1
                continue
            kind = conflict(claim, best)
            if kind is not None:
                kinds.append(kind)
                counts["contradicted"] += 1
            else:
                counts["corroborated"] += 1
    value = agreement_score(counts["corroborated"], counts["contradicted"], counts["unaddressed"])
    return Comparison(value, counts["corroborated"], counts["contradicted"], counts["unaddressed"], tuple(kinds))


def agreement(a: str, b: str) -> float:
    """Return the symmetric claim-level agreement of two answers in [0, 1]."""
    return compare(a, b).agreement
