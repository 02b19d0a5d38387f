"""A checker's reply in the cross-check's verdict schema (nodes/policy/verdict.py), for fake providers to send."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def verdict_text(answer: str, verdicts: Sequence[str], confidence: float | None = None) -> str:
    """Return the JSON a checker answers with: its own answer and a verdict per claim, numbered from 1."""
    body: dict[str, Any] = {
        "answer": answer,
        "verdicts": [{"claim": i, "verdict": v, "reason": ""} for i, v in enumerate(verdicts, start=1)],
    }
    if confidence is not None:
        body["confidence"] = confidence
    return json.dumps(body)
