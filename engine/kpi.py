"""The monthly KPIs K1–K8 (RULES.md, 000 §六, 002) computed from recorded instances and audit events.

Pure computation: ``compute(session, month, as_of)`` reads, never writes. Every figure carries its lineage:
the tickets counted (with whether they met the criterion and why) and the tickets excluded (and why).

Decisions (cited in README.md "KPIs"):

- **Month.** An Asia/Shanghai calendar month. A KPI's population is the tickets *opened* in that month;
  their state is judged from the audit events recorded before ``as_of`` — the month's end for a past month
  (so the K-cycle report computed on the 1st never changes afterwards), now for the running month.
- **Who (K-who).** A ticket's first responsible agent (X1) is its owner (``instances.owner``), else its opener.
  A miss of a KPI the KPI table charges to the ``responsible`` is charged to the holder of the clock that ran
  out and rolled up to their department (``engine.kpi_who``, from the ``clock_stopped`` events); otherwise, and
  for tickets without clock records, the ticket stays with its first responsible agent. The per-person figures
  (``agents``) and the per-department roll-up (``departments``) count each ticket for the people and
  departments it belongs to; the department figure is the whole customer-service department: every ticket.
- **Still open at month end.** A ticket whose outcome is not yet decided at ``as_of`` (no deadline passed,
  revisit window still open) is *excluded* with that reason; once its deadline has passed it is counted
  as a miss.
- **K1 consultation response timeliness (C6).** All consultations. Timely = answered on the spot (C2), or
  the answer relayed to the customer (``relay_answer``) no later than the reply time promised to the customer
  (C3, ``promised_reply_time``) and no department deadline overran (no overdue timer fired, T1).
- **K2 complaint handling rate (P11).** All complaints. Handled = the customer declared satisfied
  (``mark_handled`` ran, P8). A complaint the customer sent back (unsatisfied, another round: the
  "reopened" complaint) counts once, handled when its last round satisfied the customer. An unhandled
  complaint counts as not handled once its handling deadline (or 24 h after registration, 003) has passed.
- **K3 customer satisfaction.** Mean of the revisit scores (``satisfaction_score``, P9/R6) of the month's
  complaints and repairs, and of the periodic care revisits (``care`` instances, ``care_revisit``, Q1) due
  in the month; tickets without a revisit are excluded.
- **K4 information entry accuracy (QA).** Accurate ÷ inspected tickets: the QA reviews (``qa_sampling``
  process, ``qa_review`` task's ``entry_accurate``) *recorded in the month*. The sample of month M−1 is
  drawn on the 1st of M and scored during M, so it is M's report that counts it; a ticket is attributed
  to the agent who opened it.
- **Work orders (K5, K7, K8).** Repairs, and consultations/complaints transferred to a department or a task
  force (the ones with a deadline, SLA table "work order").
- **K5 work order timeliness (R7).** Timely = handled (repair completed, department answer, complaint
  handled) without an overdue timer firing (T1). A re-dispatched order was overdue: it counts once, late.
  A paused finish clock (R4) moves the deadline, so time waiting for the customer never makes an order late.
- **K6 revisit rate (002 第六条).** Closed complaints and repairs whose revisit fell due (``wait_revisit``
  fired); revisited = revisit recorded. One still inside its revisit window is excluded; one whose window
  closed (``timer_revisit_late`` fired) without a revisit counts as not revisited.
- **K7 dispatch accuracy.** Correctly routed = the first department/technician was kept. Routed wrongly =
  the order sat unaccepted until the response timer fired and was re-dispatched to another handler. A
  re-dispatch after the handler accepted (finish overdue) is a lateness (K5), not a routing error.
- **K8 30-minute response.** Work orders with a response clock: accepted (``department_accept``,
  ``accept_order``) within 30 minutes of dispatch. Task-force complaints have no response clock: excluded.
- **K-score.** Targets and scoring come from the KPI table in force (``processes/kpi.dmn``,
  ``engine.bpmn.kpi_table``; its defaults without one): K3 0 below 90, else value ÷ 98 (002 第九条.3); K6 0
  below 70 %, else value ÷ 90 % (第九条.5); K8 0.5 point off per percentage point below 70 % (第二十一条.6); K5
  2 points off per percentage point at or below 99 %, the department assessing itself above (第二十一条.5);
  the others value ÷ target; every score capped at 100. A report records the table version it was scored with.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine.bpmn.kpi_table import KPI_IDS, KpiTable, default_table
from engine.kpi_accountability import verified_complaints
from engine.kpi_ops import handover_marks, repeat_rate
from engine.kpi_who import ACCEPT_TASKS, CUSTOMER_SERVICE, charged_text, charges, clock_stops, first_responsible
from engine.store.tables import AuditEvent, Instance
from engine.errors import InvalidInput

SHANGHAI = ZoneInfo("Asia/Shanghai")
QA_KIND = "qa_sampling"
# Who may read the figures, store a month, start the QA sample; when the K-cycle job runs.
READ_ROLES = {"supervisor", "process_owner", "auditor", "qa"}
STORE_ROLES = {"supervisor"}
QA_SIZE_KEY = "qa_sample_size"
QA_DEFAULT_SIZE = 10
QA_MAX_SIZE = 500
QA_START_ROLES = {"supervisor", "qa", "process_owner"}
K_CYCLE_CRON = {"day": 1, "hour": 0, "minute": 5}  # Asia/Shanghai


@dataclass(frozen=True)
class KpiSpec:
    """What a KPI is; its target and scoring are rows of the KPI table (``engine.bpmn.kpi_table``)."""
    id: str
    name: str          # Chinese, as in 000 §六 / 002
    name_en: str
    unit: str          # "%" (value is a percentage) or "pts" (mean score 0–100)
    rules: str


SPECS = {s.id: s for s in (
    KpiSpec("K1", "咨询响应及时率", "Consultation response timeliness", "%", "K1, C6, K-who"),
    KpiSpec("K2", "投诉处理率", "Complaint handling rate", "%", "K2, P11, K-who"),
    KpiSpec("K3", "客户满意度", "Customer satisfaction", "pts", "K3, K-score"),
    KpiSpec("K4", "信息录入准确率", "Information entry accuracy", "%", "K4, QA"),
    KpiSpec("K5", "工单处理及时率", "Work order timeliness", "%", "K5, R7, T1, K-score, K-who"),
    KpiSpec("K6", "回访率", "Revisit rate", "%", "K6, K-score, K-who"),
    KpiSpec("K7", "派工准确率", "Dispatch accuracy", "%", "K7"),
    KpiSpec("K8", "30分钟响应率", "30-minute response ratio", "%", "K8, K-score, K-who"),
)}

OVERDUE_TIMERS = {"timer_response_overdue", "timer_department_overdue", "timer_repair_overdue",
                  "timer_taskforce_overdue"}
HANDLER_FIELDS = ("department", "technician")
COMPLAINT_FEEDBACK = timedelta(hours=24)  # 003: complaint feedback within 24 h when no deadline was set
RESPONSE_LIMIT = timedelta(minutes=30)     # K8


def parse_month(text) -> tuple[int, int]:
    """'2026-11' → (2026, 11); anything else is a clear error."""
    if isinstance(text, date):
        return text.year, text.month
    try:
        y, m = str(text).strip().split("-")
        year, mon = int(y), int(m)
        if len(y) != 4 or not 1 <= mon <= 12 or not 1900 <= year <= 9998:
            raise ValueError
    except ValueError:
        raise InvalidInput(f"month must look like 2026-11, not {str(text)[:40]!r}") from None
    return year, mon


def month_key(year: int, mon: int) -> str:
    return f"{year:04d}-{mon:02d}"


def month_bounds(month) -> tuple[datetime, datetime]:
    """Start and end (exclusive) of an Asia/Shanghai calendar month, as aware UTC datetimes."""
    year, mon = parse_month(month)
    start = datetime.combine(date(year, mon, 1), time(0), SHANGHAI)
    nxt = date(year + (mon == 12), mon % 12 + 1, 1)
    end = datetime.combine(nxt, time(0), SHANGHAI)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def previous_month(now: datetime) -> str:
    local = now.astimezone(SHANGHAI).date().replace(day=1) - timedelta(days=1)
    return month_key(local.year, local.month)


def current_month(now: datetime) -> str:
    local = now.astimezone(SHANGHAI)
    return month_key(local.year, local.month)


def score(kpi: str, value: float | None, table: KpiTable | None = None) -> float | None:
    """K-score of ``value`` by the KPI's row of ``table`` (default: the built-in defaults of RULES.md K-score)."""
    return (table or default_table()).rules[kpi].score(value)


def _when(text) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=SHANGHAI)


class Ticket:
    """One instance with its events before ``as_of``, and the facts the KPIs read from them."""

    def __init__(self, inst: Instance, events: list[AuditEvent], as_of: datetime):
        self.id, self.ticket_no, self.kind = inst.id, inst.ticket_no, inst.kind
        self.agent = first_responsible(inst, events, as_of)  # K-who: the case owner (X1)
        self.created_at, self.severity, self.opener = inst.created_at, inst.severity, inst.created_by
        self.as_of = as_of
        self.events = [e for e in events if e.at < as_of]
        self.stops = clock_stops(self.events)  # K-who: the clocks stopped before as_of

    def completed(self, *bpmn_ids) -> list[AuditEvent]:
        return [e for e in self.events if e.type == "task_completed" and e.bpmn_id in bpmn_ids]

    def first_completed(self, *bpmn_ids) -> AuditEvent | None:
        found = self.completed(*bpmn_ids)
        return found[0] if found else None

    def fired(self, *bpmn_ids) -> list[AuditEvent]:
        return [e for e in self.events if e.type == "timer_fired" and e.bpmn_id in bpmn_ids]

    def ran(self, bpmn_id) -> AuditEvent | None:
        return next((e for e in self.events if e.type == "script_ran" and e.bpmn_id == bpmn_id), None)

    def deadlines(self, clock) -> list[AuditEvent]:
        return [e for e in self.events if e.type in ("deadline_set", "clock_resumed")
                and (e.data or {}).get("clock") == clock]

    def finish_due(self) -> datetime | None:
        """The finish deadline in force at ``as_of``; None while paused (R4) or never set."""
        last = None
        for e in self.events:
            if (e.data or {}).get("clock") != "finish":
                continue
            if e.type in ("deadline_set", "clock_resumed"):
                last = _when(e.data.get("due_at"))
            elif e.type == "clock_paused":
                last = None
        return last

    @property
    def is_work_order(self) -> bool:
        return self.kind == "repair" or (self.kind in ("consultation", "complaint")
                                         and (bool(self.deadlines("finish")) or bool(self.completed("form_taskforce"))))

    def register_data(self) -> dict:
        e = self.first_completed("register")
        return (e.data or {}) if e is not None else {}


# ---------------------------------------------------------------------------- the eight rules
# Each returns (outcome, reason): outcome True/False = counted (met or not), None = excluded;
# for K3 the outcome is the score.


def k1(t: Ticket):
    if t.kind != "consultation":
        return None
    if t.register_data().get("answered_on_spot") is True:
        return True, "answered on the spot (C2)"
    promise = t.first_completed("promise_reply")
    promised = _when((promise.data or {}).get("promised_reply_time")) if promise else None
    overdue = t.fired(*OVERDUE_TIMERS)
    relay = t.first_completed("relay_answer")
    if relay is not None:
        if overdue:
            return False, f"department deadline overran ({overdue[0].bpmn_id}), answer re-dispatched (T1)"
        if promised is not None and relay.at > promised:
            return False, "answer relayed after the promised reply time (C3)"
        return True, "answer relayed within the promised reply time (C3, C5)"
    if overdue:
        return False, f"not answered; department deadline overran ({overdue[0].bpmn_id}) (T1)"
    if promised is not None and promised < t.as_of:
        return False, "not answered by the promised reply time (C3)"
    return "exclude", "still open at month end, promised reply time not yet reached"


def k2(t: Ticket):
    if t.kind != "complaint":
        return None
    rounds = len(t.completed("feedback"))
    again = f" after {rounds} rounds (P8: customer sent it back)" if rounds > 1 else ""
    if t.ran("mark_handled") is not None:
        return True, f"handled, customer satisfied{again} (P8, P11)"
    due = t.finish_due() or (t.created_at + COMPLAINT_FEEDBACK)
    if due < t.as_of:
        return False, f"not handled by its deadline {due.astimezone(SHANGHAI):%Y-%m-%d %H:%M}{again} (P11)"
    return "exclude", "still open at month end, handling deadline not yet reached"


def k3(t: Ticket):
    if t.kind not in ("complaint", "repair", "care"):
        return None
    revisit = t.first_completed("revisit", "care_revisit")
    if t.kind == "care" and revisit is None:  # a greeting, or a revisit not done yet: no satisfaction measure
        return None
    if revisit is None or not isinstance((revisit.data or {}).get("satisfaction_score"), (int, float)):
        return "exclude", "no revisit score recorded by month end"
    value = revisit.data["satisfaction_score"]
    return float(value), f"revisit score {value} ({'Q1' if t.kind == 'care' else 'P9/R6'})"


def k5(t: Ticket):
    if not t.is_work_order:
        return None
    overdue = t.fired(*OVERDUE_TIMERS)
    if overdue:
        redone = len(t.completed("redispatch"))
        extra = f", re-dispatched {redone}×" if redone else ""
        return False, f"overdue ({overdue[0].bpmn_id} fired){extra} (T1)"
    if _handled(t):
        paused = any(e.type == "clock_paused" for e in t.events)
        return True, "handled within its deadline" + (" (clock paused while waiting for the customer, R4)"
                                                      if paused else "")
    due = t.finish_due()
    if due is not None and due < t.as_of:
        return False, "deadline passed, not handled (T1)"
    return "exclude", "still open at month end, deadline not yet reached"


def _handled(t: Ticket) -> bool:
    if t.kind == "repair":
        return t.ran("mark_completed") is not None
    if t.kind == "consultation":
        return t.first_completed("department_answer") is not None
    return bool(t.completed("department_handle", "consolidate")) or t.ran("mark_handled") is not None


def k6(t: Ticket):
    if t.kind not in ("complaint", "repair"):
        return None
    if t.first_completed("revisit") is not None:
        return True, "revisited (P9/R6)"
    if t.fired("timer_revisit_late"):
        return False, "revisit window closed without a revisit (P9/R6)"
    if t.fired("wait_revisit"):
        return "exclude", "revisit window still open at month end"
    return "exclude", "not closed, or revisit not yet due at month end"


def k7(t: Ticket):
    if not t.is_work_order:
        return None
    handler = None
    first = t.first_completed("transfer", "dispatch", "emergency_dispatch")
    if first is None:
        if t.completed("form_taskforce"):
            return True, "major complaint handed to the supervisor's task force (P5)"
        return "exclude", "not yet dispatched"
    handler = _handler(first)
    unaccepted_overdue = False
    moved = []
    for e in t.events:
        if e.type == "task_completed" and e.bpmn_id in ACCEPT_TASKS:
            unaccepted_overdue = False
        elif e.type == "timer_fired" and e.bpmn_id == "timer_response_overdue":
            unaccepted_overdue = True
        elif e.type == "task_completed" and e.bpmn_id == "redispatch":
            new = _handler(e)
            if unaccepted_overdue and new and new != handler:
                return False, f"not accepted by {handler}, re-dispatched to {new}"
            if new and new != handler:
                moved.append(f"{handler} accepted, re-dispatched to {new} when overdue (K5, not routing)")
            handler = new or handler
    return True, "; ".join([f"routed to {_handler(first)}, accepted"] + moved)


def _handler(e: AuditEvent) -> str | None:
    data = e.data or {}
    return next((str(data[f]) for f in HANDLER_FIELDS if data.get(f)), None)


def k8(t: Ticket):
    if not t.is_work_order:
        return None
    clocks = t.deadlines("response")
    if not clocks:
        return "exclude", "no response clock (task force, or not dispatched)"
    dispatched = clocks[0].at
    accepted = t.first_completed(*ACCEPT_TASKS)
    if accepted is not None:
        minutes = (accepted.at - dispatched).total_seconds() / 60
        ok = accepted.at - dispatched <= RESPONSE_LIMIT
        return ok, f"accepted {minutes:.0f} min after dispatch" + ("" if ok else " (> 30 min)")
    if t.as_of - dispatched > RESPONSE_LIMIT:
        return False, "not accepted within 30 min"
    return "exclude", "dispatched less than 30 min before month end"


RULE_FUNCS = {"K1": k1, "K2": k2, "K3": k3, "K5": k5, "K6": k6, "K7": k7, "K8": k8}


# ---------------------------------------------------------------------------- aggregation
def _figure(kpi: str, counted: list, excluded: list, table: KpiTable) -> dict:
    spec, rule = SPECS[kpi], table.rules[kpi]
    if spec.unit == "pts":
        numerator = round(sum(c["outcome"] for c in counted), 2)
        denominator = len(counted)
        value = round(numerator / denominator, 2) if denominator else None
    else:
        numerator = sum(1 for c in counted if c["outcome"] is True)
        denominator = len(counted)
        value = round(100.0 * numerator / denominator, 2) if denominator else None
    return {"kpi": kpi, "name": spec.name, "name_en": spec.name_en, "unit": spec.unit, "target": rule.target,
            "floor": rule.floor, "score_denominator": rule.denominator, "points_per_point": rule.points_per_point,
            "threshold": rule.threshold, "charged_to": rule.charged, "formula": rule.formula(),
            "rules": spec.rules, "numerator": numerator, "denominator": denominator,
            "value": value, "score": rule.score(value), "self_assessed": rule.self_assessed(value),
            "met": None if value is None else value >= rule.target,
            "counted": counted, "excluded": excluded}


def _row(t, outcome, reason: str, kpi: str, table: KpiTable) -> dict:
    """One lineage row; a counted one says who its outcome is charged or credited to (K-who)."""
    row = {"instance_id": t.id, "ticket_no": t.ticket_no, "kind": t.kind, "agent": t.agent,
           "outcome": outcome, "reason": reason}
    if outcome is not None:
        row["charges"] = charges(kpi, table.rules[kpi].charged, t.agent, getattr(t, "stops", []), outcome,
                                 getattr(t, "handovers", ()))
        row["charged"] = charged_text(row["charges"])
    return row


def _scopes(rows: dict, table: KpiTable) -> tuple[dict, dict]:
    """Per person and per department: each counted ticket with the outcome its share carries (K-who);
    excluded tickets stay with the first responsible agent and the customer-service department."""
    people: dict[str, dict] = defaultdict(lambda: {k: ([], []) for k in KPI_IDS})
    depts: dict[str, dict] = defaultdict(lambda: {k: ([], []) for k in KPI_IDS})
    for k in KPI_IDS:
        counted, excluded = rows[k]
        for r in counted:
            by_person: dict[str, dict] = {}
            by_dept: dict[str, dict] = {}
            for share in r["charges"]:  # a ticket counts once per person and department: charged if any share is
                for key, into in ((share["person"], by_person), (share["department"], by_dept)):
                    if key:
                        kept = into.setdefault(key, {**r, "outcome": share["outcome"]})
                        if share["outcome"] is False:
                            kept["outcome"] = False
            for person, row in by_person.items():
                people[person][k][0].append({**row, "person": person})
            for dept, row in by_dept.items():
                depts[dept][k][0].append(row)
        for r in excluded:
            if r["agent"]:
                people[r["agent"]][k][1].append(r)
            depts[CUSTOMER_SERVICE][k][1].append(r)
    return ({p: {k: _figure(k, *v[k], table) for k in KPI_IDS} for p, v in sorted(people.items())},
            {d: {k: _figure(k, *v[k], table) for k in KPI_IDS} for d, v in sorted(depts.items())})


def qa_reviews(session, start: datetime, as_of: datetime) -> list[dict]:
    """The QA scores recorded in [start, as_of): one dict per review, paired with the ticket the
    ``pick_ticket`` script named just before it (the audit trail of a ``qa_sampling`` instance)."""
    out = []
    q = (select(AuditEvent).join(Instance, Instance.id == AuditEvent.instance_id)
         .where(Instance.kind == QA_KIND, AuditEvent.at < as_of,
                ((AuditEvent.type == "script_ran") & (AuditEvent.bpmn_id == "pick_ticket"))
                | ((AuditEvent.type == "task_completed") & (AuditEvent.bpmn_id == "qa_review")))
         .order_by(AuditEvent.instance_id, AuditEvent.seq))
    current = {}
    for e in session.scalars(q):
        data = e.data or {}
        if e.type == "script_ran":
            current[e.instance_id] = data.get("sampled_ticket")
            continue
        if e.at < start or not current.get(e.instance_id):
            continue
        out.append({"ticket_no": current[e.instance_id], "qa": e.actor, "at": e.at,
                    "entry_accurate": data.get("entry_accurate"), "service_quality": data.get("service_quality")})
    return out


EVENT_COLUMNS = (AuditEvent.instance_id, AuditEvent.type, AuditEvent.bpmn_id, AuditEvent.task_name, AuditEvent.at,
                 AuditEvent.actor, AuditEvent.data)


def compute(session, month, as_of: datetime | None = None, now: datetime | None = None,
            table: KpiTable | None = None, table_version: int | None = None) -> dict:
    """Every KPI of ``month`` for the department, each person and each department, with lineage, scored by
    ``table`` (the KPI table in force, version ``table_version``; default: the built-in defaults)."""
    table = table or default_table()
    year, mon = parse_month(month)
    key = month_key(year, mon)
    start, end = month_bounds(key)
    now = now or datetime.now(timezone.utc)
    as_of = as_of or min(end, now + timedelta(microseconds=1))  # a running month includes this instant
    insts = list(session.scalars(select(Instance).where(
        Instance.created_at >= start, Instance.created_at < end,
        Instance.kind.in_(("consultation", "complaint", "repair"))).order_by(Instance.id)))
    insts += list(session.scalars(select(Instance).where(  # care (Q1): a revisit counts in K3 the month it was done
        Instance.kind == "care", Instance.id.in_(select(AuditEvent.instance_id).where(AuditEvent.type == "task_completed",
            AuditEvent.bpmn_id == "care_revisit", AuditEvent.at >= start, AuditEvent.at < end))).order_by(Instance.id)))
    events = defaultdict(list)
    if insts:
        ids = [i.id for i in insts]
        for chunk in range(0, len(ids), 500):
            # only the columns the rules read (rows, not ORM objects: a month holds many events)
            for e in session.execute(select(*EVENT_COLUMNS).where(AuditEvent.instance_id.in_(ids[chunk:chunk + 500]))
                                     .order_by(AuditEvent.instance_id, AuditEvent.seq)):
                events[e.instance_id].append(e)
    tickets = [Ticket(i, events[i.id], as_of) for i in insts]
    marks = handover_marks(session, [t.id for t in tickets])  # X2: who a missed clock is charged to
    for t in tickets:
        t.handovers = marks.get(t.id, [])
    by_no = {t.ticket_no: t for t in tickets}
    rows: dict[str, tuple[list, list]] = {k: ([], []) for k in KPI_IDS}
    for t in tickets:
        for kpi, fn in RULE_FUNCS.items():
            result = fn(t)
            if result is None:
                continue
            outcome, reason = result
            if outcome == "exclude":
                rows[kpi][1].append(_row(t, None, reason, kpi, table))
            else:
                rows[kpi][0].append(_row(t, outcome, reason, kpi, table))
    reviews = qa_reviews(session, start, as_of)
    others = {i.ticket_no: i for i in session.scalars(select(Instance).where(
        Instance.ticket_no.in_({r["ticket_no"] for r in reviews} - set(by_no))))} if reviews else {}
    for r in reviews:
        t = by_no.get(r["ticket_no"]) or others.get(r["ticket_no"])
        ref = _Reviewed(t.id if t else None, r["ticket_no"], t.kind if t else None,
                        (t.opener if isinstance(t, Ticket) else t.created_by) if t else None)  # K4: who entered it
        if not isinstance(r["entry_accurate"], bool):
            rows["K4"][1].append(_row(ref, None, "QA gave no entry-accuracy verdict", "K4", table))
        else:
            rows["K4"][0].append(_row(ref, r["entry_accurate"], (
                "entry accurate" if r["entry_accurate"] else "entry inaccurate")
                + f" (QA {r['qa']}, service quality {r['service_quality']})", "K4", table))
    department = {k: _figure(k, *rows[k], table) for k in KPI_IDS}
    # a person with QA reviews this month but no ticket opened in it still has a K4 figure
    per_person, per_department = _scopes(rows, table)
    return {"month": key, "start": start.isoformat(), "end": end.isoformat(), "as_of": as_of.isoformat(),
            "final": as_of >= end, "tickets": len(tickets), "kpi_table": table.describe(table_version),
            "department": department, "agents": per_person, "departments": per_department,
            "repeat_complaints": repeat_rate(session, insts),
            "accountability": verified_complaints(tickets)}  # P13, 004 七.(5)


@dataclass(frozen=True)
class _Reviewed:
    """The ticket a QA review names, as a K4 lineage row needs it."""
    id: int | None
    ticket_no: str
    kind: str | None
    agent: str | None


def summary(report: dict, agent: str | None = None) -> dict:
    """The figures without lineage (for trends, CSV and the CLI table)."""
    figures = report["department"] if agent is None else report["agents"].get(agent)
    if figures is None:
        raise InvalidInput(f"no tickets opened by agent {agent!r} nor charged to them in {report['month']}")
    return {k: {f: v for f, v in figures[k].items() if f not in ("counted", "excluded")} for k in KPI_IDS}


# ---------------------------------------------------------------------------- operations over a Kefu
CSV_COLUMNS = ("month", "scope", "kpi", "name", "numerator", "denominator", "value", "unit", "target", "score")


def csv_rows(report_: dict):
    """Rows for the CSV export: the department, then each person, then each department (K-who roll-up)."""
    scopes = ([("department", report_["department"])] + [(f"agent:{a}", f) for a, f in report_["agents"].items()]
              + [(f"dept:{d}", f) for d, f in (report_.get("departments") or {}).items()])
    for scope, figures in scopes:
        for k in KPI_IDS:
            f = figures[k]
            yield [report_["month"], scope, k, f["name_en"], f["numerator"], f["denominator"],
                   "" if f["value"] is None else f["value"], f["unit"], f["target"],
                   "" if f["score"] is None else f["score"]]


LINEAGE_COLUMNS = ("month", "kpi", "ticket_no", "kind", "agent", "counted", "outcome", "reason", "charged",
                   "charged_why")


def lineage_rows(report_: dict):
    """Rows for the lineage CSV: every ticket behind every department figure, counted or excluded, and why; for
    a counted one who is charged with it (misses) and why each person or department it belongs to is named."""
    for k in KPI_IDS:
        f = report_["department"][k]
        for counted, rows in (("yes", f["counted"]), ("no", f["excluded"])):
            for r in rows:
                o = r["outcome"]
                outcome = "met" if o is True else "missed" if o is False else "" if o is None else o  # K3: score
                yield [report_["month"], k, r["ticket_no"], r["kind"] or "", r["agent"] or "", counted, outcome,
                       r["reason"], r.get("charged", ""), "; ".join(c["why"] for c in r.get("charges", ()))]


def draw_sample(session, month, size: int, seed: int) -> list[str]:
    """A reproducible random sample: the same seed over the same closed tickets gives the same sample."""
    import random
    start, end = month_bounds(month)
    pool = sorted(session.scalars(select(Instance.ticket_no).where(
        Instance.kind.in_(("consultation", "complaint", "repair")), Instance.status == "completed",
        Instance.completed_at >= start, Instance.completed_at < end)))
    return sorted(random.Random(seed).sample(pool, min(size, len(pool))))
