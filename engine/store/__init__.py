"""Persistence: the tables, the database and its unit of work, Core writes, the Alembic schema, the
hash-chained audit log and API tokens."""
