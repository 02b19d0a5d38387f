"""Conversations: ``POST /conversation``, ``GET|DELETE /conversation/<id>``, ``POST /conversation/message``,
``GET /conversation/stream`` (Server-Sent Events, token by token), ``GET /conversations`` and the older
``POST /chat``. The sessions and replies are graphs/conversation_service.py's; this module is only HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, jsonify, request, stream_with_context

from api.common import ApiError, bp, now_iso, orchestrator, parse_body, protected
from api.conversation_models import MAX_MESSAGE_CHARS, ChatBody, MessageBody, NewConversationBody
from api.sse import HEADERS, MIMETYPE, frame
from graphs.context import Context
from graphs.conversation_service import ConversationNotFound, Conversations
from graphs.errors import CheckpointStoreError, RequestError
from graphs.stores.records import open_records
from graphs.ward_reports import normalise_ward

log = logging.getLogger("strategist.http")


def conversations() -> Conversations:
    """Return the app's Conversations, opened on first use over the orchestrator's checkpointer and ledger."""
    found = current_app.extensions.get("strategist_conversations")
    if found is None:
        orch = orchestrator()
        registry, feedback = orch.registry, orch.feedback
        found = Conversations(
            registry,
            orch.checkpointer,
            open_records(registry.settings),
            ledger=orch.ledger,
            # Confidence learns from recorded outcomes, as the analyses' does.
            context=lambda: Context(registry=registry, feedback=feedback),
        )
        current_app.extensions["strategist_conversations"] = found
    return found


def _ward(value: str | None) -> str:
    try:
        return normalise_ward(value or "")
    except RequestError:
        raise ApiError(400, "Ward is required") from None


def _not_found() -> ApiError:
    return ApiError(404, "Conversation not found")


@bp.post("/conversation")
@protected
def create_conversation() -> Any:
    """Open a conversation for a ward."""
    body = parse_body(NewConversationBody)
    session = conversations().create(_ward(body.ward), body.chatType, body.language, body.title or "")
    keys = ("session_id", "ward", "chat_type", "language", "created_at")
    return jsonify({k: session[k] for k in keys}), 200


@bp.get("/conversation/<session_id>")
@protected
def get_conversation(session_id: str) -> Any:
    """Return the session and its messages."""
    try:
        return jsonify(conversations().get(session_id)), 200
    except ConversationNotFound:
        raise _not_found() from None


@bp.delete("/conversation/<session_id>")
@protected
def delete_conversation(session_id: str) -> Any:
    """Delete the session and its thread."""
    try:
        conversations().delete(session_id)
    except ConversationNotFound:
        raise _not_found() from None
    return jsonify({"status": "conversation_deleted", "session_id": session_id, "timestamp": now_iso()}), 200


@bp.post("/conversation/message")
@protected
def add_message() -> Any:
    """Add the user's message to the session; ``GET /conversation/stream`` answers it."""
    body = parse_body(MessageBody)
    content = (body.message.content if body.message else "").strip()
    if not body.sessionId or not content:
        raise ApiError(400, "Session ID and message are required")
    if len(content) > MAX_MESSAGE_CHARS:
        raise ApiError(400, f"Message too long - maximum {MAX_MESSAGE_CHARS:,} characters")
    assert body.message is not None
    try:
        stamp = conversations().add_message(
            body.sessionId, content, body.message.type or "user", chat_type=body.chatType, language=body.language
        )
    except ConversationNotFound:
        raise _not_found() from None
    return jsonify({"status": "message_added", "session_id": body.sessionId, "timestamp": stamp}), 200


@bp.get("/conversation/stream")
@protected
def stream_conversation() -> Any:
    """Answer the session's latest message as Server-Sent Events, token by token."""
    session_id = (request.args.get("sessionId") or "").strip()
    if not session_id:
        raise ApiError(400, "Session ID is required")
    service = conversations()
    try:
        service.get(session_id)
    except ConversationNotFound:
        raise _not_found() from None
    chat_type, language = request.args.get("chatType"), request.args.get("language")

    def events() -> Iterator[str]:
        try:
            for event in service.stream_reply(session_id, chat_type=chat_type, language=language):
                yield frame(event)
        except ConversationNotFound:
            yield frame(retry_ms=5000, data={"type": "error", "message": "Conversation not found"})
        except CheckpointStoreError as exc:
            yield frame(retry_ms=5000, data={"type": "error", "message": str(exc)})
        except Exception:  # the status line is sent: a failure can only be told as the stream's last event
            log.exception("conversation stream %s failed", session_id)
            yield frame(retry_ms=5000, data={"type": "error", "message": "Internal strategist system error"})

    return Response(stream_with_context(events()), mimetype=MIMETYPE, headers=HEADERS)


@bp.get("/conversations")
@protected
def list_conversations() -> Any:
    """List live conversations, newest activity first (``ward``, ``limit`` <= 200)."""
    ward = (request.args.get("ward") or "").strip() or None
    try:
        limit = min(200, max(1, int(request.args.get("limit", "50"))))
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    found = conversations().newest(ward, limit)
    return jsonify({"conversations": found, "total": len(found), "ward_filter": ward, "status": "success"}), 200


@bp.post("/chat")
@protected
def chat() -> Any:
    """Answer the older chat: one message with the history the client keeps, answered at once."""
    body = parse_body(ChatBody)
    message = (body.message or "").strip()
    if not message:
        raise ApiError(400, "Message is required")
    if len(message) > MAX_MESSAGE_CHARS:
        raise ApiError(400, f"Message too long - maximum {MAX_MESSAGE_CHARS:,} characters")
    ward = _ward(body.ward) if (body.ward or "").strip() else "Unknown"
    history = [(t.role, t.content) for t in body.history if t.content.strip()]
    answer = conversations().chat(message, ward, body.context.chatType if body.context else None, history)
    return jsonify(answer), 200
