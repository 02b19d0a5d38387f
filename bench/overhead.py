"""What the orchestrator costs on top of a provider call: the project against a bare LangGraph graph of the same
shape and against the direct call, with and without a checkpointer, on a local fake with zero latency.

Every variant calls the same FakeGemini server through the real ``ChatGoogleGenerativeAI`` client, so what is
left after subtracting the direct call is orchestration: classification, routing, the attempt machinery, the
checkpoint writes, confidence and the result models. Variants run interleaved in rounds (these machines are
noisy: a ratio from one run is worth more than two absolute numbers from two runs).

- ``direct``: ``chat.invoke(messages)``; the floor.
- ``abortable``: the same call as the project makes it, through the adapter (async on the provider loop, which an
  abandoned call needs to be aborted: issue 11); the floor of any design that can abort a call.
- ``bare/<saver>``: a LangGraph graph with the analysis graph's six nodes and conditional edges, where only the
  call node does anything (the abortable call), compiled with the same saver and durability.
- ``project/<saver>``: ``Orchestrator.analyze`` of a quick request (one call, no cross-check).
- ``nodes, no graph``: the project's own node and router functions run in order by a plain loop, with no LangGraph
  at all (``without_graph``): the project's policy and call machinery alone. ``project/none`` minus this is what
  the graph costs; this minus ``abortable`` is what the policy costs. It is the floor of any design that keeps the
  policy, whatever runs it.
- ``litellm``: with ``--litellm PYTHON`` (a Python with litellm installed, in a separate environment: it is not a
  dependency of this project), LiteLLM's ``Router.completion`` against the same server, and its own direct call,
  a round of each after each of our rounds. Two Routers: one deployment and nothing else (``litellm router``), and
  one asked for what it can do of the project's job (``litellm router, failover``: three deployments to fall back
  on, two retries, routing by observed latency, cooldowns, a timeout).

Then a profile of the project's own code (cProfile over every thread, top functions by own time).

    PYTHONPATH=. .venv/bin/python bench/overhead.py [--rounds 6] [--calls 100] [--litellm /tmp/litellm-venv/bin/python]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import operator
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.channels.binop import BinaryOperatorAggregate
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from typing_extensions import TypedDict

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphs.analysis import build_analysis_graph
from graphs.context import Context
from graphs.request import parse_request
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from nodes.policy.query_classifier import default_classifier
from providers.base import Prompt
from providers.config import load_settings
from providers.registry import ProviderRegistry
from providers.testing.servers import FakeGemini, Reply

QUERY = "Design a 12-week mobilisation plan for Jubilee Hills"
ANSWER = "Weeks 1-2: map every booth and name a captain. Weeks 3-6: door-to-door on water supply.\nConfidence: 0.9"
MESSAGES = [SystemMessage(content="Answer as a campaign strategy analyst."), HumanMessage(content=QUERY)]
SaverFactory = Callable[[], BaseCheckpointSaver[str] | None]


class BareState(TypedDict, total=False):
    query: str
    answer: str
    steps: Annotated[list[str], operator.add]


def bare_graph(call: Callable[[], str]) -> StateGraph[BareState, None, BareState, BareState]:
    """The analysis graph's shape with nothing in it but the provider call."""

    def step(name: str) -> Any:  # a node function (LangGraph's node protocol names its parameter "state")
        def node(state: BareState) -> BareState:
            return {"steps": [name]}

        return node

    def call_model(state: BareState) -> BareState:
        return {"answer": call(), "steps": ["call_model"]}

    def after_call(state: BareState) -> Literal["validate", "call_model", "score"]:
        return "validate" if state.get("answer") else "score"

    def after_validate(state: BareState) -> Literal["cross_check", "call_model", "score"]:
        return "score"

    def after_cross_check(state: BareState) -> Literal["cross_check", "score"]:
        return "score"

    builder = StateGraph(BareState)
    for name in ("classify", "route", "validate", "cross_check", "score"):
        builder.add_node(name, step(name))
    builder.add_node("call_model", call_model)
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "route")
    builder.add_edge("route", "call_model")
    builder.add_conditional_edges("call_model", after_call)
    builder.add_conditional_edges("validate", after_validate)
    builder.add_conditional_edges("cross_check", after_cross_check)
    builder.add_edge("score", END)
    return builder


def _function_of(runnable: object) -> Callable[..., Any]:
    """The function LangGraph wrapped as a node or a router (its RunnableCallable's ``func``)."""
    function: object = getattr(runnable, "func", None)
    if not callable(function):
        raise TypeError(f"not a wrapped function: {runnable!r}")
    return function


def without_graph(
    builder: StateGraph[Any, Any, Any, Any], context: Callable[[], Any]
) -> Callable[[dict[str, Any]], AnalysisResult]:
    """Return a runner of ``builder``'s nodes and routers by a plain loop, with no LangGraph runtime.

    For measuring only. It follows the graph's own wiring (its edges, its routers, its channels' reducers), so it
    does not drift from the graph, and handles what a quick analysis goes through: one successor per step. No
    checkpoints, streams, interrupts nor node retries; ``get_config`` sees the thread id, as in a run.
    """
    reducers = {k: ch for k, ch in builder.channels.items() if isinstance(ch, BinaryOperatorAggregate)}
    after = {start: end for start, end in builder.edges}
    routers = {source: _function_of(next(iter(specs.values())).path) for source, specs in builder.branches.items()}
    functions = {name: _function_of(spec.runnable) for name, spec in builder.nodes.items()}

    def run(graph_input: dict[str, Any]) -> AnalysisResult:
        state: dict[str, Any] = {k: ch.copy().get() for k, ch in reducers.items()} | graph_input
        runtime = Runtime(context=context(), store=None, stream_writer=lambda _: None)
        token = var_child_runnable_config.set({"configurable": {"thread_id": uuid.uuid4().hex}})
        try:
            node = after[START]
            while node != END:
                update = functions[node](state, runtime)
                state = state | {
                    k: reducers[k].operator(state[k], v) if k in reducers else v for k, v in update.items()
                }
                node = routers[node](state) if node in routers else after[node]
        finally:
            var_child_runnable_config.reset(token)
        return AnalysisResult.model_validate(state["result"])

    return run


@contextlib.contextmanager
def savers(directory: Path) -> Iterator[dict[str, SaverFactory]]:
    """The savers each variant is compiled with: none, in memory, SQLite on disk (WAL, as the stores open it)."""
    conns: list[sqlite3.Connection] = []

    def sqlite_saver() -> BaseCheckpointSaver[str]:
        conn = sqlite3.connect(directory / f"{uuid.uuid4().hex}.sqlite", check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conns.append(conn)
        return SqliteSaver(conn)

    try:
        yield {"none": lambda: None, "memory": InMemorySaver, "sqlite": sqlite_saver}
    finally:
        for conn in conns:
            conn.close()


def registry_for(gemini: FakeGemini) -> ProviderRegistry:
    settings = load_settings(
        {
            "GEMINI_API_KEY": "bench-key",
            "GEMINI_BASE_URL": gemini.base_url,
            "LOCAL_MODEL_PATH": "/nonexistent/model.gguf",
            "STRATEGIST_DATA_DIR": "/nonexistent",
        }
    )
    return ProviderRegistry(settings)


def abortable_call(registry: ProviderRegistry) -> Callable[[], str]:
    """Gemini's call as the project makes it: async on the provider loop, so an abandoned call can be aborted."""
    adapter = registry.adapter("gemini")
    prompt = Prompt(system=str(MESSAGES[0].content), user=QUERY)
    return lambda: adapter.invoke(prompt, timeout_s=30, abort=threading.Event()).text


def timed(fn: Callable[[], object], calls: int, cpu: list[float] | None = None) -> list[float]:
    """Return each call's wall time (ms); add the process's CPU time per call (ms, every thread) to ``cpu``.

    CPU time is the column to read on a loaded machine: wall time then counts the waits for a core as well.
    """
    samples = []
    cpu_started = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    if cpu is not None:
        cpu.append((time.process_time() - cpu_started) * 1000 / calls)
    return samples


class LiteLLMRounds:
    """LiteLLM's Router and its direct completion, timed in another interpreter against the same fake server, one
    round at a time, so that its rounds interleave with ours (a block of its own after ours measured a different
    machine: the Router ratio moved from 1.0 to 1.3 between two runs). Each round gives wall times per call and CPU
    time per call (its process's CPU: the fake server runs in ours).

    LiteLLM appends ``/models/{model}:generateContent`` to ``api_base``, so the API version is part of it.
    """

    NAMES = ("litellm direct", "litellm router", "litellm router, failover")

    def __init__(self, python: str, base_url: str, calls: int) -> None:
        script = textwrap.dedent(
            f"""
            import json, sys, time, litellm
            from litellm import Router
            litellm.suppress_debug_info = True
            kwargs = dict(api_key="bench-key", api_base={base_url + "/v1beta"!r}, num_retries=0)
            deployment = {{"model": "gemini/gemini-3.8-flash", **kwargs}}
            router = Router(model_list=[{{"model_name": "premium", "litellm_params": deployment}}], num_retries=0)
            # What the project does that a Router can be asked to: a chain of three deployments to fall back on,
            # retries, routing by observed latency, cooldowns, a timeout. Every deployment is the same fake.
            chain = [{{"model_name": name, "litellm_params": {{**deployment, "timeout": 30}}}}
                     for name in ("premium", "realtime", "local")]
            failover = Router(model_list=chain, num_retries=2, fallbacks=[{{"premium": ["realtime", "local"]}}],
                              routing_strategy="latency-based-routing", allowed_fails=3, cooldown_time=30, timeout=30)
            messages = [{{"role": "system", "content": "Answer as a campaign strategy analyst."}},
                        {{"role": "user", "content": {QUERY!r}}}]
            def direct(): litellm.completion(model="gemini/gemini-3.8-flash", messages=messages, **kwargs)
            def routed(): router.completion(model="premium", messages=messages)
            def failing_over(): failover.completion(model="premium", messages=messages)
            for _ in range(20): direct(); routed(); failing_over()
            print("ready", flush=True)
            for _ in sys.stdin:
                out, cpu = {{}}, {{}}
                for name, fn in (("litellm direct", direct), ("litellm router", routed),
                                 ("litellm router, failover", failing_over)):
                    c, out[name] = time.process_time(), []
                    for _ in range({calls}):
                        t = time.perf_counter(); fn(); out[name].append((time.perf_counter() - t) * 1000)
                    cpu[name] = (time.process_time() - c) * 1000 / {calls}
                print(json.dumps([out, cpu]), flush=True)
            """
        )
        self._process = subprocess.Popen(
            [python, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._line()  # "ready": imported and warmed up

    def _line(self) -> str:
        assert self._process.stdout is not None and self._process.stderr is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"litellm run failed: {self._process.stderr.read().strip().splitlines()[-1:]}")
        return line

    def round(self, samples: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
        """Run one round; add its wall times and CPU times to ``samples`` and ``cpu``."""
        assert self._process.stdin is not None
        self._process.stdin.write("go\n")
        self._process.stdin.flush()
        out, their_cpu = json.loads(self._line())
        for name in self.NAMES:
            samples.setdefault(name, []).extend(out[name])
            cpu.setdefault(name, []).append(their_cpu[name])

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=60)


class ThreadProfiles:
    """cProfile in every thread the graph and the attempts run in (LangGraph's executor, our call threads)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        if getattr(self._local, "profile", None) is None:
            profile = cProfile.Profile()
            self._local.profile = profile
            with self._lock:
                self.profiles.append(profile)
            profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._hook)
        main = cProfile.Profile()
        self._local.profile = main
        self.profiles.append(main)
        main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)
        for profile in self.profiles:
            profile.disable()

    def top(self, n: int, per: int) -> str:
        stats = pstats.Stats(self.profiles[0], stream=io.StringIO())
        for profile in self.profiles[1:]:
            with contextlib.suppress(TypeError):  # a thread whose profile never collected anything
                stats.add(profile)
        ours = ("/graphs/", "/nodes/", "/providers/", "/strategist/")
        rows = [
            (tottime, calls, f"{Path(file).parent.name}/{Path(file).name}:{line}({name})")
            for (file, line, name), (_, calls, tottime, _, _) in stats.stats.items()  # type: ignore[attr-defined]
            if any(part in file for part in ours) and "/site-packages/" not in file
        ]
        rows.sort(reverse=True)
        lines = [f"{'own ms/analysis':>16} {'calls/analysis':>15}  function"]
        lines += [f"{t * 1000 / per:16.3f} {c / per:15.1f}  {where}" for t, c, where in rows[:n]]
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--litellm", help="a Python interpreter with litellm installed (a separate environment)")
    parser.add_argument("--profile", type=int, default=200, help="analyses to profile (0: no profile)")
    args = parser.parse_args()

    default_classifier()  # loaded once, as in a running service
    with FakeGemini() as gemini, tempfile.TemporaryDirectory() as tmp, savers(Path(tmp)) as saver_of:
        gemini.behaviour = Reply(text=ANSWER, input_tokens=120, output_tokens=40)
        registry = registry_for(gemini)
        chat = registry.adapter("gemini").chat_model()
        request = parse_request({"query": QUERY, "depth": "quick"})
        abortable = abortable_call(registry)
        nodes_only = without_graph(build_analysis_graph(), lambda: Context(registry=registry))
        graph_input = dict(request.graph_input())
        variants: dict[str, Callable[[], object]] = {
            "direct": lambda: chat.invoke(MESSAGES),
            "abortable": abortable,
            "nodes, no graph": lambda: nodes_only(graph_input),
        }
        for name, make in saver_of.items():
            saver = make()
            graph = bare_graph(abortable).compile(checkpointer=saver)
            durability: Literal["sync"] | None = "sync" if saver is not None else None

            def bare(graph: Any = graph, durability: Any = durability) -> object:
                config = {"configurable": {"thread_id": uuid.uuid4().hex}}
                return graph.invoke({"query": QUERY}, config, durability=durability)

            orchestrator = Orchestrator(registry, make())
            variants[f"bare/{name}"] = bare

            def project(o: Orchestrator = orchestrator) -> object:
                return o.analyze(request)

            variants[f"project/{name}"] = project
        # The loop must do what the graph does, or its row measures something else.
        loop, graph_run = nodes_only(graph_input), Orchestrator(registry, None).analyze(request)
        same = ("answer", "provider", "tier", "cost_usd", "confidence")
        if [getattr(loop, k) for k in same] != [getattr(graph_run, k) for k in same]:
            raise SystemExit("nodes, no graph: its result differs from the graph's; fix without_graph first")
        for fn in variants.values():  # warm up: imports, connection pools, first checkpoints
            timed(fn, 20)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        theirs = LiteLLMRounds(args.litellm, gemini.base_url, args.calls) if args.litellm else None
        try:
            for _ in range(args.rounds):
                for name, fn in variants.items():
                    samples[name] += timed(fn, args.calls, cpu[name])
                if theirs is not None:
                    theirs.round(samples, cpu)
        finally:
            if theirs is not None:
                theirs.close()

        p50 = {name: statistics.median(values) for name, values in samples.items()}
        p95 = {name: statistics.quantiles(values, n=20)[18] for name, values in samples.items()}
        cpu_ms = {name: statistics.median(values) for name, values in cpu.items()}
        direct = p50["direct"]
        print(
            f"overhead per analysis, zero-latency fake Gemini, {args.rounds} rounds x {args.calls} calls, interleaved"
        )
        print(
            f"{'variant':<26}{'p50 ms':>9}{'p95 ms':>9}{'CPU ms':>9}{'over direct ms':>16}"
            f"{'x bare (p50)':>14}{'x bare (CPU)':>14}"
        )
        for name in samples:
            floor = p50["litellm direct"] if name.startswith("litellm") else direct
            same_saver = f"bare/{name.partition('/')[2]}"
            versus, versus_cpu = "-", "-"
            if name.startswith("project/"):
                versus = f"{p50[name] / p50[same_saver]:.2f}"
                versus_cpu = f"{cpu_ms[name] / cpu_ms[same_saver]:.2f}"
            print(
                f"{name:<26}{p50[name]:>9.2f}{p95[name]:>9.2f}{cpu_ms[name]:>9.2f}{p50[name] - floor:>16.2f}"
                f"{versus:>14}{versus_cpu:>14}"
            )
        if args.litellm:
            # The measure: per-call latency p50 of each, through the same fake server. Beside it, each one's
            # overhead over its own direct call (LiteLLM's direct call is slower than the Google client's).
            for router_name in ("litellm router", "litellm router, failover"):
                router = p50[router_name]
                router_over = router - p50["litellm direct"]
                for saver_name in saver_of:
                    ours = p50[f"project/{saver_name}"]
                    print(
                        f"project/{saver_name} against {router_name}, p50 per call: {ours:.2f} / {router:.2f} ms = "
                        f"{ours / router:.2f}; over each one's direct call: {ours - direct:.2f} / {router_over:.2f} ms"
                    )
                # Without any graph runtime at all, the same policy: what no choice of runner could go below.
                floor = p50["nodes, no graph"]
                print(
                    f"nodes, no graph against {router_name}, p50 per call: {floor:.2f} / {router:.2f} ms = "
                    f"{floor / router:.2f}"
                )
        else:
            print("LiteLLM not measured (pass --litellm PYTHON with litellm installed in a separate environment)")

        print(
            f"where project/none's {p50['project/none'] - direct:.2f} ms over the direct call go (p50 differences): "
            f"the abortable call {p50['abortable'] - direct:.2f}, the policy (nodes, no graph - abortable) "
            f"{p50['nodes, no graph'] - p50['abortable']:.2f}, the graph runtime (project/none - nodes, no graph) "
            f"{p50['project/none'] - p50['nodes, no graph']:.2f}"
        )

        if args.profile:
            orchestrator = Orchestrator(registry, InMemorySaver())
            with ThreadProfiles() as profiles:
                for _ in range(args.profile):
                    orchestrator.analyze(request)
            print(f"\nprofile: project/memory, {args.profile} analyses, the project's own code by own time (cProfile)")
            print(profiles.top(25, args.profile))


if __name__ == "__main__":
    main()
