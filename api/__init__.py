"""The /api/v1/strategist blueprint, its routes by concern: briefing, analysis, alerts, ops, openapi, feed, jobs;
conversation, playbook and scenario.

Importing the package registers every route on ``bp`` (api/common.py).
"""

from api import alerts, analysis, briefing, conversation, feed, jobs, openapi, ops, playbook, scenario
from api.common import API_PREFIX, bp

__all__ = ["API_PREFIX", "alerts", "analysis", "bp", "briefing", "feed", "jobs", "openapi", "ops"]
__all__ += ["conversation", "playbook", "scenario"]
