"""Integration tests: the real Gemini and Perplexity LangChain clients against local fake provider servers.

Every failure kind is scripted at the HTTP level and must come out of ``adapter.invoke`` as the right class
of our taxonomy, after exactly one HTTP request (client retries are off: retrying is the graph's job).

Decisions recorded here:

- A dropped connection (before or during the response body) is ``ProviderConnectionError``: the transport
  failed, the server never produced a response to judge.
- A blocked prompt (``promptFeedback.blockReason``) and a ``finishReason: SAFETY`` answer are
  ``ContentBlocked``, not ``EmptyResponse``: the cause is the vendor's policy, which another vendor may not
  share, and the graph records it under its own name.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from providers.base import Citation, Prompt, ProviderAdapter
from providers.errors import (
    AuthError,
    BadRequest,
    ContentBlocked,
    ContextTooLong,
    EmptyResponse,
    MalformedResponse,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ServerError,
)
from providers.gemini import build_gemini_adapter
from providers.perplexity import build_perplexity_adapter
from providers.testing.servers import (
    Action,
    Blocked,
    Delay,
    Drop,
    Empty,
    Fail,
    FakeGemini,
    FakePerplexity,
    FakeProviderServer,
    Hang,
    Malformed,
    RecordedRequest,
    Reply,
    Source,
)

GEMINI_MODEL = "gemini-2.5-pro"
PERPLEXITY_MODEL = "perplexity/sonar"
DUMMY_KEY = "dummy-key-not-secret"
PROMPT = Prompt(system="You are a campaign analyst.", user="Summarise this week's polling in Ohio.")
# The client's own per-attempt timeout: long enough for any scripted answer on a loaded machine (a 2 s timeout
# made scripted failures time out instead under load). An abandoned call is cancelled, not waited out.
CLIENT_TIMEOUT_S = 60.0
# The deadline given to invoke() in hang tests (the server never answers, so the outcome does not depend on speed).
DEADLINE_S = 0.3
# How long a test waits for something that should happen at once: generous, and still far below the timeouts.
PROMPTLY_S = 30.0

AdapterFactory = Callable[..., ProviderAdapter]


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


@pytest.fixture(scope="module")
def perplexity_server() -> Iterator[FakePerplexity]:
    with FakePerplexity() as server:
        yield server


@pytest.fixture
def gemini(gemini_server: FakeGemini) -> FakeGemini:
    gemini_server.reset()
    gemini_server.behaviour = Reply()
    return gemini_server


@pytest.fixture
def perplexity(perplexity_server: FakePerplexity) -> FakePerplexity:
    perplexity_server.reset()
    perplexity_server.behaviour = Reply()
    return perplexity_server


def gemini_adapter(server: FakeProviderServer, timeout_s: float = CLIENT_TIMEOUT_S) -> ProviderAdapter:
    return build_gemini_adapter(
        model=GEMINI_MODEL,
        api_key=DUMMY_KEY,
        base_url=server.base_url,
        timeout_s=timeout_s,
    )


def perplexity_adapter(server: FakeProviderServer, timeout_s: float = CLIENT_TIMEOUT_S) -> ProviderAdapter:
    return build_perplexity_adapter(
        model=PERPLEXITY_MODEL, api_key=DUMMY_KEY, base_url=server.base_url, timeout_s=timeout_s
    )


def invoke_failing(adapter: ProviderAdapter, server: FakeProviderServer, action: Action) -> ProviderError:
    """Script one action, invoke once, and return the ProviderError it raised after exactly one request."""
    server.script([action])
    with pytest.raises(ProviderError) as caught:
        adapter.invoke(PROMPT, timeout_s=CLIENT_TIMEOUT_S)
    assert server.request_count == 1, f"expected one HTTP call, got {server.request_count}"
    assert server.pending == 0
    assert caught.value.provider == adapter.name
    return caught.value


# ------------------------------------------------------------------------------------------------------------
# Gemini


def test_gemini_answer_carries_text_tokens_thinking_citations_and_model(gemini: FakeGemini) -> None:
    gemini.script(
        [
            Reply(
                text="Candidate A leads by 4 points.",
                input_tokens=120,
                output_tokens=30,
                thinking_tokens=200,
                citations=[
                    Source("https://polls.example/ohio", "Ohio poll"),
                    Source("https://news.example/a", "News A"),
                ],
                model="gemini-2.5-pro-preview-06-05",
            )
        ]
    )
    adapter = gemini_adapter(gemini)

    reply = adapter.invoke(PROMPT, timeout_s=CLIENT_TIMEOUT_S)

    assert reply.text == "Candidate A leads by 4 points."
    assert reply.model == "gemini-2.5-pro-preview-06-05"
    assert reply.input_tokens == 120
    assert reply.output_tokens == 230  # thinking is billed as output
    assert reply.thinking_tokens == 200
    assert reply.finish_reason == "STOP"
    assert reply.citations == (
        Citation(url="https://polls.example/ohio", title="Ohio poll"),
        Citation(url="https://news.example/a", title="News A"),
    )
    assert adapter.tier == "premium" and adapter.vendor == "google"

    [request] = gemini.requests
    assert request.method == "POST"
    assert request.path == f"/v1/models/{GEMINI_MODEL}:generateContent"
    assert request.model == GEMINI_MODEL
    assert request.headers["x-goog-api-key"] == "<redacted>"
    assert request.body["systemInstruction"]["parts"][0]["text"] == PROMPT.system
    assert request.body["contents"][-1]["parts"][0]["text"] == PROMPT.user


def test_gemini_answer_without_thinking_or_grounding(gemini: FakeGemini) -> None:
    gemini.script([Reply(text="Short answer.", input_tokens=10, output_tokens=3)])

    reply = gemini_adapter(gemini).invoke(PROMPT)

    assert (reply.input_tokens, reply.output_tokens, reply.thinking_tokens) == (10, 3, 0)
    assert reply.citations == ()
    assert reply.model == GEMINI_MODEL


GEMINI_FAILURES: list[tuple[str, Action, type[ProviderError]]] = [
    ("500", Fail(status=500), ServerError),
    ("503", Fail(status=503), ServerError),
    ("504", Fail(status=504), ProviderTimeout),
    ("401", Fail(status=401), AuthError),
    ("403", Fail(status=403), AuthError),
    ("400", Fail(status=400), BadRequest),
    (
        "400-context-too-long",
        Fail(
            status=400,
            message="The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        ),
        ContextTooLong,
    ),
    (
        "400-failed-precondition",
        Fail(
            status=400,
            status_name="FAILED_PRECONDITION",
            message="User location is not supported for the API use.",
        ),
        ProviderUnavailable,
    ),
    ("404-unknown-model", Fail(status=404), ProviderUnavailable),
    ("malformed-json", Malformed(), MalformedResponse),
    (
        "wrong-field-type",
        Malformed(body=b'{"candidates": [{"content": {"parts": [{"text": 5}]}}]}'),
        MalformedResponse,
    ),
    ("not-a-response", Malformed(body=b'{"candidates": "none"}'), MalformedResponse),
    ("empty-answer", Empty(), EmptyResponse),
    ("empty-max-tokens", Empty(finish_reason="MAX_TOKENS"), EmptyResponse),
    ("dropped-before-response", Drop(), ProviderConnectionError),
    ("dropped-mid-body", Drop(partial=True), ProviderConnectionError),
    ("blocked-prompt", Blocked(reason="SAFETY"), ContentBlocked),
    ("blocked-prompt-other", Blocked(reason="PROHIBITED_CONTENT"), ContentBlocked),
    ("safety-finish-no-text", Empty(finish_reason="SAFETY"), ContentBlocked),
    ("safety-finish-partial-text", Reply(text="Partial answer", finish_reason="SAFETY"), ContentBlocked),
]


@pytest.mark.parametrize(
    ("action", "expected"), [case[1:] for case in GEMINI_FAILURES], ids=[case[0] for case in GEMINI_FAILURES]
)
def test_gemini_failure_maps_to_error_class(
    gemini: FakeGemini,
    action: Action,
    expected: type[ProviderError],
) -> None:
    error = invoke_failing(gemini_adapter(gemini), gemini, action)

    assert type(error) is expected, f"{type(error).__name__}: {error}"


RETRY_INFO_3_5S = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.5s"}


def test_gemini_429_reads_retry_after_header_and_retry_info(gemini: FakeGemini) -> None:
    adapter = gemini_adapter(gemini)

    both = invoke_failing(adapter, gemini, Fail(status=429, retry_after=2))
    assert type(both) is RateLimited
    assert both.retry_after_s == 2.0
    assert both.transient

    gemini.reset()
    body_only = invoke_failing(
        adapter,
        gemini,
        Fail(status=429, details=[RETRY_INFO_3_5S]),
    )
    assert type(body_only) is RateLimited
    assert body_only.retry_after_s == 3.5

    gemini.reset()
    header_only = invoke_failing(adapter, gemini, Fail(status=429, details=[], headers={"Retry-After": "7"}))
    assert header_only.retry_after_s == 7.0

    gemini.reset()
    no_hint = invoke_failing(adapter, gemini, Fail(status=429, details=[]))
    assert type(no_hint) is RateLimited
    assert no_hint.retry_after_s is None


def test_gemini_hang_times_out_at_the_deadline(gemini: FakeGemini) -> None:
    gemini.script([Hang()])
    adapter = gemini_adapter(gemini)

    with pytest.raises(ProviderTimeout):
        adapter.invoke(PROMPT, timeout_s=DEADLINE_S)

    # No wall-clock bound (timing belongs in bench/): the call timed out, and its request was closed, long before
    # the client's own timeout.
    assert gemini.request_count == 1
    assert gemini.requests[0].client_gone.wait(PROMPTLY_S)


def test_gemini_client_timeout_is_mapped_to_provider_timeout(gemini: FakeGemini) -> None:
    # The SDK's own timeout raises httpx2.ReadTimeout (not an httpx exception): it must still be a timeout.
    gemini.script([Hang()])
    adapter = gemini_adapter(gemini, timeout_s=DEADLINE_S)

    with pytest.raises(Exception) as caught:
        adapter.chat_model().invoke(list(PROMPT.messages()))

    assert type(adapter.map_error(caught.value)) is ProviderTimeout
    assert gemini.request_count == 1


def test_gemini_connection_refused_is_connection_error(gemini: FakeGemini) -> None:
    with FakeGemini() as closed:
        base_url = closed.base_url
    adapter = build_gemini_adapter(model=GEMINI_MODEL, api_key=DUMMY_KEY, base_url=base_url, timeout_s=1.0)

    with pytest.raises(ProviderConnectionError):
        adapter.invoke(PROMPT)


def test_gemini_slow_answer_within_deadline_succeeds(gemini: FakeGemini) -> None:
    gemini.script([Delay(0.1, Reply(text="late but fine"))])

    assert gemini_adapter(gemini).invoke(PROMPT, timeout_s=CLIENT_TIMEOUT_S).text == "late but fine"


def test_gemini_stream_uses_sse_endpoint(gemini: FakeGemini) -> None:
    gemini.script([Reply(text="streamed answer", input_tokens=5, output_tokens=2)])
    chat = gemini_adapter(gemini).chat_model()

    chunks = list(chat.stream(list(PROMPT.messages())))

    assert "".join(str(chunk.content) for chunk in chunks) == "streamed answer"
    [request] = gemini.requests
    assert request.path == f"/v1/models/{GEMINI_MODEL}:streamGenerateContent"
    assert request.query.get("alt") == ["sse"]


def test_gemini_v1beta_path_is_served(gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "beta")
    gemini.script([Reply(text="beta")])

    assert gemini_adapter(gemini).invoke(PROMPT).text == "beta"
    assert gemini.requests[0].path == f"/v1beta/models/{GEMINI_MODEL}:generateContent"


# ------------------------------------------------------------------------------------------------------------
# Perplexity


def test_perplexity_answer_carries_text_tokens_citations_and_model(perplexity: FakePerplexity) -> None:
    perplexity.script(
        [
            Reply(
                text="Turnout is up 3% [1].",
                input_tokens=80,
                output_tokens=25,
                citations=[
                    Source("https://sos.example/turnout", "Turnout report", "2026-11-03"),
                    Source("https://news.example/b", "News B"),
                ],
            )
        ]
    )
    adapter = perplexity_adapter(perplexity)

    reply = adapter.invoke(PROMPT, timeout_s=CLIENT_TIMEOUT_S)

    assert reply.text == "Turnout is up 3% [1]."
    assert reply.model == PERPLEXITY_MODEL
    assert (reply.input_tokens, reply.output_tokens, reply.thinking_tokens) == (80, 25, 0)
    assert reply.finish_reason == "completed"
    assert reply.citations == (
        Citation(url="https://sos.example/turnout", title="Turnout report", date="2026-11-03"),
        Citation(url="https://news.example/b", title="News B", date=""),
    )
    assert adapter.tier == "realtime" and adapter.vendor == "perplexity"

    [request] = perplexity.requests
    assert request.method == "POST"
    assert request.path == "/v1/responses"
    assert request.model == PERPLEXITY_MODEL
    assert request.headers["authorization"] == "<redacted>"
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.body["input"] == [
        {"type": "message", "role": "system", "content": PROMPT.system},
        {"type": "message", "role": "user", "content": PROMPT.user},
    ]


PERPLEXITY_FAILURES: list[tuple[str, Action, type[ProviderError]]] = [
    ("500", Fail(status=500), ServerError),
    ("503", Fail(status=503), ServerError),
    ("504", Fail(status=504), ProviderTimeout),
    ("401", Fail(status=401), AuthError),
    ("403", Fail(status=403), AuthError),
    ("400", Fail(status=400, message="Invalid model 'sonar-xl'"), BadRequest),
    ("400-context-too-long", Fail(status=400, message="Prompt exceeds the context length"), ContextTooLong),
    ("404-unknown-model", Fail(status=404), ProviderUnavailable),
    ("malformed-json", Malformed(), MalformedResponse),
    (
        "wrong-field-type",
        Malformed(body=b'{"id": "r", "status": "completed", "output": 5}'),
        MalformedResponse,
    ),
    ("not-a-response", Malformed(body=b"{}"), MalformedResponse),
    ("status-failed", Malformed(body=b'{"id": "r", "status": "failed", "output": []}'), ServerError),
    ("empty-answer", Empty(), EmptyResponse),
    ("dropped-before-response", Drop(), ProviderConnectionError),
    ("dropped-mid-body", Drop(partial=True), ProviderConnectionError),
]


@pytest.mark.parametrize(
    ("action", "expected"),
    [case[1:] for case in PERPLEXITY_FAILURES],
    ids=[case[0] for case in PERPLEXITY_FAILURES],
)
def test_perplexity_failure_maps_to_error_class(
    perplexity: FakePerplexity, action: Action, expected: type[ProviderError]
) -> None:
    error = invoke_failing(perplexity_adapter(perplexity), perplexity, action)

    assert type(error) is expected, f"{type(error).__name__}: {error}"


def test_perplexity_429_reads_retry_after(perplexity: FakePerplexity) -> None:
    adapter = perplexity_adapter(perplexity)

    seconds = invoke_failing(adapter, perplexity, Fail(status=429, retry_after=2))
    assert type(seconds) is RateLimited
    assert seconds.retry_after_s == 2.0

    perplexity.reset()
    millis = invoke_failing(adapter, perplexity, Fail(status=429, headers={"retry-after-ms": "1500"}))
    assert millis.retry_after_s == 1.5

    perplexity.reset()
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    date = invoke_failing(adapter, perplexity, Fail(status=429, headers={"Retry-After": when}))
    assert date.retry_after_s is not None and 25 <= date.retry_after_s <= 31

    perplexity.reset()
    no_hint = invoke_failing(adapter, perplexity, Fail(status=429))
    assert type(no_hint) is RateLimited
    assert no_hint.retry_after_s is None


def test_perplexity_hang_times_out_at_the_deadline(perplexity: FakePerplexity) -> None:
    perplexity.script([Hang()])
    adapter = perplexity_adapter(perplexity)

    with pytest.raises(ProviderTimeout):
        adapter.invoke(PROMPT, timeout_s=DEADLINE_S)

    # No wall-clock bound (timing belongs in bench/): the call timed out, and its request was closed, long before
    # the client's own timeout.
    assert perplexity.request_count == 1
    assert perplexity.requests[0].client_gone.wait(PROMPTLY_S)


def test_perplexity_client_timeout_is_mapped_to_provider_timeout(perplexity: FakePerplexity) -> None:
    perplexity.script([Hang()])
    adapter = perplexity_adapter(perplexity, timeout_s=DEADLINE_S)

    with pytest.raises(Exception) as caught:
        adapter.chat_model().invoke(list(PROMPT.messages()))

    assert type(adapter.map_error(caught.value)) is ProviderTimeout
    assert perplexity.request_count == 1


def test_perplexity_connection_refused_is_connection_error(perplexity: FakePerplexity) -> None:
    with FakePerplexity() as closed:
        base_url = closed.base_url
    adapter = build_perplexity_adapter(
        model=PERPLEXITY_MODEL,
        api_key=DUMMY_KEY,
        base_url=base_url,
        timeout_s=1.0,
    )

    with pytest.raises(ProviderConnectionError):
        adapter.invoke(PROMPT)


def test_perplexity_chat_completions_endpoint_is_served(perplexity: FakePerplexity) -> None:
    from langchain_perplexity import ChatPerplexity
    from perplexity import Perplexity
    from pydantic import SecretStr

    perplexity.script([Reply(text="legacy", citations=[Source("https://x.example", "X", "2026-01-01")])])
    client = Perplexity(api_key=DUMMY_KEY, base_url=perplexity.base_url, max_retries=0, timeout=CLIENT_TIMEOUT_S)
    chat = ChatPerplexity(
        model="sonar", api_key=SecretStr(DUMMY_KEY), client=client, use_responses_api=False, timeout=CLIENT_TIMEOUT_S
    )

    message = chat.invoke(list(PROMPT.messages()))

    assert message.content == "legacy"
    assert message.additional_kwargs["citations"] == ["https://x.example"]
    assert perplexity.requests[0].path == "/chat/completions"


# ------------------------------------------------------------------------------------------------------------
# The fake servers themselves


def test_behaviour_hook_decides_when_the_script_is_empty(gemini: FakeGemini) -> None:
    seen: list[tuple[int, str]] = []

    def every_other_fails(index: int, request: RecordedRequest) -> Action:
        seen.append((index, request.model))
        return Fail(status=503) if index % 2 else Reply(text=f"answer {index}")

    gemini.behaviour = every_other_fails
    adapter = gemini_adapter(gemini)

    assert adapter.invoke(PROMPT).text == "answer 0"
    with pytest.raises(ServerError):
        adapter.invoke(PROMPT)
    assert adapter.invoke(PROMPT).text == "answer 2"
    assert seen == [(0, GEMINI_MODEL), (1, GEMINI_MODEL), (2, GEMINI_MODEL)]
    assert [request.action for request in gemini.requests] == ["Reply", "Fail", "Reply"]


def test_script_runs_before_default_behaviour(perplexity: FakePerplexity) -> None:
    perplexity.behaviour = Reply(text="default")
    perplexity.script([Fail(status=500), Reply(text="scripted")])
    adapter = perplexity_adapter(perplexity)

    with pytest.raises(ServerError):
        adapter.invoke(PROMPT)
    assert adapter.invoke(PROMPT).text == "scripted"
    assert adapter.invoke(PROMPT).text == "default"
    assert perplexity.request_count == 3


@pytest.mark.parametrize("server_class", [FakeGemini, FakePerplexity])
def test_stop_releases_hung_requests_promptly(server_class: type[FakeProviderServer]) -> None:
    server = server_class(behaviour=Hang())
    server.start()
    path = "/v1/responses" if server_class is FakePerplexity else f"/v1/models/{GEMINI_MODEL}:generateContent"
    results: list[Any] = []

    def call() -> None:
        try:
            # A client timeout far beyond the join below: the call ends because stop() released it.
            results.append(httpx.post(server.base_url + path, json={"model": "m"}, timeout=10 * PROMPTLY_S))
        except httpx.HTTPError as exc:
            results.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + PROMPTLY_S
    while server.request_count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    server.stop()
    caller.join(timeout=PROMPTLY_S)

    assert not caller.is_alive()
    assert isinstance(results[0], httpx.RemoteProtocolError)
