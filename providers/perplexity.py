"""The Perplexity adapter: ``ChatPerplexity`` on the Agent API (``POST /v1/responses``), perplexityai SDK.

``ChatPerplexity`` has no ``base_url`` field and builds its SDK clients with six retries unless it is handed
clients, so we build ``Perplexity``/``AsyncPerplexity`` ourselves: explicit base URL, ``max_retries=0`` and
the per-attempt timeout. The SDK is imported only when the chat model is first built.

Failure mapping (the SDK is a Stainless client over httpx; it wraps transport errors itself):

=============================================  ===========================================================
wire / SDK exception                           our class
=============================================  ===========================================================
429 RateLimitError                             RateLimited (retry_after_s from Retry-After / -ms header)
5xx InternalServerError                        ServerError (504: ProviderTimeout)
401 AuthenticationError, 403 PermissionDenied  AuthError
400 saying the prompt is too long, or 413      ContextTooLong
400 BadRequestError, 422, other 4xx            BadRequest
402, 404 (unknown or retired model)            ProviderUnavailable
APITimeoutError                                ProviderTimeout
APIConnectionError (refused, dropped)          ProviderConnectionError
invalid JSON, not a response object            MalformedResponse
200 with ``status: failed``                    ServerError
200 with no text                               EmptyResponse (raised by the base adapter)
=============================================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage

from providers.base import Citation, ModelReply, ProviderAdapter
from providers.errors import (
    MalformedResponse,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ServerError,
    from_status,
    map_common_error,
    parse_retry_after,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


class PerplexityAdapter(ProviderAdapter):
    """A ProviderAdapter that knows the perplexityai SDK's errors and Perplexity's citations."""

    def map_error(self, exc: Exception) -> ProviderError:
        """Map a perplexityai SDK exception (or what langchain-perplexity raises) to the taxonomy."""
        import perplexity

        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, perplexity.APIStatusError):
            return _map_status_error(exc, self.name)
        # APITimeoutError is a subclass of APIConnectionError: test it first.
        if isinstance(exc, perplexity.APITimeoutError):
            return ProviderTimeout(str(exc) or "timed out", provider=self.name)
        if isinstance(exc, perplexity.APIConnectionError):
            cause = exc.__cause__
            detail = f"{exc}: {cause}" if cause is not None else str(exc)
            return ProviderConnectionError(detail, provider=self.name)
        if isinstance(exc, perplexity.APIResponseValidationError):
            return MalformedResponse(str(exc), provider=self.name)
        return map_common_error(exc, self.name)

    def to_reply(self, message: AIMessage) -> ModelReply:
        """Normalise the message; citations come from ``additional_kwargs``, not ``response_metadata``."""
        meta = message.response_metadata or {}
        status = str(meta.get("status") or "")
        if status == "failed":
            # The Agent API reports a failed run as HTTP 200; langchain-perplexity keeps only the status.
            raise ServerError(f"response {meta.get('id', '')} has status 'failed'", provider=self.name)
        reply = super().to_reply(message)
        if not reply.text.strip() and not status and not meta.get("id"):
            # The SDK parses leniently: a body that is not a response at all arrives as an empty message.
            raise MalformedResponse("response has no id, status or text", provider=self.name)
        return ModelReply(
            text=reply.text,
            model=reply.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            thinking_tokens=reply.thinking_tokens,
            finish_reason=reply.finish_reason or status,
            citations=tuple(_citations(message.additional_kwargs or {})),
            raw_metadata=reply.raw_metadata,
        )


def build_perplexity_adapter(
    *,
    name: str = "perplexity",
    model: str,
    api_key: str,
    base_url: str | None,
    timeout_s: float,
) -> ProviderAdapter:
    """Build the Perplexity adapter; the chat model (and the SDK import) waits until the first call."""

    def chat_factory() -> BaseChatModel:
        import httpx
        from langchain_perplexity import ChatPerplexity
        from perplexity import AsyncPerplexity, Perplexity
        from pydantic import SecretStr

        from providers.pools import HTTPX_POOLS

        client_args: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url or None,
            "max_retries": 0,
            "timeout": timeout_s,
        }
        # The clients are ours, so ChatPerplexity's own max_retries/timeout are never used; setting them too
        # keeps its repr honest.
        return ChatPerplexity(
            model=model,
            api_key=SecretStr(api_key),
            use_responses_api=True,
            client=Perplexity(**client_args),
            # Calls are async so an abandoned one can be cancelled (providers/async_calls.py); connections come
            # from the process's pools (providers/pools.py), kept alive between calls and between clients.
            async_client=AsyncPerplexity(
                **client_args,
                http_client=httpx.AsyncClient(
                    base_url=base_url or "https://api.perplexity.ai", timeout=timeout_s, transport=HTTPX_POOLS
                ),
            ),
            max_retries=0,
            timeout=timeout_s,
        )

    return PerplexityAdapter(
        name=name,
        tier="realtime",
        vendor="perplexity",
        model=model,
        chat_factory=chat_factory,
        timeout_s=timeout_s,
    )


# ----------------------------------------------------------------------------------------------------------


def _map_status_error(exc: Any, provider: str) -> ProviderError:
    code = int(getattr(exc, "status_code", 0) or 0)
    return from_status(code, _error_message(exc), provider=provider, retry_after_s=_retry_after(exc))


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return str(getattr(exc, "message", "") or exc)


def _retry_after(exc: Any) -> float | None:
    return parse_retry_after(getattr(getattr(exc, "response", None), "headers", None))


def _citations(extra: Mapping[str, Any]) -> Iterator[Citation]:
    """Yield search results (url, title, date) first, then bare citation URLs not already among them."""
    seen: set[str] = set()
    for result in extra.get("search_results") or []:
        url = _field(result, "url")
        if url and url not in seen:
            seen.add(url)
            yield Citation(url=url, title=_field(result, "title"), date=_field(result, "date"))
    for item in extra.get("citations") or []:
        url = item if isinstance(item, str) else _field(item, "url")
        if url and url not in seen:
            seen.add(url)
            yield Citation(url=url, title="" if isinstance(item, str) else _field(item, "title"))


def _field(item: Any, name: str) -> str:
    value = item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)
    return "" if value is None else str(value)
