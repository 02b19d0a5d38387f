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


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_exported_graph_has_input_output_and_context_schemas(name: str) -> None:
    graph = load(EXPORTS[name])
    assert graph.checkpointer is None, "exported graphs carry no checkpointer: the server brings its own"
    inputs = graph.get_input_jsonschema()
    assert "query" in inputs["properties"] and inputs["required"] == ["query"]
    output = graph.get_output_jsonschema()
    result = output["$defs"]["AnalysisResult"]["properties"]
    assert {"answer", "provider", "attempts", "confidence", "cost_usd", "fallback_mode"} <= result.keys()
    context = graph.get_context_jsonschema()
    assert context is not None, "the graph has a context schema"
    # What a caller can set from outside; the injected dependencies are not data and are left out.
    assert set(context["properties"]) == {"deadline_at", "caller_key"}
