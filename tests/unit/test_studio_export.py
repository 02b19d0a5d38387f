"""The graphs `langgraph dev` (LangGraph Studio) loads: each one named in langgraph.json, and its schemas."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph.state import CompiledStateGraph

ROOT = Path(__file__).resolve().parents[2]
EXPORTS: dict[str, str] = json.loads((ROOT / "langgraph.json").read_text(encoding="utf-8"))["graphs"]


def load(spec: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Load ``./path/to/file.py:attribute`` the way the LangGraph server does: by file path."""
    path, _, attribute = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(f"studio_{Path(path).stem}", ROOT / path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    graph = getattr(module, attribute)
    assert isinstance(graph, CompiledStateGraph)
    return graph


# What each export takes (its one required input) and the result model its output carries, with keys it must have.
EXPECTED: dict[str, tuple[str, str, set[str]]] = {
    "strategist": ("query", "AnalysisResult", {"answer", "provider", "attempts", "confidence", "fallback_mode"}),
    "ward_briefing": ("ward", "BriefingResult", {"briefing", "attempts", "confidence", "cost_usd", "error"}),
}


def test_every_export_is_checked() -> None:
    assert set(EXPORTS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_exported_graph_has_input_output_and_context_schemas(name: str) -> None:
    graph = load(EXPORTS[name])
    assert graph.checkpointer is None, "exported graphs carry no checkpointer: the server brings its own"
    required, model, keys = EXPECTED[name]
    inputs = graph.get_input_jsonschema()
    assert required in inputs["properties"] and inputs["required"] == [required]
    output = graph.get_output_jsonschema()
    result = output["$defs"][model]["properties"]
    assert keys <= result.keys()
    context = graph.get_context_jsonschema()
    assert context is not None, "the graph has a context schema"
    # What a caller can set from outside; the injected dependencies are not data and are left out.
    assert set(context["properties"]) == {"deadline_at", "caller_key"}
