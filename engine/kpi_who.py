"""Who a KPI miss is charged to (RULES.md K-who, X1): the holder of the clock that ran out, rolled up to their
department, read from the ``clock_stopped`` audit events; the ticket's first responsible agent otherwise.

A ``clock_stopped`` event is recorded whenever a clock stops, with the data ``{"clock", "task" (the guarded
task's BPMN id), "role" (its lane), "group" (candidate group or null), "responsible" (user or null), "due_at",
"stopped_at", "state": "met" | "missed"}``. For a KPI whose table row says ``charged = "responsible"``:

- a miss is charged to the ``responsible`` of each relevant clock that ran out; when that is null, to the first
  responsible agent for an agent-lane clock and to the department (candidate group, else the lane) otherwise;
  the holders of its relevant clocks that were met are credited with the ticket;
- a met ticket is credited to the holders of its relevant clocks;
- a missed agent-side clock of a case in a shift handover (X2): left out of it (after acceptance) is charged to
  the outgoing agent (漏交), listed but not taken over when the next shift had begun, to the incoming one (漏接);
- a ticket without ``clock_stopped`` events, or without a relevant clock, stays with its first responsible
  agent (the case owner, X1: ``instances.owner`` as of the report, replayed from the ``owner_changed`` events;
  the agent who opened it, ``instances.created_by``, when it has none), as for a KPI charged to the ``owner``.

Departments: the candidate group (``finance``, ``security_ops`` …); else the lane role; the agent and supervisor
lanes are the customer-service department itself (``customer_service``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
CUSTOMER_SERVICE = "customer_service"
SERVICE_LANES = {"agent", "supervisor"}
AGENT_LANE = "agent"
ACCEPT_TASKS = {"department_accept", "accept_order"}

# Which clocks a KPI's outcome depends on (the others are another KPI's business).
RELEVANT = {
    "K1": lambda c: True,                       # every clock of the consultation (C3/C5, T1)
    "K2": lambda c: True,                       # every clock of the complaint (P11)
    "K5": lambda c: c.role != AGENT_LANE and c.clock in ("response", "finish"),  # the work order's T1 clocks (R7)
    "K6": lambda c: c.task == "revisit",        # the revisit window (P9/R6)
    "K8": lambda c: c.task in ACCEPT_TASKS,     # the response clock (accepting the order)
}


OWNER_EVENTS = ("owner_changed", "conflict_of_interest_found")


def first_responsible(inst, events, as_of: datetime) -> str | None:
    """The ticket's first responsible agent at ``as_of`` (X1): its owner then, else the agent who opened it."""
    changes = [e for e in events if e.type in OWNER_EVENTS]
    if not changes:
        return getattr(inst, "owner", None) or inst.created_by
    owner = inst.created_by
    for e in changes:
        if e.at < as_of:
            owner = (e.data or {}).get("to") if e.type == "owner_changed" else None
    return owner or inst.created_by


@dataclass(frozen=True)
class ClockStop:
    clock: str
    task: str | None
    task_name: str | None
    role: str | None
    group: str | None
    responsible: str | None
    due_at: str | None
    stopped_at: str | None
    state: str

    @property
    def late_seconds(self) -> int | None:
        due, stopped = _when(self.due_at), _when(self.stopped_at)
        if due is None or stopped is None:
            return None
        return max(0, int((stopped - due).total_seconds()))


def _when(text) -> datetime | None:
    try:
        d = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return d if d is None or d.tzinfo else d.replace(tzinfo=SHANGHAI)


def clock_stops(events) -> list[ClockStop]:
    """The ``clock_stopped`` events among a ticket's events, in order."""
    out = []
    for e in events:
        data = e.data or {}
        if e.type != "clock_stopped" or data.get("state") not in ("met", "missed"):
            continue
        out.append(ClockStop(str(data.get("clock") or "?"), data.get("task"),
                             getattr(e, "task_name", None) or data.get("task"), data.get("role"),
                             data.get("group"), data.get("responsible"), data.get("due_at"),
                             data.get("stopped_at"), data["state"]))
    return out


def department_of(role: str | None, group: str | None) -> str:
    return group or (CUSTOMER_SERVICE if not role or role in SERVICE_LANES else role)


def duration(seconds: int) -> str:
    """2h, 1d 3h, 25min (whole minutes)."""
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}min" if mins else ""]
    return " ".join(p for p in parts if p) or "0min"


OWNER_NOTES = {"owner_rule": "{kpi} is charged to the ticket's owner", "no_records": "no clock records",
               "no_clock": "no clock of {kpi} on record", "no_missed_clock": "no clock of {kpi} ran out on record"}


def _owner_share(owner: str | None, outcome, kpi: str, note: str) -> dict:
    """The ticket stays with its first responsible agent; ``note`` says why (a key of OWNER_NOTES)."""
    why = OWNER_NOTES[note].format(kpi=kpi)
    return {"person": owner, "department": CUSTOMER_SERVICE, "outcome": outcome, "basis": "owner", "note": note,
            "clock": None, "task": None, "task_name": None, "late_seconds": None,
            "why": f"{why}; first responsible agent {owner or '—'} (X1) (department {CUSTOMER_SERVICE})"}


def _clock_share(c: ClockStop, owner: str | None, outcome) -> dict:
    agent_lane = c.role == AGENT_LANE
    person = c.responsible or (owner if agent_lane else None)
    dept = department_of(c.role, c.group)
    late = c.late_seconds
    what = f"{c.clock} clock of {c.task_name or c.task or '?'} " + (
        "met" if c.state == "met" else f"ran out {duration(late)} late" if late and late >= 60 else "ran out")
    if c.responsible:
        who = f"holder {person} (department {dept})"
    elif agent_lane:
        who = f"no holder on record: first responsible agent {person or '—'} (X1) (department {dept})"
    else:
        who = f"no holder on record: department {dept}"
    return {"person": person, "department": dept, "outcome": outcome, "note": None,
            "basis": "clock" if c.responsible else "owner" if agent_lane else "department",
            "clock": c.clock, "state": c.state, "task": c.task, "task_name": c.task_name,
            "late_seconds": late if c.state == "missed" else None, "why": f"{what}; {who}"}


@dataclass(frozen=True)
class HandoverMark:
    """A ticket's line in a shift handover (X2): listed (``included``) or left out, and when it was taken over."""
    handover: int
    outgoing: str
    incoming: str
    included: bool
    started_at: datetime
    window_start: datetime
    accepted_at: datetime | None


def _handover_charge(share: dict, c: ClockStop, marks) -> dict:
    """X2 (002 第三章.3): a missed agent-side clock of a case left out of a handover, after the handover was
    accepted, is charged to the outgoing agent (漏交); of a case listed but not taken over when the next shift
    had begun, to the incoming agent (漏接)."""
    at = _when(c.stopped_at)
    if at is None or not marks or share["outcome"] is not False:
        return share
    before = [m for m in marks if m.started_at <= at]
    if not before:
        return share
    m = max(before, key=lambda m: m.started_at)
    if share["person"] not in (m.outgoing, None) or (share["person"] is None and c.role != AGENT_LANE):
        return share
    if m.included and (m.accepted_at is None or m.accepted_at > at) and at >= m.window_start:
        return {**share, "person": m.incoming, "basis": "handover", "note": "handover_not_taken",
                "why": share["why"] + f"; listed in handover #{m.handover} from {m.outgoing} to {m.incoming} "
                                      "but not taken over when it ran out: charged to the incoming agent (漏接, X2)"}
    if not m.included and m.accepted_at is not None and m.accepted_at <= at:
        return {**share, "person": m.outgoing, "basis": "handover", "note": "handover_left_out",
                "why": share["why"] + f"; left out of handover #{m.handover} from {m.outgoing} to {m.incoming}: "
                                      "charged to the outgoing agent (漏交, X2)"}
    return share


def charges(kpi: str, charged: str, owner: str | None, stops: list[ClockStop], outcome, handovers=()) -> list[dict]:
    """Who a counted ticket's outcome belongs to: one share per person (or department without a person), each
    with the outcome that person is credited or charged with and why; ``handovers``: the ticket's
    ``HandoverMark``s (X2)."""
    relevant = [c for c in stops if RELEVANT.get(kpi, lambda _c: False)(c)]
    if charged != "responsible":
        return [_owner_share(owner, outcome, kpi, "owner_rule")]
    if not stops:
        return [_owner_share(owner, outcome, kpi, "no_records")]
    if not relevant:
        return [_owner_share(owner, outcome, kpi, "no_clock")]
    if outcome is False:
        missed = [c for c in relevant if c.state == "missed"]
        if not missed:
            return [_owner_share(owner, False, kpi, "no_missed_clock")]
        shares = [_handover_charge(_clock_share(c, owner, False), c, handovers) for c in missed]
        shares += [_clock_share(c, owner, True) for c in relevant if c.state == "met"]
    else:
        shares = [_clock_share(c, owner, outcome) for c in relevant]
    return _merge(shares)


def _merge(shares: list[dict]) -> list[dict]:
    """One share per (person, department): charged if any of their clocks is charged."""
    out: dict[tuple, dict] = {}
    for s in shares:
        key = (s["person"], s["department"])
        if key not in out:
            out[key] = dict(s)
            continue
        kept = out[key]
        kept["why"] += "; " + s["why"]
        if s["outcome"] is False and kept["outcome"] is not False:
            for f in ("outcome", "basis", "clock", "state", "task", "task_name", "late_seconds"):
                kept[f] = s[f]
    # the charged first, so a reader sees the miss before the credits
    return sorted(out.values(), key=lambda s: s["outcome"] is not False)


def charged_text(shares: list[dict]) -> str:
    """Who is charged (misses only), e.g. ``dept1 (finance)``; empty when nobody is."""
    return "; ".join(f"{s['person'] or '—'} ({s['department']})" for s in shares if s["outcome"] is False)
