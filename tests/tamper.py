"""An attacker with write access to the database: drops the append-only guards, then changes rows by SQL."""
from __future__ import annotations

from sqlalchemy import text

GUARD_TRIGGERS = ("audit_events_no_update", "audit_events_no_delete", "audit_ledger_no_update",
                  "audit_ledger_no_delete")


def drop_guards(k) -> None:
    with k.db.engine.begin() as conn:
        if k.db.dialect == "sqlite":
            for name in GUARD_TRIGGERS:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        else:
            for table in ("audit_events", "audit_ledger"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")


def sql(k, statement: str, **params) -> None:
    """Run SQL as the attacker (own connection and transaction, no application code involved)."""
    with k.db.engine.begin() as conn:
        conn.execute(text(statement), params)
