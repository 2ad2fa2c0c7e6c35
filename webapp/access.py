"""Who may see what in the browser, on top of the engine's own checks (which stay authoritative for every
change): tickets by role or by a task on them, customer contact details only where the ticket at hand
needs them (I4)."""
from __future__ import annotations

from flask import abort
from flask_babel import gettext as _

from engine.services import routing
from engine.services.masking import REVEAL_ROLES

from .auth import kefu

# Roles that work with or oversee every ticket; the others see the tickets they have a task on.
WIDE_ROLES = routing.WIDE_ROLES
START_ROLES = ("agent", "supervisor")
CUSTOMER_EDIT_ROLES = ("agent", "supervisor")


def may_work(user, task: dict) -> bool:
    """The task is ready and the user's to work: in one of the user's lanes (or among a lanes-less task's
    candidates), and unclaimed or claimed by the user."""
    return task["state"] == "ready" and user.name not in (task.get("staff_involved") or ()) \
        and routing.may_work(user.name, user.roles, getattr(user, "groups", set()), task)  # P12: never the named


def may_see_instance(user, shown: dict) -> bool:
    """The roles that read every ticket, and whoever may act on (assignee; the lane's role and group, or a
    candidate, while unclaimed) or completed one of its tasks (engine.services.routing.may_read)."""
    return routing.may_read(user.name, user.roles, getattr(user, "groups", set()), shown["tasks"])


def check_instance(user, shown: dict) -> None:
    if not may_see_instance(user, shown):
        abort(403, _("您没有处理这张工单的任务，不能查看"))


def contact_visible(user, customer_id: int | None) -> bool:
    """I4 (``engine.services.masking``): a customer's contact details in full only for the owner of one of
    the customer's tickets or the holder of a ready task on one."""
    return kefu().masking.sees_customer(user.name, customer_id)


def ticket_view(user, shown: dict) -> dict:
    """A ticket (``instances.show`` or ``audit.trace``) as ``user`` may read it: contact data masked (I4)
    unless the user owns the case or holds a ready task on it; ``contact_masked`` says which."""
    return kefu().masking.ticket(shown, user.name)


def may_reveal(user) -> bool:
    return user.has(*REVEAL_ROLES)


def ticket_contact_fields(shown: dict) -> list[str]:
    """The contact fields of a ticket that hold a value: the customer's, then the data's."""
    c = shown.get("customer") or {}
    fields = [k for k in ("phone", "email", "address") if c.get(k)]
    declared = kefu().masking.fields_of(shown["instance_id"])
    return fields + [k for k in declared if (shown.get("data") or {}).get(k) not in (None, "")]


def reveal_form(user, masked: bool, action: str, fields: list[str], revealed=None, error=None) -> dict | None:
    """The reveal form (I4) for a permitted user reading masked values; None for anyone else."""
    if not masked or not fields or not may_reveal(user):
        return None
    return {"action": action, "fields": fields, "revealed": revealed, "error": error}


def may_see_customer(user, customer_id: int) -> bool:
    return user.has(*WIDE_ROLES) or contact_visible(user, customer_id)
