"""cross_check: a provider of another vendor answers the same query and judges the served answer claim by claim.

The checker replies with its own answer and a verdict per claim (nodes/policy/verdict.py: the prompt, the JSON
schema, the parsing); agreement is counted on the verdicts, with the local claim comparison of the two answers
(nodes/policy/agreement.py) as a second opinion that can only lower it. A reply that is not a readable verdict
makes the check unusable: the attempt is recorded as invalid with the reason, and the next checker, if any, is
asked. One checker call per node execution, so a completed check is checkpointed and never paid for twice. A
check must fit what the analysis holds against the spend caps (nodes/policy/budget.py: Cover), else it is not
made and a ``skipped`` attempt says why.
When the answers disagree, the one the confidence score supports better (nodes/policy/confidence.py, without
the cross-check itself) is served, and the other is kept in the escalation record.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Candidate, CrossCheckUpdate, Escalation
from nodes.policy.agreement import compare
from nodes.policy.answers import candidate_from, problem_with
from nodes.policy.attempts import attempt_call, skipped_attempt
from nodes.policy.budget import not_made
from nodes.policy.checkers import checker_chain
from nodes.policy.confidence import Judge
from nodes.policy.costing import estimate_call_cost
from nodes.policy.deadlines import cold_floor_of, cross_check_deadline_s
from nodes.policy.events import CrossCheckStarted, Validated
from nodes.policy.exclusion import failed_providers
from nodes.policy.progress import emit
from nodes.policy.verdict import METHOD, UnusableVerdict, parse_verdicts, verdict_prompt


def _adjudicate(answer: Candidate, theirs: Candidate, state: AnalysisState, judge: Judge) -> tuple[Candidate, str]:
    """Pick which of two disagreeing answers to serve: the better supported, the first one on a tie."""
    own = judge.assess(answer, state).value
    other = judge.assess(theirs, state).value
    if other > own:
        return theirs, (
            f"the answers disagree; {theirs['provider']}'s is better supported ({other:.2f} against "
            f"{answer['provider']}'s {own:.2f}) and is served"
        )
    return answer, (
        f"the answers disagree; {answer['provider']}'s stays ({own:.2f} against {theirs['provider']}'s {other:.2f})"
    )


def cross_check(state: AnalysisState, runtime: Runtime[Context]) -> CrossCheckUpdate:
    """Ask the next checker for an independent answer and measure its agreement with the served one."""
    ctx = context_of(runtime)
    answer = state.get("answer")
    assert answer is not None, "cross_check runs only after a validated answer"
    deadline_at = ctx.deadline_at or state["deadline_at"]
    chain = state.get("cross_chain")
    # How long getting the answer took: the check may hold it back at most that long (earlier checks excluded).
    checks_s = sum(a["latency_ms"] for a in state.get("attempts", []) if a["role"] == "cross_check") / 1000
    answer_s = max(0.0, ctx.clock() - state.get("started_at", ctx.clock()) - checks_s)
    if chain is None:
        chain, _notes = checker_chain(answer, state, ctx.registry, deadline_at - ctx.clock(), answer_s)
    cursor = state.get("cross_cursor", 0)
    failed = failed_providers(state.get("attempts", []))
    # A checker that failed since the chain was made (an earlier check timed out) is not asked again.
    while cursor < len(chain) and chain[cursor]["provider"] in failed:
        cursor += 1
    update: CrossCheckUpdate = {"cross_chain": chain, "cross_cursor": cursor + 1}
    if cursor >= len(chain):
        update["deadline_passed"] = ctx.clock() >= deadline_at
        return update
    resilience = ctx.registry.settings.resilience
    step = chain[cursor]
    # Bounded: the answer is ready, and the checks may hold it back by their share of the time left at most.
    latency = ctx.registry.health.breaker(step["provider"]).latency_view(resilience.hedge.mad_k)
    cold_floor = cold_floor_of(ctx.registry, step["provider"])
    timeout_s = cross_check_deadline_s(
        deadline_at - ctx.clock(), latency, resilience, cold_floor_s=cold_floor, answer_s=answer_s, held_s=checks_s
    )
    if checks_s > 0 and timeout_s < resilience.retry.min_attempt_s:
        # The checks so far used what the answer may be held back by (the bound is for all of them together):
        # it is served unchecked. Before, each next checker got the whole allowance again.
        update["cross_cursor"] = len(chain)
        update["deadline_passed"] = ctx.clock() >= deadline_at
        return update
    estimate = estimate_call_cost(ctx.registry, step["provider"], state["classification"], state["query"])
    cover = ctx.cover(state)
    refusal = cover.admit(estimate)
    if refusal is not None:
        # The spend caps hold no room for this check: it is not made, and the next (a cheaper) checker may fit.
        why = not_made(refusal, f"the check by {step['provider']}", estimate)
        update["attempts"] = [skipped_attempt(ctx.registry, step, "cross_check", why)]
        refused_escalation = state.get("escalation")
        if refused_escalation is not None:
            update["escalation"] = refused_escalation | {"outcome": why}
        update["deadline_passed"] = ctx.clock() >= deadline_at
        return update
    emit(runtime, CrossCheckStarted(provider=step["provider"]))
    prompt, claims = verdict_prompt(state, answer["text"])
    attempt, reply, _ = attempt_call(ctx.registry, ctx.clock, step, prompt, timeout_s, "cross_check")
    update["attempts"] = [attempt]
    update["budget_extra"] = cover.extra
    update["deadline_passed"] = ctx.clock() >= deadline_at
    if reply is None:
        return update
    registry = ctx.registry
    escalation: Escalation | None = state.get("escalation")
    theirs = candidate_from(reply, step, registry.vendor_of(step["provider"]))
    try:
        verdicts = parse_verdicts(reply.text, claims)
        theirs = theirs | {"text": verdicts.answer, "stated_confidence": verdicts.confidence}
        problem = problem_with(theirs, state, registry.provider_settings(step["provider"]).cites)
    except UnusableVerdict as exc:
        problem = f"check unusable: {exc}"
    if problem is not None:
        # An unusable check measures nothing: recorded as an invalid attempt, and the next checker gets the query.
        update["rejections"] = [{"attempt_index": len(state.get("attempts", [])), "reason": problem}]
        emit(runtime, Validated(provider=step["provider"], verdict="rejected", reason=problem))
        if escalation is not None:
            update["escalation"] = escalation | {"outcome": f"{step['provider']}'s check unusable: {problem}"}
        return update
    local = compare(answer["text"], theirs["text"])
    value = verdicts.agreement
    detail = f"{verdicts.detail}; local comparison {local.agreement:.2f} ({local.detail})"
    # Two kinds of evidence: the checker's verdicts, and what the two answers assert. A contradiction between the
    # answers that the verdicts missed still counts: the lower value is kept.
    if local.contradicted and local.agreement < value:
        value = local.agreement
        detail += "; the answers contradict each other, which the verdicts missed"
    update["cross_check"] = {
        "provider": step["provider"],
        "model": reply.model,
        "agreement": value,
        "method": METHOD,
        "text": theirs["text"],
        "verdicts": [
            {"claim": c, "verdict": v, "reason": r}
            for c, v, r in zip(verdicts.claims, verdicts.verdicts, verdicts.reasons, strict=True)
        ],
        "local_agreement": local.agreement,
        "detail": detail,
    }
    outcome = f"{step['provider']} agreement {value:.2f} ({detail})"
    if value < registry.settings.confidence.disagree_below:
        served, why = _adjudicate(answer, theirs, state, ctx.judge())
        outcome += f"; {why}"
        if served is theirs:
            update["answer"] = theirs
            if escalation is not None:
                escalation = escalation | {
                    "superseded": {"provider": answer["provider"], "model": answer["model"], "text": answer["text"]}
                }
    if escalation is not None:
        update["escalation"] = escalation | {"outcome": outcome}
    return update


def route_after_cross_check(state: AnalysisState) -> Literal["cross_check", "score"]:
    """Score once a check measured agreement; otherwise ask the next checker while there is one and time left."""
    if state.get("cross_check") is not None or state.get("deadline_passed"):
        return "score"
    return "cross_check" if state.get("cross_cursor", 0) < len(state.get("cross_chain", [])) else "score"
