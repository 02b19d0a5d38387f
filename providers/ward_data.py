"""The ward's own data: recent posts and news from the backend's database (SQLAlchemy) or a JSONL file.

A briefing merges these items with its web research and cites them like web sources. Configured by one URL
(``WARD_DATA_URL``): a SQLAlchemy database URL (``postgresql+psycopg://...`` for the backend's Postgres,
``sqlite:///path`` in tests) read from the table ``WARD_DATA_TABLE`` (default ``ward_posts``), or a path to a
JSONL file (``file:///path.jsonl`` or a plain path ending in ``.jsonl``).

Rows and lines carry ``ward``, ``title``, ``content`` (or ``text``), ``url``, ``published_at`` (or ``date``)
and optionally ``source``. The table is reflected, not declared: the backend owns its schema, and columns
beyond these are ignored. Reads are bounded: the newest ``limit`` items of the ward within ``max_age_days``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit


@dataclass(frozen=True)
class WardItem:
    title: str
    content: str
    url: str
    date: str  # ISO date, "" when unknown
    source: str = ""


@runtime_checkable
class WardDataSource(Protocol):
    """Where a briefing reads the ward's own recent posts and news."""

    def recent(self, ward: str, limit: int) -> list[WardItem]: ...


class WardDataError(RuntimeError):
    """The ward data could not be read; the message names the source (a password masked)."""


def _text(row: dict[str, Any], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _date(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()[:10]
    text = str(value or "").strip()
    return text[:10] if len(text) >= 10 else ""


def _item(row: dict[str, Any]) -> WardItem | None:
    content = _text(row, "content", "text", "body")
    if not content:
        return None
    return WardItem(
        title=_text(row, "title", "headline") or content[:80],
        content=content,
        url=_text(row, "url", "link"),
        date=_date(row.get("published_at") or row.get("date") or row.get("created_at")),
        source=_text(row, "source", "outlet"),
    )


class JsonlWardData:
    """Ward items from a JSONL file, one object a line (re-read on each call: the file may be replaced)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def recent(self, ward: str, limit: int) -> list[WardItem]:
        """Return the newest ``limit`` items of the ward (case-insensitive match on ``ward``)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise WardDataError(f"cannot read ward data file {self.path}: {exc.strerror or exc}") from None
        items: list[WardItem] = []
        wanted = ward.strip().casefold()
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a half-written last line is not a reason to drop the rest
            if isinstance(row, dict) and str(row.get("ward", "")).strip().casefold() == wanted:
                item = _item(row)
                if item is not None:
                    items.append(item)
        items.sort(key=lambda i: i.date, reverse=True)
        return items[:limit]


class SqlWardData:
    """Ward items from a SQL table through SQLAlchemy (reflected on first use; one engine per process)."""

    def __init__(self, url: str, table: str = "ward_posts") -> None:
        self.url = url
        self.table_name = table
        self._engine: Any = None
        self._table: Any = None
        self._lock = threading.Lock()

    def _masked(self) -> str:
        parts = urlsplit(self.url)
        return self.url.replace(f":{parts.password}@", ":***@") if parts.password else self.url

    def _bind(self) -> tuple[Any, Any]:
        import sqlalchemy as sa

        with self._lock:
            if self._table is None:
                self._engine = sa.create_engine(self.url, pool_pre_ping=True)
                self._table = sa.Table(self.table_name, sa.MetaData(), autoload_with=self._engine)
            return self._engine, self._table

    def recent(self, ward: str, limit: int) -> list[WardItem]:
        """Return the newest ``limit`` items of the ward (case-insensitive match on the ``ward`` column)."""
        import sqlalchemy as sa

        try:
            engine, table = self._bind()
            order = next((table.c[n] for n in ("published_at", "date", "created_at") if n in table.c), None)
            query = sa.select(table).where(sa.func.lower(table.c.ward) == ward.strip().lower()).limit(limit)
            if order is not None:
                query = query.order_by(order.desc())
            with engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query)]
        except sa.exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            detail = (str(orig if orig is not None else exc).splitlines() or [type(exc).__name__])[0]
            raise WardDataError(f"cannot read ward data from {self._masked()} ({self.table_name}): {detail}") from None
        return [item for item in (_item(r) for r in rows) if item is not None]


def open_ward_data(url: str | None, table: str = "ward_posts") -> WardDataSource | None:
    """Return the ward data source a URL names, or None without one."""
    if not url or not url.strip():
        return None
    url = url.strip()
    if url.startswith("file://"):
        return JsonlWardData(Path(urlsplit(url).path))
    if url.endswith(".jsonl") and "://" not in url:
        return JsonlWardData(Path(url).expanduser())
    return SqlWardData(url, table)
