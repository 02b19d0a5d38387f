"""The one finish-reason table: how each vendor's reason for ending an answer is read.

Gemini's enum names, OpenAI/llama.cpp's (``stop``, ``length``, ``content_filter``) and the Responses API's
statuses (``completed``, ``incomplete``) all land in one of four kinds. Adapters (Gemini refuses a withheld
answer), validation (a withheld answer is unusable) and confidence (a cut answer is less certain) read this
table, so a reason added here is understood everywhere at once.
"""

from __future__ import annotations

from typing import Literal

FinishKind = Literal["truncated", "withheld", "unexplained"]

# The vendor cut the answer short at a length limit.
TRUNCATED = frozenset({"length", "MAX_TOKENS", "max_tokens", "incomplete", "max_output_tokens"})
# A policy filter stopped or withheld the answer.
WITHHELD = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "content_filter"}
)
# The answer ended normally. Anything else (Gemini's OTHER, MALFORMED_FUNCTION_CALL, ...) is an unexplained stop.
NORMAL = frozenset({"", "stop", "STOP", "end_turn", "completed", "eos", "FINISH_REASON_UNSPECIFIED"})


def finish_kind(finish_reason: str) -> FinishKind | None:
    """Classify a finish reason as truncated, withheld or unexplained; None for a normal stop."""
    if finish_reason in NORMAL:
        return None
    if finish_reason in TRUNCATED:
        return "truncated"
    if finish_reason in WITHHELD:
        return "withheld"
    return "unexplained"
