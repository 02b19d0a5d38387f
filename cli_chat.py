"""The `strategist chat`, `strategist playbook` and `strategist scenario` commands (registered by cli.py).

``chat`` is interactive: each line you type is a message of one conversation (a LangGraph thread in the
configured store, resumable with ``--session``), answered token by token as the provider streams it. Piped
input works the same way, one message per line. Bad input is one line on stderr and exit 2; a document no
provider could write is exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from graphs.context import Context
from graphs.conversation_service import ConversationNotFound, Conversations
from graphs.errors import RequestError
from graphs.playbook_result import PLAYBOOK_TYPES, SCENARIO_TYPES, TIMEFRAMES
from graphs.playbook_service import DocumentFailed, Playbooks
from graphs.stores import open_stores
from graphs.stores.records import open_records
from graphs.ward_reports import normalise_ward
from providers.config import Settings
from providers.registry import ProviderRegistry

QUIT = {"/quit", "/exit", "/q"}


@contextlib.contextmanager
def _services(settings: Settings) -> Iterator[tuple[Conversations, Playbooks]]:
    with open_stores(settings) as stores:
        records = open_records(settings)
        try:
            registry = ProviderRegistry(settings)
            yield (
                Conversations(
                    registry,
                    stores.checkpointer,
                    records,
                    ledger=stores.ledger,
                    context=lambda: Context(registry=registry, feedback=stores.feedback),
                ),
                Playbooks(registry, stores.checkpointer, records),
            )
        finally:
            records.close()


def _ward(value: str | None) -> str:
    try:
        return normalise_ward(value or "")
    except RequestError:
        raise RequestError("a ward is required (--ward NAME)") from None


def _reply(conversations: Conversations, session_id: str, out: TextIO) -> None:
    for event in conversations.stream_reply(session_id):
        if event["type"] == "content_chunk":
            out.write(event["content"])
            out.flush()
        elif event["type"] == "analysis_complete":
            confidence = event["confidence"]
            shown = f"{confidence:.2f}" if isinstance(confidence, float) else "n/a"
            out.write(f"\n  [{', '.join(event['providers_used'])}; confidence {shown}]\n")
        elif event["type"] == "error":
            out.write(f"\n  [no answer: {event['message']}]\n")
    out.flush()


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    """Talk with the strategist: one message per line, answers streamed; /quit (or end of input) to stop."""
    with _services(settings) as (conversations, _):
        if args.session:
            try:
                session = conversations.get(args.session)
            except ConversationNotFound:
                raise RequestError(f"no live conversation {args.session!r} (expired or deleted)") from None
            session_id = str(session["session_id"])
        else:
            session_id = str(conversations.create(_ward(args.ward), args.chat_type, args.language)["session_id"])
        print(f"conversation {session_id} (resume with --session {session_id}; /quit to stop)", file=sys.stderr)
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                sys.stdout.write("> ")
                sys.stdout.flush()
            line = sys.stdin.readline()
            if not line or line.strip() in QUIT:
                return 0
            if not line.strip():
                continue
            conversations.add_message(session_id, line.strip())
            _reply(conversations, session_id, sys.stdout)


def _print_document(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    title = doc.get("title") or doc.get("key_impact") or ""
    print(title)
    for key, value in doc.items():
        if isinstance(value, list) and value and key not in ("sources",):
            print(f"\n{key.replace('_', ' ')}:")
            for item in value:
                text = " - ".join(str(v) for v in item.values()) if isinstance(item, dict) else str(item)
                print(f"  - {text}")
    print(f"\nconfidence {doc['confidence_score']:.2f}, written by {doc.get('provider')}")
    for source in doc.get("sources", []):
        print(f"  source: {source['url']}")


def cmd_playbook(args: argparse.Namespace, settings: Settings) -> int:
    """Write a playbook of TYPE for WARD (crisis and opposition types are grounded in fresh facts)."""
    if args.type not in PLAYBOOK_TYPES:
        raise RequestError(f"unknown playbook type {args.type!r}: one of {', '.join(PLAYBOOK_TYPES)}")
    try:
        context = json.loads(args.context) if args.context else {}
    except ValueError as exc:
        raise RequestError(f"--context is not JSON: {exc}") from None
    if not isinstance(context, dict):
        raise RequestError("--context must be a JSON object")
    with _services(settings) as (_, playbooks):
        try:
            doc = playbooks.generate(args.type, _ward(args.ward), context, args.language, [])
        except DocumentFailed as exc:
            print(f"strategist: no provider wrote a valid playbook: {exc}", file=sys.stderr)
            return 1
    _print_document(doc, args.json)
    return 0


def cmd_scenario(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate a scenario for WARD and store it (GET /scenarios/history lists it)."""
    query = (args.query or "").strip()
    if len(query) < 10:
        raise RequestError("the scenario query must be at least 10 characters")
    with _services(settings) as (_, playbooks):
        try:
            doc = playbooks.simulate(query, args.type, _ward(args.ward), args.timeframe, [], {})
        except DocumentFailed as exc:
            print(f"strategist: no provider wrote a valid scenario: {exc}", file=sys.stderr)
            return 1
    _print_document(doc, args.json)
    return 0


def register(sub: Any) -> None:
    """Add chat, playbook and scenario to the `strategist` command's subparsers."""
    p = sub.add_parser("chat", help="talk with the strategist: answers stream token by token")
    p.add_argument("--ward", help="the ward the conversation is about (required for a new conversation)")
    p.add_argument("--session", help="continue this conversation")
    p.add_argument("--language", choices=["en", "hi", "te", "ur"], default="en")
    p.add_argument("--chat-type", default="strategy", help="strategy | analysis | planning | quick")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("playbook", help="write a communication playbook for a ward")
    p.add_argument("type", help=" | ".join(PLAYBOOK_TYPES))
    p.add_argument("ward")
    p.add_argument("--language", choices=["en", "hi", "te", "ur"], default="en")
    p.add_argument("--context", help='a JSON object, e.g. {"situation": "water protest"}')
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_playbook)

    p = sub.add_parser("scenario", help="simulate a scenario for a ward")
    p.add_argument("ward")
    p.add_argument("query")
    p.add_argument("--type", choices=SCENARIO_TYPES, default="electoral")
    p.add_argument("--timeframe", choices=TIMEFRAMES, default="3_months")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_scenario)
