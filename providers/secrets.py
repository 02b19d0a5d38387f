"""Redaction of secrets from every text that leaves a provider call: error messages, answers, logs.

Upstreams echo keys back ("Invalid API key provided: Bearer pplx-..."; Google quotes the key it refused), and an
error message travels far: into the attempts in state, the checkpoint store, the ledger, logs and HTTP responses.
So a message is redacted where it is made (``ProviderError``), before it can reach any of them. Two nets:

- the secrets this process was configured with (API keys, tokens, a Redis password), replaced wherever they
  appear, in any text;
- strings shaped like credentials: the vendors' key formats (``AIza...``, ``pplx-...``, ``sk-...``), bearer
  tokens, ``api_key=...``-style pairs and passwords in URLs, for keys we were never told about (a proxy's own).

Hand-written because no maintained library does this narrow job without a rule engine behind it (detect-secrets and
its kin scan repositories, not strings on a hot path); it is a few regular expressions and a set.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

REDACTED = "[REDACTED]"
# Shorter values are too likely to occur in ordinary text to be replaced everywhere.
MIN_SECRET_CHARS = 6

_lock = threading.Lock()
_known: frozenset[str] = frozenset()

_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Google API keys (39 characters in practice; shorter test keys keep the prefix).
    (re.compile(r"AIza[0-9A-Za-z_\-]{8,}"), REDACTED),
    (re.compile(r"pplx-[0-9A-Za-z]{6,}"), REDACTED),
    (re.compile(r"\bsk-(?:proj-|ant-)?[0-9A-Za-z_\-]{16,}"), REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/\-]+=*"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"(?i)\b(x-goog-api-key|api[_-]?key|access[_-]?token|auth[_-]?token|password|secret|authorization)"
            r"""(["']?\s*[:=]\s*["']?)(?!\[REDACTED\])[^\s"',;&}]+"""
        ),
        rf"\1\2{REDACTED}",
    ),
    # user:password@host in URLs (redis://:pw@host, https://user:pw@proxy).
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1***@"),
)


def register(values: Iterable[str | None]) -> None:
    """Remember secrets this process was configured with, so ``redact`` replaces them wherever they appear."""
    global _known
    fresh = {v.strip() for v in values if v and len(v.strip()) >= MIN_SECRET_CHARS}
    if fresh - _known:
        with _lock:
            _known = _known | fresh


def redact_known(text: str) -> str:
    """Replace the configured secrets only (for answers, whose key-like words may be legitimate content)."""
    # Longest first: a secret that contains another must not leave a tail behind.
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(text: str) -> str:
    """Replace configured secrets and anything shaped like a credential."""
    text = redact_known(text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (install it on the handlers that leave the process)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets redacted; never drop a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
