"""The local tier's measured adequacy per task (and language), read from the artifact bench/local.py writes.

The router used to trust a fixed list of "local tasks". The artifact instead holds counts (jobs run, jobs graded
correct) of a labelled light-job set run through the real embedded model; counts are integers, so the artifact is
reproducible and diffable, and the router smooths them itself (Laplace: one success and one failure added, so a
task never measured or measured on few jobs sits near one half rather than at 0 or 1).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("local_adequacy.json")
ARTIFACT_FORMAT = "strategist-local-adequacy/1"
# Telugu script, or a job that asks for Telugu output: the measured set shows the small model cannot write it.
_TELUGU = re.compile(r"[\u0C00-\u0C7F]|\btelugu\b", re.IGNORECASE)


@dataclass(frozen=True)
class Counts:
    """Jobs run and jobs graded correct."""

    n: int
    correct: int

    @property
    def smoothed(self) -> float:
        return (self.correct + 1) / (self.n + 2)


@dataclass(frozen=True)
class LocalAdequacy:
    """Measured accuracy of the local model on light jobs, by task and by (task, language)."""

    model: str
    by_task: Mapping[str, Counts]
    by_task_language: Mapping[tuple[str, str], Counts] = field(default_factory=dict)

    def adequacy(self, task: str, language: str = "latin") -> float:
        """Return P(the local model does this light job right): the (task, language) cell when measured."""
        cell = self.by_task_language.get((task, language))
        if cell is not None and cell.n:
            return cell.smoothed
        return self.by_task.get(task, Counts(0, 0)).smoothed

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> LocalAdequacy:
        if doc.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"unsupported local adequacy format {doc.get('format')!r}")
        by_task = {t: Counts(int(c["n"]), int(c["correct"])) for t, c in doc["by_task"].items()}
        by_lang = {
            (t, lang): Counts(int(c["n"]), int(c["correct"]))
            for t, langs in doc.get("by_task_language", {}).items()
            for lang, c in langs.items()
        }
        return cls(model=str(doc.get("model", "")), by_task=by_task, by_task_language=by_lang)


def language_of(text: str) -> str:
    """Return the script the local model would have to handle: 'te' for Telugu, else 'latin' (English, Hinglish)."""
    return "te" if _TELUGU.search(text) else "latin"


def load_local_adequacy(path: Path | None = None) -> LocalAdequacy:
    """Load the artifact (default: local_adequacy.json next to this module)."""
    source = DEFAULT_PATH if path is None else path
    return LocalAdequacy.from_document(json.loads(source.read_text(encoding="utf-8")))


@functools.cache
def default_local_adequacy() -> LocalAdequacy:
    """Return the process-wide measurement shipped with the package."""
    return load_local_adequacy()


@functools.cache
def configured_local_adequacy(path: str) -> LocalAdequacy:
    """Return the measurement at ``path`` (the local tier's ``adequacy_path``), read once per process."""
    return load_local_adequacy(Path(path).expanduser())
