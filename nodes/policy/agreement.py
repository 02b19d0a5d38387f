"""Claim-level agreement between two answers to the same query.

Agreement is computed claim by claim. Each answer is split into claims (sentences, clauses, bullets); each claim
is matched to the other answer's closest claim by the overlap of their stemmed content words, weighted by how
informative the words are (rare words count more than "campaign"). A matched pair then either corroborates or
*contradicts*: it contradicts when the claims state different numbers (62% against 58%, with a 2% tolerance and
number words and lakh/crore read as numbers), opposite polarity ("has not announced" against "announced"), or
different names where the rest matches ("BJP leads in Malakpet" against "Congress leads in Malakpet"). A
corroborated claim scores its match strength, an unaddressed claim 0, a contradicted claim -2; agreement is the
mean over both answers' claims, floored at 0. So a paraphrase keeps most of its agreement and a single flipped
number or negation pulls a near-identical answer below the disagreement line, which word overlap alone cannot do.

Why lexical and not an embedding model: no network at run time, and the small sentence-embedding models on PyPI
need torch; they also score "X won" and "X did not win" as near-identical, the error that matters most here.
What this does not catch: antonyms without a negation word ("confirmed" / "denied"), synonyms that share no
stem, and contradictions between claims that do not share enough words to be matched.
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
# A claim pair must share this much weighted vocabulary to be about the same thing; at FULL_MATCH it is a
# complete corroboration (paraphrases rarely share more than about 60% of their content words).
MATCH_THRESHOLD = 0.3
FULL_MATCH = 0.6
# A contradiction proves one of the two answers wrong; a corroboration only fails to disprove it. So one
# contradicted claim outweighs two corroborated ones (shared boilerplate cannot drown a flipped figure).
CONTRADICTION = -2.0
METHOD = "claim by claim: stemmed content-word match, then numbers, negation and names compared"

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
    negated: bool
    names: frozenset[str]  # proper names, lower-cased


def _numbers(tokens: list[str]) -> tuple[float, ...]:
    values: list[float] = []
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if _NUMBER.fullmatch(tok):
            value = float(tok.replace(",", ""))
        elif low in _NUMBER_WORDS:
            value = _NUMBER_WORDS[low]
        else:
            continue
        if i + 1 < len(tokens) and tokens[i + 1].lower() in _MULTIPLIERS:
            value *= _MULTIPLIERS[tokens[i + 1].lower()]
        values.append(value)
    return tuple(values)


def _tokens(sentence: str) -> list[str]:
    return _TOKEN.findall(_BULLET.sub("", sentence.replace("n't", " not").replace("\u2019", "'")).strip())


def _claim(sentence: str, common: frozenset[str]) -> Claim | None:
    """Read one claim; ``common`` holds the words seen in lower case, which a capitalised first word is not a name."""
    tokens = _tokens(sentence)
    words: set[str] = set()
    names: set[str] = set()
    negations = 0
    numbers = _numbers(tokens)
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if low in _NEGATIONS:
            negations += 1
            continue
        if _NUMBER.fullmatch(tok) or low in _NUMBER_WORDS or low in _MULTIPLIERS or low in _UNIT_WORDS:
            continue
        if low in _STOP or len(low) < 2:
            continue
        words.add(_stem(low))
        # A name is capitalised inside the sentence, or in capitals (BJP), or starts the sentence and is never
        # written in lower case in either answer ("Secunderabad has ..." but not "Turnout was ...").
        if tok[0].isupper() and (i > 0 or (len(tok) > 1 and tok.isupper()) or low not in common):
            names.add(low)
    words |= {f"#{n:g}" for n in numbers}
    if len(words) < 2:
        return None
    return Claim(frozenset(words), numbers, negations % 2 == 1, frozenset(names))


def claims(text: str, common: frozenset[str] | None = None) -> list[Claim]:
    """Split an answer into claims: sentences, clauses after semicolons, bullet points."""
    parts = _CLAIM_SPLIT.split(text)
    if common is None:
        common = frozenset(t for part in parts for t in _tokens(part) if t.islower())
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
        return "negation"
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
    kinds: tuple[str, ...]  # what the contradictions were: numbers, negation, names

    @property
    def detail(self) -> str:
        total = self.corroborated + self.contradicted + self.unaddressed
        text = f"{self.corroborated}/{total} claims corroborated"
        if self.contradicted:
            text += f", {self.contradicted} contradicted ({', '.join(sorted(set(self.kinds)))})"
        return text


def compare(a: str, b: str) -> Comparison:
    """Compare two answers claim by claim; see the module docstring for the scoring."""
    common = frozenset(t for text in (a, b) for t in _TOKEN.findall(text) if t.islower())
    claims_a, claims_b = claims(a, common), claims(b, common)
    if not claims_a or not claims_b:
        return Comparison(0.0, 0, 0, len(claims_a) + len(claims_b), ())
    docs = claims_a + claims_b
    df = Counter(w for claim in docs for w in claim.words)
    idf = {w: math.log((1 + len(docs)) / (1 + n)) + 1 for w, n in df.items()}

    def similarity(x: Claim, y: Claim) -> float:
        # Weighted Dice: a short claim inside a longer one scores between Jaccard and containment.
        shared = sum(idf[w] for w in x.words & y.words)
        return 2 * shared / (sum(idf[w] for w in x.words) + sum(idf[w] for w in y.words))

    scores: list[float] = []
    kinds: list[str] = []
    counts = {"corroborated": 0, "contradicted": 0, "unaddressed": 0}
    for src, dst in ((claims_a, claims_b), (claims_b, claims_a)):
        for claim in src:
            best = max(dst, key=lambda other: similarity(claim, other))
            sim = similarity(claim, best)
            if sim < MATCH_THRESHOLD:
                scores.append(0.0)
                counts["unaddressed"] += 1
                continue
            kind = conflict(claim, best)
            if kind is not None:
                scores.append(CONTRADICTION)
                kinds.append(kind)
                counts["contradicted"] += 1
            else:
                scores.append(min(1.0, sim / FULL_MATCH))
                counts["corroborated"] += 1
    value = max(0.0, sum(scores) / len(scores))
    return Comparison(
        round(value, 4), counts["corroborated"], counts["contradicted"], counts["unaddressed"], tuple(kinds)
    )


def agreement(a: str, b: str) -> float:
    """Return the symmetric claim-level agreement of two answers in [0, 1]."""
    return compare(a, b).agreement
