"""The Gemini adapter: ``ChatGoogleGenerativeAI`` (langchain-google-genai 4.x on the google-genai SDK).

The SDK is imported only inside functions: importing it costs about a second and many processes (the CLI,
tests over fake chat models) never call Gemini.

Failure mapping, as seen through the real client (langchain wraps the SDK's ``ClientError``/``ServerError``
in its own classes and keeps the SDK error as ``__cause__``; the SDK's transport is ``httpx2``, a fork of
httpx whose exceptions are *not* httpx exceptions):

=============================================  ===========================================================
wire                                           our class
=============================================  ===========================================================
429 RESOURCE_EXHAUSTED                         RateLimited (retry_after_s from Retry-After or RetryInfo)
500 INTERNAL / 503 UNAVAILABLE / other 5xx     ServerError (504 DEADLINE_EXCEEDED: ProviderTimeout)
401 / 403; 400 API_KEY_INVALID (a bad key)       AuthError
400 whose message says the input is too long   ContextTooLong (also 413)
400 FAILED_PRECONDITION                        ProviderUnavailable (region or billing: not this request)
400 INVALID_ARGUMENT, other 4xx                BadRequest
404 (unknown or retired model)                 ProviderUnavailable
``promptFeedback.blockReason``, no candidates  ContentBlocked
``finishReason`` SAFETY and kin                ContentBlocked (even with partial text: it is cut short)
httpx2 timeout                                 ProviderTimeout
httpx2 transport error (refused, dropped)      ProviderConnectionError
invalid JSON or shape; no candidates/feedback  MalformedResponse
200 with no text                               EmptyResponse (raised by the base adapter)
=============================================  ===========================================================
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.exceptions import ContextOverflowError
from langchain_core.messages import AIMessage

from providers.base import Citation, ModelReply, ProviderAdapter
from providers.errors import (
    ContentBlocked,
    ContextTooLong,
    MalformedResponse,
    ProviderError,
    from_status,
    map_common_error,
    parse_retry_after,
    transport_error,
)
from providers.finish import WITHHELD

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

_RETRY_IN_MESSAGE = re.compile(r"retry in (\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class GeminiAdapter(ProviderAdapter):
    """A ProviderAdapter that knows google-genai's errors and Gemini's response metadata."""

    def map_error(self, exc: Exception) -> ProviderError:
        """Map a langchain-google-genai / google-genai / httpx2 exception to the taxonomy."""
        if isinstance(exc, ProviderError):
            return exc
        for link in _cause_chain(exc):
            mapped = self._map_one(link)
            if mapped is not None:
                return mapped
        return map_common_error(exc, self.name)

    def _map_one(self, exc: BaseException) -> ProviderError | None:
        from google.genai import errors as genai_errors

        if isinstance(exc, genai_errors.APIError):
            return _map_api_error(exc, self.name)
        transport = transport_error(exc, self.name)
        if transport is not None:
            return transport
        if isinstance(exc, ContextOverflowError):
            return ContextTooLong(str(exc), provider=self.name)
        return None

    def to_reply(self, message: AIMessage) -> ModelReply:
        """Normalise the message; raise ContentBlocked when Gemini's safety filter stopped the answer."""
        meta = message.response_metadata or {}
        feedback = meta.get("prompt_feedback") or {}
        block_reason = _plain(feedback.get("block_reason")) if isinstance(feedback, Mapping) else None
        if block_reason:
            detail = feedback.get("block_reason_message") or ""
            raise ContentBlocked(
                f"prompt blocked ({block_reason}){': ' + str(detail) if detail else ''}", provider=self.name
            )
        finish_reason = str(_plain(meta.get("finish_reason")) or "")
        if finish_reason in WITHHELD:
            raise ContentBlocked(f"answer stopped by the safety filter ({finish_reason})", provider=self.name)
        reply = super().to_reply(message)
        if not reply.text.strip() and not finish_reason and not feedback:
            # Real responses always carry a finish reason or prompt feedback; the SDK turns a body of another
            # shape into an empty response, which would otherwise pass for an empty answer.
            raise MalformedResponse("response has neither candidates nor prompt feedback", provider=self.name)
        raw = _plain(dict(meta))
        return ModelReply(
            text=reply.text,
            model=reply.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            thinking_tokens=reply.thinking_tokens,
            finish_reason=finish_reason,
            citations=tuple(_grounding_citations(meta.get("grounding_metadata"))),
            raw_metadata=raw if isinstance(raw, dict) else {},
        )


def build_gemini_adapter(
    *,
    name: str = "gemini",
    model: str,
    api_key: str,
    base_url: str | None,
    timeout_s: float,
) -> ProviderAdapter:
    """Build the Gemini adapter; the chat model (and the SDK import) waits until the first call."""

    def chat_factory() -> BaseChatModel:
        from langchain_google_genai import ChatGoogleGenerativeAI

        from providers.pools import HTTPX2_POOLS

        # langchain passes max_retries to google-genai as HttpRetryOptions(attempts=...), a count of attempts
        # that includes the first request. 1 means exactly one HTTP call; 0 does too in google-genai 3.x, but
        # langchain's own docs warn that older SDKs read 0 as "the default, 5". Retrying is the graph's job.
        # The timeout is per attempt, so it also ends a call the adapter has already abandoned.
        return ChatGoogleGenerativeAI(
            model=model,
            api_key=api_key,
            base_url=base_url or None,
            max_retries=1,
            timeout=timeout_s,
            # Calls are async so an abandoned one can be cancelled (providers/async_calls.py); connections come
            # from the process's pools (providers/pools.py), kept alive between calls and between clients.
            client_args={"transport": HTTPX2_POOLS},
        )

    return GeminiAdapter(
        name=name,
        tier="premium",
        vendor="google",
        model=model,
        chat_factory=chat_factory,
        timeout_s=timeout_s,
    )


# ----------------------------------------------------------------------------------------------------------


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        # Only explicit causes: an implicit __context__ may be an unrelated error handled on the way.
        current = current.__cause__


def _map_api_error(exc: Any, provider: str) -> ProviderError:
    code = int(getattr(exc, "code", 0) or 0)
    status = str(getattr(exc, "status", "") or "")
    message = str(getattr(exc, "message", "") or exc)
    # A bad key is a 400 INVALID_ARGUMENT whose details carry reason API_KEY_INVALID: read the reasons too.
    reasons = " ".join(str(d.get("reason", "")) for d in _error_details(getattr(exc, "details", None)))
    retry = _retry_after(exc) if code == 429 or code >= 500 else None
    return from_status(code, f"{message} {reasons}".strip(), provider=provider, status=status, retry_after_s=retry)


def _retry_after(exc: Any) -> float | None:
    """Return the server's retry hint in seconds: Retry-After header, then RetryInfo, then the message."""
    response = getattr(exc, "response", None)
    seconds = parse_retry_after(getattr(response, "headers", None))
    if seconds is not None:
        return seconds
    for detail in _error_details(getattr(exc, "details", None)):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    match = _RETRY_IN_MESSAGE.search(str(getattr(exc, "message", "") or ""))
    return float(match.group(1)) if match else None


def _error_details(details: Any) -> list[Mapping[str, Any]]:
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    if not isinstance(details, Mapping):
        return []
    error = details.get("error", details)
    items = error.get("details") if isinstance(error, Mapping) else None
    return [item for item in items or [] if isinstance(item, Mapping)]


def _grounding_citations(grounding: Any) -> Iterator[Citation]:
    if not isinstance(grounding, Mapping):
        return
    seen: set[str] = set()
    for chunk in grounding.get("grounding_chunks") or []:
        web = chunk.get("web") if isinstance(chunk, Mapping) else None
        if not isinstance(web, Mapping):
            continue
        url = str(web.get("uri") or "")
        if url and url not in seen:
            seen.add(url)
            yield Citation(url=url, title=str(web.get("title") or ""))


def _plain(value: Any) -> Any:
    """Return ``value`` with SDK enums turned into their string values, so metadata serialises anywhere."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
