"""What a chat reply offers besides its text: actions and strategic implications read from the answer's lines.

Read from the answer itself rather than asked of the model a second time: a reply costs one call, and a client
that shows "actionable" buttons shows what the answer actually recommends.
"""

from __future__ import annotations

import re

_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.*\S)\s*$")
_IMPLICATION = re.compile(r"\b(risk|opportunit|implication|threat|advantage|impact)", re.IGNORECASE)
MAX_ACTIONS = 5


def list_items(answer: str) -> list[str]:
    """Return the answer's list items (bullets or numbered lines), in order."""
    return [m.group(1).strip("* ") for m in (_ITEM.match(line) for line in answer.splitlines()) if m]


def actions_of(answer: str) -> list[dict[str, str]]:
    """Return the answer's recommendations as the contract's actions ``[{type, label}]`` (at most five)."""
    return [{"type": "recommendation", "label": item[:200]} for item in list_items(answer)[:MAX_ACTIONS]]


def implications_of(answer: str) -> list[str]:
    """Return the sentences of the answer about risks, opportunities and impact (at most five)."""
    sentences = [s.strip().lstrip("-*\u2022 ").strip() for s in re.split(r"(?<=[.!?])\s+|\n+", answer)]
    return [s for s in sentences if s and _IMPLICATION.search(s)][:MAX_ACTIONS]
