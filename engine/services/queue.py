"""The ready tasks a user may work (``kefu tasks``, the web's and the API's task lists; ``TaskService.ready``
is this function) and one task as its page shows it (``kefu task``, ``TaskService.get``): plain SQL on a DB-API
connection (``engine.store.plain`` over the columns of ``engine.store.light``), the same for SQLite and
PostgreSQL. The web reads on a connection of SQLAlchemy's reading pool (``Context``), the CLI on one of its own
(``engine.services.readers.OwnReader``) without importing SQLAlchemy at all, so that it answers at once."""
from __future__ import annotations

from uuid import UUID

from engine.errors import NotAllowed, NotFound
from engine.services import routing, shapes
from engine.services.readers import instance_keys
from engine.store.light import human_tasks, instances, name_set, quoted, users
from engine.store.plain import in_list

# Roles that read every ticket (the web's ticket page; webapp.access.WIDE_ROLES), so every task page too.
TICKET_READERS = frozenset({"agent", "supervisor", "qa", "auditor", "process_owner"})

_ORDER = 'ORDER BY "due_at" IS NULL, "due_at", "created_at"'


def task_key(task_id) -> str:
    """``task_id`` as text if it can name a task (a UUID); NotFound otherwise."""
    try:
        UUID(str(task_id))
    except ValueError:
        raise NotFound(f"no task {task_id!r}") from None
    return str(task_id)


def instance_row(conn, ref):
    """The instance named by its id or ticket number (the columns a task list shows); NotFound otherwise."""
    for key, value in instance_keys(ref):
        row = conn.first(instances, f"WHERE {quoted(key)} = :value", {"value": value})
        if row is not None:
            return row
    raise NotFound(f"no instance {ref!r}")


def user_row(ctx, conn, name: str | None):
    """The active user ``name`` (a plain row); NotAllowed for an unknown or inactive one."""
    return ctx.active(conn.first(users, 'WHERE "name" = :name', {"name": name}) if name else None, name)


def ready(ctx, actor: str | None = None, instance=None, role: str | None = None) -> list[dict]:
    """Ready human tasks; with ``actor`` only those the user may work (their roles, lanes, claims).
    ``ctx``: an ``engine.services.readers.Reader`` (the service's ``Context`` or the CLI's own reader)."""
    with ctx.plain() as conn:
        where, params = ['"state" = :state'], {"state": "ready"}
        known = {}
        if instance is not None:
            inst = instance_row(conn, instance)
            known[inst.id] = inst
            where.append('"instance_id" = :instance_id')
            params["instance_id"] = inst.id
        if role:
            where.append('"role" = :role')
            params["role"] = role
        may_work = None
        if actor is not None:
            user = user_row(ctx, conn, actor)
            roles, groups = name_set(user.roles), name_set(user.groups)
            listed, role_params = in_list("roles", sorted(roles))
            where.append(f'("role" IN {listed} OR "candidates" IS NOT NULL OR "assignee" = :actor)')
            where.append('("assignee" IS NULL OR "assignee" = :actor)')
            params.update(role_params, actor=actor)

            def may_work(row):
                return routing.may_work(user.name, roles, groups, row)
        rows = [r for r in conn.select(human_tasks, f"WHERE {' AND '.join(where)} {_ORDER}", params)
                if may_work is None or may_work(r)]
        missing = sorted({r.instance_id for r in rows} - set(known))
        if missing:
            listed, ids = in_list("id", missing)
            known.update((i.id, i) for i in conn.select(instances, f'WHERE "id" IN {listed}', ids))
        return [shapes.task_dict(ctx, r, known[r.instance_id], conn) for r in rows]


def one(ctx, task_id: str, actor: str | None = None) -> dict:
    """One task (any state); with ``actor`` only if that user may see it: whoever may act on it, and whoever
    may read its ticket (the roles that read every ticket, whoever may act on, or completed, a task of it)."""
    with ctx.plain() as conn:
        row = conn.first(human_tasks, 'WHERE "id" = :id', {"id": task_key(task_id)})
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        inst = conn.first(instances, 'WHERE "id" = :id', {"id": row.instance_id})
        if actor is not None:
            user = user_row(ctx, conn, actor)
            roles, groups = name_set(user.roles), name_set(user.groups)
            if not (routing.may_act(user.name, roles, groups, row) or roles & TICKET_READERS or any(
                    routing.may_act(user.name, roles, groups, r)
                    for r in conn.select(human_tasks, 'WHERE "instance_id" = :id', {"id": row.instance_id}))):
                raise NotAllowed(f"user {actor} may neither act on task {task_id} nor read its ticket")
        return shapes.task_dict(ctx, row, inst, conn)
