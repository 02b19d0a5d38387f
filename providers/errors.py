"""Provider error taxonomy: what went wrong, and what the graph should do about it.

Every failure of a provider call is converted into one of these classes at the adapter boundary, so nodes and
routers never look at SDK-specific exceptions. Each class carries its *disposition*:

- ``retry``: the same provider may succeed if asked again (after ``retry_after_s`` when given);
- ``next``: move to the next provider in the chain (this provider is broken for this request);
- ``stop``: end the analysis, because no other provider will do better (a malformed request).
"""

from __future__ import annotations

from typing import Literal

Disposition = Literal["retry", "next", "stop"]


class ProviderError(Exception):
    """Base of all provider failures; ``error_class`` is the stable name recorded in attempts."""

    error_class: str = "provider_error"
    transient: bool = False
    disposition: Disposition = "next"

    def __init__(self, message: str, *, provider: str = "", retry_after_s: float | None = None) -> None:
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
    error_class = "timeout"


class ProviderConnectionError(TransientError):
    error_class = "connection_error"


class RateLimited(TransientError):
    error_class = "rate_limited"
    # A 429 is a property of this provider's quota right now; another vendor is unaffected.
    disposition: Disposition = "next"


class ServerError(TransientError):
    error_class = "server_error"


class MalformedResponse(TransientError):
    error_class = "malformed_response"


class EmptyResponse(TransientError):
    error_class = "empty_response"


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
