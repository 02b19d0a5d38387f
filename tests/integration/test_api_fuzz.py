"""Property-based fuzz of the running HTTP API against its own OpenAPI document (schemathesis).

The app runs on a real werkzeug server, with fake providers that answer at once (so a thousand briefings take
seconds) and a throwaway briefing cache. Schemathesis generates requests from /openapi.json, valid and
invalid, and checks each answer: never a 5xx, a documented status code and content type, the documented
headers, and a body that matches the response schema. The token is configured and sent, so the routes that
need one are fuzzed past their guard. The last test checks that at least 1,000 cases ran.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from langgraph.checkpoint.memory import InMemorySaver
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.serving import make_server

import app as app_module
from api.common import JsonErrorRequestHandler
from api.openapi import openapi_document
from graphs.service import Orchestrator
from graphs.stores.briefing_cache import SqliteBriefingCache
from graphs.stores.feedback import SqliteFeedback
from graphs.ward_reports import WardReports
from providers.testing import reply
from providers.testing.briefings import briefing_registry

TOKEN = "fuzz-token"
MIN_CASES = 1_000
EXAMPLES_PER_OPERATION = 110
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
cases_run: list[str] = []
OTHER_ROUTES = {
    "analyze",
    "trigger",
    "feedback",
    "health",
    "ready",
    "alive",
    "status",
    "cache",
    "circuit-breaker",
    "alerts",
    "openapi.json",
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    registry = briefing_registry(local=[reply("A local summary of the text.\nConfidence: 0.6")])
    feedback = SqliteFeedback(tmp / "feedback.sqlite")
    orchestrator = Orchestrator(registry, InMemorySaver(), None, feedback)
    reports = WardReports(registry, InMemorySaver(), SqliteBriefingCache(tmp / "briefings.sqlite"))
    mp = pytest.MonkeyPatch()
    mp.setenv("STRATEGIST_API_TOKEN", TOKEN)
    for var in ("STRATEGIST_ENABLED", "STRATEGIST_ADMIN_TOKEN", "STRATEGIST_MAX_BODY_BYTES"):
        mp.delenv(var, raising=False)
    server = make_server(
        "127.0.0.1",
        0,
        app_module.create_app(orchestrator, reports),
        threaded=True,
        request_handler=JsonErrorRequestHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v1/strategist"
    finally:
        server.shutdown()
        feedback.close()
        mp.undo()


# The document the server serves at /openapi.json (test_the_served_document_is_the_one_fuzzed holds them equal),
# built in-process so the cases are known when pytest collects them.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_openapi_document(case: Any, base_url: str) -> None:
    ward = (case.path_parameters or {}).get("ward")
    if isinstance(ward, str) and ward.strip() in OTHER_ROUTES:
        # A negative case for /{ward} that names a sibling route (/health, /openapi.json ...): that request is
        # the other operation's, fuzzed as such.
        return
    cases_run.append(case.operation.label)
    case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)


def test_the_served_document_is_the_one_fuzzed(base_url: str) -> None:
    import httpx

    assert httpx.get(f"{base_url}/openapi.json").json() == openapi_document()


def test_the_fuzz_ran_enough_cases() -> None:
    by_operation = {label: cases_run.count(label) for label in sorted(set(cases_run))}
    print(f"fuzz: {len(cases_run)} cases over {len(by_operation)} operations: {by_operation}")
    assert len(by_operation) == 14, by_operation
    assert len(cases_run) >= MIN_CASES, by_operation
