"""Weekly, monthly, quarterly and yearly summaries (004 月、季、年度总结; 002 编制周、月、季服务工作报表): volumes by
kind and channel, timeliness (K1, K5), complaint handling (K2), satisfaction (K3), repeat complaints, the top
natures and places, the average handling time per kind, and the relationship care done (Q1–Q4).

A period is an Asia/Shanghai calendar week (Monday to Sunday), month, quarter or year; the tickets counted
are those opened in it, judged as of the period's end (or now, for the running period), by the same rules as
the monthly KPIs (``engine.kpi``).
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func, select

from engine import kpi as kpi_rules
from engine.clock import SHANGHAI, iso
from engine.errors import InvalidInput
from engine.store.tables import AuditEvent, CustomerEvent, EventAttendee, Instance

PERIODS = ("week", "month", "quarter", "year")
KINDS = ("consultation", "complaint", "repair")
TOP = 5
CSV_COLUMNS = ("period", "section", "key", "value")


def bounds(period: str, at: date) -> tuple[str, date, date]:
    """The label, first day and the day after the last of the ``period`` containing ``at``."""
    if period == "week":
        first = at - timedelta(days=at.weekday())
        iso_year, week, _ = first.isocalendar()
        return f"{iso_year}-W{week:02d}", first, first + timedelta(days=7)
    if period == "month":
        first = at.replace(day=1)
        return f"{at:%Y-%m}", first, date(at.year + (at.month == 12), at.month % 12 + 1, 1)
    if period == "quarter":
        q = (at.month - 1) // 3
        first = date(at.year, q * 3 + 1, 1)
        return f"{at.year}-Q{q + 1}", first, date(at.year + (q == 3), (q * 3 + 3) % 12 + 1, 1)
    if period == "year":
        return str(at.year), date(at.year, 1, 1), date(at.year + 1, 1, 1)
    raise InvalidInput(f"period must be one of {', '.join(PERIODS)}", fields=["period"])


def parse_day(text) -> date:
    try:
        return date.fromisoformat(str(text).strip()[:10])
    except ValueError:
        raise InvalidInput(f"--at must be a date (YYYY-MM-DD), not {text!r}", fields=["at"]) from None


def _utc(day: date) -> datetime:
    return datetime.combine(day, time(0), SHANGHAI).astimezone(timezone.utc)


def _has_repeat(state: str | None) -> bool:
    """Whether a serialized workflow's data names earlier tickets in ``repeat_of`` (X3, Q2)."""
    try:
        value = json.loads(state or "{}")
    except ValueError:
        return False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if v.get("repeat_of"):
                return True
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def summary(session, period: str, at: date, now: datetime) -> dict:
    """The summary of the ``period`` containing ``at``."""
    label, first, after = bounds(period, at)
    start, end = _utc(first), _utc(after)
    as_of = min(end, now + timedelta(microseconds=1))
    insts = list(session.scalars(select(Instance).where(
        Instance.created_at >= start, Instance.created_at < end, Instance.kind.in_(KINDS)).order_by(Instance.id)))
    events = defaultdict(list)
    ids = [i.id for i in insts]
    for chunk in range(0, len(ids), 500):
        for e in session.execute(select(*kpi_rules.EVENT_COLUMNS).where(
                AuditEvent.instance_id.in_(ids[chunk:chunk + 500])).order_by(AuditEvent.instance_id, AuditEvent.seq)):
            events[e.instance_id].append(e)
    by_kind, by_channel, natures, places = Counter(), Counter(), Counter(), Counter()
    handling = defaultdict(list)
    outcomes = {k: [] for k in ("K1", "K2", "K3", "K5")}
    for inst in insts:
        t = kpi_rules.Ticket(inst, events[inst.id], as_of)
        reg = t.register_data()
        by_kind[inst.kind] += 1
        by_channel[reg.get("channel") or "unrecorded"] += 1
        if inst.kind == "complaint" and inst.nature:
            natures[inst.nature] += 1
        place = reg.get("place") or reg.get("location") or reg.get("region")
        if place:
            places[str(place).strip()[:60]] += 1
        if inst.completed_at is not None and inst.completed_at < as_of:
            handling[inst.kind].append((inst.completed_at - inst.created_at).total_seconds() / 3600)
        for k in outcomes:
            r = kpi_rules.RULE_FUNCS[k](t)
            if r is not None and r[0] != "exclude":
                outcomes[k].append(r[0])
    repeats = list(session.scalars(select(Instance.ticket_no).where(
        Instance.kind == "complaint", Instance.created_at >= start, Instance.created_at < end,
        Instance.state.contains('"repeat_of"'))))
    repeat_nos = [no for no, state in session.execute(select(Instance.ticket_no, Instance.state).where(
        Instance.ticket_no.in_(repeats)))if _has_repeat(state)] if repeats else []
    scores = [float(v) for v in outcomes["K3"]]
    care_done = dict(session.execute(select(AuditEvent.type, func.count()).where(
        AuditEvent.type.in_(("customer_revisited", "greeting_sent", "greeting_withheld")),
        AuditEvent.at >= start, AuditEvent.at < as_of).group_by(AuditEvent.type)).all())
    events_held = session.scalar(select(func.count()).select_from(CustomerEvent).where(
        CustomerEvent.day >= first, CustomerEvent.day < after)) or 0
    feedback = session.scalar(select(func.count()).select_from(EventAttendee).join(
        CustomerEvent, CustomerEvent.id == EventAttendee.event_id).where(
        CustomerEvent.day >= first, CustomerEvent.day < after, EventAttendee.feedback.is_not(None))) or 0
    complaints = by_kind.get("complaint", 0)

    def rate(values):
        return {"met": sum(1 for v in values if v is True), "counted": len(values),
                "value": round(100 * sum(1 for v in values if v is True) / len(values), 2) if values else None}

    return {
        "period": period, "label": label, "start": first.isoformat(), "end": (after - timedelta(days=1)).isoformat(),
        "as_of": iso(as_of), "final": as_of >= end, "tickets": len(insts),
        "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
        "by_channel": dict(by_channel.most_common()),
        "timeliness": {"K1": rate(outcomes["K1"]), "K5": rate(outcomes["K5"])},
        "complaints_handled": rate(outcomes["K2"]),
        "satisfaction": {"revisits": len(scores), "mean": round(sum(scores) / len(scores), 2) if scores else None},
        "repeat_complaints": {"count": len(repeat_nos), "tickets": repeat_nos,
                              "rate": round(100 * len(repeat_nos) / complaints, 2) if complaints else None},
        "top_natures": [{"nature": n, "count": c} for n, c in natures.most_common(TOP)],
        "top_places": [{"place": p, "count": c} for p, c in places.most_common(TOP)],
        "avg_handling_hours": {k: round(sum(v) / len(v), 2) if v else None
                               for k, v in ((k, handling.get(k, [])) for k in KINDS)},
        "care": {"revisits": care_done.get("customer_revisited", 0), "greetings_sent": care_done.get("greeting_sent", 0),
                 "greetings_withheld": care_done.get("greeting_withheld", 0), "events": events_held,
                 "event_feedback": feedback},
    }


def csv_rows(r: dict):
    """The summary as (period, section, key, value) rows."""
    p = r["label"]
    yield [p, "tickets", "total", r["tickets"]]
    for k, v in r["by_kind"].items():
        yield [p, "by_kind", k, v]
    for k, v in r["by_channel"].items():
        yield [p, "by_channel", k, v]
    for k, v in r["timeliness"].items():
        yield [p, "timeliness", k, "" if v["value"] is None else v["value"]]
    yield [p, "complaints_handled", "K2", "" if r["complaints_handled"]["value"] is None else r["complaints_handled"]["value"]]
    yield [p, "satisfaction", "mean", "" if r["satisfaction"]["mean"] is None else r["satisfaction"]["mean"]]
    yield [p, "repeat_complaints", "count", r["repeat_complaints"]["count"]]
    for n in r["top_natures"]:
        yield [p, "top_natures", n["nature"], n["count"]]
    for n in r["top_places"]:
        yield [p, "top_places", n["place"], n["count"]]
    for k, v in r["avg_handling_hours"].items():
        yield [p, "avg_handling_hours", k, "" if v is None else v]
    for k, v in r["care"].items():
        yield [p, "care", k, v]
