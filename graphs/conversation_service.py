"""Conversations: sessions over LangGraph threads, replies streamed token by token.

A session is one thread of the conversation graph (graphs/conversation.py) in the configured checkpointer, plus
a record (graphs/stores/records.py) with what listing needs. Sessions expire ``CONVERSATION_SESSION_TTL``
seconds (default 7200) after their last activity, measured with the injected clock.

``stream_reply`` answers the latest user message: it runs the graph with LangGraph's ``messages`` stream mode,
whose callback handler sees each token the provider sends (Gemini's streamGenerateContent, the Responses API's
SSE deltas, the local model's generated tokens), and turns them into the contract's events: ``analysis_start``,
``content_chunk`` (with ``accumulated_content`` and ``progress``), then ``analysis_complete`` or ``error``;
between them ``analysis_progress`` events carry the analysis's stages in the one event model (graphs/events.py).
A run cut short (the client went away) stays checkpointed; the next request for the session resumes it, so a
provider call that completed is not paid for again.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import queue
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Durability

from graphs.context import Context
from graphs.conversation import ANALYSIS_NODE, build_conversation_graph
from graphs.errors import CheckpointStoreError, ThreadBusy
from graphs.events import EventDeriver
from graphs.result import AnalysisResult
from graphs.stores.lease import Lease, check_held, holding, leases_of
from graphs.stores.ledger import Ledger, LedgerEntry
from graphs.stores.records import RecordStore
from nodes.policy.chat_actions import actions_of, implications_of
from nodes.policy.conversation_prompts import DEFAULT_HISTORY_TOKENS, normalise_chat_type, normalise_language
from providers.registry import ProviderRegistry

KIND = "conversation"
log = logging.getLogger("strategist.conversation")
_CONFIDENCE_TAIL = re.compile(r"\n\s*confidence\s*[:=]", re.IGNORECASE)
DEFAULT_TTL_S = 7200.0
Event = dict[str, Any]


def _as_update(mode: str, chunk: Any) -> tuple[str, Any]:
    """Turn a finished task of the "tasks" stream into the ``updates`` chunk the event deriver reads."""
    if mode == "tasks" and isinstance(chunk, dict) and isinstance(chunk.get("result"), dict):
        return "updates", {chunk["name"]: chunk["result"]}
    return ("custom", chunk) if mode == "custom" else ("tasks", chunk)


class ConversationNotFound(LookupError):
    """No live session with that id (never created, deleted, or expired)."""


def session_ttl_s() -> float:
    """Return ``CONVERSATION_SESSION_TTL`` in seconds (default 7200)."""
    try:
        return max(1.0, float(os.environ.get("CONVERSATION_SESSION_TTL", DEFAULT_TTL_S)))
    except ValueError:
        return DEFAULT_TTL_S


def history_tokens() -> int:
    """Return ``CONVERSATION_HISTORY_TOKENS``: the budget of earlier turns a reply sees (default 600)."""
    try:
        return max(50, int(os.environ.get("CONVERSATION_HISTORY_TOKENS", DEFAULT_HISTORY_TOKENS)))
    except ValueError:
        return DEFAULT_HISTORY_TOKENS


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def progress_of(tokens: int) -> int:
    """Progress (0-100) of a reply being written: rises with each token, never reaches 100 before the end
    (the answer's length is not known in advance)."""
    return min(95, 10 + int(85 * (1 - math.exp(-tokens / 60))))


def message_dict(message: BaseMessage) -> dict[str, Any]:
    """Render one message of the thread as the contract's ``{role, content, timestamp, ...}``."""
    extra = dict(message.additional_kwargs.get("strategist") or {})
    role = "user" if isinstance(message, HumanMessage) else "assistant"
    return {"role": role, "content": message.text, **extra}


class Conversations:
    """Sessions, messages and streamed replies over the conversation graph and the checkpointer."""

    def __init__(
        self,
        registry: ProviderRegistry,
        checkpointer: BaseCheckpointSaver[str] | None,
        records: RecordStore,
        *,
        ledger: Ledger | None = None,
        clock: Callable[[], float] = time.time,
        ttl_s: float | None = None,
        context: Callable[[], Context] | None = None,
    ) -> None:
        self.registry = registry
        self.records = records
        self.ledger = ledger
        self.clock = clock
        self.ttl_s = session_ttl_s() if ttl_s is None else ttl_s
        # A conversation must be stored somewhere: without a checkpointer, in memory for the process's life.
        self.checkpointer = checkpointer if checkpointer is not None else InMemorySaver()
        self.graph = build_conversation_graph().compile(checkpointer=self.checkpointer)
        self._context = context or (lambda: Context(registry=registry))
        self._lock = threading.Lock()
        self._running: set[str] = set()  # sessions whose reply is being written (one at a time per session)

    # -- sessions -----------------------------------------------------------------------------------------

    def create(self, ward: str, chat_type: str | None = None, language: str | None = None, title: str = "") -> Event:
        """Open a session: ``conv_<12hex>_<epoch>``."""
        now = self.clock()
        session_id = f"conv_{secrets.token_hex(6)}_{int(now)}"
        record = {
            "session_id": session_id,
            "ward": ward,
            "chat_type": normalise_chat_type(chat_type),
            "language": normalise_language(language),
            "title": title.strip() or f"{ward} conversation",
            "created_at": _iso(now),
            "last_activity": _iso(now),
            "last_activity_at": now,
            "message_count": 0,
            "last_message": "",
        }
        self.records.put(KIND, session_id, ward, now, record)
        return record

    def _record(self, session_id: str) -> dict[str, Any]:
        record = self.records.get(KIND, session_id) if session_id else None
        if record is None:
            raise ConversationNotFound(session_id)
        if record["last_activity_at"] + self.ttl_s <= self.clock():
            self._forget(session_id)
            raise ConversationNotFound(session_id)
        return record

    def _forget(self, session_id: str) -> None:
        self.records.delete(KIND, session_id)
        self.checkpointer.delete_thread(session_id)

    def _config(self, session_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": session_id}}

    def messages(self, session_id: str) -> list[BaseMessage]:
        """Return the session's messages, oldest first, from its thread."""
        values = self.graph.get_state(self._config(session_id)).values
        return list(values.get("messages", []))

    def get(self, session_id: str) -> Event:
        """Return the session with its messages (ConversationNotFound when there is none)."""
        record = self._record(session_id)
        messages = [message_dict(m) for m in self.messages(session_id)]
        public = {k: v for k, v in record.items() if k not in ("last_activity_at", "last_message", "title")}
        return public | {"message_count": len(messages), "messages": messages}

    def delete(self, session_id: str) -> None:
        """Delete the session and its thread."""
        self._record(session_id)
        self._forget(session_id)

    def _touch(self, record: dict[str, Any], last_message: str | None = None) -> None:
        now = self.clock()
        record |= {"last_activity": _iso(now), "last_activity_at": now}
        record["message_count"] = len(self.messages(record["session_id"]))
        if last_message is not None:
            record["last_message"] = last_message[:200]
        self.records.put(KIND, record["session_id"], record["ward"], now, record)

    def add_message(
        self,
        session_id: str,
        content: str,
        kind: str = "user",
        *,
        chat_type: str | None = None,
        language: str | None = None,
    ) -> str:
        """Add a user message to the session (answered by the next ``stream_reply``); return its timestamp.

        A chat type or language sent with the message changes the session's from then on."""
        record = self._record(session_id)
        if chat_type:
            record["chat_type"] = normalise_chat_type(chat_type)
        if language:
            record["language"] = normalise_language(language)
        stamp = _iso(self.clock())
        message = HumanMessage(content=content, additional_kwargs={"strategist": {"timestamp": stamp, "type": kind}})
        # As if the reply step had written it: the thread stays finished, and the next run starts from START
        # with this message last.
        self.graph.update_state(self._config(session_id), {"messages": [message]}, as_node="reply")
        self._touch(record, content)
        return stamp

    def newest(self, ward: str | None, limit: int) -> list[Event]:
        """Return live sessions, newest activity first (of one ward, or all)."""
        found = []
        for record in self.records.newest(KIND, ward, max(1, limit) * 2):
            if record["last_activity_at"] + self.ttl_s <= self.clock():
                continue
            found.append(
                {
                    "id": record["session_id"],
                    "title": record["title"],
                    "ward": record["ward"],
                    "chat_type": record["chat_type"],
                    "language": record["language"],
                    "created_at": record["created_at"],
                    "last_updated": record["last_activity"],
                    "message_count": record["message_count"],
                    "last_message": record["last_message"],
                    "status": "active",
                }
            )
        return found[: max(1, limit)]

    # -- replies --------------------------------------------------------------------------------------------

    def stream_reply(
        self, session_id: str, *, chat_type: str | None = None, language: str | None = None
    ) -> Iterator[Event]:
        """Answer the session's latest user message: the contract's events, tokens as they arrive."""
        record = self._record(session_id)
        if chat_type:
            record["chat_type"] = normalise_chat_type(chat_type)
        if language:
            record["language"] = normalise_language(language)
        config = self._config(session_id)
        snapshot = self.graph.get_state(config)
        pending = bool(snapshot.next)
        messages = list(snapshot.values.get("messages", []))
        if not pending and (not messages or not isinstance(messages[-1], HumanMessage)):
            yield {"type": "error", "message": "No user message to answer: add one with POST /conversation/message"}
            return
        with self._lock:
            if session_id in self._running:
                yield {"type": "error", "message": "A reply to this conversation is already being written"}
                return
            self._running.add(session_id)
        yield {"type": "analysis_start", "message": "Analysing your message", "session_id": session_id}
        events: queue.Queue[Event | None] = queue.Queue()
        graph_input = None if pending else self._input(record)
        worker = threading.Thread(
            target=self._work, args=(graph_input, record, events), name=f"reply-{session_id}", daemon=True
        )
        worker.start()
        while (event := events.get()) is not None:
            yield event

    def _work(self, graph_input: Any, record: dict[str, Any], out: queue.Queue[Event | None]) -> None:
        """Write the reply to its end, whether or not anyone still reads it: a client that leaves does not cut a
        paid call short, and the reply is checkpointed, costed and stored (the next request finds it)."""
        session_id = str(record["session_id"])
        try:
            final: dict[str, Any] = {}
            # The thread's lease (graphs/stores/lease.py), as an analysis holds it: one runner per session across
            # processes too.
            with holding(leases_of(self.checkpointer), session_id) as lease:
                for event in self._run(graph_input, self._config(session_id), lease):
                    if event.get("type") == "final":
                        final = event["state"]
                    else:
                        out.put(event)
            result = final.get("result") or {}
            self._record_cost(session_id, result)
            self._touch(record, result.get("answer") or None)
            if result.get("answer"):
                out.put(self._complete(result))
            else:
                out.put({"type": "error", "message": result.get("error") or "No provider could answer"})
        except (CheckpointStoreError, ThreadBusy) as exc:
            out.put({"type": "error", "message": str(exc)})
        except Exception:
            log.exception("reply to conversation %s failed", session_id)
            out.put({"type": "error", "message": "Internal strategist system error"})
        finally:
            with self._lock:
                self._running.discard(session_id)
            out.put(None)

    def _input(self, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "ward": record["ward"],
            "chat_type": record["chat_type"],
            "language": record["language"],
            "history_tokens": history_tokens(),
        }

    def _run(self, graph_input: Any, config: RunnableConfig, lease: Lease | None = None) -> Iterator[Event]:
        """Run the graph, yielding content chunks as tokens arrive and, last, ``{"type": "final", "state"}``."""
        durability: Durability = "sync"
        current: str | None = None
        raw, accumulated, tokens = "", "", 0
        deriver = EventDeriver("analysis", str(config["configurable"]["thread_id"]))
        final: dict[str, Any] = {}
        for namespace, mode, chunk in self.graph.stream(
            graph_input,
            config,
            context=self._context(),
            # "tasks", not "updates": a subgraph's updates are cut to its output schema (the result alone),
            # a task's result is the node's whole update.
            stream_mode=["messages", "custom", "tasks", "values"],
            subgraphs=True,
            durability=durability,
        ):
            check_held(lease, str(config["configurable"]["thread_id"]))
            if mode == "values" and not namespace:
                final = cast(dict[str, Any], chunk)
                continue
            if not namespace or not namespace[0].startswith(ANALYSIS_NODE + ":"):
                continue
            if mode in ("custom", "tasks"):
                # The analysis's stages in the one event model (graphs/events.py): classification, route,
                # attempts, validation, confidence, cost so far.
                for progress in deriver.feed(*_as_update(mode, chunk)):
                    if progress.event != "node":
                        yield {"type": "analysis_progress", "progress": progress_of(tokens), **progress.wire()}
                continue
            if mode != "messages":
                continue
            message, meta = cast(tuple[BaseMessage, dict[str, Any]], chunk)
            if not isinstance(message, AIMessageChunk) or meta.get("langgraph_node") != "call_model":
                continue
            piece = message.text
            if not piece:
                continue
            if message.id != current:
                # Another call's tokens (a failover or a hedge): the answer being written starts again.
                current, raw, accumulated = message.id, "", ""
            raw += piece
            tokens += 1
            # The model's trailing "Confidence: x" line is read by the graph, not shown: stop the text before it.
            visible = _CONFIDENCE_TAIL.split(raw, maxsplit=1)[0]
            if len(visible) <= len(accumulated):
                continue
            new, accumulated = visible[len(accumulated) :], visible
            yield {
                "type": "content_chunk",
                "content": new,
                "accumulated_content": accumulated,
                "progress": progress_of(tokens),
            }
        yield {"type": "final", "state": final}

    def _complete(self, result: dict[str, Any]) -> Event:
        answer = str(result.get("answer") or "")
        providers = sorted({a["provider"] for a in result.get("attempts", []) if a.get("outcome") == "ok"})
        actions = actions_of(answer)
        return {
            "type": "analysis_complete",
            "content": answer,
            "confidence": (result.get("confidence") or {}).get("value"),
            "sources": [{"url": c.get("url"), "title": c.get("title")} for c in result.get("citations", [])],
            "actions": actions,
            "actionable": bool(actions),
            "multiModelUsed": len(providers) > 1,
            "strategicImplications": implications_of(answer),
            "providers_used": providers,
            "provider": result.get("provider"),
            "model": result.get("model"),
            "cost_usd": result.get("cost_usd"),
            "progress": 100,
        }

    def _record_cost(self, session_id: str, result: dict[str, Any]) -> None:
        if self.ledger is None or not result:
            return
        # One ledger row per turn: the ledger is keyed by thread, and every turn shares the session's thread.
        turn = sum(1 for m in self.messages(session_id) if isinstance(m, AIMessage))
        entry = AnalysisResult.model_validate(result).model_copy(update={"thread_id": f"{session_id}#{turn}"})
        self.ledger.record(LedgerEntry.from_result(entry, self.clock()))

    # -- the older /chat ----------------------------------------------------------------------------------

    def chat(self, message: str, ward: str, chat_type: str | None, history: list[tuple[str, str]]) -> Event:
        """Answer one message with the history the client sent (no session): the older ``POST /chat``."""
        thread_id = f"chat_{uuid.uuid4().hex}"
        earlier: list[BaseMessage] = [
            HumanMessage(content=text) if role == "user" else AIMessage(content=text) for role, text in history
        ]
        graph_input = {
            "messages": [*earlier, HumanMessage(content=message)],
            "ward": ward,
            "chat_type": normalise_chat_type(chat_type),
            "language": "en",
            "history_tokens": history_tokens(),
        }
        final: dict[str, Any] = {}
        for event in self._run(graph_input, self._config(thread_id)):
            if event.get("type") == "final":
                final = event["state"]
        result = final.get("result") or {}
        self._record_cost(thread_id, result)
        answer = str(result.get("answer") or "")
        return {
            "response": answer,
            "context": {
                "ward": ward,
                "confidence": (result.get("confidence") or {}).get("value"),
                "type": normalise_chat_type(chat_type),
                "model_used": result.get("model"),
                "provider": result.get("provider"),
                "thread_id": thread_id,
            },
            "actions": [{"type": a["type"], "label": a["label"]} for a in actions_of(answer)],
            "error": result.get("error") if not answer else None,
            "timestamp": _iso(self.clock()),
        }
