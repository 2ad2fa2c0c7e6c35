"""The column type the tables share (importing it loads SQLAlchemy's core, not its ORM nor the mapped classes),
and ``name_set``, which lives with the reads that go without SQLAlchemy (``engine.store.light``)."""
from __future__ import annotations

from datetime import timezone

from sqlalchemy import DateTime, TypeDecorator

from engine.store.light import name_set  # noqa: F401 - re-exported


class UTCDateTime(TypeDecorator):
    """Stores UTC without an offset (SQLite keeps none; PostgreSQL: ``timestamp without time zone``, so the
    session's time zone never shifts it) and always returns aware UTC datetimes."""
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)

