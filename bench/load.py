"""Scale-out under load, with real processes: Redis, `strategist serve` (gunicorn), 1, 2 and 4 `strategist worker`
processes, fake Gemini (800 ms) and Perplexity (1.5 s) servers and a fast fake local tier (an OpenAI-compatible
server, 20 ms), and a production mix of quick analyses (40% simple -> local, 30% fresh facts -> realtime,
30% complex -> premium). Workers warm up on jobs submitted over HTTP (``POST /jobs`` to gunicorn); the measured
jobs of the scaling runs (``--jobs`` per worker) go into the queue in one burst, so the workers set the pace; the
kill run submits its jobs over HTTP.

Prints, per worker count: throughput, end-to-end p50/p95/p99 (submission to stored result), queue wait p50/p95,
the workers' CPU seconds per job, and the scaling efficiency against one worker. Then SIGKILLs one of two workers
(main process and pool together, as when its machine dies) in the middle of ``--kill-jobs`` jobs and reports how
many completed, the provider requests paid twice for calls that had completed (counted at the fake servers, per
job), and the extra latency of the redelivered jobs (they come back after the broker's visibility timeout, here
45 s with deadlines cut to fit). Last, orchestration CPU per analysis in one process: the project's Orchestrator
against a bare LangGraph graph of the same shape and the same Redis saver, both calling a zero-latency fake Gemini
that runs in another process (so its CPU is not counted). Hedging is off (with fixed fake latencies a hedge only
adds calls).

    PYTHONPATH=. .venv/bin/python bench/load.py [--jobs 40] [--workers 1,2,4] [--concurrency 4]
        [--kill-jobs 200] [--cpu-runs 40]

Every worker uses the threads pool (``--concurrency`` jobs at once per worker process). The numbers depend on the
machine and its load: say both next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes.policy.local_adequacy import ARTIFACT_FORMAT
from nodes.policy.query_classifier import TASK_LABELS
from providers.config import load_settings
from providers.testing import redis_servers
from providers.testing.openai_server import Answer, FakeOpenAIServer
from providers.testing.servers import Action, FakeGemini, FakePerplexity, RecordedRequest, Reply, Source
from worker.app import create_celery
from worker.jobs import Job, Jobs
from worker.testing import Process, Processes, http_ready, scrubbed_env, wait_until

ROOT = Path(__file__).resolve().parents[1]
API = "/api/v1/strategist"
PREMIUM_S, REALTIME_S, LOCAL_S = 0.8, 1.5, 0.02
MIX = (
    (0.4, "Fix the grammar: the voters is angry."),
    (0.3, "Is the rally at Nizam College grounds still on today, and who is speaking right now?"),
    (0.3, "Design a 12-week mobilisation plan for Jubilee Hills with budget trade-offs and risks"),
)
TAG = re.compile(r"\(job (\d+)\)")
WAIT_S = 600.0


# ------------------------------------------------------------------------------------------------ fakes


@dataclass
class Ledger:
    """Provider requests per job as the fake servers saw them: when each came in and when it was answered."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: dict[tuple[str, int], list[tuple[float, float | None]]] = field(default_factory=lambda: defaultdict(list))

    def behaviour(self, provider: str, delay_s: float, reply: Reply) -> Any:
        def act(index: int, request: RecordedRequest) -> Action:
            match = TAG.search(json.dumps(request.body))
            job = int(match.group(1)) if match else -1
            received = time.time()
            with self.lock:
                self.calls[(provider, job)].append((received, None))
                slot = len(self.calls[(provider, job)]) - 1
            time.sleep(delay_s)
            with self.lock:
                self.calls[(provider, job)][slot] = (received, time.time())
            return reply

        return act


@contextmanager
def fakes(ledger: Ledger) -> Iterator[tuple[FakeGemini, FakePerplexity, FakeOpenAIServer]]:
    with FakeGemini() as gemini, FakePerplexity() as perplexity, FakeOpenAIServer() as local:
        gemini.behaviour = ledger.behaviour(
            "gemini", PREMIUM_S, Reply(text="Weeks 1-2: map every booth and name captains.\nConfidence: 0.8")
        )
        perplexity.behaviour = ledger.behaviour(
            "perplexity",
            REALTIME_S,
            Reply(
                text="The rally is on for 5 pm; police granted permission on Tuesday.\nConfidence: 0.8",
                citations=[Source("https://www.thehindu.com/news/rally", "Rally on", "2026-11-30")],
            ),
        )
        local.script([Answer(text="Turnout rose in Malakpet.", delay_s=LOCAL_S)] * 100_000)
        yield gemini, perplexity, local


def capable_local(path: Path) -> Path:
    """Write a measurement of the fake local tier that did every labelled light job right (50 a task)."""
    by_task = {task: {"n": 50, "correct": 50} for task in TASK_LABELS}
    path.write_text(json.dumps({"format": ARTIFACT_FORMAT, "model": "fake-local", "by_task": by_task}), "utf-8")
    return path


# ------------------------------------------------------------------------------------------------ runs


def query_of(n: int) -> str:
    """Return job n's query: the mix by position (deterministic), tagged so the fakes can count per job."""
    point, total = (n * 0.618034) % 1.0, 0.0
    for share, text in MIX:
        total += share
        if point < total:
            return f"{text} (job {n})"
    return f"{MIX[-1][1]} (job {n})"


def cpu_seconds(process: Process) -> float:
    """Return the CPU seconds (user + system) of a process and its live children, from /proc."""
    total = 0.0
    for pid in [process.pid, *process.children()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Outcome:
    workers: int
    jobs: list[Job]
    makespan_s: float
    cpu_per_job_s: float
    kill_at: float | None = None

    @property
    def throughput(self) -> float:
        return len(self.jobs) / self.makespan_s

    def e2e(self, redelivered: bool | None = None) -> list[float]:
        return [
            j.finished_at - j.submitted_at
            for j in self.jobs
            if j.finished_at is not None and (redelivered is None or (len(j.deliveries) > 1) == redelivered)
        ]

    def waits(self) -> list[float]:
        return [w for j in self.jobs if (w := j.queue_wait_s) is not None]


class Cluster:
    """Redis, the fakes and gunicorn for the whole benchmark; workers per run, each run on its own Redis DB."""

    def __init__(self, redis: redis_servers.RedisServer, base_env: dict[str, str], log_dir: Path) -> None:
        self.redis, self.base_env, self.log_dir = redis, base_env, log_dir

    def env(self, db: int, **extra: str) -> dict[str, str]:
        return {**self.base_env, "REDIS_URL": f"{self.redis.url}/{db}", **extra}

    def run(
        self, db: int, workers: int, concurrency: int, jobs: int, kill_after: int | None = None, **extra: str
    ) -> Outcome:
        env = self.env(db, **extra)
        client = Jobs(create_celery(load_settings(env), env))
        procs = Processes(env, self.log_dir / f"db{db}")
        try:
            port = redis_servers.free_port()
            web = procs.server(port, workers=1, threads=16)
            base = f"http://127.0.0.1:{port}"
            started = [procs.worker(f"w{i}-db{db}", concurrency, "threads") for i in range(workers)]
            wait_until(lambda: http_ready(base + API + "/alive"), WAIT_S, "gunicorn", [web])
            # Warm-up: every worker thread imports its SDKs and builds its clients before the clock starts.
            warm = [submit(base, f"warm-{db}-{i}", query_of(10_000 + i)) for i in range(workers * concurrency * 2)]
            settle(client, warm, procs)
            cpu_before = sum(cpu_seconds(p) for p in started)
            ids = [f"job-{db}-{n}" for n in range(jobs)]
            first = time.time()
            for n, job_id in enumerate(ids):
                if kill_after is None:
                    # A burst straight into the queue: the workers, not one HTTP client, set the pace.
                    client.submit("analysis", {"request": {"query": query_of(n), "depth": "quick"}}, job_id=job_id)
                else:
                    submit(base, job_id, query_of(n))
            kill_at = None
            if kill_after is not None:
                wait_until(lambda: done_count(client, ids) >= kill_after, WAIT_S, "jobs before the kill", started)
                victim = started[-1]
                kill_at = time.time()
                victim.kill_all()
                started = started[:-1]
            finished = settle(client, ids, procs)
            last = max(j.finished_at or first for j in finished)
            cpu = sum(cpu_seconds(p) for p in started) - cpu_before
            return Outcome(workers, finished, last - first, cpu / jobs if kill_after is None else float("nan"), kill_at)
        finally:
            procs.stop_all()
            client.close()


def submit(base: str, job_id: str, query: str) -> str:
    answer = httpx.post(base + API + "/jobs", json={"query": query, "depth": "quick", "thread_id": job_id}, timeout=60)
    if answer.status_code != 202:
        raise RuntimeError(f"submit {job_id}: {answer.status_code} {answer.text}")
    return job_id


def done_count(client: Jobs, ids: list[str]) -> int:
    return sum(1 for job_id in ids if (job := client.get(job_id)) is not None and job.state in ("done", "failed"))


def settle(client: Jobs, ids: list[str], procs: Processes) -> list[Job]:
    found: dict[str, Job] = {}

    def all_done() -> bool:
        for job_id in ids:
            if job_id not in found:
                job = client.get(job_id)
                if job is not None and job.state in ("done", "failed"):
                    found[job_id] = job
        return len(found) == len(ids)

    wait_until(all_done, WAIT_S, f"{len(ids)} jobs", [p for p in procs.started if p.popen.poll() is None], 0.25)
    return [found[job_id] for job_id in ids]


def double_paid(outcome: Outcome, ledger: Ledger, db: int) -> tuple[int, int]:
    """Return (requests paid twice for a call that had completed, requests repeated after being cut by the kill)."""
    attempts: Counter[tuple[str, int]] = Counter()
    for job in outcome.jobs:
        n = int(job.job_id.rsplit("-", 1)[1])
        for attempt in (job.result or {}).get("attempts", []):
            attempts[(attempt["provider"], n)] += 1
    twice = cut = 0
    with ledger.lock:
        for (provider, n), calls in ledger.calls.items():
            if provider == "local" or not (0 <= n < len(outcome.jobs)):
                continue
            mine = [c for c in calls if c[0] >= outcome.jobs[0].submitted_at]
            extra = len(mine) - attempts[(provider, n)]
            if extra <= 0:
                continue
            in_flight = sum(
                1
                for received, answered in mine
                if outcome.kill_at and received < outcome.kill_at and (answered is None or answered > outcome.kill_at)
            )
            cut += min(extra, in_flight)
            twice += max(0, extra - in_flight)
    return twice, cut


# ------------------------------------------------------------------------------------------------ CPU


CPU_CHILD = r"""
import sys, time, uuid
from bench.overhead import abortable_call, bare_graph, registry_for
from graphs.request import parse_request
from graphs.service import Orchestrator
from graphs.stores import open_stores
from providers.config import load_settings

gemini_url, redis_url, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

class _Url:
    base_url = gemini_url

settings = load_settings({"REDIS_URL": redis_url, "STRATEGIST_DATA_DIR": "/nonexistent",
                          "LOCAL_MODEL_PATH": "/nonexistent/model.gguf"})
query = "Design a 12-week mobilisation plan for Jubilee Hills with budget trade-offs and risks"
with open_stores(settings) as stores:
    registry = registry_for(_Url())
    # The bare graph makes the call the project makes (the abortable one), so the ratio is orchestration only.
    bare = bare_graph(abortable_call(registry)).compile(checkpointer=stores.checkpointer)
    project = Orchestrator(registry, stores.checkpointer)
    request = parse_request({"query": query, "depth": "quick"})

    def run_bare():
        bare.invoke({"query": query}, {"configurable": {"thread_id": uuid.uuid4().hex}}, durability="sync")

    def run_project():
        project.analyze(request, thread_id=uuid.uuid4().hex)

    for fn in (run_bare, run_project):
        fn(); fn()  # warm: imports, clients, classifier
    totals = {"bare": 0.0, "project": 0.0}
    for _ in range(3):  # interleaved rounds: the machine's load drifts
        for name, fn in (("bare", run_bare), ("project", run_project)):
            start = time.process_time()
            for _ in range(runs // 3):
                fn()
            totals[name] += time.process_time() - start
    done = 3 * (runs // 3)
    print(f"{totals['bare'] / done * 1000:.2f} {totals['project'] / done * 1000:.2f}")
"""


def orchestration_cpu(redis_url: str, runs: int) -> tuple[float, float]:
    """Return CPU ms per analysis: (bare LangGraph graph, the project), both on the Redis saver, in one process."""
    with FakeGemini() as gemini:
        gemini.behaviour = Reply(text="Weeks 1-2: map every booth and name captains.\nConfidence: 0.8")
        done = subprocess.run(
            [sys.executable, "-c", CPU_CHILD, gemini.base_url, redis_url, str(runs)],
            cwd=ROOT,
            env={**scrubbed_env({}), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    bare, project = (float(x) for x in done.stdout.split())
    return bare, project


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40, help="jobs per worker in the scaling runs (x workers)")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker (threads pool)")
    parser.add_argument("--kill-jobs", type=int, default=200, help="jobs of the kill run (0: skip it)")
    parser.add_argument("--cpu-runs", type=int, default=40, help="analyses per variant for the CPU comparison")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this directory (default: dropped)")
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]

    ledger = Ledger()
    with tempfile.TemporaryDirectory(prefix="strategist-load-") as tmp, fakes(ledger) as (gemini, perplexity, local):
        root = Path(tmp)
        config = root / "strategist.toml"
        # Deadlines that fit a 45 s visibility timeout, so a killed worker's jobs come back within the run.
        # No hedging: with fixed fake latencies a hedge only adds calls, and it would blur the per-tier mix.
        config.write_text(
            "[deadlines]\nquick = 20.0\nstandard = 30.0\ndeep = 40.0\n[resilience.hedge]\nenabled = false\n"
        )
        base_env = scrubbed_env(
            {
                "GEMINI_API_KEY": "bench",
                "PERPLEXITY_API_KEY": "bench",
                "GEMINI_BASE_URL": gemini.base_url,
                "PERPLEXITY_BASE_URL": perplexity.base_url,
                "LOCAL_BASE_URL": local.base_url,
                # The fast fake local tier does its light jobs right: measured so (bench/local.py's format), the
                # router sends them there, as the mix intends; unmeasured, it would judge it by SmolLM2's figures.
                "LOCAL_MODEL": "fake-local",
                "LOCAL_ADEQUACY_PATH": str(capable_local(root / "local_adequacy.json")),
                "STRATEGIST_DATA_DIR": str(root / "data"),
                "STRATEGIST_CONFIG": str(config),
                "STRATEGIST_VISIBILITY_TIMEOUT": "45",
                "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
                "PYTHONPATH": str(ROOT),
            }
        )
        (root / "metrics").mkdir()
        with redis_servers.running("redis", root / "redis") as redis:
            cluster = Cluster(redis, base_env, args.logs or root / "logs")
            outcomes = [cluster.run(db + 1, n, args.concurrency, args.jobs * n) for db, n in enumerate(counts)]
            killed = None
            if args.kill_jobs:
                killed = cluster.run(10, 2, args.concurrency, args.kill_jobs, kill_after=args.kill_jobs // 3)
            cpu = orchestration_cpu(f"{redis.url}/12", args.cpu_runs) if args.cpu_runs else None

    print(
        f"# bench/load.py on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end "
        "(shared machine: other sessions were running)"
    )
    print(
        f"# {args.jobs} quick jobs per row, mix 40% local / 30% realtime / 30% premium, fakes {PREMIUM_S}s / "
        f"{REALTIME_S}s / {LOCAL_S}s; {args.concurrency} threads per worker; gunicorn 1x16"
    )
    print(
        f"{'workers':>7} {'jobs/s':>7} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'wait p50':>9} {'wait p95':>9} "
        f"{'CPU s/job':>10} {'efficiency':>10}  providers"
    )
    base = outcomes[0].throughput / outcomes[0].workers
    for o in outcomes:
        e2e, waits = o.e2e(), o.waits()
        providers = Counter((j.result or {}).get("provider") for j in o.jobs)
        print(
            f"{o.workers:>7} {o.throughput:>7.2f} {pct(e2e, 50):>7.2f} {pct(e2e, 95):>7.2f} {pct(e2e, 99):>7.2f} "
            f"{pct(waits, 50):>9.2f} {pct(waits, 95):>9.2f} {o.cpu_per_job_s:>10.3f} "
            f"{o.throughput / (base * o.workers):>10.0%}  {dict(providers)}"
        )
    if killed is not None:
        complete = sum(1 for j in killed.jobs if j.state == "done")
        twice, cut = double_paid(killed, ledger, 10)
        redelivered = killed.e2e(redelivered=True)
        others = killed.e2e(redelivered=False)
        print(
            f"\nkill: 2 workers x {args.concurrency}, one SIGKILLed (with its pool) after {args.kill_jobs // 3} of "
            f"{args.kill_jobs} jobs finished; visibility timeout 45 s"
        )
        print(
            f"  completed {complete}/{len(killed.jobs)}; redelivered jobs {len(redelivered)}; completed calls paid "
            f"twice {twice}; calls cut by the kill and made again {cut}"
        )
        for job in killed.jobs:
            if job.state != "done":
                # What a lost job said, and who had it: the figure alone hides the cause.
                workers = [d.get("worker") for d in job.deliveries]
                print(f"  {job.job_id} {job.state}: {job.error}; deliveries {workers}")
        if redelivered:
            print(
                f"  end-to-end of redelivered jobs p50 {pct(redelivered, 50):.1f} s (max {max(redelivered):.1f} s) "
                f"vs the others p50 {pct(others, 50):.1f} s: extra {pct(redelivered, 50) - pct(others, 50):.1f} s"
            )
    if cpu is not None:
        bare, project = cpu
        print(
            f"\norchestration CPU per quick analysis, one process, Redis saver, zero-latency fake Gemini in "
            f"another process: bare LangGraph graph {bare:.1f} ms, project {project:.1f} ms, ratio "
            f"{project / bare:.2f}x ({args.cpu_runs} runs each, interleaved)"
        )


if __name__ == "__main__":
    main()
