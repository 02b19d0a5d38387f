"""The Celery app: the configuration of worker/config.py and the tasks of worker/tasks.py.

Built by a function rather than at import, so that importing the package needs no broker and the configuration
is read from the environment of the process that uses it (`strategist worker`, the web process, a test).
"""

from __future__ import annotations

from collections.abc import Mapping

from celery import Celery

from providers.config import Settings, load_settings
from worker import tasks
from worker.config import celery_config


def create_celery(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> Celery:
    """Build the Celery app over the configured broker; raises ConfigError when none is configured."""
    app = Celery("strategist")
    app.conf.update(celery_config(settings or load_settings(), env))
    tasks.register(app)
    return app
