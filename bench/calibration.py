"""Benchmark confidence against known ground truth: calibration before and after, and the cascade's value.

Fake providers (the real adapter classes over scripted chat models, instant) answer campaign questions whose true
facts the harness knows. Each provider is right with a set probability per task type, lowered by a per-question
difficulty that all providers share; its stated confidence (the local model: its token log-probabilities) is biased
in a set way - over- or under-confident, more or less aware of its own mistakes; its citations are better when it
is right. A wrong answer changes one claim of the right one: a number, a negation or a name, drawn from a few
shared misconceptions, so two wrong providers sometimes agree. Right answers are paraphrased in each provider's
style.

The run: ``--learn`` analyses go through the real graph with the confidence-gated cascade and a real SQLite
feedback store, their outcomes fed back in batches (historical accuracy and the calibration map learn from them).
Then ``--evaluate`` new questions are run three times against the frozen store - never cross-checking, the cascade,
always cross-checking - and the table shows, per policy, accuracy of the served answers, extra cost over
never-cross-check, escalation rate, and ECE / Brier / AUROC of the raw and the calibrated confidence.

``--profile default`` is the profile the code was tuned on; ``--profile random`` draws every profile parameter from
the seed (accuracies, biases, self-knowledge, noise, citation quality, task mix, misconception count, paraphrase
forms), so each seed is a world the code has not seen.

Prints one table and exits 0. Run from the repository root: PYTHONPATH=. python bench/calibration.py [--seed N]
[--profile default|random] [--learn N] [--evaluate N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.context import Context
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from graphs.state import AnalysisInput, Constraints
from graphs.stores.feedback import SqliteFeedback
from nodes.policy.agreement import compare
from nodes.policy.quality import auroc, brier, ece
from nodes.policy.query_classifier import QueryNeeds
from providers.base import ProviderAdapter
from providers.config import Settings, load_settings
from providers.local.adapter import LocalAdapter
from providers.registry import ProviderRegistry
from providers.testing import ScriptedChat, fake_adapter

PROVIDERS = ("gemini", "perplexity", "local")
# task -> (P(fresh facts) the classifier reports, complexity). Routing sends fresh tasks to perplexity, complex
# and moderate strategy to gemini, simple text jobs to the local model.
TASKS: dict[str, tuple[float, str]] = {
    "fact_lookup": (0.92, "moderate"),
    "briefing": (0.85, "moderate"),
    "opposition_research": (0.8, "complex"),
    "scenario": (0.04, "complex"),
    "crisis": (0.06, "complex"),
    "messaging": (0.05, "moderate"),
    "summary": (0.03, "simple"),
    "translation": (0.03, "moderate"),
    "extraction": (0.03, "simple"),
    "sentiment_tagging": (0.03, "simple"),
}
FRESH = ("fact_lookup", "briefing", "opposition_research")
STRATEGY = ("scenario", "crisis", "messaging")
TEXT_JOBS = ("summary", "translation", "extraction", "sentiment_tagging")
TOKENS = {"gemini": (1500, 1800), "perplexity": (1500, 800), "local": (600, 300)}  # in, out (thinking included)

WARDS = ("Malakpet", "Jubilee Hills", "Khairatabad", "Secunderabad", "Amberpet", "Goshamahal", "Kukatpally", "Uppal")
PARTIES = ("BRS", "Congress", "BJP", "AIMIM")
PEOPLE = ("Ravi Goud", "Lakshmi Prasanna", "Syed Farooq", "Meena Kumari", "Venkat Rao", "Anjali Reddy")
PLACES = ("Nizam College grounds", "LB Stadium", "Parade Grounds", "Exhibition Grounds")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ISSUES = ("water supply", "road repairs", "metro expansion", "housing", "drainage", "garbage collection")
GOOD_HOSTS = ("eci.gov.in", "ghmc.gov.in", "thehindu.com", "indianexpress.com", "telanganatoday.com", "reuters.com")
POOR_HOSTS = ("medium.com", "x.com", "facebook.com", "someblog.in", "youtube.com", "localnewsdaily.net")

# Claim kinds: surface forms of the true claim (paraphrases), and forms that state its negation. Slots: P party,
# W ward, N number, Y year, X person, L place, D day, H hour, I issue.
FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lead": (
        (
            "{P} leads in {W} with {N}% of the vote.",
            "In {W}, {P} is ahead, taking {N} per cent of votes.",
            "{P} is leading the race in {W} on {N}% support.",
            "Surveys put {P} in front in {W}, at {N} percent.",
        ),
        (
            "{P} does not lead in {W}, despite {N}% of the vote.",
            "In {W}, {P} is not ahead, taking {N} per cent of votes.",
        ),
    ),
    "turnout": (
        (
            "Turnout in {W} was {N}% in {Y}.",
            "{W} recorded a turnout of {N} percent in {Y}.",
            "In {Y}, {N}% of voters in {W} turned out.",
            "Voter turnout for {W} stood at {N} per cent in {Y}.",
        ),
        (),
    ),
    "issue": (
        (
            "{I} is the top concern for voters in {W}.",
            "Voters in {W} rank {I} as their biggest concern.",
            "The main concern among {W} voters is {I}.",
            "For voters in {W}, {I} tops the list of concerns.",
        ),
        (
            "{I} is not the top concern for voters in {W}.",
            "Voters in {W} do not rank {I} as their biggest concern.",
        ),
    ),
    "endorsement": (
        (
            "{X} has announced support for {P}.",
            "{P} has won the support of {X}, who announced it this week.",
            "{X} announced that she backs {P}, pledging support.",
            "Support for {P} was announced by {X}.",
        ),
        (
            "{X} has not announced support for {P}.",
            "{X} has never announced support for {P}.",
        ),
    ),
    "rally": (
        (
            "The {P} rally at {L} is scheduled for {H} pm on {D}.",
            "{P} will hold its rally at {L} on {D} at {H} pm.",
            "On {D}, {P} holds a rally at {L}, starting at {H} pm.",
            "The {L} rally of {P} is set for {D}, {H} pm.",
        ),
        (
            "The {P} rally at {L} is not scheduled for {D}; {H} pm was never confirmed.",
            "{P} will not hold its rally at {L} on {D}.",
        ),
    ),
    "booths": (
        (
            "{W} has {N} polling booths.",
            "There are {N} polling booths in {W}.",
            "Polling booths in {W} number {N}.",
            "The election office lists {N} polling booths for {W}.",
        ),
        (),
    ),
    "margin": (
        (
            "{P} won {W} by {N} votes in {Y}.",
            "In {Y}, {P} took {W} with a margin of {N} votes.",
            "The {Y} margin in {W} was {N} votes, in favour of {P}.",
            "{P} carried {W} in {Y} by {N} votes.",
        ),
        (),
    ),
}
FILLERS = (
    "Campaign teams should track this closely.",
    "This matters for booth-level planning.",
    "Field workers should verify it locally before acting.",
    "",
)


# --- the world -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderProfile:
    accuracy: dict[str, float]  # P(right) by task for a question of average difficulty
    bias: float  # added to the log-odds of the stated confidence: + over-confident, - under-confident
    slope: float  # how much of the true log-odds of being right the stated confidence carries
    insight: float  # how far the stated confidence moves with whether *this* answer is right (log-odds)
    noise: float  # sd of log-odds noise on the stated confidence
    states: float  # P(the answer ends with a confidence line)
    truncation: float  # P(the answer is cut at max tokens); a cut answer is right half as often
    good_sources: tuple[float, float] = (0.8, 0.4)  # P(a citation is official or news), when right / when wrong
    logprobs: bool = False  # certainty from token log-probabilities (the local model) instead of a stated line


@dataclass(frozen=True)
class Profile:
    name: str
    providers: dict[str, ProviderProfile]
    task_mix: dict[str, float]
    difficulty_sd: float  # sd of the per-question log-odds difficulty shared by all providers
    misconceptions: int  # distinct wrong versions of each question; wrong providers draw one
    forms: tuple[int, ...] = (0, 1, 2)  # which paraphrase forms answers use
    # The two links built in for the factors to find: the stated confidence carries a term whose sign is the
    # truth, and citations are more reputable and more recent when the answer is right. Without them (the no-link
    # variant) only the task-level accuracy, the difficulty and the claim comparison tell right from wrong.
    links: bool = True


def _acc(fresh: float, strategy: float, text: float) -> dict[str, float]:
    return {t: fresh if t in FRESH else strategy if t in STRATEGY else text for t in TASKS}


def default_profile() -> Profile:
    """Return the profile the code was developed against."""
    return Profile(
        name="default",
        providers={
            # Self-knowledge is weak, as in published studies of verbalised confidence: on its own the stated
            # confidence separates right from wrong answers with an AUROC of about 0.7.
            # Strong on strategy, weak on fresh facts (no search), over-confident.
            "gemini": ProviderProfile(
                _acc(0.45, 0.82, 0.92), bias=1.2, slope=0.6, insight=0.25, noise=0.9, states=0.95, truncation=0.04
            ),
            # Strong on fresh facts, roughly honest, cites sources.
            "perplexity": ProviderProfile(
                _acc(0.83, 0.62, 0.85), bias=0.2, slope=0.8, insight=0.25, noise=0.9, states=0.9, truncation=0.02
            ),
            # Fine on text jobs, poor beyond; under-confident log-probabilities.
            "local": ProviderProfile(
                _acc(0.2, 0.35, 0.76),
                bias=-0.6,
                slope=0.7,
                insight=0.25,
                noise=0.9,
                states=0.0,
                truncation=0.08,
                logprobs=True,
            ),
        },
        task_mix={t: 1 / len(TASKS) for t in TASKS},
        difficulty_sd=1.0,
        misconceptions=3,
    )


def random_profile(seed: int) -> Profile:
    """Draw a profile from the seed: every parameter varies, within ranges a real deployment could see."""
    rng = random.Random(f"profile:{seed}")
    providers: dict[str, ProviderProfile] = {}
    strong = {"gemini": STRATEGY, "perplexity": FRESH, "local": TEXT_JOBS}
    for name in PROVIDERS:
        accuracy = {t: rng.uniform(0.65, 0.93) if t in strong[name] else rng.uniform(0.15, 0.8) for t in TASKS}
        providers[name] = ProviderProfile(
            accuracy,
            bias=rng.uniform(-1.5, 1.8),
            slope=rng.uniform(0.3, 1.2),
            insight=rng.uniform(0.1, 0.5),
            noise=rng.uniform(0.5, 1.3),
            states=0.0 if name == "local" else rng.uniform(0.6, 1.0),
            truncation=rng.uniform(0.0, 0.12),
            good_sources=(rng.uniform(0.6, 0.95), rng.uniform(0.2, 0.6)),
            logprobs=name == "local",
        )
    weights = [rng.expovariate(1.0) for _ in TASKS]
    mix = {t: w / sum(weights) for t, w in zip(TASKS, weights, strict=True)}
    forms = tuple(sorted(rng.sample(range(4), 3)))
    return Profile(f"random (seed {seed})", providers, mix, rng.uniform(0.5, 1.5), rng.randint(2, 5), forms)


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


@dataclass
class Question:
    qid: int
    task: str
    difficulty: float
    claims: list[tuple[str, dict[str, str]]]  # (kind, slot values)
    # Each misconception: (index of the claim it changes, how: number / negation / name, the changed slots)
    misconceptions: list[tuple[int, str, dict[str, str]]]


@dataclass(frozen=True)
class Answer:
    correct: bool
    text: str
    finish_reason: str
    certainty: float  # stated confidence, or the geometric mean token probability
    citations: list[dict[str, str]] = field(default_factory=list)


class World:
    """The ground truth: each question's facts, and each provider's (deterministic) answer to it."""

    def __init__(self, profile: Profile, seed: int, today: dt.date) -> None:
        self.profile = profile
        self.seed = seed
        self.today = today

    def question(self, qid: int) -> Question:
        rng = random.Random(f"q:{self.seed}:{qid}")
        tasks, weights = zip(*self.profile.task_mix.items(), strict=True)
        task = rng.choices(tasks, weights)[0]
        kinds = rng.sample(sorted(FORMS), 3)
        claims = [(kind, self._slots(rng)) for kind in kinds]
        misconceptions = [self._misconception(rng, claims) for _ in range(self.profile.misconceptions)]
        return Question(qid, task, rng.gauss(0, self.profile.difficulty_sd), claims, misconceptions)

    @staticmethod
    def _slots(rng: random.Random) -> dict[str, str]:
        return {
            "P": rng.choice(PARTIES),
            "W": rng.choice(WARDS),
            "N": str(rng.randint(20, 400)),
            "Y": str(rng.choice((2018, 2019, 2023, 2024))),
            "X": rng.choice(PEOPLE),
            "L": rng.choice(PLACES),
            "D": rng.choice(DAYS),
            "H": str(rng.randint(3, 8)),
            "I": rng.choice(ISSUES),
        }

    @staticmethod
    def _misconception(rng: random.Random, claims: list[tuple[str, dict[str, str]]]) -> tuple[int, str, dict[str, str]]:
        index = rng.randrange(len(claims))
        kind, slots = claims[index]
        text = " ".join(FORMS[kind][0])
        ways = ["name"]
        if "{N}" in text or "{H}" in text:
            ways.append("number")
        if FORMS[kind][1]:
            ways.append("negation")
        way = rng.choice(ways)
        if way == "number":
            key = "N" if "{N}" in text else "H"
            old = int(slots[key])
            new = old + rng.choice((-1, 1)) * max(2, round(old * rng.uniform(0.15, 0.5)))
            return index, way, {key: str(max(1, new))}
        if way == "negation":
            return index, way, {}
        candidates = [
            k for k, pool in (("P", PARTIES), ("W", WARDS), ("X", PEOPLE), ("L", PLACES)) if f"{{{k}}}" in text
        ]
        key = rng.choice(candidates)
        pool = {"P": PARTIES, "W": WARDS, "X": PEOPLE, "L": PLACES}[key]
        return index, way, {key: rng.choice([v for v in pool if v != slots[key]])}

    def answer(self, provider: str, qid: int) -> Answer:
        q = self.question(qid)
        pp = self.profile.providers[provider]
        rng = random.Random(f"a:{self.seed}:{qid}:{provider}")
        p = _sigmoid(_logit(pp.accuracy[q.task]) - q.difficulty)
        truncated = rng.random() < pp.truncation
        correct = rng.random() < (p / 2 if truncated else p)
        claims = [(kind, dict(slots), False) for kind, slots in q.claims]
        if not correct:
            index, way, change = rng.choice(q.misconceptions)
            kind, slots, _ = claims[index]
            claims[index] = (kind, slots | change, way == "negation")
        style = rng.choice(self.profile.forms)
        order = list(range(len(claims)))
        rng.shuffle(order)
        sentences = []
        for i in order:
            kind, slots, negated = claims[i]
            forms = FORMS[kind][1] if negated else FORMS[kind][0]
            sentences.append(forms[(style + i) % len(forms)].format(**slots))
        if truncated:
            sentences = sentences[:-1]
        filler = rng.choice(FILLERS)
        text = " ".join([*sentences, filler]).strip()
        evidence = (pp.insight if correct else -pp.insight) if self.profile.links else 0.0
        certainty = _sigmoid(pp.slope * _logit(p) + pp.bias + evidence + rng.gauss(0, pp.noise))
        citations: list[dict[str, str]] = []
        if provider == "perplexity":
            good = pp.good_sources[0] if correct else pp.good_sources[1]
            if not self.profile.links:
                good = sum(pp.good_sources) / 2
            for n in range(rng.randint(1, 4)):
                host = rng.choice(GOOD_HOSTS if rng.random() < good else POOR_HOSTS)
                age = rng.randint(0, 20) if correct and self.profile.links else rng.randint(0, 150)
                date = (self.today - dt.timedelta(days=age)).isoformat() if rng.random() < 0.8 else ""
                citations.append({"url": f"https://{host}/q{qid}/{n}", "title": "", "date": date})
        finish = (
            {"gemini": "MAX_TOKENS", "perplexity": "incomplete", "local": "length"}[provider]
            if truncated
            else ({"gemini": "STOP", "perplexity": "completed", "local": "stop"}[provider])
        )
        return Answer(correct, text, finish, round(certainty, 2), citations)


# --- fake providers over the world ---------------------------------------------------------------------------

_QID = re.compile(r"\[q(\d+)\]")


_CLAIM_LINE = re.compile(r"^(\d+)\. (.+)$", re.MULTILINE)


def verdict_reply(own: str, request: str, confidence: float) -> str:
    """Answer a verdict request (nodes/policy/verdict.py) as a checker does: each claim against its own answer."""
    claims = _CLAIM_LINE.findall(request.split("claim by claim:", 1)[1])
    verdicts = []
    for number, claim in claims:
        c = compare(claim, own)
        verdict = "contradicts" if c.contradicted else "supports" if c.corroborated else "not_addressed"
        verdicts.append({"claim": int(number), "verdict": verdict})
    return json.dumps({"answer": own, "confidence": confidence, "verdicts": verdicts})


def _responder(world: World, provider: str) -> Callable[[list[BaseMessage]], AIMessage]:
    def respond(messages: list[BaseMessage]) -> AIMessage:
        text = " ".join(str(m.content) for m in messages)
        match = _QID.search(text)
        assert match, "every benchmark query carries its id"
        a = world.answer(provider, int(match.group(1)))
        pp = world.profile.providers[provider]
        meta: dict[str, Any] = {"finish_reason": a.finish_reason}
        body = a.text
        if "claim by claim:" in text:
            body = verdict_reply(a.text, text, a.certainty)
        if pp.logprobs:
            meta["mean_logprob"] = math.log(max(a.certainty, 1e-4))
        elif "claim by claim:" in text:
            pass
        elif random.Random(f"s:{world.seed}:{match.group(1)}:{provider}").random() < pp.states:
            body += f"\nConfidence: {a.certainty:.2f}"
        tokens = TOKENS[provider]
        return AIMessage(
            content=body,
            usage_metadata={"input_tokens": tokens[0], "output_tokens": tokens[1], "total_tokens": sum(tokens)},
            response_metadata=meta,
            additional_kwargs={"search_results": a.citations} if a.citations else {},
        )

    return respond


def _same(chat: ScriptedChat) -> ScriptedChat:
    return chat


def build_registry(world: World, settings: Settings) -> ProviderRegistry:
    """Wire the real adapter classes over scripted chat models that answer from the world."""
    adapters: dict[str, ProviderAdapter] = {}
    for name in PROVIDERS:
        ps = settings.providers[name]
        if ps.kind == "llamacpp":
            chat = ScriptedChat(script=[_responder(world, name)])
            adapters[name] = LocalAdapter(
                name=name,
                tier=ps.tier,
                vendor="local",
                model=ps.model,
                chat_factory=functools.partial(_same, chat),
                timeout_s=5.0,
            )
        else:
            vendor = {"gemini": "google", "perplexity": "perplexity"}[ps.kind]
            adapters[name] = fake_adapter(name, ps.tier, vendor, [_responder(world, name)], ps.model)
    return ProviderRegistry(settings, adapters=adapters)


def classifier_for(world: World) -> Callable[[str], QueryNeeds]:
    def classify(query: str) -> QueryNeeds:
        match = _QID.search(query)
        assert match
        task = world.question(int(match.group(1))).task
        fresh, complexity = TASKS[task]
        return QueryNeeds.confident(fresh, complexity, task)

    return classify


# --- runs ----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    correct: list[bool] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    calibrated: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    escalated: list[bool] = field(default_factory=list)


def query_text(world: World, qid: int) -> str:
    task = world.question(qid).task
    return f"[q{qid}] {task.replace('_', ' ')} question for the Hyderabad campaign: what are the facts?"


def run_policy(
    world: World, settings: Settings, qids: Sequence[int], policy: str, store: SqliteFeedback, *, learn: bool
) -> Run:
    """Run the questions through the real graph under one policy; feed outcomes back when learning."""
    confidence = settings.confidence
    if policy == "never":
        confidence = confidence.model_copy(update={"escalate_below": 0.0})
    policy_settings = settings.model_copy(update={"confidence": confidence})
    registry = build_registry(world, policy_settings)
    ctx = Context(registry=registry, classifier=classifier_for(world), feedback=store)
    orchestrator = Orchestrator(registry, InMemorySaver() if learn else None, feedback=store)
    graph = orchestrator.graph
    constraints: Constraints = {"cross_check": True} if policy == "always" else {}
    out = Run()
    pending: list[tuple[str, bool]] = []
    for qid in qids:
        thread_id = str(uuid.uuid4())
        graph_input: AnalysisInput = {"query": query_text(world, qid), "constraints": constraints}
        state = graph.invoke(
            graph_input,
            {"configurable": {"thread_id": thread_id}},
            context=ctx,
        )
        result = AnalysisResult.model_validate(state["result"])
        assert result.provider is not None, result.error
        correct = world.answer(result.provider, qid).correct
        out.correct.append(correct)
        out.raw.append(result.confidence.raw if result.confidence.raw is not None else 0.5)
        out.calibrated.append(result.confidence.value)
        out.cost.append(result.cost_usd)
        out.escalated.append(any(a.role == "cross_check" for a in result.attempts))
        if learn:
            pending.append((thread_id, correct))
            # Feedback arrives in batches, as it would from analysts; each batch refits once.
            if len(pending) >= 100:
                for tid, ok in pending:
                    orchestrator.record_feedback(tid, ok)
                pending.clear()
    for tid, ok in pending:
        orchestrator.record_feedback(tid, ok)
    return out


def _mean(values: Sequence[float] | Sequence[bool]) -> float:
    return sum(float(v) for v in values) / len(values) if values else math.nan


@dataclass
class Simulation:
    profile: Profile
    learning: Run
    runs: dict[str, Run]
    calibration: str


def simulate(profile: Profile, seed: int, settings: Settings, n_learn: int, n_evaluate: int) -> Simulation:
    """Learn from ``n_learn`` analyses through the cascade, then evaluate each policy on new ones."""
    from nodes.policy.calibration import learned_from

    with tempfile.TemporaryDirectory(prefix="calibration-bench-") as tmp:
        world = World(profile, seed, dt.date.fromtimestamp(time.time()))
        store = SqliteFeedback(Path(tmp) / "feedback.sqlite")
        learning = run_policy(world, settings, range(n_learn), "cascade", store, learn=True)
        evaluate = range(n_learn, n_learn + n_evaluate)
        runs = {
            policy: run_policy(world, settings, evaluate, policy, store, learn=False)
            for policy in ("never", "cascade", "always")
        }
        calibration = learned_from(store, settings.confidence).calibrator.describe()
        store.close()
    return Simulation(profile, learning, runs, calibration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", choices=["default", "random"], default="default")
    parser.add_argument("--learn", type=int, default=2000, help="analyses whose outcomes are fed back")
    parser.add_argument("--evaluate", type=int, default=2000, help="new analyses per policy, store frozen")
    parser.add_argument(
        "--escalate-below", type=float, default=None, help="the cascade's threshold (default: the configured one)"
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    profile = default_profile() if args.profile == "default" else random_profile(args.seed)
    with tempfile.TemporaryDirectory(prefix="calibration-bench-") as tmp:
        settings = load_settings({"STRATEGIST_DATA_DIR": tmp})
    if args.escalate_below is not None:
        cfg = settings.confidence.model_copy(update={"escalate_below": args.escalate_below})
        settings = settings.model_copy(update={"confidence": cfg})
    sims = [
        simulate(variant, args.seed, settings, args.learn, args.evaluate)
        for variant in (profile, replace(profile, name=f"{profile.name}, no links", links=False))
    ]
    print(
        f"calibration bench (synthetic world): profile {profile.name}, seed {args.seed}; learned from {args.learn} "
        f"analyses through the cascade, evaluated on {args.evaluate} new ones per policy; cascade threshold "
        f"{settings.confidence.escalate_below:.2f}. The no-link variant removes the two links built in for the "
        "factors to find (a truth-signed term in stated confidence; better citations when right)."
    )
    header = (
        f"{'world':<9} {'policy':<8} {'accuracy':>8} {'extra $/q':>10} {'extra %':>8} {'escal.':>7}  "
        f"{'ECE raw':>7} {'ECE cal':>7}  {'Brier raw':>9} {'Brier cal':>9}  {'AUROC raw':>9} {'AUROC cal':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for sim in sims:
        world_name = "linked" if sim.profile.links else "no links"
        base_cost = _mean(sim.runs["never"].cost)
        always_extra = _mean(sim.runs["always"].cost) - base_cost
        for policy, r in sim.runs.items():
            extra = _mean(r.cost) - base_cost
            share = 100 * extra / always_extra if always_extra > 0 else math.nan
            print(
                f"{world_name:<9} {policy:<8} {_mean(r.correct):>8.3f} {extra:>10.5f} {share:>7.1f}% "
                f"{_mean(r.escalated):>6.1%}  {ece(r.raw, r.correct):>7.3f} {ece(r.calibrated, r.correct):>7.3f}  "
                f"{brier(r.raw, r.correct):>9.4f} {brier(r.calibrated, r.correct):>9.4f}  "
                f"{auroc(r.raw, r.correct):>9.3f} {auroc(r.calibrated, r.correct):>9.3f}"
            )
    print()
    for sim in sims:
        world_name = "linked" if sim.profile.links else "no links"
        print(f"{world_name}: calibration {sim.calibration}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
