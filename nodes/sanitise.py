"""sanitise: PII redaction and the content filter over the draft (nodes/policy/redaction.py), with an audit trail.

Every prose string of the draft is redacted and filtered; nothing the contract's clients read is dropped (the
old sanitiser's allow-list stripped ``ward``, ``confidence_score``, ``fallback_mode`` and the citations). The
audit trail says when, which keys the draft had, which keys had something redacted or filtered, and how many
redactions of each kind were made.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from langgraph.runtime import Runtime

from graphs.briefing_state import BriefingState, SanitiseUpdate
from graphs.context import Context, context_of
from nodes.policy.events import Sanitised
from nodes.policy.progress import emit
from nodes.policy.redaction import sanitise_value


def sanitise(state: BriefingState, runtime: Runtime[Context]) -> SanitiseUpdate:
    """Redact PII and mark violent, hateful or misleading content in the draft; record what was done."""
    ctx = context_of(runtime)
    draft = state.get("draft") or {}
    counts: Counter[str] = Counter()
    filtered: list[str] = []
    clean = sanitise_value(draft, "", counts, filtered)
    touched = {key for key in draft if draft[key] != clean.get(key)}
    audit = {
        "sanitized_at": dt.datetime.fromtimestamp(ctx.clock(), dt.UTC).isoformat(),
        "original_keys": sorted(draft),
        "filtered_keys": sorted(touched),
        "redactions": dict(sorted(counts.items())),
    }
    emit(runtime, Sanitised(redactions=sum(counts.values()), filtered=len(filtered)))
    return {
        "sanitised": clean,
        "compliance": {"pii_redacted": True, "content_filtered": True, "strategic_focus": True, "audit_trail": audit},
    }
