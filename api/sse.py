"""Server-Sent Events framing for Flask streaming responses, and detection of a client that went away.

Hand-written on purpose: the framing is the WHATWG ``text/event-stream`` format (``event:``, ``id:``,
``retry:``, one ``data:`` line per line of the payload, a blank line ending the event), a dozen lines. The Flask
extension for SSE (flask-sse) brings its own Redis channel model and blueprint and cannot put ``retry:`` before
one event or ``id:`` lines of our choosing, which the contract needs; sse-starlette is for ASGI servers.

A client that disconnects is noticed by the WSGI server only at the next write; a stream that waits (for
events, for the next heartbeat) would live on until then. ``client_gone`` peeks at the request's socket (werkzeug
and gunicorn expose it in the environ) so a waiting generator stops at once. It polls with ``poll(2)``
(POSIX servers only, like werkzeug's and gunicorn's workers).
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Mapping
from typing import Any

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MIMETYPE = "text/event-stream"
# The WSGI servers that expose the client's socket, and the environ key each uses.
_SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


def frame(data: Any, *, event: str | None = None, id: str | None = None, retry_ms: int | None = None) -> str:
    """Return one SSE event: ``data`` as JSON (a str is sent as is), with optional name, id and retry."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    lines = []
    if retry_ms is not None:
        lines.append(f"retry: {int(retry_ms)}")
    if event is not None:
        lines.append(f"event: {_field(event)}")
    if id is not None:
        lines.append(f"id: {_field(id)}")
    lines += [f"data: {line}" for line in text.split("\n")]
    return "\n".join(lines) + "\n\n"


def _field(value: str) -> str:
    # A newline (or NUL in an id, which makes clients ignore it) would end or corrupt the field.
    return value.replace("\r", " ").replace("\n", " ").replace("\0", "")


def client_gone(environ: Mapping[str, Any]) -> bool:
    """Say whether the client closed its connection (False when the server does not expose the socket)."""
    sock: socket.socket | None = next(
        (environ[k] for k in _SOCKET_KEYS if isinstance(environ.get(k), socket.socket)), None
    )
    if sock is None:
        return False
    fd = sock.fileno()
    if fd < 0:  # closed on our side
        return True
    # poll, not select: select() refuses descriptors above FD_SETSIZE (1024), and a busy process gets there; the
    # ValueError it raised read as "gone" and ended live streams at once.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        if not poller.poll(0):
            return False
        # Readable with nothing to read is the peer's FIN; bytes (a pipelined request) mean it is still there.
        # MSG_DONTWAIT: the server may have given the socket a timeout, and a peek must never wait.
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError, TimeoutError):
        # Nothing to read after all: not a sign of a closed connection. These are OSErrors too, and read as
        # "gone" they would end a live stream (an intermittent failure of the feed tests in full runs).
        return False
    except OSError:  # reset by the peer
        return True
