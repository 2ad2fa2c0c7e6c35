"""Audit search (issue 6): instances by ticket number, customer, kind, severity, status, agent, date range
and overdue, newest first, paginated by keyset (a cursor of the last row's creation time and id), so a deep
page costs what the first one does. The indexes it relies on are declared on the tables in ``engine.store.tables``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, exists, func, or_, select, union

from engine.clock import SHANGHAI
from engine.limits import MAX_ROW_ID, row_number
from engine.store.tables import Customer, HumanTask, Instance
from engine.errors import InvalidInput

KINDS = ("consultation", "complaint", "repair", "escalation")
STATUSES = ("active", "completed", "incident")
SEVERITIES = ("general", "major", "urgent")
MAX_PAGE = 500
FIELDS = ("ticket", "customer", "kind", "severity", "status", "agent", "date_from", "date_to", "overdue",
          "limit", "after")


@dataclass
class Filters:
    ticket: str | None = None
    customer: str | None = None
    kind: str | None = None
    severity: str | None = None
    status: str | None = None
    agent: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    overdue: bool = False
    limit: int = 50
    after: tuple[datetime, int] | None = None

    def params(self) -> dict:
        """The filters as query parameters (for links: next page, export)."""
        out = {}
        for key in ("ticket", "customer", "kind", "severity", "status", "agent"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.date_from:
            out["date_from"] = self.date_from.isoformat()
        if self.date_to:
            out["date_to"] = self.date_to.isoformat()
        if self.overdue:
            out["overdue"] = "1"
        return out


def _text(value, name: str, longest: int = 100) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text", fields=[name])
    value = value.strip()
    if len(value) > longest:
        raise InvalidInput(f"{name} is longer than {longest} characters", fields=[name])
    return value or None


def _choice(value, name: str, choices) -> str | None:
    value = _text(value, name)
    if value is not None and value not in choices:
        raise InvalidInput(f"unknown {name} {value!r}; one of {', '.join(choices)}", fields=[name])
    return value


def _day(value, name: str) -> date | None:
    if isinstance(value, date):
        return value
    value = _text(value, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} is not a date (YYYY-MM-DD): {value!r}", fields=[name]) from None


def encode_cursor(created_at: datetime, instance_id: int) -> str:
    return f"{created_at.astimezone(SHANGHAI).isoformat()}_{instance_id}"


def _cursor(value) -> tuple[datetime, int] | None:
    value = _text(value, "after")
    if value is None:
        return None
    try:
        when, _, ident = value.rpartition("_")
        at = datetime.fromisoformat(when)
        number = row_number(ident)
        if at.tzinfo is None or number is None:  # an id no row can have would overflow the query
            raise ValueError
        return at, number
    except ValueError:
        raise InvalidInput(f"not a page cursor: {value!r}", fields=["after"]) from None


def _customer(value) -> str | None:
    """A customer name (part of one) or number; a number is one a customer can have."""
    value = _text(value, "customer")
    if value is not None and value.isascii() and value.isdigit() and row_number(value) is None:
        raise InvalidInput(f"customer number {value[:20]}{'…' if len(value) > 20 else ''} is out of range "
                           f"(1 to {MAX_ROW_ID})", fields=["customer"])
    return value


def parse(args: dict) -> Filters:
    """Filters from query parameters or CLI options; a bad value is a clear InvalidInput naming it."""
    unknown = [k for k in args if k not in FIELDS and args[k] not in (None, "")]
    if unknown:
        raise InvalidInput(f"unknown search field(s): {', '.join(map(str, unknown))}", fields=unknown)
    limit = args.get("limit")
    try:
        limit = 50 if limit in (None, "") else int(limit)
    except (TypeError, ValueError):
        raise InvalidInput(f"limit must be a whole number, not {limit!r}", fields=["limit"]) from None
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", fields=["limit"])
    overdue = args.get("overdue")
    f = Filters(ticket=_text(args.get("ticket"), "ticket", 32), customer=_customer(args.get("customer")),
                kind=_choice(args.get("kind"), "kind", KINDS),
                severity=_choice(args.get("severity"), "severity", SEVERITIES),
                status=_choice(args.get("status"), "status", STATUSES), agent=_text(args.get("agent"), "agent", 64),
                date_from=_day(args.get("date_from"), "date_from"), date_to=_day(args.get("date_to"), "date_to"),
                overdue=overdue in (True, "1", "true", "on", "yes"), limit=limit, after=_cursor(args.get("after")))
    if f.date_from and f.date_to and f.date_from > f.date_to:
        raise InvalidInput("date_from is after date_to", fields=["date_from", "date_to"])
    return f


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=SHANGHAI)


def overdue_clause(now: datetime):
    """Open, and the finish deadline (T1) passed while its clock runs, or a ready task is past its due time."""
    late_task = exists().where(HumanTask.instance_id == Instance.id, HumanTask.state == "ready",
                               HumanTask.due_at < now)
    return and_(Instance.status != "completed",
                or_(and_(Instance.finish_due < now, Instance.clock_paused_at.is_(None)), late_task))


# An agent's instance references: up to this many they are looked up one by one and sorted; more, and the
# newest-first scan meets a page of them quickly, so each row is probed against the set instead. Measured on
# 100,000 instances: 2,500 references cost about 25 ms looked up against 7 ms scanned; 500 cost 14 ms looked
# up against 40 ms scanned (and 50 cost 260 ms scanned), so a rare agent must not take the scan.
AGENT_LOOKUP_LIMIT = 3000


def _agent_sets(agent: str):
    """Who opened the ticket, completed a task on it, or holds one."""
    return (select(Instance.id).where(Instance.created_by == agent),
            select(HumanTask.instance_id).where(HumanTask.completed_by == agent),
            select(HumanTask.instance_id).where(HumanTask.assignee == agent))


def agent_size(session, agent: str) -> int:
    """Index-only counts: how large the agent's set is, to pick the plan."""
    return sum(session.scalar(select(func.count()).select_from(q.subquery())) for q in _agent_sets(agent))


def statement(f: Filters, now: datetime, agent_rows: int = 0, dialect: str = "sqlite"):
    """The page query; ``agent_rows`` is ``agent_size`` of the agent filter."""
    q = select(Instance.id, Instance.ticket_no, Instance.kind, Instance.status, Instance.severity,
               Instance.vip, Instance.summary, Instance.created_by, Instance.created_at, Instance.completed_at,
               Instance.response_due, Instance.finish_due, Instance.clock_paused_at, Customer.name.label("customer"),
               Instance.customer_id).outerjoin(Customer, Customer.id == Instance.customer_id)
    if f.ticket:
        # Exact, or a prefix (e.g. TS20261123 for one day's complaints): on SQLite (binary collation) a range
        # the unique index serves; elsewhere LIKE, since a linguistic collation may order the range otherwise.
        if dialect == "sqlite":
            prefix = and_(Instance.ticket_no > f.ticket, Instance.ticket_no < f.ticket + "\uffff")
        else:
            prefix = Instance.ticket_no.like(_escape(f.ticket) + "%", escape="\\")
        q = q.where(or_(Instance.ticket_no == f.ticket, prefix))
    if f.customer:
        if f.customer.isascii() and f.customer.isdigit():  # "²" is a digit to isdigit, and a name here
            q = q.where(Instance.customer_id == int(f.customer))
        else:
            q = q.where(Instance.customer_id.in_(select(Customer.id).where(
                Customer.name.like("%" + _escape(f.customer) + "%", escape="\\"))))
    for key in ("kind", "severity", "status"):
        if getattr(f, key):
            q = q.where(getattr(Instance, key) == getattr(f, key))
    if f.agent:
        if agent_rows <= AGENT_LOOKUP_LIMIT:  # few: look each instance up, then sort them
            q = q.where(Instance.id.in_(union(*_agent_sets(f.agent))))
        else:  # many: the newest-first scan checks each row and soon has a page
            q = q.where(or_(Instance.created_by == f.agent, exists().where(
                HumanTask.instance_id == Instance.id,
                or_(HumanTask.completed_by == f.agent, HumanTask.assignee == f.agent))))
    if f.date_from:
        q = q.where(Instance.created_at >= _start_of(f.date_from))
    if f.date_to:
        q = q.where(Instance.created_at < _start_of(f.date_to + timedelta(days=1)))
    if f.overdue:
        q = q.where(overdue_clause(now))
    if f.after:
        at, ident = f.after
        q = q.where(or_(Instance.created_at < at, and_(Instance.created_at == at, Instance.id < ident)))
    return q.order_by(Instance.created_at.desc(), Instance.id.desc()).limit(f.limit + 1)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(session, f: Filters, now: datetime) -> dict:
    """One page: ``{"rows": [...], "next": cursor or None}``."""
    size = agent_size(session, f.agent) if f.agent else 0
    rows = session.execute(statement(f, now, size, session.get_bind().dialect.name)).all()
    return page(rows, f.limit, now, lambda r: {"response_due": r.response_due})


def page(rows, limit: int, now: datetime, extra) -> dict:
    """A page of ticket rows read ``limit`` + 1 at a time (one more says there is a next page), newest first:
    ``{"rows": [...], "next": cursor or None}``; ``extra(row)`` adds a caller's own fields to each."""
    more = len(rows) > limit
    rows = rows[:limit]
    out = []
    for r in rows:
        overdue = r.status != "completed" and r.finish_due is not None and r.finish_due < now \
            and r.clock_paused_at is None  # the rule overdue_clause asks the database
        out.append({"instance_id": r.id, "ticket_no": r.ticket_no, "kind": r.kind, "status": r.status,
                    "severity": r.severity, "vip": bool(r.vip), "summary": r.summary, "customer": r.customer,
                    "customer_id": r.customer_id, "created_by": r.created_by, "created_at": r.created_at,
                    "completed_at": r.completed_at, **extra(r), "finish_due": r.finish_due,
                    "finish_overdue": overdue})
    nxt = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return {"rows": out, "next": nxt}
