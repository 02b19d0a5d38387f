"""Property-based fuzz of the running HTTP API against its own OpenAPI document (schemathesis).

The app runs on a real werkzeug server, with fake providers that answer at once (so a thousand briefings take
seconds), a throwaway briefing cache and record store, and writers that answer playbook and scenario prompts
with valid documents (providers/testing/documents.py), so a valid request for one gets its 200. Schemathesis
generates requests from /openapi.json, valid and invalid, and checks each answer: never a 5xx, a documented
status code and content type, the documented headers, and a body that matches the response schema. The token
is configured and sent, so the routes that need one are fuzzed past their guard. The last test checks that
every documented operation ran and that at least 1,000 cases did, and prints the cases and seconds per
operation.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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
from api.openapi import OPERATIONS, RESERVED_WARDS, openapi_document
from graphs.conversation_service import Conversations
from graphs.playbook_service import Playbooks
from graphs.service import Orchestrator
from graphs.stores.briefing_cache import SqliteBriefingCache
from graphs.stores.feedback import SqliteFeedback
from graphs.stores.records import SqliteRecords
from graphs.ward_reports import WardReports
from providers.testing import reply
from providers.testing.briefings import briefing_registry, draft_json, research_reply
from providers.testing.documents import document_writer

TOKEN = "fuzz-token"
MIN_CASES = 1_000
EXAMPLES_PER_OPERATION = 110
# The conversation, playbook and scenario routes run a graph per valid request: fewer examples each.
DOCUMENT_ROUTES = r"^/(conversations?|chat|playbook|scenarios?)(/|$)"
DOCUMENT_EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
cases_run: list[str] = []
seconds_by_operation: dict[str, float] = defaultdict(float)
statuses: dict[str, Counter[int]] = defaultdict(Counter)
# A ward that names a sibling route is that route's request, fuzzed as such (the document says so too).
OTHER_ROUTES = set(RESERVED_WARDS)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    registry = briefing_registry(
        writer=[document_writer(reply(draft_json()))],
        research=[document_writer(research_reply())],
        local=[reply("A local summary of the text.\nConfidence: 0.6")],
    )
    feedback = SqliteFeedback(tmp / "feedback.sqlite")
    orchestrator = Orchestrator(registry, InMemorySaver(), None, feedback)
    reports = WardReports(registry, InMemorySaver(), SqliteBriefingCache(tmp / "briefings.sqlite"))
    mp = pytest.MonkeyPatch()
    mp.setenv("STRATEGIST_API_TOKEN", TOKEN)
    for var in ("STRATEGIST_ENABLED", "STRATEGIST_ADMIN_TOKEN", "STRATEGIST_MAX_BODY_BYTES"):
        mp.delenv(var, raising=False)
    flask_app = app_module.create_app(orchestrator, reports)
    # Sessions, playbooks and scenarios in the test's directory (the registry's data directory does not exist).
    records = SqliteRecords(tmp / "records.sqlite")
    flask_app.extensions["strategist_conversations"] = Conversations(registry, InMemorySaver(), records)
    flask_app.extensions["strategist_playbooks"] = Playbooks(registry, InMemorySaver(), records)
    server = make_server(
        "127.0.0.1",
        0,
        flask_app,
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
        records.close()
        mp.undo()


# The document the server serves at /openapi.json (test_the_served_document_is_the_one_fuzzed holds them equal),
# built in-process so the cases are known when pytest collects them.
schema = schemathesis.openapi.from_dict(openapi_document())


def _fuzz(case: Any, base_url: str) -> None:
    ward = (case.path_parameters or {}).get("ward")
    if isinstance(ward, str) and ward.strip() in OTHER_ROUTES:
        # A negative case for /{ward} that names a sibling route (/health, /openapi.json ...): that request is
        # the other operation's, fuzzed as such.
        return
    label = case.operation.label
    cases_run.append(label)
    started = time.perf_counter()
    try:
        response = case.call_and_validate(
            base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS
        )
        statuses[label][response.status_code] += 1
    finally:
        seconds_by_operation[label] += time.perf_counter() - started


FUZZ_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.exclude(path_regex=DOCUMENT_ROUTES).parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, parent=FUZZ_SETTINGS)
def test_api_conforms_to_its_openapi_document(case: Any, base_url: str) -> None:
    _fuzz(case, base_url)


@schema.include(path_regex=DOCUMENT_ROUTES).parametrize()
@settings(max_examples=DOCUMENT_EXAMPLES, parent=FUZZ_SETTINGS)
def test_conversation_and_document_routes_conform(case: Any, base_url: str) -> None:
    _fuzz(case, base_url)


def test_a_session_walk_conforms(base_url: str) -> None:
    """The session routes a fuzz cannot reach past 404 (its session ids are random): open, message, stream a
    reply, read, list, delete, each answer checked against the document."""

    def check(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        schema[path][method].validate_response(response)
        body: dict[str, Any] = response.json()
        return body

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
        created = check("POST", "/conversation", http.post("/conversation", json={"ward": "Malakpet"}))
        session_id = created["session_id"]
        message = {"sessionId": session_id, "message": {"type": "user", "content": "How do we win the booths?"}}
        check("POST", "/conversation/message", http.post("/conversation/message", json=message))
        stream = http.get("/conversation/stream", params={"sessionId": session_id})
        assert stream.status_code == 200 and '"analysis_complete"' in stream.text, stream.text
        session = check("GET", "/conversation/{session_id}", http.get(f"/conversation/{session_id}"))
        assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
        listed = check("GET", "/conversations", http.get("/conversations", params={"ward": "Malakpet"}))
        assert session_id in {c["id"] for c in listed["conversations"]}
        check("DELETE", "/conversation/{session_id}", http.delete(f"/conversation/{session_id}"))
        assert http.get(f"/conversation/{session_id}").status_code == 404


def test_the_served_document_is_the_one_fuzzed(base_url: str) -> None:
    assert httpx.get(f"{base_url}/openapi.json").json() == openapi_document()


def test_the_fuzz_ran_enough_cases() -> None:
    by_operation = {label: cases_run.count(label) for label in sorted(set(cases_run))}
    print(f"fuzz: {len(cases_run)} cases over {len(by_operation)} operations:")
    for label, count in by_operation.items():
        seen = ", ".join(f"{status}: {n}" for status, n in sorted(statuses[label].items()))
        print(f"  {label}: {count} cases, {seconds_by_operation[label]:.1f} s ({seen})")
    documented = {f"{op.method.upper()} {op.path}" for op in OPERATIONS}
    assert len(documented) == 25 and set(by_operation) == documented, by_operation
    assert len(cases_run) >= MIN_CASES, by_operation
    # A valid request gets its answer: the fuzz reached every success the fakes can give (a session's own
    # routes need a live session id, which test_a_session_walk_conforms has).
    needs_a_session = {"GET /conversation/{session_id}", "DELETE /conversation/{session_id}"}
    needs_a_session.add("POST /conversation/message")
    unanswered = {label for label in documented - needs_a_session if 200 not in statuses[label]}
    assert not unanswered, {label: dict(statuses[label]) for label in unanswered}
