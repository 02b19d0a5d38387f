"""Outcome feedback: was an analysis right? Kept beside the checkpoints (SQLite, or Redis when set).

One outcome per thread id: judging an analysis again replaces its earlier outcome (a correction), so it is never
counted twice. An outcome carries what was scored - provider, task type, the raw confidence and its factors - read
from the analysis's final checkpoint, because that is what historical accuracy and the calibration model are
learned from (nodes/policy/calibration.py). Each store has a ``version`` that changes with every write, so the learned
state is rebuilt only when there is something new. Outcomes move between stores (SQLite and Redis) as JSON lines:
``export_lines`` and ``import_lines`` (``strategist feedback export|import``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Protocol

from graphs.errors import FeedbackError
from graphs.result import AnalysisResult
from nodes.policy.calibration import Outcome


class FeedbackStore(Protocol):
    def record(self, outcome: Outcome) -> None: ...

    def outcomes(self) -> list[Outcome]: ...

    def get(self, thread_id: str) -> Outcome | None: ...

    def version(self) -> str: ...


class SqliteFeedback:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            # AUTOINCREMENT: a replaced outcome gets a higher seq than any before, so max(seq) is a version
            # that changes with every write, across processes sharing the file.
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS outcomes ("
                "seq INTEGER PRIMARY KEY AUTOINCREMENT, thread_id TEXT NOT NULL UNIQUE, at REAL NOT NULL, body TEXT)"
            )

    def record(self, outcome: Outcome) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO outcomes (thread_id, at, body) VALUES (?, ?, ?)",
                (outcome.thread_id, outcome.at, json.dumps(asdict(outcome))),
            )

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            rows = self._conn.execute("SELECT body FROM outcomes ORDER BY seq").fetchall()
        return [Outcome(**json.loads(body)) for (body,) in rows]

    def get(self, thread_id: str) -> Outcome | None:
        with self._lock:
            row = self._conn.execute("SELECT body FROM outcomes WHERE thread_id = ?", (thread_id,)).fetchone()
        return Outcome(**json.loads(row[0])) if row else None

    def version(self) -> str:
        with self._lock:
            count, top = self._conn.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM outcomes").fetchone()
        return f"{count}:{top}"

    def close(self) -> None:
        self._conn.close()


class RedisFeedback:
    """A hash of outcomes by thread id plus a write counter, under one hash tag (one slot in a cluster)."""

    def __init__(self, client: Any, prefix: str = "strategist") -> None:
        self._client = client
        self._hash = f"{prefix}:{{feedback}}:outcomes"
        self._version = f"{prefix}:{{feedback}}:version"

    def record(self, outcome: Outcome) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._hash, outcome.thread_id, json.dumps(asdict(outcome)))
        pipe.incr(self._version)
        pipe.execute()

    def outcomes(self) -> list[Outcome]:
        rows = [Outcome(**json.loads(body)) for body in self._client.hvals(self._hash)]
        return sorted(rows, key=lambda o: (o.at, o.thread_id))

    def get(self, thread_id: str) -> Outcome | None:
        body = self._client.hget(self._hash, thread_id)
        return Outcome(**json.loads(body)) if body is not None else None

    def version(self) -> str:
        value = self._client.get(self._version)
        return value.decode() if isinstance(value, bytes) else str(value or 0)


def outcome_of(result: AnalysisResult, correct: bool, *, at: float, note: str = "") -> Outcome:
    """Turn a finished analysis and its verdict into the outcome that is learned from."""
    if result.answer is None or result.provider is None:
        raise FeedbackError(f"analysis {result.thread_id!r} has no answer to judge ({result.error})")
    confidence = result.confidence
    return Outcome(
        thread_id=result.thread_id,
        at=at,
        provider=result.provider,
        task=str(result.routing.classification["task"]),
        # Results from before calibration carry no raw value; theirs was the uncalibrated combination.
        raw=confidence.raw if confidence.raw is not None else confidence.value,
        correct=correct,
        factors={f.name: f.value for f in confidence.factors},
        calibrated=confidence.value,
        note=note,
    )


EXPORT_FORMAT = "strategist-outcomes/1"


def export_lines(store: FeedbackStore) -> Iterator[str]:
    """Yield the store's outcomes as JSON lines, oldest first, after a header line naming the format."""
    rows = store.outcomes()
    yield json.dumps({"format": EXPORT_FORMAT, "outcomes": len(rows)})
    for outcome in sorted(rows, key=lambda o: (o.at, o.thread_id)):
        yield json.dumps(asdict(outcome))


def import_lines(store: FeedbackStore, lines: Iterable[str]) -> tuple[int, int]:
    """Record exported outcomes into ``store``; return (new, replaced). Raise FeedbackError on a bad line.

    An outcome for a thread the store already judged replaces it (the same rule as a correction), so importing
    the same file twice changes nothing.
    """
    known = {f.name for f in fields(Outcome)}
    parsed: list[Outcome] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeedbackError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise FeedbackError(f"line {number}: expected a JSON object")
        if "format" in data:
            if data["format"] != EXPORT_FORMAT:
                raise FeedbackError(f"line {number}: unknown format {data['format']!r} (expected {EXPORT_FORMAT})")
            continue
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeedbackError(f"line {number}: unknown field(s) {', '.join(unknown)}")
        try:
            outcome = Outcome(**data)
        except TypeError as exc:
            raise FeedbackError(f"line {number}: {exc}") from None
        if not isinstance(outcome.correct, bool) or not outcome.thread_id or not outcome.provider:
            raise FeedbackError(f"line {number}: an outcome needs a thread_id, a provider and correct true or false")
        weight = outcome.weight
        # Nothing counts as more than a person's judgment (nodes/policy/learned_adequacy.py); None: its kind's.
        if weight is not None and (
            isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1
        ):
            raise FeedbackError(f"line {number}: weight must be a number in (0, 1], or absent")
        parsed.append(outcome)
    new = replaced = 0
    for outcome in parsed:
        if store.get(outcome.thread_id) is None:
            new += 1
        else:
            replaced += 1
        store.record(outcome)
    return new, replaced
