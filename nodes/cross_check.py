"""cross_check: a provider of another vendor answers the same query independently; agreement is measured.

How agreement is measured: nodes/policy/agreement.py. One checker call per node execution, so a completed
check is checkpointed and never paid for twice. When the answers disagree, the one the confidence score supports
better (nodes/policy/confidence.py, without the cross-check itself) is served, and the other is kept in the
escalation record.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graphs.context import Context, context_of
from graphs.state import AnalysisState, Candidate, CrossCheckUpdate, Escalation
from nodes.policy.agreement import METHOD, compare
from nodes.policy.answers import candidate_from, problem_with
from nodes.policy.attempts import attempt_call
from nodes.policy.checkers import checker_chain
from nodes.policy.confidence import Judge
from nodes.policy.prompt import build_prompt


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
    chain = state.get("cross_chain")
    if chain is None:
        chain, _notes = checker_chain(answer, state, ctx.registry)
    cursor = state.get("cross_cursor", 0)
    deadline_at = ctx.deadline_at or state["deadline_at"]
    update: CrossCheckUpdate = {"cross_chain": chain, "cross_cursor": cursor + 1}
    if cursor >= len(chain):
        update["deadline_passed"] = ctx.clock() >= deadline_at
        return update
    step = chain[cursor]
    runtime.stream_writer({"event": "cross_check_start", "provider": step["provider"]})
    timeout_s = deadline_at - ctx.clock()
    attempt, reply, _ = attempt_call(ctx.registry, ctx.clock, step, build_prompt(state), timeout_s, "cross_check")
    update["attempts"] = [attempt]
    update["deadline_passed"] = ctx.clock() >= deadline_at
    if reply is None:
        return update
    registry = ctx.registry
    theirs = candidate_from(reply, step, registry.vendor_of(step["provider"]))
    escalation: Escalation | None = state.get("escalation")
    problem = problem_with(theirs, state, registry.provider_settings(step["provider"]).cites)
    if problem is not None:
        # An unusable check measures nothing: the next checker, if any, gets the query.
        if escalation is not None:
            update["escalation"] = escalation | {"outcome": f"{step['provider']}'s check unusable: {problem}"}
        return update
    comparison = compare(answer["text"], theirs["text"])
    update["cross_check"] = {
        "provider": step["provider"],
        "model": reply.model,
        "agreement": comparison.agreement,
        "method": METHOD,
        "text": theirs["text"],
    }
    outcome = f"{step['provider']} agreement {comparison.agreement:.2f} ({comparison.detail})"
    if comparison.agreement < registry.settings.confidence.disagree_below:
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
