"""Degenerate output: answers whose fluency says nothing about their truth, so model certainty must not count.

A small model that echoes the prompt or loops on a phrase assigns its tokens a high probability (a copy is easy
to predict), and a cut or empty answer can carry any stated confidence. Each check here reads only the answer,
the prompt and the finish reason, and names what it found:

- ``echo``: most of the answer's word trigrams are copied from the prompt (the question or the instructions);
- ``repetition``: the answer repeats itself (a high share of repeated word trigrams, a repeated sentence, or a
  phrase looping);
- ``truncated``: the provider stopped at its token limit (finish reason), so the conclusion may be missing;
- ``wrong_language``: the answer is in another script than the question (or than the language asked for), or
  is Latin-script text with almost none of English's function words for an English question;
- ``empty``: no substance - no content words, or only a refusal or a filler sentence ("happy to help", "I could
  not find any information").

Hand-written rules rather than a classifier: there is no labelled corpus of degenerate answers to train one, and
each rule is cheap, explainable in the result and testable on its own.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

from providers.finish import finish_kind

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# A share of copied trigrams above this, in an answer of at least ECHO_MIN_WORDS words, is an echo: a fixed
# sentence may share a trigram or two with its prompt ("the candidate has visited the ward"), a copy shares most.
ECHO_SHARE = 0.8
ECHO_MIN_WORDS = 5
REPEAT_SHARE = 0.3
REPEAT_MIN_WORDS = 12
# Words that are not substance on their own: a reply made only of them says nothing.
_FILLER = frozenset(
    (  # noqa: SIM905 - a word list reads better as text than as 100 quoted strings
        "a an the and or but of to in on at by for with from as is are was were be been it its this that i "
        "you we he she they me my our your their here there will would can could should may might do does did "
        "have has had not no yes so just very happy glad help assist sure certainly okay ok please thank "
        "thanks sorry"
    ).split()
)
_NON_ANSWER = re.compile(
    r"\b(?:i(?:'m| am) (?:sorry|unable|not able)|i (?:cannot|can't|could not|couldn't|do not|don't) "
    r"(?:find|provide|answer|help|know|have)|(?:could not|couldn't|unable to) find (?:any )?(?:information|"
    r"results|data)|no (?:relevant )?(?:information|results|data) (?:is |was )?(?:available|found)|as an ai\b|"
    r"(?:happy|glad) to (?:help|assist)|here to (?:help|assist|provide))",
    re.IGNORECASE,
)
_YES_NO_QUESTION = re.compile(
    r"\byes or no\b|(?:^|[.!?\n]\s*)"
    r"(?:is|are|was|were|do|does|did|will|would|can|could|has|have|had|should)\b[^.!?\n]*\?",
    re.IGNORECASE,
)
# Languages an instruction may ask for, by the script their answer is written in.
_SCRIPT_OF_LANGUAGE = {
    "telugu": "TELUGU", "hindi": "DEVANAGARI", "marathi": "DEVANAGARI", "urdu": "ARABIC", "arabic": "ARABIC",
    "tamil": "TAMIL", "kannada": "KANNADA", "malayalam": "MALAYALAM", "bengali": "BENGALI", "gujarati": "GUJARATI",
    "punjabi": "GURMUKHI", "english": "LATIN", "french": "LATIN", "spanish": "LATIN", "german": "LATIN",
    "russian": "CYRILLIC", "chinese": "CJK", "japanese": "CJK",
}  # fmt: skip
_ASKED_LANGUAGE = re.compile(r"\b(?:in|into|to)\s+(" + "|".join(_SCRIPT_OF_LANGUAGE) + r")\b", re.IGNORECASE)
_ENGLISH_FUNCTION = frozenset(
    (  # noqa: SIM905 - a word list reads better as text than as 100 quoted strings
        "the a an of to in on is are was were and or for with that this it be by as at from not"
    ).split()
)


@dataclass(frozen=True)
class Degeneracy:
    """What was found degenerate in an answer: the kinds (empty when the answer looks sound) and why."""

    kinds: tuple[str, ...]
    detail: str

    def __bool__(self) -> bool:
        return bool(self.kinds)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _trigrams(words: list[str]) -> list[tuple[str, str, str]]:
    return list(zip(words, words[1:], words[2:], strict=False))


def echo_share(answer: str, prompt: str) -> float:
    """Return the share of the answer's word trigrams that occur in the prompt (0 for answers too short to say)."""
    grams = _trigrams(_words(answer))
    if len(_words(answer)) < ECHO_MIN_WORDS or not grams:
        return 0.0
    source = set(_trigrams(_words(prompt)))
    return sum(g in source for g in grams) / len(grams)


def repetition(answer: str) -> str | None:
    """Say how an answer repeats itself, or None."""
    words = _words(answer)
    if len(words) >= REPEAT_MIN_WORDS:
        grams = _trigrams(words)
        repeated = 1 - len(set(grams)) / len(grams)
        if repeated >= REPEAT_SHARE:
            return f"{repeated:.0%} of word trigrams repeated"
    sentences = [" ".join(_words(s)) for s in _SENTENCE.split(answer)]
    counts = Counter(s for s in sentences if len(s.split()) >= 3)
    if counts and max(counts.values()) >= 2:
        return "a sentence repeated"
    # A phrase looping without sentence breaks ("vote vote vote ...", "and the and the ...").
    if re.search(r"(\b.{2,40}?\b)(?:\W+\1){3,}", answer, re.IGNORECASE | re.DOTALL):
        return "a phrase looping"
    return None


@functools.lru_cache(maxsize=4096)
def _script(char: str) -> str:
    # Cached per character: texts repeat a few dozen letters, and unicodedata.name builds a string per call
    # (it was the largest share of the project's own CPU per analysis in bench/overhead.py's profile).
    if char.isascii():
        return "LATIN" if char.isalpha() else ""
    name = unicodedata.name(char, "")
    if name.startswith("CJK") or name.startswith(("HIRAGANA", "KATAKANA", "HANGUL")):
        return "CJK"
    return name.split(" ")[0] if name else ""


def dominant_script(text: str) -> str | None:
    """Return the script of most of the text's letters (LATIN, TELUGU, ...), or None without letters."""
    if text.isascii():  # most answers: no need to look at each letter
        return "LATIN" if any(c.isalpha() for c in text) else None
    scripts = Counter(_script(c) for c in text if c.isalpha())
    return scripts.most_common(1)[0][0] if scripts else None


def wrong_language(answer: str, prompt: str) -> str | None:
    """Say why the answer is in the wrong language for the prompt, or None."""
    asked = _ASKED_LANGUAGE.findall(prompt)
    expected = _SCRIPT_OF_LANGUAGE[asked[-1].lower()] if asked else dominant_script(prompt)
    got = dominant_script(answer)
    if expected is None or got is None:
        return None
    if got != expected:
        return f"answer in {got.lower()} script, {expected.lower()} expected"
    words = _words(answer)
    if not asked and expected == "LATIN" and len(words) >= 8:
        english_prompt = sum(w in _ENGLISH_FUNCTION for w in _words(prompt)) > 0
        share = sum(w in _ENGLISH_FUNCTION for w in words) / len(words)
        if english_prompt and share < 0.04:
            return f"only {share:.0%} English function words in a Latin-script answer to an English question"
    return None


def empty_substance(answer: str, prompt: str = "") -> str | None:
    """Say why the answer has no substance, or None; "yes" and "no" are substance when the prompt asks for them."""
    words = _words(answer)
    yes_no = _YES_NO_QUESTION.search(prompt) is not None
    content = [w for w in words if w not in _FILLER or (yes_no and w in ("yes", "no"))]
    if not content:
        return "no content words"
    sentences = [s for s in _SENTENCE.split(answer.strip()) if _words(s)]
    if sentences and all(_NON_ANSWER.search(s) for s in sentences):
        return "a refusal or filler, no answer"
    return None


@functools.lru_cache(maxsize=256)
def degeneracy(answer: str, prompt: str, finish_reason: str = "") -> Degeneracy:
    """Check an answer for every kind of degenerate output; ``prompt`` is all the text the model was given.

    Cached: an analysis asks twice for the same answer (validate's escalation decision, then score).
    """
    found: list[tuple[str, str]] = []
    empty = empty_substance(answer, prompt)
    if empty:
        found.append(("empty", empty))
    share = echo_share(answer, prompt)
    if share >= ECHO_SHARE:
        found.append(("echo", f"{share:.0%} of its word trigrams copied from the prompt"))
    loop = repetition(answer)
    if loop:
        found.append(("repetition", loop))
    if finish_kind(finish_reason) == "truncated":
        found.append(("truncated", f"stopped at the token limit (finish_reason={finish_reason})"))
    language = wrong_language(answer, prompt)
    if language:
        found.append(("wrong_language", language))
    return Degeneracy(tuple(k for k, _ in found), "; ".join(f"{k}: {why}" for k, why in found))
