"""The column type and the small helper the tables share with the reads that go without the ORM
(``engine.store.light``): importing them loads SQLAlchemy's core, not its ORM nor the mapped classes."""
from __future__ import annotations

from datetime import timezone

from sqlalchemy import DateTime, TypeDecorator


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


def name_set(text: str | None) -> set[str]:
    """The names a comma-separated column holds (a user's roles or groups)."""
    return {n for n in (text or "").split(",") if n}
