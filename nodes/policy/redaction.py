"""Sanitising a briefing: PII redaction and the content filter the contract asks for, with an audit trail.

- PII: card numbers (13 to 19 digits, spaces or dashes allowed, Luhn-valid), phone numbers (10 to 12 digits,
  an optional + and separators), PAN numbers (five letters, four digits, a letter) and e-mail addresses are
  replaced by ``[CARD_REDACTED]``, ``[PHONE_REDACTED]``, ``[PAN_REDACTED]`` and ``[EMAIL_REDACTED]``. Cards go
  first: a 16-digit card must not be half-eaten by the phone rule.
- Content filter: a string about violence, hate or misinformation gets the ``[CONTENT_FILTERED] `` prefix (the
  text stays: the strategist must see what circulates, marked).
- URLs of citations are left alone: article ids are long digit runs, and a redacted URL is a broken one.

Hand-written rather than a PII library (presidio and the like need spaCy models downloaded at run time, which
this deployment cannot do): the contract names exactly these four kinds of PII and the filter's three topics.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

FILTER_PREFIX = "[CONTENT_FILTERED] "

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PAN = re.compile(r"\b[A-Z]{5}[0-9]{4}[A-Z]\b")
_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
_PHONE = re.compile(r"(?<![\w+])\+?(?:\d[ -]?){9,11}\d(?![\d])")
_TOPICS: dict[str, re.Pattern[str]] = {
    "violence": re.compile(
        r"\b(kill(?:ed|ing|s)?|murder\w*|attack(?:ed|ing)? (?:on|with) (?:weapons?|knives?|sticks?)|riot\w*|"
        r"lynch\w*|bomb\w*|stab\w*|arson|burn(?:ed|t)? alive|violen(?:ce|t))\b",
        re.IGNORECASE,
    ),
    "hate": re.compile(
        r"\b(hate speech|communal (?:hatred|slurs?)|slurs?|ethnic cleansing|anti-(?:muslim|hindu|dalit|christian)|"
        r"casteist|bigot\w*)\b",
        re.IGNORECASE,
    ),
    "misinformation": re.compile(
        r"\b(fake news|misinformation|disinformation|doctored (?:video|image|photo)s?|hoax\w*|deepfakes?|"
        r"morphed (?:video|image|photo)s?)\b",
        re.IGNORECASE,
    ),
}
# Keys whose strings are machine values, not prose: never redacted or filtered.
_LEAVE_ALONE = frozenset({"url", "date", "category", "severity", "impact_level", "timeline", "type"})


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact(text: str, counts: Counter[str]) -> str:
    """Replace the PII in ``text``; count what was replaced, by kind."""

    def card(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits):
            counts["card"] += 1
            return "[CARD_REDACTED]"
        return match.group(0)

    def sub(kind: str, pattern: re.Pattern[str], token: str, value: str) -> str:
        def repl(_m: re.Match[str]) -> str:
            counts[kind] += 1
            return token

        return pattern.sub(repl, value)

    text = sub("email", _EMAIL, "[EMAIL_REDACTED]", text)
    text = _CARD.sub(card, text)
    text = sub("pan", _PAN, "[PAN_REDACTED]", text)
    return sub("phone", _PHONE, "[PHONE_REDACTED]", text)


def flagged_topics(text: str) -> list[str]:
    """Return the filtered topics a text is about (violence, hate, misinformation), if any."""
    return [topic for topic, pattern in _TOPICS.items() if pattern.search(text)]


def sanitise_value(value: Any, path: str, counts: Counter[str], filtered: list[str], key: str = "") -> Any:
    """Redact and filter every prose string in a JSON value; record the paths of filtered strings."""
    if isinstance(value, str):
        if key in _LEAVE_ALONE:
            return value
        clean = redact(value, counts)
        if flagged_topics(clean) and not clean.startswith(FILTER_PREFIX):
            filtered.append(path)
            clean = FILTER_PREFIX + clean
        return clean
    if isinstance(value, list):
        return [sanitise_value(v, f"{path}[{i}]", counts, filtered, key) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: sanitise_value(v, f"{path}.{k}" if path else k, counts, filtered, k) for k, v in value.items()}
    return value
