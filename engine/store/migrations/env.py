"""Alembic environment of Kefu: configured in code by ``engine.store.schema`` (no alembic.ini needed).

The connection comes from ``config.attributes["connection"]`` (``engine.store.schema`` opens it inside the
transaction that also holds the migration lock); the target schema is ``engine.store.tables.Base.metadata``.
"""
from __future__ import annotations

from alembic import context

from engine.store.tables import Base
from engine.store.schema import include_object, render_item

config = context.config


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata,
                      literal_binds=True, render_item=render_item, include_object=include_object,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=Base.metadata, render_item=render_item,
                      include_object=include_object, render_as_batch=True,
                      # SQLite alters tables by copying them (batch mode); PostgreSQL runs DDL in one transaction.
                      transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
