"""Hooks of a worker's processes: traces and logs set up in each pool process, metrics of dead processes
dropped, and (optionally) the worker's own ``/metrics`` port for a worker on another machine than the web."""

from __future__ import annotations

import gc
import os
from typing import Any

from celery import signals

from observability.metrics import mark_process_dead, multiprocess_dir
from observability.tracing import configure_tracing
from worker.reconcile import start_sweeper

# A job is looked for this long after it was sent before it may be called lost: far above the milliseconds between
# a worker's BRPOP and its write to ``unacked``, and between a web process's record and its send.
RECONCILE_GRACE_S = 60.0


def _process_init(**_: Any) -> None:
    configure_tracing()
    # As the web server does once its app is built (wsgi_server.py): what the pool process inherited lives as long
    # as it, so a full collection need not scan it (a 166-195 ms pause every ~1000 quick analyses, 64-77 ms frozen).
    gc.freeze()


def _process_shutdown(**_: Any) -> None:
    mark_process_dead(os.getpid())


def _worker_ready(sender: Any, **_: Any) -> None:
    # Jobs whose message the broker lost are sent again (worker/reconcile.py), swept as often as kombu sweeps the
    # messages of vanished workers.
    app = sender.app
    every_s = float(app.conf.broker_transport_options.get("unacked_restore_interval", 30))
    start_sweeper(app, grace_s=RECONCILE_GRACE_S, every_s=every_s)


def install_hooks(metrics_port: int | None = None) -> None:
    """Connect the pool-process hooks and the lost-job sweep; serve metrics on ``metrics_port`` from the main
    process when given."""
    configure_tracing()
    signals.worker_process_init.connect(_process_init, weak=False)
    signals.worker_process_shutdown.connect(_process_shutdown, weak=False)
    signals.worker_ready.connect(_worker_ready, weak=False)
    if metrics_port is not None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        if multiprocess_dir():
            mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(metrics_port, registry=registry)
