"""The columns the reads without SQLAlchemy name: ``kefu tasks`` and ``kefu task`` (and the web's task lists,
through the same code) read their rows with plain SQL on a DB-API connection (``engine.store.plain``), without
importing SQLAlchemy, whose import alone costs most of such a command. Each table here names columns of the
mapped tables with the kind of value they hold, which decides how a value read is made what the ORM would
return (aware UTC datetimes, booleans). The mapped tables stay the one definition of the schema:
``tests/test_cli_imports.py`` checks that every column here is a column there, of the same kind."""
from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timezone

TEXT, INTEGER, BOOLEAN, INSTANT = "text", "integer", "boolean", "instant"


def name_set(text: str | None) -> set[str]:
    """The names a comma-separated column holds (a user's roles or groups)."""
    return {n for n in (text or "").split(",") if n}


def instant(value):
    """A stored UTC time as an aware datetime (``engine.store.types.UTCDateTime``): SQLite holds the text
    SQLAlchemy wrote (``2026-01-31 08:00:00.000000``), PostgreSQL a ``timestamp without time zone``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc)


def boolean(value):
    """A stored boolean as a bool (SQLite holds 0 or 1); None stays None."""
    return None if value is None else bool(value)


_CONVERT = {INSTANT: instant, BOOLEAN: boolean}


class Table:
    """Columns of one table, in the order ``select`` names them; its rows are named tuples (``Row``) whose
    attributes read as a mapped row's do."""

    def __init__(self, name: str, /, **columns: str):
        self.name, self.columns = name, columns
        self.select = f'SELECT {", ".join(quoted(c) for c in columns)} FROM {quoted(name)}'
        self.Row = namedtuple(f"{name}_row", list(columns))
        self._converters = [(i, _CONVERT[kind]) for i, kind in enumerate(columns.values()) if kind in _CONVERT]

    def row(self, values) -> tuple:
        """A row of the values the database gave for ``select``'s columns."""
        if self._converters:
            values = list(values)
            for i, convert in self._converters:
                values[i] = convert(values[i])
        return self.Row(*values)


def quoted(name: str) -> str:
    """An identifier as both databases read it whatever words they reserve."""
    return f'"{name}"'


users = Table("users", name=TEXT, roles=TEXT, groups=TEXT, active=BOOLEAN)

instances = Table("instances", id=INTEGER, ticket_no=TEXT, kind=TEXT, definition_id=INTEGER, severity=TEXT,
                  vip=BOOLEAN, owner=TEXT, staff_involved=TEXT, response_due=INSTANT, finish_due=INSTANT,
                  clock_paused_at=INSTANT)

human_tasks = Table("human_tasks", id=TEXT, instance_id=INTEGER, bpmn_id=TEXT, spec_name=TEXT, name=TEXT,
                    role=TEXT, candidate_group=TEXT, candidates=TEXT, assignee=TEXT, state=TEXT,
                    created_at=INSTANT, due_at=INSTANT, ended_at=INSTANT, completed_by=TEXT, end_reason=TEXT,
                    offer_due=INSTANT)

definitions = Table("definitions", id=INTEGER, process_id=TEXT, xml=TEXT)

ALL = (users, instances, human_tasks, definitions)
