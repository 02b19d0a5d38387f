"""The provider adapter: one LangChain chat model, called with a hard per-attempt deadline.

Adapters know nothing of the graph. They turn a prompt into a :class:`ModelReply` or raise a
:class:`~providers.errors.ProviderError`; the graph records the outcome and decides what comes next.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from providers import async_calls
from providers.config import Tier
from providers.errors import (
    CallAborted,
    EmptyResponse,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    map_common_error,
)
from providers.secrets import redact_known


@dataclass(frozen=True)
class Citation:
    url: str
    title: str = ""
    date: str = ""


@dataclass(frozen=True)
class ModelReply:
    """What one successful provider call returned, normalised across vendors."""

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0  # includes thinking tokens: they are billed as output
    thinking_tokens: int = 0
    finish_reason: str = ""
    citations: tuple[Citation, ...] = ()
    # Mean token log-probability, only where the provider gives it (the local model); None otherwise.
    mean_logprob: float | None = None
    raw_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    """A provider-neutral prompt; adapters render it for their model."""

    system: str
    user: str
    # The instructions in one short sentence, for small models that echo a long system prompt instead of
    # following it (the embedded 270M gemma does).
    brief: str = ""

    def messages(self) -> list[BaseMessage]:
        return [SystemMessage(content=self.system), HumanMessage(content=self.user)]


def message_text(message: AIMessage) -> str:
    """Join the text parts of a chat message (Gemini and the Responses API return content blocks)."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") in (None, "text", "output_text"):
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "".join(parts)


# A natively async chat model (the cloud clients) runs on the process's loop (providers/async_calls.py), and an
# abandoned call is cancelled, which closes its connection. A blocking one (the local model, test fakes) runs in
# the adapter's pool and is asked to stop through the event it is handed (the local model checks it between
# tokens). Each adapter bounds its calls in flight (a bulkhead), so a hung provider cannot starve calls to
# healthy ones; when all its slots are busy a call fails at once instead of queueing behind hung ones.
BULKHEAD_WORKERS = 32
# How often a waiting call looks at its abort event.
_ABORT_POLL_S = 0.02


def natively_async(chat: BaseChatModel) -> bool:
    """Say whether the chat model has its own async generation (else LangChain runs the sync one in a thread)."""
    return type(chat)._agenerate is not BaseChatModel._agenerate


class ProviderAdapter:
    """Calls one chat model and normalises its reply and its failures.

    ``chat_factory`` builds the LangChain chat model lazily (imports of vendor SDKs are slow and a provider may
    never be used); tests inject a factory returning a fake chat model.
    """

    def __init__(
        self,
        *,
        name: str,
        tier: Tier,
        vendor: str,
        model: str,
        chat_factory: Callable[[], BaseChatModel],
        timeout_s: float,
    ) -> None:
        self.name = name
        self.tier = tier
        self.vendor = vendor
        self.model = model
        self.timeout_s = timeout_s
        self._chat_factory = chat_factory
        self._chat: BaseChatModel | None = None
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(BULKHEAD_WORKERS)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=BULKHEAD_WORKERS, thread_name_prefix=f"call-{self.name}"
                )
            return self._pool

    def chat_model(self) -> BaseChatModel:
        with self._lock:
            if self._chat is None:
                self._chat = self._chat_factory()
            return self._chat

    def render(self, prompt: Prompt) -> Sequence[BaseMessage]:
        return prompt.messages()

    def invoke(
        self, prompt: Prompt, *, timeout_s: float | None = None, abort: threading.Event | None = None
    ) -> ModelReply:
        """Call the model once; raise a ProviderError on any failure, ProviderTimeout past ``timeout_s``, and
        CallAborted once ``abort`` is set. Either way the call itself is stopped, not left running."""
        limit = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        if limit <= 0:
            raise ProviderTimeout("no time left before the request deadline", provider=self.name)
        # Build the client (and import its SDK, a second or more in a fresh process) before the clock starts: that
        # is this process's start-up, not the provider's latency, and must not time the first call out.
        try:
            chat = self.chat_model()
        except Exception as exc:
            raise self.map_error(exc) from exc
        if not self._slots.acquire(blocking=False):
            raise ProviderUnavailable(f"bulkhead full: {BULKHEAD_WORKERS} calls in flight", provider=self.name)
        stop = threading.Event()
        future: concurrent.futures.Future[ModelReply]
        try:
            if natively_async(chat):
                # The task runs in a copy of this thread's context (run_coroutine_threadsafe schedules it with
                # one): LangChain's callbacks (a streaming caller's token handler) follow the call.
                future = async_calls.submit(self._invoke_async(prompt))
            else:
                # In a copy of the caller's context, for the same reason: the run's callbacks (a streaming
                # handler, tracing spans, LangSmith) see the model call; without a streaming handler the client is
                # invoked, not streamed.
                future = self._executor().submit(
                    contextvars.copy_context().run, self._invoke_blocking, prompt, stop, time.monotonic() + limit
                )
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        ends = time.monotonic() + limit
        while True:
            left = ends - time.monotonic()
            step = left if abort is None else min(left, _ABORT_POLL_S)
            done, _ = concurrent.futures.wait([future], timeout=max(0.0, step))
            if done:
                return future.result()
            if left <= step:
                stop.set()
                future.cancel()
                raise ProviderTimeout(f"no answer within {limit:.2f}s", provider=self.name)
            if abort is not None and abort.is_set():
                stop.set()
                future.cancel()
                raise CallAborted("abandoned: its answer is no longer needed", provider=self.name)

    def expected_wait_s(self) -> float:
        """How long a new call would wait before it starts; cloud providers do not queue (the local model does)."""
        return 0.0

    def call_kwargs(self, stop: threading.Event, deadline: float) -> dict[str, Any]:
        """Extra arguments for a blocking chat model's call; the local adapter hands it the stop event and the
        call's deadline (monotonic), so it can stop between tokens and refuse a queue it cannot get through."""
        return {}

    def _invoke_blocking(
        self, prompt: Prompt, stop: threading.Event | None = None, deadline: float | None = None
    ) -> ModelReply:
        try:
            kwargs = self.call_kwargs(stop, deadline) if stop is not None and deadline is not None else {}
            message = self.chat_model().invoke(list(self.render(prompt)), **kwargs)
        except ProviderError as exc:
            exc.provider = exc.provider or self.name
            raise
        except Exception as exc:  # the SDKs raise many types; map_error turns each into our taxonomy
            raise self.map_error(exc) from exc
        return self._checked(message)

    async def _invoke_async(self, prompt: Prompt) -> ModelReply:
        try:
            message = await self.chat_model().ainvoke(list(self.render(prompt)))
        except ProviderError as exc:
            exc.provider = exc.provider or self.name
            raise
        except Exception as exc:  # the SDKs raise many types; map_error turns each into our taxonomy
            raise self.map_error(exc) from exc
        return self._checked(message)

    def _checked(self, message: BaseMessage) -> ModelReply:
        if not isinstance(message, AIMessage):
            raise MalformedResponse(f"expected an AI message, got {type(message).__name__}", provider=self.name)
        reply = self.to_reply(message)
        if not reply.text.strip():
            raise EmptyResponse(f"empty answer (finish_reason={reply.finish_reason or 'unknown'})", provider=self.name)
        return reply

    def to_reply(self, message: AIMessage) -> ModelReply:
        usage: dict[str, Any] = dict(message.usage_metadata or {})
        details: dict[str, Any] = dict(usage.get("output_token_details") or {})
        meta = dict(message.response_metadata or {})
        return ModelReply(
            # An answer that quotes one of our keys back (a proxy's debug echo) must not carry it further.
            text=redact_known(message_text(message)),
            model=str(meta.get("model_name") or meta.get("model") or self.model),
            input_tokens=int(usage.get("input_tokens", 0) or 0),
            output_tokens=int(usage.get("output_tokens", 0) or 0),
            thinking_tokens=int(details.get("reasoning", 0) or 0),
            finish_reason=str(meta.get("finish_reason") or ""),
            raw_metadata=meta,
        )

    def map_error(self, exc: Exception) -> ProviderError:
        """Map an SDK exception to the taxonomy; vendor adapters extend this for their SDK's types."""
        return map_common_error(exc, self.name)
