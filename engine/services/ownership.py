"""Case ownership at work (X1) and the conflict-of-interest guard (P12).

X1: the agent who registers a ticket owns it (``instances.owner``) until it closes. Every later task of the
ticket's agent lane (feedback, relay, revisit, care, re-dispatch…) is *offered* to the owner when it is
created: the row is assigned to the owner and ``offer_due`` says until when the owner has to claim it (the
SLA case ``owner_claim``, default 30 minutes, from the table the ticket started with). Claiming it (``kefu
claim``) makes it the owner's for good; completing it does too. A claim timer row (``timers.kind = 'claim'``,
not a BPMN timer) wakes the scheduler, ``kefu timers fire-due`` and ``kefu clock advance`` at ``offer_due``:
an unclaimed offer then goes back to the agent queue (audit ``owner_claim_lapsed``). An owner who is no longer
active gets no offers (the task stays in the queue, ``task_returned_to_queue``), and deactivating a user
returns their ready tasks to the queues. Handing a case over (``set_owner``) moves the old owner's ready agent
tasks of that ticket to the new owner, with a fresh offer.

P12: the staff named in a complaint (``staff_involved``, a ``users`` field of the intake form, copied to
``instances.staff_involved``) never act on it: they cannot claim, complete, reassign or escalate its tasks,
be handed the case or join its task force. When a named user owns the case, ownership goes back to the
queue at once (owner None) and the supervisor is told: audit ``conflict_of_interest_found`` and the
supervisor's inbox lists the case under 待指派负责人 until a supervisor hands it to another agent.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, select

from engine.clock import iso
from engine.errors import NotAllowed
from engine.store import chain as audit, writes
from engine.store.tables import HumanTask, Instance, Timer, User, name_set

SYSTEM = "system"
OWNER_ROLE = "agent"
CLAIM_KIND = "claim"
CLAIM_CASE = "owner_claim"
DEFAULT_CLAIM_MINUTES = 30
CONFLICT_FIELD = "staff_involved"


def claim_minutes(data: dict | None) -> float:
    """Minutes the owner has to claim an offered task: the ticket's SLA table (case ``owner_claim``), else 30."""
    target = ((data or {}).get("sla_targets") or {}).get(CLAIM_CASE) or {}
    minutes = target.get("respond_minutes") if isinstance(target, dict) else None
    return minutes if isinstance(minutes, (int, float)) and minutes > 0 else DEFAULT_CLAIM_MINUTES


def involved(inst: Instance) -> set[str]:
    """The staff named in the complaint (P12)."""
    return name_set(getattr(inst, "staff_involved", None))


def check_not_involved(inst: Instance, name: str, action: str) -> None:
    """P12: NotAllowed when ``name`` is among the staff the complaint is about."""
    if name in involved(inst):
        raise NotAllowed(f"{name} is named in complaint {inst.ticket_no} and may not {action} its tasks "
                         "(P12, conflict of interest)", rule="P12")


def offer_to_owner(s, inst: Instance, row: HumanTask, data: dict | None, now: datetime,
                   owner_active) -> dict | None:
    """Assign a new agent-lane task to the ticket's owner with a claim deadline (X1); the audit data to add to
    its ``task_created`` event, or None when the task is not offered (no owner, another lane, already assigned).
    ``owner_active()`` tells whether the owner may still work."""
    if row.role != OWNER_ROLE or row.candidates is not None or row.assignee is not None or not inst.owner:
        return None
    if inst.owner in involved(inst):
        return None
    if not owner_active():
        return {"owner": inst.owner, "offered": False, "reason": "owner_inactive"}
    due = now + timedelta(minutes=claim_minutes(data))
    row.assignee, row.offer_due = inst.owner, due
    writes.add(s, Timer(id=row.id, instance_id=inst.id, bpmn_id=row.bpmn_id, name=row.name, kind=CLAIM_KIND,
                        interrupting=False, attached_task_id=row.id, due_at=due, created_at=now))
    s.info.setdefault("kefu_timers_due", []).append(due)
    return {"owner": inst.owner, "offered": True, "offer_due": iso(due)}


def drop_claim_timer(s, task_id: str) -> None:
    """The claim timer of a task whose offer ended (claimed, released, reassigned, returned)."""
    timer = s.get(Timer, task_id)
    if timer is not None and timer.kind == CLAIM_KIND:
        writes.remove(s, timer)


def back_to_queue(s, inst: Instance, row: HumanTask, now: datetime, event: str, actor: str = SYSTEM,
                  **data) -> audit.PendingEvent:
    """Take a ready task from its assignee back to its lane's queue; the event to record."""
    previous = row.assignee
    writes.change(s, row, assignee=None, offer_due=None)
    return audit.PendingEvent(event, actor, now, task_id=row.id, bpmn_id=row.bpmn_id, task_name=row.name,
                              rules=["X1"], data={"previous_assignee": previous, "role": row.role, **data})


def lapse(s, inst: Instance, timer: Timer, now: datetime) -> list[audit.PendingEvent]:
    """A claim timer fell due: the owner did not claim the task in time, it goes back to the queue."""
    writes.remove(s, timer)
    row = s.get(HumanTask, timer.attached_task_id)
    if row is None or row.state != "ready" or row.offer_due is None:
        return []
    return [back_to_queue(s, inst, row, now, "owner_claim_lapsed", owner=row.assignee,
                          offer_due=iso(row.offer_due))]


def hand_over(s, inst: Instance, previous: str | None, new_owner: str, now: datetime, actor: str,
              data: dict | None) -> list[audit.PendingEvent]:
    """The case changed hands: the previous owner's ready agent tasks of this ticket go to the new owner,
    offered anew."""
    if not previous:
        return []
    events = []
    rows = s.scalars(select(HumanTask).where(HumanTask.instance_id == inst.id, HumanTask.state == "ready",
                                             HumanTask.role == OWNER_ROLE, HumanTask.assignee == previous))
    for row in rows:
        drop_claim_timer(s, row.id)
        due = now + timedelta(minutes=claim_minutes(data))
        writes.change(s, row, assignee=new_owner, offer_due=due)
        writes.add(s, Timer(id=row.id, instance_id=inst.id, bpmn_id=row.bpmn_id, name=row.name,
                            kind=CLAIM_KIND, interrupting=False, attached_task_id=row.id, due_at=due,
                            created_at=now))
        s.info.setdefault("kefu_timers_due", []).append(due)
        events.append(audit.PendingEvent("task_reassigned", actor, now, task_id=row.id, bpmn_id=row.bpmn_id,
                                         task_name=row.name, rules=["X1"],
                                         data={"previous_assignee": previous, "assignee": new_owner,
                                               "reason": "owner_changed", "offer_due": iso(due)}))
    return events


def release_user(s, name: str, now: datetime) -> dict[Instance, list[audit.PendingEvent]]:
    """A user who is no longer active: their ready tasks go back to the queues (X1), by instance."""
    out: dict[Instance, list[audit.PendingEvent]] = {}
    for row in s.scalars(select(HumanTask).where(HumanTask.assignee == name, HumanTask.state == "ready")):
        inst = s.get(Instance, row.instance_id)
        drop_claim_timer(s, row.id)
        out.setdefault(inst, []).append(back_to_queue(s, inst, row, now, "task_returned_to_queue",
                                                      reason="assignee_inactive"))
    return out


def note_conflict(inst: Instance, clean: dict, actor: str, now: datetime) -> list[audit.PendingEvent]:
    """A form named the staff the complaint is about (P12): remember them on the ticket; if the owner is one
    of them, the case leaves the owner and the supervisor is told (an audit event; the supervisor's inbox
    lists cases without an owner that name staff)."""
    if CONFLICT_FIELD not in clean:
        return []
    names = [n for n in (clean.get(CONFLICT_FIELD) or []) if isinstance(n, str)]
    inst.staff_involved = ",".join(dict.fromkeys(names))[:1000] or None
    events = []
    if inst.owner and inst.owner in names:
        events.append(audit.PendingEvent("conflict_of_interest_found", actor, now, rules=["P12", "X1"],
                                         data={"owner": inst.owner, "staff_involved": names,
                                               "action": "owner_removed", "notify": "supervisor"}))
        inst.owner = None
    return events


_USER_ACTIVE = select(User.active).where(User.name == bindparam("name"))


def user_is_active(s, name: str) -> bool:
    """Whether ``name`` is a user who may work; asked once per user in a unit of work (a batch of timer
    firings asks it for every new agent task)."""
    known = s.info.setdefault("kefu_active_users", {})
    if name not in known:  # the user row is often loaded already (the owner completing their own task)
        user = next((o for o in s.identity_map.values() if isinstance(o, User) and o.name == name), None)
        known[name] = bool(user.active) if user is not None else \
            bool(s.scalar(_USER_ACTIVE, {"name": name}))
    return known[name]
