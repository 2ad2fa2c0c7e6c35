"""The ready tasks a user may work (``kefu tasks``, the web's and the API's task lists): one read of plain
rows through SQLAlchemy Core over ``engine.store.light``, without the ORM or the mapped classes, so that the
command that lists them answers at once. ``TaskService.ready`` is this function."""
from __future__ import annotations

from sqlalchemy import or_, select

from engine.errors import NotFound
from engine.services import routing, shapes
from engine.services.context import Context, instance_keys
from engine.store.light import human_tasks, instances, users
from engine.store.types import name_set

_TASK = human_tasks.c
_INSTANCE = instances.c


def instance_row(conn, ref):
    """The instance named by its id or ticket number (the columns a task list shows); NotFound otherwise."""
    for key, value in instance_keys(ref):
        row = conn.execute(select(instances).where(_INSTANCE[key] == value)).first()
        if row is not None:
            return row
    raise NotFound(f"no instance {ref!r}")


def ready(ctx: Context, actor: str | None = None, instance=None, role: str | None = None) -> list[dict]:
    """Ready human tasks; with ``actor`` only those the user may work (their roles, lanes, claims)."""
    with ctx.db.connection() as conn:
        q = select(human_tasks).where(_TASK.state == "ready")
        known = {}
        if instance is not None:
            inst = instance_row(conn, instance)
            known[inst.id] = inst
            q = q.where(_TASK.instance_id == inst.id)
        if role:
            q = q.where(_TASK.role == role)
        may_work = None
        if actor is not None:
            user = ctx.active(conn.execute(select(users).where(users.c.name == actor)).first() if actor else None,
                              actor)
            roles, groups = name_set(user.roles), name_set(user.groups)
            q = q.where(or_(_TASK.role.in_(roles), _TASK.candidates.is_not(None), _TASK.assignee == actor))
            q = q.where(or_(_TASK.assignee.is_(None), _TASK.assignee == actor))

            def may_work(row):
                return routing.may_work(user.name, roles, groups, row)
        rows = [r for r in conn.execute(q.order_by(_TASK.due_at.is_(None), _TASK.due_at, _TASK.created_at))
                if may_work is None or may_work(r)]
        missing = {r.instance_id for r in rows} - set(known)
        if missing:
            known.update((i.id, i) for i in conn.execute(select(instances).where(_INSTANCE.id.in_(missing))))
        return [shapes.task_dict(ctx, r, known[r.instance_id], conn) for r in rows]
