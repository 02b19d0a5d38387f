"""The strategist orchestrator's Python API.

>>> from strategist import analyze
>>> result = analyze("Summarise this speech: ...", depth="quick")   # doctest: +SKIP
>>> result.answer, result.provider, result.confidence.value, result.cost_usd   # doctest: +SKIP

``analyze`` / ``aanalyze`` return an :class:`AnalysisResult`; ``stream`` / ``astream`` yield progress events and
then the result. ``Orchestrator`` runs analyses with a registry and a checkpointer you choose (none, the
embedded stores through ``open_orchestrator``, or your own saver); ``build_analysis_graph`` returns the
uncompiled LangGraph ``StateGraph`` to compile with your own checkpointer. A host that closes stores of its own
while its process goes on calls ``wait_for_settlements`` first, so that hedge losers still finishing correct their
cost in its ledger (``open_orchestrator`` does this when its block ends).

Ward briefings: ``brief(ward)`` returns the briefing as the contract's dict; ``get_ward_report`` returns it with
its ETag and remaining cache lifetime; ``build_briefing_graph`` is the uncompiled briefing graph.
"""

from graphs.analysis import build_analysis_graph
from graphs.briefing import build_briefing_graph
from graphs.errors import CheckpointStoreError, FeedbackError, RequestError, UnknownThread
from graphs.request import AnalysisRequest, parse_request
from graphs.result import AnalysisResult
from graphs.service import Orchestrator
from graphs.ward_reports import BriefingFailed, get_ward_report
from nodes.policy.hedging import wait_for_settlements
from providers.config import Settings, load_settings
from providers.registry import ProviderRegistry
from strategist.api import aanalyze, analyze, astream, brief, default_orchestrator, open_orchestrator, stream

__all__ = [
    "AnalysisRequest",
    "AnalysisResult",
    "BriefingFailed",
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
    "brief",
    "build_analysis_graph",
    "build_briefing_graph",
    "default_orchestrator",
    "get_ward_report",
    "load_settings",
    "open_orchestrator",
    "parse_request",
    "stream",
    "wait_for_settlements",
]
