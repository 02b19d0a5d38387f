"""Structured output: a model's answer read as JSON and validated against a pydantic model.

An answer that is not JSON, or whose JSON breaks the schema, is an *invalid answer*: the caller records it
with the validation error, retries once with that error fed back to the model, then moves to the next provider.
The error text is what the model needs to fix its answer: where (the JSON path) and what (pydantic's message),
at most a few lines so the retry prompt stays short.

Providers are asked for JSON in the prompt rather than through each vendor's JSON mode: the same rule then holds
for every provider of the chain (the local model has no JSON mode of its own), and the schema lives once, in
pydantic, which both renders it into the prompt and validates the answer.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)
MAX_ERRORS_SHOWN = 5


def json_text(answer: str) -> str:
    """Return the JSON object in an answer: the text itself, or the inside of a Markdown code fence."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        return fenced.group(1).strip()
    # Models sometimes put a sentence before or after the object: keep from the first "{" to the last "}".
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


def describe_errors(exc: ValidationError) -> str:
    """Say what is wrong with a structured answer, one line per problem (the first few)."""
    lines = []
    for err in exc.errors(include_url=False)[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(p) for p in err["loc"]) or "(the whole answer)"
        lines.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - MAX_ERRORS_SHOWN
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)


def parse_structured(answer: str, model: type[M]) -> tuple[M | None, str | None]:
    """Validate an answer against ``model``; return it, or None and why it is invalid."""
    try:
        return model.model_validate_json(json_text(answer)), None
    except ValidationError as exc:
        return None, describe_errors(exc)


def schema_for_prompt(model: type[BaseModel]) -> str:
    """Render a model's JSON Schema compactly, for a prompt that asks for an answer in that shape."""
    schema: dict[str, Any] = model.model_json_schema()
    return json.dumps(schema, separators=(",", ":"))
