"""The local tier's adapter: reply normalisation and error mapping for both local chat models."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
)
from pydantic import SecretStr

from providers.base import ModelReply, Prompt, ProviderAdapter
from providers.errors import (
    CallAborted,
    ContextTooLong,
    Overloaded,
    PermanentError,
    ProviderError,
    ProviderUnavailable,
    ServerError,
    from_status,
    map_common_error,
    parse_retry_after,
    says_context_too_long,
)
from providers.local.llamacpp import (
    ChatLlamaCppLocal,
    LocalGenerationCancelled,
    LocalModelUnavailable,
    LocalOverloaded,
    PromptTooLong,
)
from providers.local.model_file import check_local_available, default_model_path, default_model_stem
from providers.local.openai_compat import ChatOpenAICompatLocal
from providers.local.templates import DEFAULT_MAX_TOKENS, DEFAULT_N_CTX, DEFAULT_SEED, DEFAULT_TEMPERATURE

if TYPE_CHECKING:
    pass


# ----------------------------------------------------------------------------------------------------------
# The adapter
# ----------------------------------------------------------------------------------------------------------


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

    def call_kwargs(self, stop: threading.Event, deadline: float) -> dict[str, Any]:
        """Hand the in-process model the stop event and the call's deadline.

        It stops between tokens once ``stop`` is set and refuses a queue it cannot get through in time; a local
        server is an HTTP call and takes neither.
        """
        return {"cancel": stop, "deadline": deadline} if isinstance(self.chat_model(), ChatLlamaCppLocal) else {}

    def expected_wait_s(self) -> float:
        """Return the queue's expected wait for the in-process model (0 until it is loaded)."""
        chat = self._chat
        if isinstance(chat, ChatLlamaCppLocal):
            handle = chat.loaded_handle()
            if handle is not None:
                return handle.expected_wait_s()
        return 0.0

    def to_reply(self, message: AIMessage) -> ModelReply:
        reply = super().to_reply(message)
        mean = reply.raw_metadata.get("mean_logprob")
        return replace(reply, mean_logprob=float(mean)) if isinstance(mean, int | float) else reply

    def map_error(self, exc: Exception) -> ProviderError:
        import httpx

        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, LocalOverloaded):
            return Overloaded(str(exc), provider=self.name, retry_after_s=exc.retry_after_s)
        if isinstance(exc, LocalGenerationCancelled):
            return CallAborted(str(exc), provider=self.name)
        if isinstance(exc, LocalModelUnavailable):
            return ProviderUnavailable(str(exc), provider=self.name)
        if isinstance(exc, PromptTooLong):
            return ContextTooLong(str(exc), provider=self.name)
        if isinstance(exc, ValueError) and says_context_too_long(str(exc)):
            return ContextTooLong(str(exc), provider=self.name)
        if isinstance(exc, httpx.HTTPStatusError):
            response = exc.response
            # Not BadRequest (which stops the analysis) for a plain 4xx: a local server rejecting our fixed
            # request shape is a dialect mismatch of this server, and a cloud provider will still take the prompt.
            return from_status(
                response.status_code,
                response.text[:500],
                provider=self.name,
                retry_after_s=parse_retry_after(response.headers),
                rejected=PermanentError,
            )
        if isinstance(exc, RuntimeError):
            # llama_decode failures (out of memory for the KV cache, a backend error): the next call may work.
            return ServerError(f"local inference failed: {exc}", provider=self.name)
        return map_common_error(exc, self.name)


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
    queue_limit: int = 4,
) -> LocalAdapter:
    """Build the local tier's adapter; raise ProviderUnavailable when it cannot work at all.

    ``base_url`` wins over ``model_path``; with neither, the embedded SmolLM2-135M-Instruct is used. ``model`` is the
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
    display = model or (explicit.stem if explicit else default_model_stem())

    def make_llama_chat() -> BaseChatModel:
        if explicit is not None:
            path = explicit
        else:
            try:
                path = default_model_path()
            except OSError as exc:
                raise LocalModelUnavailable(str(exc)) from exc
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
            queue_limit=queue_limit,
        )

    return LocalAdapter(
        name=name,
        tier="local",
        vendor="local",
        model=display,
        chat_factory=make_llama_chat,
        timeout_s=timeout_s,
    )
