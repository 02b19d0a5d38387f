"""Playbooks and scenarios: requests in, validated documents out, stored so their history is real.

Each document is one run of the document graph (graphs/playbook.py) on its own thread (the document's id) in the
configured checkpointer, then a record (graphs/stores/records.py) that ``GET /scenarios/history`` reads.
``confidence_score`` is the writer's stated confidence, capped at 0.3 when only the local model could write it
(a small model's self-report), as degraded briefings are.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from graphs.context import Context
from graphs.playbook import build_document_graph
from graphs.playbook_result import PLAYBOOK_TYPES
from graphs.playbook_state import DocumentInput
from nodes.policy.conversation_prompts import normalise_language
from nodes.policy.playbook_prompts import NEEDS_FRESH_PLAYBOOKS, NEEDS_FRESH_SCENARIOS
from providers.registry import ProviderRegistry

LOCAL_CAP = 0.3
MAX_WARD_CHARS = 64  # as graphs/ward_reports.py cuts a ward (a sibling module: not imported from here)


class DocumentFailed(RuntimeError):
    """No provider wrote a valid document (every answer failed or broke the schema)."""


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


class Playbooks:
    """Generate, customise and store playbooks; simulate and store scenarios."""

    def __init__(
        self,
        registry: ProviderRegistry,
        checkpointer: BaseCheckpointSaver[str] | None,
        records: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.records = records
        self.clock = clock
        self.graph = build_document_graph().compile(
            checkpointer=checkpointer if checkpointer is not None else InMemorySaver()
        )

    def _run(self, kind: str, thread_id: str, ward: str, brief: str, language: str, grounding: str | None) -> Any:
        config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        graph_input: DocumentInput = {
            "kind": "scenario" if kind == "scenario" else "playbook",
            "ward": ward,
            "brief": brief,
            "language": language,
            "grounding_query": grounding,
        }
        state = self.graph.invoke(
            graph_input,
            config,
            context=Context(registry=self.registry),
        )
        final = cast(dict[str, Any], state)
        if not final.get("document"):
            attempts = final.get("attempts", [])
            why = "; ".join(f"{a['provider']}: {a['error']}" for a in attempts if a.get("error")) or "no writer"
            raise DocumentFailed(why)
        return final

    def _confidence(self, final: dict[str, Any]) -> float:
        stated = float(final["document"]["confidence"])
        writer = final.get("writer") or {}
        return round(min(stated, LOCAL_CAP) if writer.get("tier") == "local" else stated, 4)

    def _sources(self, final: dict[str, Any]) -> list[dict[str, str]]:
        result = final.get("result") or {}
        return [{"url": c["url"], "title": c.get("title", "")} for c in result.get("citations", [])]

    def _playbook(self, playbook_type: str, ward: str, language: str, brief: str, grounding: str | None) -> Any:
        playbook_id = f"pb_{uuid.uuid4().hex[:12]}"
        final = self._run("playbook", playbook_id, ward, brief, language, grounding)
        doc = dict(final["document"])
        doc.pop("confidence", None)
        body = {
            "playbook_id": playbook_id,
            "playbook_type": playbook_type,
            "ward": ward,
            "language": language,
            **doc,
            "confidence_score": self._confidence(final),
            "sources": self._sources(final),
            "provider": (final.get("writer") or {}).get("provider"),
            "generated_at": _iso(self.clock()),
        }
        self.records.put("playbook", playbook_id, ward, self.clock(), body)
        return body

    def generate(
        self, playbook_type: str, ward: str, context: dict[str, Any], language: str, conversation: list[Any]
    ) -> dict[str, Any]:
        """Write a playbook of a type for a ward; crisis and opposition types are grounded in fresh facts."""
        brief = f"Write a {playbook_type.replace('_', ' ')} playbook for this ward."
        if context:
            brief += f"\nContext: {json.dumps(context, ensure_ascii=False)[:2000]}"
        if conversation:
            brief += f"\nConversation so far: {json.dumps(conversation, ensure_ascii=False)[:2000]}"
        grounding = None
        if playbook_type in NEEDS_FRESH_PLAYBOOKS:
            topic = str(context.get("situation") or context.get("issue") or playbook_type.replace("_", " "))
            grounding = f"What is the latest news in {ward} about {topic[:300]}?"
        return cast(dict[str, Any], self._playbook(playbook_type, ward, language, brief, grounding))

    def opposition_response(self, message: str, ward: str, context: dict[str, Any], language: str) -> dict[str, Any]:
        """Write a counter-playbook to an opposition message, grounded in fresh facts about it."""
        brief = (
            "Write an opposition counter playbook responding to this opposition message: "
            f"{message[:3000]!r}. Rebut with facts, never with attacks on persons."
        )
        if context:
            brief += f"\nContext: {json.dumps(context, ensure_ascii=False)[:2000]}"
        grounding = f"What are the facts about this claim in {ward}: {message[:300]}?"
        body = self._playbook("opposition_counter", ward, language, brief, grounding)
        return cast(dict[str, Any], body | {"opposition_message": message})

    def customize(self, base: dict[str, Any], history: list[Any], preferences: dict[str, Any]) -> dict[str, Any]:
        """Rewrite a playbook to the user's preferences and the conversation.

        The base playbook is the client's JSON, checked by nobody: its ward, language and type are normalised as
        a new playbook's are (an unknown type or language becomes the default), so the rewrite is stored and
        answered with the fields ``POST /playbook/generate`` would give it."""
        ward = _text(base.get("ward"))[:MAX_WARD_CHARS].strip() or "Unknown"
        kind = _text(base.get("playbook_type"))
        brief = (
            "Customise this playbook; keep what still fits, change what the preferences ask.\n"
            f"Playbook: {json.dumps(base, ensure_ascii=False)[:4000]}\n"
            f"Preferences: {json.dumps(preferences, ensure_ascii=False)[:1000]}\n"
            f"Conversation: {json.dumps(history, ensure_ascii=False)[:2000]}"
        )
        language = normalise_language(base.get("language"))
        body = self._playbook(kind if kind in PLAYBOOK_TYPES else "campaign_messaging", ward, language, brief, None)
        base_id = base.get("playbook_id")
        return cast(dict[str, Any], body | {"customized_from": base_id if isinstance(base_id, str) else None})

    def simulate(
        self,
        query: str,
        scenario_type: str,
        ward: str,
        timeframe: str,
        metrics: list[str],
        parameters: dict[str, Any],
    ) -> dict[str, Any]:
        """Simulate a scenario for a ward over a timeframe; crisis and opposition scenarios are grounded."""
        scenario_id = f"sc_{uuid.uuid4().hex[:12]}"
        brief = (
            f"Simulate this {scenario_type} scenario over {timeframe.replace('_', ' ')}: {query[:3000]}"
            + (f"\nMetrics to project: {', '.join(metrics[:20])}" if metrics else "")
            + (f"\nParameters: {json.dumps(parameters, ensure_ascii=False)[:2000]}" if parameters else "")
        )
        grounding = (
            f"What is the latest news in {ward} about: {query[:300]}?"
            if scenario_type in NEEDS_FRESH_SCENARIOS
            else None
        )
        final = self._run("scenario", scenario_id, ward, brief, "en", grounding)
        doc = dict(final["document"])
        low, high = sorted((float(doc.pop("confidence_low")), float(doc.pop("confidence_high"))))
        doc.pop("confidence", None)
        body = {
            "scenario_id": scenario_id,
            **doc,
            "confidence_score": self._confidence(final),
            "confidence_intervals": {"low": low, "high": high},
            "visualization_data": {
                "labels": [i["metric"] for i in doc["impact_breakdown"]],
                "baseline": [i["baseline"] for i in doc["impact_breakdown"]],
                "projected": [i["projected"] for i in doc["impact_breakdown"]],
            },
            "sources": self._sources(final),
            "provider": (final.get("writer") or {}).get("provider"),
            "simulated_at": _iso(self.clock()),
            "ward": ward,
            "scenario_type": scenario_type,
            "timeframe": timeframe,
            "scenario_query": query,
        }
        self.records.put("scenario", scenario_id, ward, self.clock(), body)
        return body

    def history(self, ward: str | None, limit: int) -> list[dict[str, Any]]:
        """Return stored scenarios, newest first."""
        return list(self.records.newest("scenario", ward, limit))
