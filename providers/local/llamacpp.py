"""In-process llama.cpp: one loaded model per file and process, and a LangChain chat model over it."""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.utils import LC_ID_PREFIX

from providers.local.cpu_quirks import has_amx, safe_model_params
from providers.local.model_file import model_file_problem
from providers.local.templates import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_N_CTX,
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    STOP_STRINGS,
    ChatTemplate,
    detect_template,
    format_prompt,
)

if TYPE_CHECKING:
    import llama_cpp


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


class LocalGenerationCancelled(RuntimeError):
    """The caller stopped the call (its answer is no longer needed): waiting or generating ended at once."""


class LocalOverloaded(RuntimeError):
    """The model's queue is full, or the expected wait in it is longer than the call may take."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# How often a queued call looks at its deadline and its cancel event while it waits for the model.
_QUEUE_POLL_S = 0.05
# Weight of the newest call in the running mean of generation time (the queue's expected wait).
_LATENCY_WEIGHT = 0.3
# A call ahead in the queue before any call has been timed: a guess below the embedded model's 1.5-4 s on two
# cores. Reporting 0 let a cold process's cross-checks queue behind each other on a model that looked idle.
UNKNOWN_CALL_S = 1.0


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
    cancel: threading.Event | None = None
    abort_callback: Any = None  # the ctypes callback must stay referenced as long as the context lives
    # The bounded queue in front of the one model: calls waiting for ``lock``, and the observed time of one call.
    waiting: int = 0
    busy: bool = False
    latency_s: float | None = None
    queue_lock: threading.Lock = field(default_factory=threading.Lock)

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def should_stop(self) -> bool:
        """Stop generating: the deadline passed, or the caller is gone (read between tokens and inside decode)."""
        return self.past_deadline() or (self.cancel is not None and self.cancel.is_set())

    def expected_wait_s(self) -> float:
        """Return how long a new call would wait before it starts: calls ahead of it x the observed call time
        (``UNKNOWN_CALL_S`` before any call has been timed: a busy model is never reported idle)."""
        with self.queue_lock:
            ahead = self.waiting + (1 if self.busy else 0)
            return ahead * (self.latency_s if self.latency_s is not None else UNKNOWN_CALL_S)

    def observe(self, seconds: float) -> None:
        with self.queue_lock:
            previous = self.latency_s
            self.latency_s = seconds if previous is None else previous + _LATENCY_WEIGHT * (seconds - previous)


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
# One level down from llama.cpp's own: it logs model quirks it works around (a token type it overrides, a cache
# size it picks, every metadata key it loads) as errors and warnings, while real failures reach us as
# exceptions. GGML levels: 0 none, 1 info, 2 warn, 3 error, 4 debug, 5 continuation.
_GGML_LEVELS = {
    0: logging.DEBUG,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
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

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]  # llama_cpp ships no type hints
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        _LLAMA_LOG.log(_GGML_LEVELS.get(level, logging.DEBUG), "%s", text.decode("utf-8", "replace").rstrip())

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def _load_handle(path: Path, n_ctx: int, n_threads: int) -> _Handle:
    import llama_cpp

    _route_llama_logs()
    problem = model_file_problem(path)
    if problem:
        raise LocalModelUnavailable(problem)
    try:
        # logits_all stays False: it makes llama.cpp compute the vocabulary-wide output for every prompt
        # token. Log-probabilities are read from the row of logits each token was sampled from instead.
        # Without AMX's weight repacking on CPUs that have it: there llama_decode segfaults (cpu_quirks.py).
        with safe_model_params(avoid_extra_buffers=has_amx()):
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
        return handle.should_stop()

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
    # Calls that may wait for the model (it serves one at a time); more are refused at once (LocalOverloaded).
    queue_limit: int = 4

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

    def loaded_handle(self) -> _Handle | None:
        """Return the model's handle if it is loaded already (never loads it)."""
        path = Path(self.model_path).expanduser().resolve()
        with _REGISTRY_LOCK:
            return _HANDLES.get((str(path), self.n_ctx))

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
        call_deadline = kwargs.get("deadline")
        if isinstance(call_deadline, float):
            deadline = call_deadline if deadline is None else min(deadline, call_deadline)
        handle = self.load()
        template = self.chat_template or handle.template
        prompt = format_prompt(messages, template)
        stops = [*STOP_STRINGS[template], *(self.stop or []), *(stop or [])]
        cancel = kwargs.get("cancel")
        self._wait_for_model(handle, deadline, cancel if isinstance(cancel, threading.Event) else None)
        started = time.monotonic()
        try:
            handle.deadline = deadline
            handle.cancel = cancel if isinstance(cancel, threading.Event) else None
            completion = self._complete(handle, prompt, stops, _token_sink(run_manager))
            handle.observe(time.monotonic() - started)
        finally:
            handle.deadline = None
            handle.cancel = None
            with handle.queue_lock:
                handle.busy = False
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

    def _wait_for_model(self, handle: _Handle, deadline: float | None, cancel: threading.Event | None) -> None:
        """Take the model, or refuse at once when the queue is full or its expected wait outlasts the deadline;
        a queued call leaves the queue as soon as its caller is gone or its deadline passes."""
        expected = handle.expected_wait_s()
        with handle.queue_lock:
            queued = handle.waiting + (1 if handle.busy else 0)
            if handle.busy and handle.waiting >= self.queue_limit:
                raise LocalOverloaded(
                    f"local model queue full ({handle.waiting} waiting, limit {self.queue_limit})",
                    retry_after_s=max(1.0, expected),
                )
            if deadline is not None and handle.busy and expected > deadline - time.monotonic():
                raise LocalOverloaded(
                    f"local model busy: expected wait {expected:.1f} s ({queued} ahead) exceeds the "
                    f"{max(0.0, deadline - time.monotonic()):.1f} s this call may take",
                    retry_after_s=max(1.0, expected),
                )
            handle.waiting += 1
        try:
            while not handle.lock.acquire(timeout=_QUEUE_POLL_S):
                if cancel is not None and cancel.is_set():
                    raise LocalGenerationCancelled("the caller left while the call waited for the local model")
                if deadline is not None and time.monotonic() > deadline:
                    raise LocalGenerationTimeout("local model busy with other calls until the deadline")
            with handle.queue_lock:
                handle.busy = True
        finally:
            with handle.queue_lock:
                handle.waiting -= 1

    def _complete(
        self, handle: _Handle, prompt: str, stops: Sequence[str], on_text: Callable[[str], None] | None = None
    ) -> _Completion:
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
        sent = 0  # characters of the answer already handed to on_text
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
                if on_text is not None:
                    sent = _stream_text(text, stop_bytes, sent, on_text)
                if len(completion) >= self.max_tokens:
                    break
        except RuntimeError as exc:
            # An aborted or failed llama_decode leaves llama.cpp's KV cache out of step with
            # llama-cpp-python's record of it; forgetting the cached prefix makes the next call start afresh.
            llm.reset()  # type: ignore[no-untyped-call]  # llama_cpp ships no type hints
            if handle.past_deadline():
                raise LocalGenerationTimeout("local generation aborted at its deadline") from exc
            if handle.cancel is not None and handle.cancel.is_set():
                raise LocalGenerationCancelled("local generation stopped: the caller left") from exc
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
                if handle.cancel is not None and handle.cancel.is_set():
                    raise LocalGenerationCancelled("local generation stopped between tokens: the caller left")
                yield token
        finally:
            generator.close()


def _token_sink(run_manager: CallbackManagerForLLMRun | None) -> Callable[[str], None] | None:
    """Hand each new piece of text to LangChain's token callback (what a streaming caller listens to)."""
    if run_manager is None:
        return None
    manager = run_manager
    # The id LangChain gives a streamed call's chunks: a listener tells one call's tokens from another's by it.
    message_id = f"{LC_ID_PREFIX}-{manager.run_id}"

    def sink(piece: str) -> None:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, id=message_id))
        manager.on_llm_new_token(piece, chunk=chunk)

    return sink


def _stream_text(text: bytes, stops: Sequence[bytes], sent: int, on_text: Callable[[str], None]) -> int:
    """Send the answer's new characters, holding back a tail that may be the start of a stop string (it would
    be cut from the answer) and an incomplete UTF-8 sequence. Return how many characters are now sent."""
    held = max((n for stop in stops for n in range(len(stop) - 1, 0, -1) if text.endswith(stop[:n])), default=0)
    safe = text[: len(text) - held].decode("utf-8", errors="ignore")
    if len(safe) > sent:
        on_text(safe[sent:])
        return len(safe)
    return sent


def _is_end_of_generation(llm: llama_cpp.Llama, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token))


def _first_stop(text: bytes, stops: Sequence[bytes]) -> int | None:
    positions = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(positions) if positions else None
