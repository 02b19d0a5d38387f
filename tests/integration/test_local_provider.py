"""The local tier: prompt formatting, the real embedded model (SmolLM2) through the adapter, and the
OpenAI-compatible server path against a fake server."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from providers.base import Prompt
from providers.errors import (
    AuthError,
    ContextTooLong,
    MalformedResponse,
    PermanentError,
    ProviderConnectionError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ServerError,
)
from providers.local.adapter import LocalAdapter, build_local_adapter
from providers.local.cpu_quirks import cpu_flags, has_amx, safe_model_params
from providers.local.llamacpp import UNKNOWN_CALL_S, ChatLlamaCppLocal, LocalGenerationTimeout, get_llama_handle
from providers.local.model_file import check_local_available, default_model_path
from providers.local.openai_compat import chat_completions_url
from providers.local.templates import (
    Role,
    detect_template,
    format_chatml,
    format_gemma,
    format_llama3,
    format_prompt,
)
from providers.testing.openai_server import Answer, Fail, FakeOpenAIServer, Hang, Malformed

PROMPT = Prompt(system="You are a campaign analyst.", user="Name one issue voters care about in a city election.")


# ----------------------------------------------------------------------------------------------------------
# Prompt formatting (no model)


def test_gemma_folds_system_into_first_user_turn() -> None:
    prompt = format_prompt([SystemMessage("Be brief."), HumanMessage("Who leads?")], "gemma")
    assert prompt == "<start_of_turn>user\nBe brief.\n\nWho leads?<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_multi_turn_alternates_and_merges_same_role() -> None:
    turns: list[tuple[Role, str]] = [
        ("system", "S"),
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("user", "Q2b"),
    ]
    assert format_gemma(turns) == (
        "<start_of_turn>user\nS\n\nQ1<end_of_turn>\n"
        "<start_of_turn>model\nA1<end_of_turn>\n"
        "<start_of_turn>user\nQ2\n\nQ2b<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_system_only_becomes_a_user_turn() -> None:
    assert format_gemma([("system", "S")]) == "<start_of_turn>user\nS<end_of_turn>\n<start_of_turn>model\n"


def test_no_template_writes_a_bos_token() -> None:
    # The tokenizer adds BOS itself; a textual one would be a second, which degrades answers.
    messages = [SystemMessage("S"), HumanMessage("U")]
    for template in ("gemma", "llama3", "chatml"):
        prompt = format_prompt(messages, template)
        assert "<bos>" not in prompt and "<|begin_of_text|>" not in prompt


def test_llama3_format() -> None:
    prompt = format_llama3([("system", "S"), ("user", "U"), ("assistant", "A"), ("user", "V")])
    assert prompt == (
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nV<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_chatml_format() -> None:
    assert format_chatml([("system", "S"), ("user", "U")]) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )


def test_message_roles_map_from_langchain_types() -> None:
    prompt = format_prompt([HumanMessage("U"), AIMessage("A"), HumanMessage("V")], "chatml")
    assert "<|im_start|>assistant\nA<|im_end|>" in prompt


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (
            {"tokenizer.chat_template": "{{ '<start_of_turn>' + role }}", "general.architecture": "llama"},
            "gemma",
        ),
        (
            {"tokenizer.chat_template": "{{ '<|start_header_id|>' }}", "general.architecture": "llama"},
            "llama3",
        ),
        ({"tokenizer.chat_template": "{{ '<|im_start|>' }}"}, "chatml"),
        ({"general.architecture": "gemma3"}, "gemma"),
        ({"general.architecture": "llama", "tokenizer.ggml.pre": "llama-bpe"}, "llama3"),
        ({"general.architecture": "qwen2"}, "chatml"),
        ({}, "gemma"),
    ],
)
def test_detect_template(metadata: dict[str, str], expected: str) -> None:
    assert detect_template(metadata) == expected


# ----------------------------------------------------------------------------------------------------------
# Availability (no model load)


def test_missing_model_file_is_unavailable_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "llama-3.1-8b.gguf"
    reason = check_local_available(str(missing), None)
    assert reason is not None and str(missing) in reason
    with pytest.raises(ProviderUnavailable) as info:
        build_local_adapter(model_path=str(missing), base_url=None, model="", timeout_s=5)
    assert str(missing) in str(info.value)
    assert info.value.provider == "local"


def test_non_gguf_file_and_directory_are_unavailable(tmp_path: Path) -> None:
    text_file = tmp_path / "model.gguf"
    text_file.write_text("not a model")
    assert "not a GGUF" in (check_local_available(str(text_file), None) or "")
    assert "not a file" in (check_local_available(str(tmp_path), None) or "")


def test_base_url_wins_over_model_path(tmp_path: Path) -> None:
    assert check_local_available(str(tmp_path / "missing.gguf"), "http://127.0.0.1:8080") is None
    assert check_local_available(None, "localhost:8080") is not None


def test_embedded_default_is_available() -> None:
    assert check_local_available(None, None) is None


def test_corrupt_gguf_fails_at_load_as_unavailable(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00" * 256)
    adapter = build_local_adapter(model_path=str(corrupt), base_url=None, model="", timeout_s=30)
    with pytest.raises(ProviderUnavailable) as info:
        adapter.invoke(PROMPT)
    assert str(corrupt) in str(info.value)


def test_llama_cpp_errors_map_to_the_taxonomy() -> None:
    adapter = build_local_adapter(model_path=None, base_url=None, model="", timeout_s=5)
    overflow = ValueError("Requested tokens (3000) exceed context window of 2048")
    assert isinstance(adapter.map_error(overflow), ContextTooLong)
    assert isinstance(adapter.map_error(RuntimeError("llama_decode returned -3")), ServerError)
    assert isinstance(adapter.map_error(LocalGenerationTimeout("late")), ProviderTimeout)


# ----------------------------------------------------------------------------------------------------------
# The real embedded model


@pytest.fixture(scope="module")
def model_path() -> str:
    path = str(default_model_path())
    get_llama_handle(path)  # one load for the whole module; every adapter below shares it
    return path


def test_real_embedded_model_answers_through_the_adapter(model_path: str) -> None:
    adapter = build_local_adapter(model_path=None, base_url=None, model="", timeout_s=60, max_tokens=24)
    assert isinstance(adapter, LocalAdapter)
    assert (adapter.tier, adapter.vendor, adapter.model) == ("local", "local", "SmolLM2-135M-Instruct.Q4_1")
    reply = adapter.invoke(PROMPT)
    assert reply.text.strip()
    assert reply.input_tokens > 0
    assert 0 < reply.output_tokens <= 24
    assert reply.finish_reason in {"stop", "length"}
    assert reply.model == "SmolLM2-135M-Instruct.Q4_1"
    assert reply.raw_metadata["gguf_name"].lower().startswith("smollm2")
    assert reply.raw_metadata["chat_template"] == "chatml"
    assert reply.mean_logprob is None


def test_same_seed_gives_the_same_answer(model_path: str) -> None:
    chat = ChatLlamaCppLocal(model_path=model_path, max_tokens=12, temperature=0.8, seed=7)
    first, second = chat.invoke(PROMPT.messages()), chat.invoke(PROMPT.messages())
    assert first.content == second.content


def test_logprobs_mode_reports_a_finite_negative_mean(model_path: str) -> None:
    adapter = build_local_adapter(model_path=None, base_url=None, model="", timeout_s=60, max_tokens=6, logprobs=True)
    reply = adapter.invoke(PROMPT)
    assert reply.mean_logprob is not None
    assert math.isfinite(reply.mean_logprob) and reply.mean_logprob < 0
    assert reply.raw_metadata["mean_logprob"] == reply.mean_logprob


def test_mean_logprob_matches_llama_cpp_reference(model_path: str) -> None:
    """Check our per-step log-softmax against llama-cpp-python's own logprobs (logits_all=True)."""
    import llama_cpp

    messages = PROMPT.messages()
    ours = ChatLlamaCppLocal(model_path=model_path, max_tokens=5, temperature=0.0, logprobs=True)
    message = ours.invoke(messages)
    with safe_model_params(avoid_extra_buffers=has_amx()):  # as ours loads: AMX repacking crashes decode
        reference = llama_cpp.Llama(model_path=model_path, n_ctx=256, logits_all=True, verbose=False)
    try:
        result = reference.create_completion(
            format_prompt(messages, "chatml"), max_tokens=5, temperature=0.0, logprobs=1
        )
    finally:
        reference.close()
    assert isinstance(result, dict)
    logprobs = result["choices"][0]["logprobs"]
    token_logprobs = [float(x) for x in (logprobs["token_logprobs"] if logprobs else []) if x is not None]
    assert 0 < len(token_logprobs) <= 5  # the reference run returned a log probability per generated token
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == len(token_logprobs)
    expected = sum(token_logprobs) / len(token_logprobs)
    assert message.response_metadata["mean_logprob"] == pytest.approx(expected, abs=1e-3)


def test_prompt_longer_than_the_window_is_context_too_long(model_path: str) -> None:
    adapter = build_local_adapter(model_path=None, base_url=None, model="", timeout_s=60, max_tokens=16)
    long_prompt = Prompt(system="Summarise.", user="The council met and debated the budget. " * 400)
    with pytest.raises(ContextTooLong) as info:
        adapter.invoke(long_prompt)
    assert "2048" in str(info.value)


def test_deadline_aborts_generation_and_frees_the_model(model_path: str) -> None:
    slow = ChatLlamaCppLocal(model_path=model_path, max_tokens=1500, timeout_s=0.3)
    long_prompt = [HumanMessage("Discuss turnout. " * 100)]
    with pytest.raises(LocalGenerationTimeout):
        slow.invoke(long_prompt)
    quick = ChatLlamaCppLocal(model_path=model_path, max_tokens=4, timeout_s=30)
    assert quick.invoke(PROMPT.messages()).usage_metadata is not None


def test_concurrent_calls_share_one_model_safely(model_path: str) -> None:
    adapter = build_local_adapter(model_path=None, base_url=None, model="", timeout_s=60, max_tokens=6)
    results: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(adapter.invoke(PROMPT).text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(results) == 3
    # Same prompt, same seed, one serialised context: the answers agree.
    assert len(set(results)) == 1


# ----------------------------------------------------------------------------------------------------------
# The OpenAI-compatible server path


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def _server_adapter(
    base_url: str,
    *,
    model_path: str | None = None,
    timeout_s: float = 5.0,
    logprobs: bool = False,
    api_key: str | None = None,
) -> LocalAdapter:
    return build_local_adapter(
        base_url=base_url,
        model_path=model_path,
        model="llama3.1:8b",
        timeout_s=timeout_s,
        logprobs=logprobs,
        api_key=api_key,
    )


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_chat_completions_url_accepts_base_with_or_without_v1(suffix: str) -> None:
    assert chat_completions_url("http://127.0.0.1:8080" + suffix) == "http://127.0.0.1:8080/v1/chat/completions"


def test_server_answer_is_parsed(server: FakeOpenAIServer) -> None:
    server.script([Answer(text="Turnout.", prompt_tokens=30, completion_tokens=3, finish_reason="length")])
    adapter = _server_adapter(server.base_url + "/v1", model_path="/does/not/exist.gguf", api_key="k")
    reply = adapter.invoke(PROMPT)
    assert (reply.text, reply.input_tokens, reply.output_tokens) == ("Turnout.", 30, 3)
    assert reply.finish_reason == "length"
    assert reply.model == "fake-local"
    assert reply.mean_logprob is None
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k"
    assert request.body["model"] == "llama3.1:8b"
    assert request.body["messages"] == [
        {"role": "system", "content": PROMPT.system},
        {"role": "user", "content": PROMPT.user},
    ]
    assert request.body["max_tokens"] == 256 and request.body["stream"] is False


def test_server_logprobs_are_averaged(server: FakeOpenAIServer) -> None:
    server.script([Answer(logprobs=(-0.5, -1.5))])
    reply = _server_adapter(server.base_url, logprobs=True).invoke(PROMPT)
    assert reply.mean_logprob == pytest.approx(-1.0)
    assert server.requests[0].body["logprobs"] is True


def test_server_500_is_server_error_without_retry(server: FakeOpenAIServer) -> None:
    server.script([Fail(status=500)])
    with pytest.raises(ServerError):
        _server_adapter(server.base_url).invoke(PROMPT)
    assert len(server.requests) == 1


def test_server_hang_times_out_without_hanging_the_test(server: FakeOpenAIServer) -> None:
    server.script([Hang()])
    # The adapter's own timeout ends the call (no wall clock measured here: a hang would hang the test, which
    # pytest's run would show); one request, not retried.
    with pytest.raises(ProviderTimeout):
        _server_adapter(server.base_url, timeout_s=0.5).invoke(PROMPT)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (Fail(status=429, message="slow down", headers=(("Retry-After", "2"),)), RateLimited),
        (Fail(status=400, message="the request exceeds the available context size"), ContextTooLong),
        (Fail(status=400, message="unsupported parameter: seed"), PermanentError),
        (Fail(status=401, message="bad key"), AuthError),
        (Fail(status=404, message="model 'llama3.1:8b' not found"), ProviderUnavailable),
        (Fail(status=503, message="Loading model"), ServerError),
        (Malformed(), MalformedResponse),
    ],
)
def test_server_failures_map_to_the_taxonomy(
    server: FakeOpenAIServer, action: Fail | Malformed, error: type[Exception]
) -> None:
    server.script([action])
    with pytest.raises(error) as info:
        _server_adapter(server.base_url).invoke(PROMPT)
    if isinstance(info.value, RateLimited):
        assert info.value.retry_after_s == 2.0


def test_unreachable_server_is_a_connection_error() -> None:
    with FakeOpenAIServer() as gone:
        base_url = gone.base_url
    with pytest.raises(ProviderConnectionError):
        _server_adapter(base_url).invoke(PROMPT)


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    text = "processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_tile amx_int8\nbugs\t\t: spectre_v1\n"
    assert {"amx_tile", "avx512f"} <= cpu_flags(text) and "spectre_v1" not in cpu_flags(text)
    assert cpu_flags("processor\t: 0\n") == frozenset()


def test_a_load_avoiding_extra_buffers_changes_only_that_load() -> None:
    import llama_cpp.llama_cpp as low_level

    original = low_level.llama_model_default_params
    with safe_model_params(avoid_extra_buffers=True):
        assert low_level.llama_model_default_params().use_extra_bufts is False
    assert low_level.llama_model_default_params is original
    assert original().use_extra_bufts is True  # llama.cpp's default, back for every other load
    with safe_model_params(avoid_extra_buffers=False):
        assert low_level.llama_model_default_params is original


def test_a_busy_model_never_reports_no_wait_before_its_first_call_is_timed(model_path: str) -> None:
    """Before, a busy model whose first call had not finished reported a wait of 0 s, and a cold process's
    cross-checks queued behind each other on a model that looked idle."""
    handle = get_llama_handle(model_path)
    fresh = dataclasses.replace(handle, lock=threading.Lock(), queue_lock=threading.Lock(), latency_s=None)
    fresh.busy = True
    assert fresh.expected_wait_s() == UNKNOWN_CALL_S
    fresh.observe(0.2)
    assert fresh.expected_wait_s() == pytest.approx(0.2)
    fresh.busy = False
    assert fresh.expected_wait_s() == 0.0
