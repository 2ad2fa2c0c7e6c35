"""Who may see what in the browser, on top of the engine's own checks (which stay authoritative for every
change): tickets by role or by a task on them, customer contact details only where the ticket at hand
needs them (I4)."""
from __future__ import annotations

from flask import abort
from flask_babel import gettext as _

from engine.services import routing

from .auth import kefu

# Roles that work with or oversee every ticket; the others see the tickets they have a task on.
WIDE_ROLES = routing.WIDE_ROLES
START_ROLES = ("agent", "supervisor")
CUSTOMER_EDIT_ROLES = ("agent", "supervisor")


def may_work(user, task: dict) -> bool:
    """The task is ready and the user's to work: in one of the user's lanes (or among a lanes-less task's
    candidates), and unclaimed or claimed by the user."""
    return task["state"] == "ready" and routing.may_work(user.name, user.roles, getattr(user, "groups", set()), task)


def may_see_instance(user, shown: dict) -> bool:
    return routing.may_read(user.name, user.roles, getattr(user, "groups", set()), shown["tasks"])


def check_instance(user, shown: dict) -> None:
    if not may_see_instance(user, shown):
        abort(403, _("您没有处理这张工单的任务，不能查看"))


def ready_instance_ids(user) -> set[int]:
    return {t["instance_id"] for t in kefu().tasks.ready(actor=user.name)}


def contact_visible(user, customer_id: int | None) -> bool:
    """Agents serve customers; anyone else sees contact details only while holding a ready task on one of
    this customer's tickets."""
    if user.has("agent"):
        return True
    if customer_id is None:
        return False
    mine = ready_instance_ids(user)
    return bool(mine) and any(i["instance_id"] in mine
                              for i in kefu().instances.recent(customer_id=customer_id, limit=500))


def may_see_customer(user, customer_id: int) -> bool:
    return user.has(*WIDE_ROLES) or contact_visible(user, customer_id)
