"""The desk's search (issue 20): tickets by number, customer name or phone, with status, kind, severity,
assignee and date filters and the saved views 我的工单 (mine), 超时 (overdue), VIP and 今日新建 (today), newest
first. Built on the auditors' search (``engine.records.search``): the same indexed statement and filters, with
the text and the views added as indexed conditions (ticket number: the unique index; customers: their name and
phone-digit indexes, looked up first; assignee and mine: the task indexes)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select

from engine.clock import SHANGHAI
from engine.errors import InvalidInput
from engine.records import search as base
from engine.store.tables import Customer, HumanTask, Instance

VIEWS = ("mine", "overdue", "vip", "today")
FIELDS = ("q", "status", "kind", "severity", "assignee", "date_from", "date_to", "view", "limit", "after")
TICKET = re.compile(r"^[A-Za-z]{1,8}\d{4,}[A-Za-z0-9-]*$")
PHONE = re.compile(r"^[+\d][\d\s()+-]*$")


def phone_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def parse(q, args: dict) -> tuple[str | None, base.Filters, str | None, str | None]:
    """(text, the auditors' filters, assignee, view) from a query text and filter values; InvalidInput names
    a bad one."""
    unknown = [k for k in args if k not in FIELDS and args[k] not in (None, "")]
    if unknown:
        raise InvalidInput(f"unknown search field(s): {', '.join(map(str, unknown))}", fields=unknown)
    text = base._text(q, "q", 100)
    view = base._choice(args.get("view"), "view", VIEWS)
    assignee = base._text(args.get("assignee"), "assignee", 64)
    f = base.parse({k: args.get(k) for k in ("status", "kind", "severity", "date_from", "date_to", "limit", "after")})
    return text, f, assignee, view


def _text_clause(text: str):
    """A ticket number (or its prefix); else a customer's name or phone (any spelling of its digits: a whole
    number by the phone-digit index, a part of one by a scan of the customers, never of the instances)."""
    if TICKET.match(text):
        upper = text.upper()
        return or_(Instance.ticket_no == upper, and_(Instance.ticket_no > upper, Instance.ticket_no < upper + "\uffff"))
    digits = phone_digits(text)
    if PHONE.match(text) and len(digits) >= 4:
        phone = Customer.phone_digits == digits if len(digits) >= 11 else \
            Customer.phone_digits.like("%" + digits + "%")
        return Instance.customer_id.in_(select(Customer.id).where(phone))
    like = "%" + base._escape(text) + "%"
    return Instance.customer_id.in_(select(Customer.id).where(Customer.name.like(like, escape="\\")))


def _ready_with(assignee: str):
    """Instances with a ready task claimed by ``assignee``; the state is compared as an expression so the planner
    takes the assignee index (a few rows) rather than the state one (every ready task)."""
    return select(HumanTask.instance_id).where(HumanTask.assignee == assignee, (HumanTask.state + "") == "ready")


def statement(text, f: base.Filters, assignee, view, now: datetime, actor: str, reader_clause=None,
              dialect: str = "sqlite"):
    q = base.statement(f, now, dialect=dialect)
    q = q.add_columns(Customer.phone.label("customer_phone"))
    if text:
        q = q.where(_text_clause(text))
    if assignee:
        q = q.where(Instance.id.in_(_ready_with(assignee)))
    if view == "mine":
        # 我的工单: the cases I own (X1) and those with a ready task assigned to me
        q = q.where(or_(Instance.owner == actor, Instance.id.in_(_ready_with(actor))))
    elif view == "overdue":
        q = q.where(base.overdue_clause(now))
    elif view == "vip":
        q = q.where(Instance.vip.is_(True))
    elif view == "today":
        start = now.astimezone(SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
        q = q.where(Instance.created_at >= start, Instance.created_at < start + timedelta(days=1))
    if reader_clause is not None:
        q = q.where(reader_clause)
    return q


def reader_clause(name: str, roles: set[str]):
    """The tickets a user without a wide role reads: a task on it claimed, completed by them or in their lane
    unclaimed (``routing.may_read``, as a condition; the caller checks the rows found against the rule)."""
    return exists().where(HumanTask.instance_id == Instance.id, or_(
        HumanTask.assignee == name, HumanTask.completed_by == name,
        and_(HumanTask.role.in_(sorted(roles)), HumanTask.assignee.is_(None))))


def run(session, text, f, assignee, view, now, actor, reader=None) -> dict:
    rows = session.execute(statement(text, f, assignee, view, now, actor, reader,
                                     session.get_bind().dialect.name)).all()
    return base.page(rows, f.limit, now, lambda r: {"customer_phone": r.customer_phone})
