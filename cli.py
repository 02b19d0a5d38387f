"""The `strategist` command: analyze, brief, route, resume, feedback, costs, prune, health, graph, serve; chat,
playbook, scenario (cli_chat.py).

Each command opens the configured stores for its own lifetime; bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from cli_chat import register as register_chat_commands
from cli_progress import print_result_line, progress_sink
from graphs.briefing_result import BriefingResult
from graphs.errors import CheckpointStoreError, FeedbackError, RequestError, ThreadBusy, UnknownThread
from graphs.ops import health_report
from graphs.request import AnalysisRequest, parse_request
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from graphs.stores import open_stores
from providers.config import ConfigError, Settings, load_settings
from providers.registry import ProviderRegistry
from providers.secrets import RedactingFilter, redact


class CliError(Exception):
    """A user-facing CLI failure: printed as one line, exit status 2."""


@contextlib.contextmanager
def _orchestrator_for_cli(
    settings: Settings, notice: bool = False, thread_id: str | None = None
) -> Iterator[Orchestrator]:
    with open_stores(settings) as stores:
        if thread_id is not None:
            # First once the stores are open, in every mode: a run killed at any point can be resumed by this id
            # (a store that cannot be opened is one error line: there is no run to resume).
            print(f"thread {thread_id}", file=sys.stderr, flush=True)
        if notice:
            print(outcome_notice(len(stores.feedback.outcomes()), stores.location), file=sys.stderr)
        yield Orchestrator(ProviderRegistry(settings), stores.checkpointer, stores.ledger, stores.feedback)


def render(result: AnalysisResult) -> str:
    """Render a result for a person: answer first, then who answered, how, at what cost and how surely."""
    lines: list[str] = []
    if result.answer is not None:
        lines += [result.answer, ""]
        lines.append(f"answered by {result.provider} ({result.model}, {result.tier} tier)")
    else:
        lines.append(f"NO ANSWER: {result.error}")
    if result.fallback_reason:
        lines.append(f"fallback mode, degraded: {result.fallback_reason}")
    elif result.fallback_mode:
        lines.append("fallback mode: the primary provider did not answer")
    c = result.routing.classification
    lines += [
        "",
        f"routing ({result.routing.mode}): fresh facts p={c['fresh_p']:.2f}, complexity {c['complexity']}, "
        f"task {c['task']}",
    ]
    lines += [f"  - {reason}" for reason in result.routing.reasons]
    lines += [f"  chain: {' -> '.join(s.provider for s in result.routing.chain) or '(empty)'}", "", "attempts:"]
    for a in result.attempts:
        status = a.outcome if a.outcome == "ok" else f"{a.outcome}: {a.error_class}"
        lines.append(
            f"  {a.role:<11} {a.provider:<11} {a.model:<24} {status:<28} {a.latency_ms:>8.0f} ms "
            f"{a.input_tokens:>6} in {a.output_tokens:>6} out  ${a.cost_usd:.5f}"
        )
    lines.append("")
    confidence = result.confidence
    raw = f"; raw {confidence.raw:.2f}" if confidence.raw is not None else ""
    lines.append(f"confidence {confidence.value:.2f} ({confidence.method}{raw})")
    if confidence.calibration:
        lines.append(f"  calibration: {confidence.calibration}")
    if confidence.degenerate:
        lines.append(f"  degenerate output: {', '.join(confidence.degenerate)}")
    if result.review is not None:
        verdict = "NEEDS REVIEW" if result.needs_review else "no review needed"
        lines.append(f"review: {verdict} ({result.review.reason})")
    for f in result.confidence.factors:
        lines.append(f"  {f.name:<20} {f.value:.2f} x weight {f.weight:.2f}  {f.detail}")
    if result.escalation and result.escalation["decision"] != "accept":
        escalation = result.escalation
        lines.append(f"cascade ({escalation['decision']}): {escalation['reason']}")
        if escalation.get("outcome"):
            lines.append(f"  {escalation['outcome']}")
    if result.cross_check:
        lines.append(
            f"cross-check by {result.cross_check['provider']}: agreement {result.cross_check['agreement']:.2f}"
        )
    for citation in result.citations:
        lines.append(f"  source: {citation.title or citation.url} <{citation.url}>")
    lines.append(
        f"cost ${result.cost_usd:.5f} (all-premium baseline ${result.baseline_cost_usd:.5f}); "
        f"{result.timings.total_ms / 1000:.1f} s; thread {result.thread_id}"
    )
    return "\n".join(lines)


def _request_from_args(args: argparse.Namespace, query: str) -> AnalysisRequest:
    data: dict[str, Any] = {"query": query}
    for key in ("depth", "ward", "context", "max_cost_usd", "deadline_s"):
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    for flag in ("require_citations", "cost_sensitive", "cross_check"):
        if getattr(args, flag, False):
            data[flag] = True
    return parse_request(data)


def _emit(result: AnalysisResult, as_json: bool) -> int:
    print(result.model_dump_json(indent=2) if as_json else render(result))
    return 0 if result.answer is not None else 1


def _emit_streamed(result: AnalysisResult, args: argparse.Namespace) -> int:
    """Print the result; after ``--stream --json``'s event lines, as their last line."""
    if args.json and args.stream:
        print_result_line(result)
        return 0 if result.answer is not None else 1
    return _emit(result, args.json)


def cmd_analyze(args: argparse.Namespace, settings: Settings) -> int:
    """Answer one query and print the result."""
    req = _request_from_args(args, args.query)
    thread_id = args.thread_id or str(uuid.uuid4())
    with (
        _orchestrator_for_cli(settings, notice=not args.json, thread_id=thread_id) as orch,
        progress_sink(as_json=args.json, stream=args.stream) as sink,
    ):
        result = orch.analyze(req, thread_id=thread_id, on_event=sink, wait_s=args.wait)
    return _emit_streamed(result, args)


def render_briefing(result: BriefingResult) -> str:
    """Render a ward briefing for a person: sections, key intelligence with confidence and sources."""
    b = result.briefing
    if b is None:
        return f"NO BRIEFING for {result.ward}: {result.error}\nthread {result.thread_id}"
    lines = [f"WARD BRIEFING: {b.ward} ({result.depth}, {result.context})  generated {b.generated_at}"]
    if b.fallback_mode:
        lines.append("FALLBACK MODE: provisional, partly unverified")
    lines += ["", "Strategic overview", f"  {b.strategic_overview}", "", "Key intelligence"]
    for item in b.key_intelligence:
        plural = "s" if item.source_count != 1 else ""
        actionable = ", actionable" if item.actionable else ""
        lines.append(
            f"  [{item.impact_level:<8}] {item.category:<16} confidence {item.confidence:.2f}, "
            f"{item.source_count} source{plural}{actionable}"
        )
        lines.append(f"    {item.content}")
    sections: list[tuple[str, list[str]]] = [
        ("Insights", list(b.insights)),
        ("Opportunities", [f"P{o.priority} {o.description} ({o.timeline})" for o in b.opportunities]),
        ("Risks", [f"{r.severity}: {r.description} ({r.timeline}); mitigation: {r.mitigation}" for r in b.risks]),
        ("Threats", [f"{t.severity}: {t.description} ({t.timeline})" for t in b.threats]),
        (
            "Recommended actions",
            [f"P{a.priority} [{a.category}] {a.description} ({a.timeline})" for a in b.recommended_actions],
        ),
    ]
    for title, rows in sections:
        if rows:
            lines += ["", title, *(f"  - {row}" for row in rows)]
    lines += ["", "Sources"]
    lines += [f"  {c.credibility or 0:.2f}  {c.title} <{c.url}>" for c in b.source_citations] or ["  (none)"]
    lines += [
        "",
        f"confidence {b.confidence_score:.2f} ({result.confidence.method}); "
        f"cost ${result.cost_usd:.4f} (all-premium ${result.baseline_cost_usd:.4f}); "
        f"{result.total_ms / 1000:.1f} s; thread {result.thread_id}",
    ]
    return "\n".join(lines)


def cmd_brief(args: argparse.Namespace, settings: Settings) -> int:
    """Write a ward briefing, showing its stages as they run (or resume an interrupted one)."""
    from graphs.stores.briefing_cache import open_briefing_cache
    from graphs.stores.budget import open_budget
    from graphs.ward_reports import WardReports, normalise_ward
    from providers.ward_data import open_ward_data

    if args.resume is None and args.ward is None:
        raise CliError("brief: give a WARD, or --resume THREAD_ID")
    with open_stores(settings) as stores:
        reports = WardReports(
            ProviderRegistry(settings),
            stores.checkpointer,
            open_briefing_cache(settings),
            ledger=stores.ledger,
            feedback=stores.feedback,
            ward_data=open_ward_data(settings.briefing.ward_data_url, settings.briefing.ward_data_table),
            budget=open_budget(settings.redis_url, settings.data_dir, os.environ),
        )
        ward = normalise_ward(args.ward) if args.resume is None else ""
        thread_id = args.resume or args.thread_id or str(uuid.uuid4())
        print(f"thread {thread_id}", file=sys.stderr, flush=True)
        with progress_sink(as_json=args.json, stream=args.stream) as sink:
            if args.resume is not None:
                result = reports.resume(args.resume, on_event=sink, wait_s=args.wait)
            else:
                result = reports.run(
                    ward, args.depth, args.context, thread_id=thread_id, on_event=sink, wait_s=args.wait
                )
    if args.json and args.stream:
        print_result_line(result)
    elif args.json:
        print(
            json.dumps(
                result.briefing.model_dump(mode="json") if result.briefing else result.model_dump(mode="json"), indent=2
            )
        )
    else:
        print(render_briefing(result))
    return 0 if result.briefing is not None else 1


def cmd_resume(args: argparse.Namespace, settings: Settings) -> int:
    """Continue an interrupted analysis from its last checkpoint."""
    with _orchestrator_for_cli(settings) as orch, progress_sink(as_json=args.json, stream=args.stream) as sink:
        result = orch.resume(args.thread_id, on_event=sink, wait_s=args.wait)
    return _emit(result, args.json)


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    """Record whether an analysis turned out right; or export or import the outcomes of the configured store."""
    if args.thread_id in ("export", "import"):
        return _move_feedback(args, settings)
    if args.correct is None:
        raise CliError("feedback THREAD_ID needs --correct or --incorrect")
    with _orchestrator_for_cli(settings) as orch:
        outcome = orch.record_feedback(args.thread_id, args.correct, note=args.note or "")
    verdict = "right" if outcome.correct else "wrong"
    said = f" (its confidence was {outcome.calibrated:.2f})" if outcome.calibrated is not None else ""
    print(f"recorded: analysis {outcome.thread_id} by {outcome.provider} ({outcome.task}) was {verdict}{said}")
    return 0


def _move_feedback(args: argparse.Namespace, settings: Settings) -> int:
    """Export the store's outcomes as JSON lines, or import such a file (a correction replaces, never duplicates)."""
    from graphs.stores.feedback import export_lines, import_lines

    with open_stores(settings) as stores:
        if args.thread_id == "export":
            out = sys.stdout if args.path in (None, "-") else open(args.path, "w", encoding="utf-8")  # noqa: SIM115
            with out if out is not sys.stdout else contextlib.nullcontext(out):
                for line in export_lines(stores.feedback):
                    print(line, file=out)
            count = len(stores.feedback.outcomes())
            print(f"exported {count} outcomes from {stores.location}", file=sys.stderr)
            return 0
        if args.path is None:
            raise CliError("feedback import needs a file (or - for standard input)")
        try:
            source = sys.stdin if args.path == "-" else open(args.path, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"cannot read {args.path}: {exc.strerror}") from None
        with source if source is not sys.stdin else contextlib.nullcontext(source):
            new, replaced = import_lines(stores.feedback, source)
        total = len(stores.feedback.outcomes())
        print(f"imported {new} new outcomes, replaced {replaced}; {stores.location} now has {total}")
    return 0


def outcome_notice(count: int, location: str) -> str:
    """Say how many outcomes confidence learns from in this store (a new store has none: say how to bring them)."""
    if count:
        return f"confidence learns from {count} recorded outcomes in {location}"
    return (
        f"confidence learns from 0 recorded outcomes in {location} (uncalibrated); outcomes kept in another store "
        "move with `strategist feedback export` there and `strategist feedback import FILE` here"
    )


def cmd_route(args: argparse.Namespace, settings: Settings) -> int:
    """Show the routing decision for a query (or each line of stdin) without calling a model."""
    # A dry run: no checkpointer, no model call.
    orch = Orchestrator(ProviderRegistry(settings), None)
    # From stdin: one output per input line, blank lines included, each carrying its line number and query, so
    # outputs can be matched to inputs.
    queries = [args.query] if args.query is not None else [line.rstrip("\n") for line in sys.stdin]
    status = 0
    for line, query in enumerate(queries, start=1):
        where: dict[str, Any] = {} if args.query is not None else {"line": line}
        try:
            plan = orch.plan(_request_from_args(args, query))
        except RequestError as exc:
            if args.query is not None:
                raise
            print(json.dumps({**where, "query": query.strip(), "error": str(exc)}), flush=True)
            status = 2
            continue
        if args.json:
            print(json.dumps({**where, "query": query.strip(), **plan}), flush=True)
        else:
            print(" -> ".join(f"{s['provider']} ({s['tier']})" for s in plan["chain"]) or "(no provider)")
            for reason in plan["reasons"]:
                print(f"  - {reason}")
            print(f"  estimated ${plan['estimated_cost_usd']:.5f}, all-premium ${plan['baseline_cost_usd']:.5f}")
    return status


def parse_since(text: str) -> float:
    """Accept an ISO date or date-time (UTC when no offset) or a span back from now: 30m, 24h, 7d."""
    text = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return dt.datetime.now(dt.UTC).timestamp() - int(text[:-1]) * units[text[-1]]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--since {text!r}: expected a date (2026-11-01), a date-time, or a span (24h, 7d)") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def budget_lines(settings: Settings) -> list[str]:
    """Today's use of the spend caps (STRATEGIST_DAILY_BUDGET_USD ...), one line per cap; none without caps."""
    import os
    import time

    from graphs.stores.budget import open_budget

    try:
        budget = open_budget(settings.redis_url, settings.data_dir, os.environ)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if budget is None:
        return []
    lines = []
    for u in budget.usage(time.time()):
        cap = f"${u.cap_usd:.2f}" if u.cap_usd is not None else "no cap"
        lines.append(f"budget today ({u.scope}): ${u.spent_usd:.4f} spent + ${u.reserved_usd:.4f} reserved of {cap}")
    per_caller = budget.caps.per_caller_daily_usd
    if per_caller is not None:
        lines.append(f"budget per caller: ${per_caller:.2f} a day")
    return lines


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the retention policy to finished threads ([retention]; graphs/stores/retention.py)."""
    from graphs.stores.retention import prune

    if args.keep_days is not None and args.keep_days < 0:
        raise CliError(f"prune: --keep-days must be 0 or more, not {args.keep_days:g}")
    with open_stores(settings) as stores:
        report = prune(
            stores.checkpointer,
            stores.ledger,
            settings.retention,
            now=time.time(),
            dry_run=args.dry_run,
            keep_days=args.keep_days,
            keep=args.keep,
        )
    print(json.dumps(dataclasses.asdict(report)) if args.json else report.render())
    return 0


def cmd_costs(args: argparse.Namespace, settings: Settings) -> int:
    """Print the cost ledger: totals, by provider, tier and day, and the savings."""
    from graphs.stores.ledger import report

    since = parse_since(args.since) if args.since else None
    with open_stores(settings) as stores:
        summary = report(stores.ledger.entries(since))
    budget = budget_lines(settings)
    if args.json:
        print(json.dumps(summary | ({"budget": budget} if budget else {}), indent=2))
        return 0
    for line in budget:
        print(line)
    print(
        f"{summary['analyses']} analyses: ${summary['cost_usd']:.4f} spent, all-premium baseline "
        f"${summary['baseline_cost_usd']:.4f}, saved ${summary['savings_usd']:.4f} ({summary['savings_pct']:.1f}%)"
    )
    for title, key in (("provider", "by_provider"), ("tier", "by_tier")):
        print(f"\nby {title}:")
        for name, row in summary[key].items():
            print(f"  {name:<12} {int(row['calls']):>6} calls  ${row['cost_usd']:.4f}")
    print("\nby day (UTC):")
    for day, row in summary["by_day"].items():
        analyses, cost, base = int(row["analyses"]), row["cost_usd"], row["baseline_cost_usd"]
        print(f"  {day}  {analyses:>6} analyses  ${cost:.4f}  baseline ${base:.4f}")
    if summary["shadow"]["analyses"]:
        sh = summary["shadow"]
        print(
            f"\nshadow mode: {sh['analyses']} analyses served by legacy for ${sh['served_cost_usd']:.4f}; "
            f"intelligent routing estimated ${sh['intelligent_estimate_usd']:.4f}"
        )
    return 0


def render_health(report: dict[str, Any]) -> str:
    """Render a health report as a table for `strategist health`."""
    lines = [
        f"{report['system_status']} (score {report['overall_score']:.0f}/100, circuits in {report['circuit_store']})"
    ]
    lines.append(
        f"{'provider':<12}{'tier':<10}{'circuit':<11}{'calls':>6}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'hedge ms':>10}  note"
    )

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for name, c in report["components"].items():
        note = c["reason"] or ""
        if c["probe_in_s"] is not None:
            note = f"{note}; probe in {c['probe_in_s']:.0f}s".lstrip("; ")
        lines.append(
            f"{name:<12}{c['tier']:<10}{c['circuit']:<11}{c['recent_calls']:>6}{c['error_rate']:>8.1%}"
            f"{ms(c['p50_ms']):>9}{ms(c['p95_ms']):>9}{ms(c['p99_ms']):>9}{c['hedge_after_ms']:>10.0f}  {note}"
        )
    h = report["hedging"]
    lines.append(
        f"hedging {'on' if h['enabled'] else 'off'}: extra ${h['extra_usd']:.4f} on ${h['spend_usd']:.4f} "
        f"({h['extra_ratio']:.1%}, cap {h['max_extra_ratio']:.0%} over {h['window_s']:.0f}s)"
    )
    return "\n".join(lines)


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    """Print provider health: circuits, error rates and latency."""
    report = health_report(ProviderRegistry(settings))
    print(json.dumps(report, indent=2) if args.json else render_health(report))
    return 0 if report["overall_score"] > 0 else 1


def cmd_graph(args: argparse.Namespace, settings: Settings) -> int:
    """Print the analysis graph as Mermaid."""
    from graphs.analysis import build_analysis_graph

    print(build_analysis_graph().compile().get_graph().draw_mermaid())
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP app: gunicorn (workers x threads), or Flask's own server with --dev."""
    from app import API_PREFIX, JsonErrorRequestHandler, create_app

    if args.dev:
        app = create_app()
        print(f"serving {API_PREFIX} on http://{args.host}:{args.port} (development server)", file=sys.stderr)
        # The server's own refusals (oversized headers, a malformed request line) are JSON too.
        app.run(host=args.host, port=args.port, threaded=True, request_handler=JsonErrorRequestHandler)
        return 0
    return _serve_gunicorn(args, settings)


# --- scale-out: `serve` under gunicorn, `worker` (README "Scale-out") ---------------------------------------


def _serve_gunicorn(args: argparse.Namespace, settings: Settings) -> int:
    from api.common import max_header_bytes
    from observability.metrics import prepare_multiprocess
    from observability.tracing import configure_tracing
    from wsgi_server import ServeOptions, StrategistServer

    # Fail fast, with the one clear line, when the stores cannot be reached (each gunicorn process opens its own).
    with open_stores(settings):
        pass
    prepare_multiprocess(settings.data_dir / "metrics" / "web", clean=not os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    configure_tracing()
    options = ServeOptions(args.host, args.port, args.workers, args.threads, args.timeout, max_header_bytes())
    print(
        f"serving /api/v1/strategist on http://{args.host}:{args.port} (gunicorn: {args.workers} workers x "
        f"{args.threads} threads)",
        file=sys.stderr,
    )
    StrategistServer(options).run()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a Celery worker for analysis and briefing jobs (the broker: CELERY_BROKER_URL or REDIS_URL)."""
    from observability.metrics import prepare_multiprocess
    from worker.config import celery_config

    celery_config(settings)  # no broker: one clear line before anything starts
    with open_stores(settings):
        pass

    prepare_multiprocess(settings.data_dir / "metrics" / "worker", clean=not os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    from worker.app import create_celery
    from worker.config import QUEUE
    from worker.process import install_hooks

    app = create_celery(settings)
    install_hooks(metrics_port=args.metrics_port)
    argv = ["worker", f"--concurrency={args.concurrency}", f"--pool={args.pool}", "--queues", QUEUE]
    argv += ["--loglevel", "INFO" if args.verbose else "WARNING", "--without-gossip", "--without-mingle"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def _lease_option(p: argparse.ArgumentParser) -> None:
    # One runner per thread (graphs/stores/lease.py): without --wait a thread running elsewhere is refused.
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if the thread is running in another process, wait up to this long for it (default: refuse at once)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strategist", description="Route campaign-analysis queries to the right model."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log warnings and progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def stream_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--stream", action="store_true", help="with --json: every progress event as a JSON line first")

    def request_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--depth", choices=["quick", "standard", "deep"])
        p.add_argument("--ward")
        p.add_argument("--context", choices=["defensive", "neutral", "offensive"])
        p.add_argument("--max-cost", dest="max_cost_usd", type=float, help="skip providers estimated above this (USD)")
        p.add_argument("--deadline", dest="deadline_s", type=float, help="seconds for the whole analysis")
        p.add_argument("--require-citations", action="store_true")
        p.add_argument("--cost-sensitive", action="store_true")
        p.add_argument("--cross-check", action="store_true", help="cross-check even below depth=deep")
        p.add_argument("--json", action="store_true", help="print JSON instead of readable text")

    p = sub.add_parser("analyze", help="answer a query")
    p.add_argument("query")
    p.add_argument("--thread-id", help="checkpoint under this id (default: a new UUID)")
    request_options(p)
    stream_option(p)
    _lease_option(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("route", help="show the routing decision without calling a model")
    p.add_argument("query", nargs="?", help="a query; without it, one query per line from standard input")
    request_options(p)
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("brief", help="write a ward briefing (plan, research, credibility, write, check, sanitise)")
    p.add_argument("ward", nargs="?")
    p.add_argument("--depth", choices=["quick", "standard", "deep"], default="standard")
    p.add_argument("--context", choices=["defensive", "neutral", "offensive"], default="neutral")
    p.add_argument("--json", action="store_true", help="print the contract's JSON body")
    p.add_argument("--thread-id", help="checkpoint under this id (default: a new UUID)")
    p.add_argument("--resume", metavar="THREAD_ID", help="continue an interrupted briefing")
    stream_option(p)
    _lease_option(p)
    p.set_defaults(func=cmd_brief)

    p = sub.add_parser("resume", help="continue an interrupted analysis")
    p.add_argument("thread_id")
    p.add_argument("--json", action="store_true")
    stream_option(p)
    _lease_option(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "feedback",
        help="record whether an analysis turned out right (confidence learns from it); "
        "`feedback export [FILE]` / `feedback import FILE` move outcomes between stores",
    )
    p.add_argument("thread_id", help="the analysis judged, or export / import")
    p.add_argument("path", nargs="?", help="export: the file to write (default: standard output); import: the file")
    verdict = p.add_mutually_exclusive_group()
    verdict.add_argument("--correct", dest="correct", action="store_true", help="the answer turned out right")
    verdict.add_argument("--incorrect", dest="correct", action="store_false", help="the answer turned out wrong")
    p.set_defaults(correct=None)
    p.add_argument("--note", help="why (kept with the outcome)")
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("costs", help="the cost ledger: totals, per provider, tier and day, savings")
    p.add_argument("--since", help="ISO date or date-time, or a span back from now (24h, 7d)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_costs)

    p = sub.add_parser(
        "prune", help="delete finished threads older than [retention] keep_days, or trim them to their final checkpoint"
    )
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    p.add_argument("--keep-days", type=float, help="override [retention] keep_days (0: delete no thread)")
    p.add_argument("--keep", choices=["all", "final"], help="override [retention] keep for younger finished threads")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("health", help="provider health: circuits, error rates, latency (shared via REDIS_URL)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("graph", help="print the graph as Mermaid")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("serve", help="run the HTTP app (gunicorn)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process (requests served at once)")
    p.add_argument("--timeout", type=int, default=60, help="seconds before a silent worker process is restarted")
    p.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    p.set_defaults(func=cmd_serve)

    # chat, playbook, scenario (cli_chat.py).
    register_chat_commands(sub)

    p = sub.add_parser("worker", help="run a Celery worker for analysis and briefing jobs")
    p.add_argument("--concurrency", type=int, default=2, help="jobs run at once (pool processes or threads)")
    p.add_argument("--pool", choices=["prefork", "threads", "solo"], default="prefork")
    p.add_argument("--hostname", help="the worker's node name (default: celery@HOST)")
    p.add_argument("--metrics-port", type=int, help="serve this worker's Prometheus metrics on this port")
    p.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `strategist` command; return its exit status."""
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose, json_logs=_json_logs(args.command))
    try:
        settings = load_settings()
        status: int = args.func(args, settings)
        return status
    except (
        ConfigError,
        RequestError,
        UnknownThread,
        FeedbackError,
        CheckpointStoreError,
        CliError,
        ThreadBusy,
    ) as exc:
        print(f"strategist: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("strategist: interrupted; resume with `strategist resume THREAD_ID`", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`strategist health --json | head`): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again, and exit as a pipe writer does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _json_logs(command: str) -> bool:
    """JSON log lines for the long-running services (their logs go to collectors), or when asked for."""
    chosen = os.environ.get("STRATEGIST_LOG_FORMAT", "").strip().lower()
    return chosen == "json" or (chosen != "text" and command in ("worker", "serve"))


def _configure_logging(verbose: bool, json_logs: bool = False) -> None:
    """Send log records to stderr, redacted; warnings only with --verbose.

    Without --verbose a failure is the one line `main` prints: a warning on the way there (the circuit-breaker
    store falling back when Redis is gone) would be a second line saying part of the same thing.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if json_logs:
        from observability.logs import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("strategist: %(levelname)s %(name)s: %(message)s"))
    level = logging.INFO if verbose else (logging.WARNING if json_logs else logging.ERROR)
    logging.basicConfig(level=level, handlers=[handler], force=True)


def run() -> None:
    """Run the command (the console entry point), then leave at once.

    Returning from main() would make the interpreter join the threads of calls abandoned during the analysis and
    tear every loaded module down, which kept the process alive for seconds after the answer was printed (issue
    11). The exit handlers still run (stores closed, traces flushed); only that waiting is skipped.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`) has nothing left to flush
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    run()
