"""The response cache's policy: which requests are the same, and how long an answer to one stays good.

Two requests are the same when their normalised text (case, whitespace and trailing punctuation folded) and
everything that changes the answer (instructions, depth, ward, context, constraints) are equal. An answer that
needs fresh facts goes stale fast, so it is kept ``fresh_ttl_s`` at most (a short TTL), others ``ttl_s``.
Degraded and failed answers are never cached: the next request may find the adequate provider back.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Fold case and whitespace and drop trailing punctuation: 'Who leads?' and 'who leads' are one query."""
    return _SPACE.sub(" ", text.casefold()).strip().rstrip("?.! ")


def cache_key(query: str, fields: Mapping[str, object]) -> str:
    """Return the cache key of a request: its normalised query and the fields that change the answer."""
    doc = json.dumps({"q": normalise(query), **fields}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


@dataclass(frozen=True)
class CachePolicy:
    ttl_s: float
    fresh_ttl_s: float

    def ttl_for(self, needs_fresh: bool) -> float:
        """Return how long an answer stays servable: the short TTL for fresh facts."""
        return min(self.ttl_s, self.fresh_ttl_s) if needs_fresh else self.ttl_s
