"""Provider error taxonomy: what went wrong, and what the graph should do about it.

Every failure of a provider call is converted into one of these classes at the adapter boundary, so nodes and
routers never look at SDK-specific exceptions. Each class carries its *disposition*:

- ``retry``: the same provider may succeed if asked again (after ``retry_after_s`` when given). The retry is
  bounded by the retry policy, the provider's retry budget and the request's deadline; when any of them says no,
  the graph moves to the next provider instead;
- ``next``: move to the next provider in the chain (this provider is broken for this request);
- ``stop``: end the analysis, because no other provider will do better (a malformed request).

============================  ===========  ===================================================================
class                         disposition  why
============================  ===========  ===================================================================
timeout                       next         the attempt already spent its share of the deadline; another full
                                           wait on the same provider is the worst use of what is left, and
                                           hedging handles the slow tail
connection_error              retry        a refused or reset connection is usually a blip (a stale pooled
                                           connection, a load balancer restart) and costs nothing to retry
rate_limited                  retry        honoured only when ``Retry-After`` fits the deadline and the wait cap
server_error                  retry        500/503 "overloaded, try again": the vendors' own advice is to back
                                           off and retry (or switch, which the graph does when retry is refused)
malformed_response            retry        a truncated or garbled body is a transport accident; a provider that
                                           keeps sending them trips its circuit breaker
empty_response                retry        models sometimes return no text for a prompt they answer next time
unavailable                   next         no key, no model file, circuit open: nothing to wait for
auth_error                    next         a bad key does not recover by retrying; another vendor has its own
content_blocked               next         another vendor's safety policy may differ
context_too_long              next         a model with a larger window may take it
bad_request                   stop         the request itself is invalid: no provider will accept it
============================  ===========  ===================================================================
"""

from __future__ import annotations

import email.utils
import functools
import re
import time
from collections.abc import Mapping
from typing import Literal

from providers.secrets import redact

Disposition = Literal["retry", "next", "stop"]


class ProviderError(Exception):
    """Base of all provider failures; ``error_class`` is the stable name recorded in attempts."""

    error_class: str = "provider_error"
    transient: bool = False
    disposition: Disposition = "next"

    def __init__(self, message: str, *, provider: str = "", retry_after_s: float | None = None) -> None:
        # Redacted here, where every provider failure is made: upstreams echo keys in their error bodies, and
        # the message goes on to state, stores, logs and responses (providers/secrets.py).
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        prefix = f"{self.provider}: " if self.provider else ""
        return f"{prefix}{self.message}"


class TransientError(ProviderError):
    """A failure that may not happen again: worth a retry on the same provider or a move to the next."""

    error_class = "transient"
    transient = True
    disposition: Disposition = "next"


class ProviderTimeout(TransientError):
    # Transient, but not retried on the same provider: see the table above.
    error_class = "timeout"


class ProviderConnectionError(TransientError):
    error_class = "connection_error"
    disposition: Disposition = "retry"


class RateLimited(TransientError):
    error_class = "rate_limited"
    # Worth a retry only after the server's Retry-After (or a backoff); when that does not fit the deadline the
    # graph moves on: a 429 is a property of this provider's quota right now and another vendor is unaffected.
    disposition: Disposition = "retry"


class ServerError(TransientError):
    error_class = "server_error"
    disposition: Disposition = "retry"


class CallAborted(TransientError):
    """We stopped the call ourselves (a hedge's loser, a caller gone, an answer no longer needed).

    Says nothing about the provider, so it never counts against its health (providers/resilience/board.py).
    """

    error_class = "cancelled"


class Overloaded(TransientError):
    """The provider (the process's one local model) cannot start this call in time: its queue is full, or the
    expected wait is longer than the call may take. ``retry_after_s`` says when to ask again."""

    error_class = "overloaded"


class MalformedResponse(TransientError):
    error_class = "malformed_response"
    disposition: Disposition = "retry"


class EmptyResponse(TransientError):
    error_class = "empty_response"
    disposition: Disposition = "retry"


class PermanentError(ProviderError):
    """A failure that asking this provider again will not fix."""

    error_class = "permanent"
    transient = False
    disposition: Disposition = "next"


class ProviderUnavailable(PermanentError):
    """The provider cannot be used at all in this process (no API key, no model file, circuit open)."""

    error_class = "unavailable"


class AuthError(PermanentError):
    """Bad or missing key, or no permission: another vendor has its own key, so move on."""

    error_class = "auth_error"


class ContentBlocked(PermanentError):
    """The vendor's safety filter refused; another vendor's policy may differ."""

    error_class = "content_blocked"


class ContextTooLong(PermanentError):
    """The prompt exceeds this model's window; a model with a larger window may still take it."""

    error_class = "context_too_long"


class BadRequest(PermanentError):
    """The request itself is invalid; no provider will accept it, so the analysis stops."""

    error_class = "bad_request"
    disposition: Disposition = "stop"


ERROR_CLASSES: tuple[type[ProviderError], ...] = (
    ProviderTimeout,
    ProviderConnectionError,
    RateLimited,
    ServerError,
    MalformedResponse,
    EmptyResponse,
    ProviderUnavailable,
    AuthError,
    ContentBlocked,
    ContextTooLong,
    BadRequest,
)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Return a server's retry hint in seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date).

    Shared by every adapter: the vendors all send the standard header, and OpenAI-style servers (Perplexity's
    SDK is one) add the millisecond variant.
    """
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# A 400 whose message says the prompt does not fit the model (each vendor words it differently).
_CONTEXT_TOO_LONG = re.compile(
    r"input token count.*exceeds|exceeds the maximum number of tokens|exceed(s|ed)? (the )?(available )?context|"
    r"context (window|length|size)|maximum context|context_length_exceeded|too many tokens|"
    r"maximum (number of )?tokens|token limit|prompt is too long",
    re.IGNORECASE | re.DOTALL,
)
# A 400 about the key, not the request: Google answers a bad key with 400 INVALID_ARGUMENT, reason
# API_KEY_INVALID ("API key not valid"). Another vendor has its own key, so it must fail over like a 401.
_KEY_PROBLEM = re.compile(
    r"API_KEY_INVALID|API_KEY_EXPIRED|API key (is )?(not valid|invalid|expired)|invalid api key|"
    r"api key.*(missing|revoked)",
    re.IGNORECASE,
)


def says_context_too_long(message: str) -> bool:
    """Say whether an error message is about a prompt too long for the model's window."""
    return _CONTEXT_TOO_LONG.search(message) is not None


def from_status(
    code: int,
    message: str,
    *,
    provider: str,
    status: str = "",
    retry_after_s: float | None = None,
    rejected: type[ProviderError] = BadRequest,
) -> ProviderError:
    """Map an HTTP error status (and the vendor's status name and message) to the taxonomy.

    One table for every adapter. ``rejected`` is the class of a plain 4xx: the request was refused for what it
    is (BadRequest, which ends the analysis), except where the adapter knows better (a local server refusing our
    request shape is a dialect mismatch of that server, not of the request).
    """
    text = f"{code} {status}: {message}" if status else f"{code}: {message}"
    if code == 429:
        return RateLimited(text, provider=provider, retry_after_s=retry_after_s)
    if code in (401, 403) or (400 <= code < 500 and _KEY_PROBLEM.search(f"{status} {message}")):
        return AuthError(text, provider=provider)
    if code == 413 or (code in (400, 422) and says_context_too_long(message)):
        return ContextTooLong(text, provider=provider)
    # 402: billing; 404: an unknown or retired model or a wrong base URL; FAILED_PRECONDITION: the project's
    # region or billing. Nothing this request can change, and nothing another vendor shares.
    if code in (402, 404) or status == "FAILED_PRECONDITION":
        return ProviderUnavailable(text, provider=provider)
    if code in (408, 504) or status == "DEADLINE_EXCEEDED":
        return ProviderTimeout(text, provider=provider)
    if code == 409 or code >= 500:
        return ServerError(text, provider=provider, retry_after_s=retry_after_s)
    if 400 <= code < 500:
        return rejected(text, provider=provider)
    return MalformedResponse(f"unexpected status {text}", provider=provider)


@functools.cache
def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    timeouts: list[type[BaseException]] = [TimeoutError]
    transports: list[type[BaseException]] = [ConnectionError]
    # httpx, and httpx2, the fork google-genai 3 talks through (its exceptions are not httpx's).
    for module_name in ("httpx", "httpx2"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transports.append(module.TransportError)
    return tuple(timeouts), tuple(transports)


def transport_error(exc: BaseException, provider: str) -> ProviderError | None:
    """Map a transport failure (timeout, refused or dropped connection) of any HTTP client; None otherwise."""
    timeouts, transports = _transport_errors()
    if isinstance(exc, timeouts):
        return ProviderTimeout(str(exc) or "timed out", provider=provider)
    if isinstance(exc, transports):
        return ProviderConnectionError(str(exc) or type(exc).__name__, provider=provider)
    return None


def map_common_error(exc: BaseException, provider: str) -> ProviderError:
    """Map what no vendor-specific rule caught: transport failures, else a malformed response."""
    if isinstance(exc, ProviderError):
        return exc
    transport = transport_error(exc, provider)
    if transport is not None:
        return transport
    if isinstance(exc, ValueError | KeyError | TypeError):
        return MalformedResponse(f"{type(exc).__name__}: {exc}", provider=provider)
    return MalformedResponse(f"unexpected {type(exc).__name__}: {exc}", provider=provider)
