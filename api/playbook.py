"""Playbooks: ``POST /playbook/generate``, ``/playbook/opposition-response``, ``/playbook/customize``.
The documents are graphs/playbook_service.py's; this module is HTTP (bodies, errors) only."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify

from api.common import ApiError, bp, orchestrator, parse_body, protected
from api.playbook_models import MIN_QUERY_CHARS, CustomizeBody, GenerateBody, OppositionBody
from graphs.errors import RequestError
from graphs.playbook_result import PLAYBOOK_TYPES
from graphs.playbook_service import DocumentFailed, Playbooks
from graphs.stores.records import open_records
from graphs.ward_reports import normalise_ward
from nodes.policy.conversation_prompts import normalise_language


def playbooks() -> Playbooks:
    """Return the app's Playbooks, opened on first use over the orchestrator's checkpointer."""
    found = current_app.extensions.get("strategist_playbooks")
    if found is None:
        orch = orchestrator()
        found = Playbooks(orch.registry, orch.checkpointer, open_records(orch.registry.settings))
        current_app.extensions["strategist_playbooks"] = found
    return found


def ward_or_none(value: str | None) -> str | None:
    """Return the normalised ward, or None when it is blank."""
    try:
        return normalise_ward(value or "")
    except RequestError:
        return None


@bp.post("/playbook/generate")
@protected
def generate_playbook() -> Any:
    """Write a playbook of a type for a ward."""
    body = parse_body(GenerateBody)
    ward = ward_or_none(body.ward)
    kind = (body.playbook_type or "").strip()
    if not kind or ward is None:
        raise ApiError(400, "playbook_type and ward are required")
    if kind not in PLAYBOOK_TYPES:
        raise ApiError(400, f"Invalid playbook_type. Must be one of: {list(PLAYBOOK_TYPES)}")
    try:
        doc = playbooks().generate(
            kind, ward, body.context, normalise_language(body.language), body.conversation_context
        )
    except DocumentFailed as exc:
        raise ApiError(500, "Playbook generation failed", detail=str(exc)) from None
    return jsonify(doc), 200


@bp.post("/playbook/opposition-response")
@protected
def opposition_response() -> Any:
    """Write a counter-playbook to an opposition message, grounded in fresh facts."""
    body = parse_body(OppositionBody)
    message, ward = (body.opposition_message or "").strip(), ward_or_none(body.ward)
    if not message or ward is None:
        raise ApiError(400, "opposition_message and ward are required")
    if len(message) < MIN_QUERY_CHARS:
        raise ApiError(400, "opposition_message must be at least 10 characters")
    try:
        doc = playbooks().opposition_response(message, ward, body.opposition_context, normalise_language(body.language))
    except DocumentFailed as exc:
        raise ApiError(500, "Playbook generation failed", detail=str(exc)) from None
    return jsonify(doc), 200


@bp.post("/playbook/customize")
@protected
def customize_playbook() -> Any:
    """Rewrite a playbook to the user's preferences and conversation."""
    body = parse_body(CustomizeBody)
    if not body.base_playbook:
        raise ApiError(400, "base_playbook is required")
    kind = body.base_playbook.get("playbook_type")
    if kind is not None and kind not in PLAYBOOK_TYPES:
        # As /playbook/generate refuses it: an unknown type is the client's mistake, told rather than rewritten.
        raise ApiError(400, f"Invalid playbook_type. Must be one of: {list(PLAYBOOK_TYPES)}")
    try:
        doc = playbooks().customize(body.base_playbook, body.conversation_history, body.user_preferences)
    except DocumentFailed as exc:
        raise ApiError(500, "Playbook generation failed", detail=str(exc)) from None
    return jsonify(doc), 200
