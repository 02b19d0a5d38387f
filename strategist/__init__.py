"""The strategist orchestrator's Python API.

>>> from strategist import analyze
>>> result = analyze("Summarise this speech: ...", depth="quick")   # doctest: +SKIP
>>> result.answer, result.provider, result.confidence.value, result.cost_usd   # doctest: +SKIP

``analyze`` / ``aanalyze`` return an :class:`AnalysisResult`; ``stream`` / ``astream`` yield progress events and
then the result. ``Orchestrator`` runs analyses with a registry and a checkpointer you choose (none, the
embedded stores through ``open_orchestrator``, or your own saver); ``build_analysis_graph`` returns the
uncompiled LangGraph ``StateGraph`` to compile with your own checkpointer.
"""

from graphs.analysis import build_analysis_graph
from graphs.errors import CheckpointStoreError, FeedbackError, RequestError, UnknownThread
from graphs.request import AnalysisRequest, parse_request
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from providers.config import Settings, load_settings
from providers.registry import ProviderRegistry
from strategist.api import aanalyze, analyze, astream, default_orchestrator, open_orchestrator, stream

__all__ = [
    "AnalysisRequest",
    "AnalysisResult",
    "CheckpointStoreError",
    "FeedbackError",
    "Orchestrator",
    "ProviderRegistry",
    "RequestError",
    "Settings",
    "UnknownThread",
    "aanalyze",
    "analyze",
    "astream",
    "build_analysis_graph",
    "default_orchestrator",
    "load_settings",
    "open_orchestrator",
    "parse_request",
    "stream",
]
