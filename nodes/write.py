"""write: the briefing as structured output, validated against ``BriefingDraft``; one attempt per execution.

The writers are tried in order (nodes/policy/briefing_chains.py): premium, realtime, local in structured mode,
then in plain-text mode. A structured answer that is not JSON or breaks the schema is an invalid answer: it is
recorded with the validation error, the same provider is asked once more with that error fed back, then the next
provider gets the job. A provider error is retried on the same provider when its disposition and the retry
policy allow (providers/errors.py), as in the analysis graph; otherwise the next provider is asked.

When the chain is exhausted or the deadline has passed, the degraded briefing is assembled from what the
research found (nodes/policy/drafting.py); with nothing found and nothing written, nothing can be said.
One attempt per node execution: each completed call is checkpointed, and a resumed briefing never pays twice.

Under spend caps each writer call must first fit what the briefing holds (plan held the first writer that fit;
nodes/policy/budget.py: ``Cover`` reserves a shortfall on top): a writer the caps refuse is not made, a
``skipped`` attempt says why, and the next, cheaper one is asked (the local model is free).
"""

from __future__ import annotations

import re
from typing import Literal

from langgraph.runtime import Runtime

from graphs.briefing_result import BriefingDraft
from graphs.briefing_state import BriefingState, Writer, WriteStep, WriteUpdate
from graphs.context import Context, context_of
from nodes.policy.attempts import attempt_call, attempt_timeout_s, retry_wait_s, skipped_attempt
from nodes.policy.briefing_budget import write_estimate
from nodes.policy.briefing_prompts import plain_prompt, write_prompt
from nodes.policy.budget import not_made
from nodes.policy.drafting import fallback_draft
from nodes.policy.events import AttemptStarted
from nodes.policy.progress import emit
from nodes.policy.prompt import split_stated_confidence
from nodes.policy.research import ITEMS_BY_DEPTH, cross_checked
from nodes.policy.structured import parse_structured

_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
MIN_PLAIN_WORDS = 5


def _give_up(state: BriefingState, passed: bool) -> WriteUpdate:
    draft = fallback_draft(
        state["ward"], state.get("questions", []), state.get("findings", []), state.get("sources", []), None
    )
    return {"write_done": True, "draft": draft, "writer": None, "fallback": True, "deadline_passed": passed}


def _errored(state: BriefingState, provider: str) -> bool:
    return any(
        a["provider"] == provider and a["role"] == "write" and a["outcome"] == "error" for a in state["attempts"]
    )


def write(state: BriefingState, runtime: Runtime[Context]) -> WriteUpdate:
    """Make one writer attempt on the current step, or assemble the degraded briefing when none is left."""
    ctx = context_of(runtime)
    registry = ctx.registry
    chain: list[WriteStep] = state.get("write_chain", [])
    cursor, tries = state.get("write_cursor", 0), state.get("write_tries", 0)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    if cursor >= len(chain) or ctx.clock() >= deadline_at:
        return _give_up(state, ctx.clock() >= deadline_at)
    step = chain[cursor]
    if step["mode"] == "plain" and _errored(state, step["provider"]):
        # The provider is failing, not misformatting: asking it for plain text would fail the same way.
        return {"write_cursor": cursor + 1, "write_tries": 0, "write_feedback": None}
    retry_at = state.get("retry_at")
    if retry_at is not None and retry_at > ctx.clock():
        ctx.sleep(retry_at - ctx.clock())
    depth, context = state.get("depth", "standard"), state.get("context", "neutral")
    findings = state.get("findings", [])
    if step["mode"] == "structured":
        prompt = write_prompt(
            state["ward"],
            depth,
            context,
            state.get("questions", []),
            findings,
            state.get("sources", []),
            ITEMS_BY_DEPTH[depth],
            state.get("write_feedback"),
        )
    else:
        prompt = plain_prompt(state["ward"], context, findings)
    estimate = write_estimate(registry, step, prompt)
    cover = ctx.cover(state)
    refusal = cover.admit(estimate)
    if refusal is not None:
        what = f"the {step['mode']} briefing by {step['provider']}"
        skipped = skipped_attempt(registry, step, "write", not_made(refusal, what, estimate))
        return {"attempts": [skipped], "write_cursor": cursor + 1, "write_tries": 0, "write_feedback": None}
    policy = registry.settings.resilience.retry
    timeout_s = attempt_timeout_s(deadline_at - ctx.clock(), cursor + 1 < len(chain), policy)
    emit(runtime, AttemptStarted(provider=step["provider"], model=step["model"], stage="write"))
    attempt, reply, error = attempt_call(registry, ctx.clock, step, prompt, timeout_s, "write")
    update: WriteUpdate = {
        "retry_at": None,
        "deadline_passed": ctx.clock() >= deadline_at,
        "budget_extra": cover.extra,
    }
    if reply is None:
        made = sum(1 for a in state["attempts"] if a["provider"] == step["provider"] and a["role"] == "write") + 1
        wait = None
        if error is not None:
            wait = retry_wait_s(
                error,
                made=made,
                remaining_s=deadline_at - ctx.clock(),
                policy=policy,
                rng=ctx.rng,
                fallback_left=cursor + 1 < len(chain),
            )
        breaker = registry.health.breaker(step["provider"])
        if wait is not None and breaker.retry_allowed(policy.budget_ratio):
            breaker.note_retry()
            return update | {"attempts": [attempt], "retry_at": ctx.clock() + wait}
        return update | {"attempts": [attempt], "write_cursor": cursor + 1, "write_tries": 0, "write_feedback": None}
    vendor = registry.vendor_of(step["provider"])
    if step["mode"] == "structured":
        draft, problem = parse_structured(reply.text, BriefingDraft)
        stated = draft.confidence if draft is not None else None
    else:
        text, stated = split_stated_confidence(reply.text)
        enough = len(_WORD.findall(text)) >= MIN_PLAIN_WORDS
        problem = None if enough else "the overview has no usable text"
        fallback = fallback_draft(state["ward"], state.get("questions", []), findings, state.get("sources", []), text)
        draft = BriefingDraft.model_validate(fallback) if enough and fallback is not None else None
    if draft is None:
        attempt |= {"outcome": "invalid", "error_class": "invalid_answer", "error": f"invalid answer: {problem}"}
        if step["mode"] == "structured" and tries == 0:
            # Once more on the same provider, told what was wrong.
            return update | {"attempts": [attempt], "write_tries": 1, "write_feedback": problem}
        return update | {"attempts": [attempt], "write_cursor": cursor + 1, "write_tries": 0, "write_feedback": None}
    writer: Writer = {
        "provider": step["provider"],
        "model": reply.model,
        "tier": step["tier"],
        "vendor": vendor,
        "mode": step["mode"],
        "finish_reason": reply.finish_reason,
        "mean_logprob": reply.mean_logprob,
        "stated_confidence": stated,
    }
    return update | {
        "attempts": [attempt],
        "draft": draft.model_dump(mode="json", exclude_none=True),
        "writer": writer,
        "fallback": step["mode"] == "plain",
        "write_done": True,
    }


def route_after_write(state: BriefingState) -> Literal["write", "cross_check", "sanitise", "score"]:
    """Check (deep), sanitise a draft, try the next writer, or score a briefing with nothing to say."""
    if state.get("draft") is not None:
        writer = state.get("writer")
        structured = writer is not None and writer["mode"] == "structured"
        if structured and cross_checked(state.get("depth", "standard")) and not state.get("deadline_passed"):
            return "cross_check"
        return "sanitise"
    return "score" if state.get("write_done") else "write"
