"""What a caller may ask for: the validated analysis request."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from graphs.errors import RequestError
from graphs.state import AnalysisInput, Constraints, StrategicContext
from providers.config import Depth

MAX_QUERY_CHARS = 10_000


class AnalysisRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str
    # What to do with the query when it is content to analyse (HTTP /analyze): kept apart from the query so the
    # user's text is never cut to make room for our instructions.
    instructions: str | None = Field(default=None, max_length=2000)
    depth: Depth = "standard"
    ward: str | None = Field(default=None, max_length=64)
    context: StrategicContext = "neutral"
    max_cost_usd: float | None = Field(default=None, ge=0)
    deadline_s: float | None = Field(default=None, gt=0, le=3600)
    require_citations: bool = False
    cost_sensitive: bool = False
    cross_check: bool = False

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("query is empty")
        if len(value) > MAX_QUERY_CHARS:
            raise ValueError(f"query is {len(value):,} characters; the maximum is {MAX_QUERY_CHARS:,}")
        return value

    @field_validator("ward")
    @classmethod
    def _ward(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    def constraints(self) -> Constraints:
        out: Constraints = {
            "require_citations": self.require_citations,
            "cost_sensitive": self.cost_sensitive,
            "cross_check": self.cross_check,
        }
        if self.max_cost_usd is not None:
            out["max_cost_usd"] = self.max_cost_usd
        if self.deadline_s is not None:
            out["deadline_s"] = self.deadline_s
        return out

    def graph_input(self) -> AnalysisInput:
        """Return the analysis graph's input for this request."""
        return {
            "query": self.query,
            "instructions": self.instructions,
            "depth": self.depth,
            "ward": self.ward,
            "context": self.context,
            "constraints": self.constraints(),
        }


def parse_request(data: dict[str, Any]) -> AnalysisRequest:
    """Validate a request, turning pydantic's errors into one readable message."""
    try:
        return AnalysisRequest.model_validate(data)
    except ValidationError as exc:
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False)
        )
        raise RequestError(message) from None
