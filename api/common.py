"""What every route of the blueprint shares: the blueprint, JSON errors, the kill switch, authentication,
request limits and body validation.

- Errors are JSON everywhere the API answers (``{"error": ...}``), with the contract's bodies for an unknown
  endpoint (404) and an unhandled error (500); the server's own refusals (oversized headers) too, see
  ``JsonErrorRequestHandler``.
- Authentication (RFC 6750): ``Authorization: Bearer <token>`` with exactly one space and a token of the b64token
  alphabet; the scheme is case-insensitive (RFC 9110). Anything else is refused, and the token is compared in
  constant time. RFC 6750's grammar allows several spaces before the token; we accept exactly one, as every real
  client sends, because a lenient parser is what let ``Bearer  secret`` and a bare ``secret`` through before.
- Protected routes (P) need the bearer token when ``STRATEGIST_API_TOKEN`` is set (401 otherwise; open when it is
  not, for a standalone development server). Routes that change what the system believes (feedback, cache
  invalidation, circuit resets) also need a token to be configured at all (403 otherwise), and the operator
  routes need ``X-Admin-Token`` when ``STRATEGIST_ADMIN_TOKEN`` is set.
- Request bodies are read under a size limit (``STRATEGIST_MAX_BODY_BYTES``, 1 MiB: 413) and validated by the
  route's pydantic model straight from the bytes (pydantic's JSON parser bounds nesting depth: a body of 100,000
  ``[`` is a 400, not a RecursionError). Request headers are bounded too (``STRATEGIST_MAX_HEADER_BYTES``: 431).
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import os
import re
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.serving import WSGIRequestHandler

from providers.config import Settings

API_PREFIX = "/api/v1/strategist"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
ENDPOINTS = [
    "GET /<ward>",
    "GET /ward/<ward>",
    "POST /analyze",
    "POST /trigger",
    "GET /feed",
    "POST /feedback",
    "GET /health",
    "GET /ready",
    "GET /alive",
    "GET /status",
    "GET /cache/stats",
    "POST /cache/invalidate",
    "POST /circuit-breaker/reset",
    "POST /alerts/contextual",
    "POST /alerts/priority-score",
    "GET /openapi.json",
    # Conversations, playbooks and scenarios (api/conversation.py, api/playbook.py, api/scenario.py).
    "POST /conversation",
    "GET /conversation/<id>",
    "DELETE /conversation/<id>",
    "POST /conversation/message",
    "GET /conversation/stream",
    "GET /conversations",
    "POST /chat",
    "POST /playbook/generate",
    "POST /playbook/opposition-response",
    "POST /playbook/customize",
    "POST /scenario/simulate",
    "GET /scenarios/history",
]

bp = Blueprint("strategist", __name__, url_prefix=API_PREFIX)
M = TypeVar("M", bound=BaseModel)
View = Callable[..., Any]


def now_iso() -> str:
    """Return the current time as ISO-8601 UTC with its offset (the contract's timestamps)."""
    return dt.datetime.now(dt.UTC).isoformat()


class ApiError(Exception):
    """An error answered as JSON: ``{"error": message, **extra}`` with ``status`` (and optional headers)."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> Response:
        """Render the error as a JSON response."""
        response = jsonify({"error": self.message, **self.extra})
        response.status_code = self.status
        response.headers.update(self.headers)
        return response


def disabled() -> bool:
    """Say whether the kill switch is on (``STRATEGIST_ENABLED=false``)."""
    return os.environ.get("STRATEGIST_ENABLED", "true").strip().lower() in ("false", "0", "no", "off")


def disabled_response() -> Response:
    """Answer the contract's 503 for a disabled service."""
    response = jsonify({"error": "Political Strategist system is currently disabled", "status": "service_unavailable"})
    response.status_code = 503
    return response


def not_found_response() -> Response:
    """Answer the contract's 404 for an unknown endpoint under the blueprint."""
    response = jsonify({"error": "Strategist endpoint not found", "available_endpoints": ENDPOINTS})
    response.status_code = 404
    return response


def internal_error_response() -> Response:
    """Answer the contract's 500 for an unhandled error (the details go to the log, never to the client)."""
    response = jsonify(
        {
            "error": "Internal strategist system error",
            "timestamp": now_iso(),
            "support": "Check system logs for details",
        }
    )
    response.status_code = 500
    return response


# --- authentication ------------------------------------------------------------------------------------------

_BEARER = re.compile(r"(?i:bearer) ([A-Za-z0-9\-._~+/]+=*)")


def bearer_token(header: str | None) -> str | None:
    """Return the token of an RFC 6750 ``Authorization: Bearer <token>`` header, or None for anything else."""
    if header is None:
        return None
    match = _BEARER.fullmatch(header)
    return match.group(1) if match else None


def _same(given: str | None, expected: str) -> bool:
    # Constant time in the length of the expected token (hmac.compare_digest), whatever was given.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _api_token() -> str:
    return os.environ.get("STRATEGIST_API_TOKEN", "").strip()


def _admin_token() -> str:
    secret = orchestrator().registry.settings.admin_token
    return secret.get_secret_value().strip() if secret else ""


def admin_token_ok(settings: Settings, given: str | None) -> bool:
    """Say whether ``given`` is the configured admin token; with no token configured, nobody is admin."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    return bool(expected) and _same(given, expected)


def _check_bearer() -> None:
    token = _api_token()
    if not token:
        return
    header = request.headers.get("Authorization")
    given = bearer_token(header)
    if not _same(given, token):
        why = "invalid_request" if header is not None and given is None else "invalid_token"
        raise ApiError(
            401,
            "Authentication required",
            headers={"WWW-Authenticate": f'Bearer realm="strategist", error="{why}"' if header else "Bearer"},
        )


def protected(view: View) -> View:
    """Require the bearer token on a route when ``STRATEGIST_API_TOKEN`` is set (401 otherwise)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_bearer()
        return view(*args, **kwargs)

    wrapper.protected = True  # type: ignore[attr-defined]  # read by api/openapi.py
    return wrapper


def changes_beliefs(*, admin: bool) -> Callable[[View], View]:
    """Guard a route that changes what the system believes: a token must be configured and presented.

    ``admin``: an operator route (cache invalidation, circuit reset) that, when ``STRATEGIST_ADMIN_TOKEN`` is
    set, also needs it in ``X-Admin-Token``.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _check_bearer()
            admin_token = _admin_token() if admin else ""
            if admin_token:
                if not _same(request.headers.get("X-Admin-Token"), admin_token):
                    raise ApiError(403, "Admin token required (X-Admin-Token, configured by STRATEGIST_ADMIN_TOKEN)")
            elif not _api_token():
                raise ApiError(
                    403,
                    "This route changes what the system believes and is refused while no API token is configured: "
                    "set STRATEGIST_API_TOKEN and send it as 'Authorization: Bearer <token>'",
                )
            return view(*args, **kwargs)

        wrapper.protected = True  # type: ignore[attr-defined]
        wrapper.changes_beliefs = True  # type: ignore[attr-defined]
        return wrapper

    return decorate


# --- request limits and bodies -------------------------------------------------------------------------------


def max_body_bytes() -> int:
    """Return the request body limit (``STRATEGIST_MAX_BODY_BYTES``, default 1 MiB)."""
    try:
        return max(1, int(os.environ.get("STRATEGIST_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)))
    except ValueError:
        return DEFAULT_MAX_BODY_BYTES


def max_header_bytes() -> int:
    """Return the limit on all request headers together (``STRATEGIST_MAX_HEADER_BYTES``, default 16 KiB)."""
    try:
        return max(1024, int(os.environ.get("STRATEGIST_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES)))
    except ValueError:
        return DEFAULT_MAX_HEADER_BYTES


def check_header_size() -> None:
    """Refuse oversized headers with a JSON 431 (servers that allow big headers would pass them to us)."""
    size = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
    if size > max_header_bytes():
        raise ApiError(431, "Request header fields too large", limit_bytes=max_header_bytes())


Messages = dict[tuple[str, str], str]


class BodyModel(BaseModel):
    """A request body. ``messages`` maps (field, pydantic error type) to the contract's own error message."""

    messages: ClassVar[Messages] = {}


def _message(model: type[BaseModel], err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    kind = str(err["type"])
    messages: dict[tuple[str, str], str] = getattr(model, "messages", {})
    if not loc:
        if kind == "json_invalid" and "recursion limit" in str(err["msg"]):
            return "Request body is nested too deeply"
        return "Request body must be a JSON object"
    custom = messages.get((loc, kind)) or messages.get((loc, "*"))
    if custom:
        return custom
    text = str(err["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return text  # our own validators' messages are already sentences for the caller
    return f"{loc}: {text}"


def parse_body(model: type[M], *, empty: str = "{}") -> M:
    """Validate the request body against ``model`` (400 with the first problem in words; 413 over the limit)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raw = empty.encode()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ApiError(400, _message(model, first)) from None


class JsonErrorRequestHandler(WSGIRequestHandler):
    """The development server's request handler, with its own refusals (431 oversized headers, 400 malformed
    request line, 414 long URI) answered as JSON like everything else the API says."""

    error_content_type = "application/json"
    error_message_format = '{"error": "%(message)s", "status": %(code)d}'

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer an error the server found before the app saw the request, as JSON."""
        # The base class fills %(message)s unescaped; keep the text JSON-safe.
        safe = (message or self.responses.get(code, ("",))[0]).replace('"', "'").replace("\\", "/")
        BaseHTTPRequestHandler.send_error(self, code, safe, explain)


def orchestrator() -> Any:
    """Return the app's Orchestrator (graphs/service.py)."""
    return current_app.extensions["strategist"]


def reports() -> Any:
    """Return the app's WardReports (graphs/ward_reports.py), opened on first use when the app was given none."""
    found = current_app.extensions.get("strategist_reports")
    if found is None:
        from graphs.stores.briefing_cache import open_briefing_cache
        from graphs.ward_reports import WardReports
        from providers.ward_data import open_ward_data

        orch = orchestrator()
        settings = orch.registry.settings
        found = WardReports(
            orch.registry,
            orch.checkpointer,
            open_briefing_cache(settings),
            ledger=orch.ledger,
            feedback=orch.feedback,
            ward_data=open_ward_data(settings.briefing.ward_data_url, settings.briefing.ward_data_table),
            budget=orch.budget,  # briefings spend against the same caps as analyses
        )
        current_app.extensions["strategist_reports"] = found
    return found
