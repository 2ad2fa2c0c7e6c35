"""Relationship care (000 §四.5, Q1–Q3, P10): the care planner and what a finished care step does.

- **Q1 periodic revisits.** Each VIP or important customer has one waiting ``care`` instance: its timer
  catch event ``wait_cycle`` waits until the next revisit date (the class's cycle in months after the last
  revisit, else after registration, moved to the next working day, T2, 09:00 Asia/Shanghai), so the due date
  is a row of the timer table that the scheduler, ``kefu timers fire-due`` and ``kefu clock advance`` fire.
  The revisit task goes to the agent who owns the customer: the profile's ``owner``, else the owner of the
  customer's most recent ticket (``Instance.owner`` where it exists, else the agent who opened it). The
  finished revisit writes the profile (needs, last revisit, last satisfaction) and plans the next cycle; its
  ``satisfaction_score`` counts in K3.
- **Q3 holiday care.** Before each statutory holiday of the PRC calendar (``chinese_calendar``) and each
  anniversary kept in a profile, one ``care`` instance per customer on the greeting list (VIP customers and
  those who complained within ``RECENT_COMPLAINT_DAYS``) waits for the greeting day; the agent sends the
  greeting, which goes out only through a channel the customer agreed to (``greeting_consent``).
- **Q2 complaint care.** A customer still unhappy at the complaint's ``care_check`` is taken as a new
  complaint whose data has ``repeat_of: [ticket_no]``.

The cycles per class are the table ``care_cycles`` (defaults VIP 1 month, important 3 months), edited by
the process owner. Every care instance started is keyed in ``care_plans`` so two planners never start one
twice.
"""
from __future__ import annotations

import calendar as month_calendar
import logging
import warnings
from datetime import date, datetime, timedelta, timezone

import chinese_calendar
from sqlalchemy import or_, select

from engine.calendar import CalendarDataMissing
from engine.clock import SHANGHAI, iso
from engine.errors import InvalidInput, NotAllowed
from engine.services.context import SYSTEM, Context
from engine.services.runner import Runner
from engine.services.shapes import customer_class
from engine.store import chain as audit
from engine.store.tables import CareCycle, CarePlan, Customer, HumanTask, Instance, Timer, User
from engine.store.versions import latest

log = logging.getLogger("kefu.care")

CARE_KIND = "care"
TICKET_KINDS = ("consultation", "complaint", "repair")
CARE_CLASSES = ("vip", "important")
DEFAULT_CYCLES = {"vip": 1, "important": 3}  # months (Q1); the migration writes them into care_cycles
MAX_CYCLE_MONTHS = 24
LOOKAHEAD_DAYS = 14  # holidays and anniversaries this close get their greeting list
GREETING_LEAD_WORKING_DAYS = 1  # the greeting is due on the last working day before the holiday
RECENT_COMPLAINT_DAYS = 90  # "recently complaining" customers get holiday greetings too
NOTIFICATION_CHANNELS = ("sms", "email", "wechat")  # sent through the notification outbox where one exists
CYCLE_ROLES = {"process_owner"}
REVISIT_TASK, GREETING_TASK, CARE_CHECK_TASK = "care_revisit", "send_greeting", "care_check"


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (the month's last day where it is shorter)."""
    m = day.month - 1 + months
    year, month = day.year + m // 12, m % 12 + 1
    return date(year, month, min(day.day, month_calendar.monthrange(year, month)[1]))


def at_nine(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, tzinfo=SHANGHAI).astimezone(timezone.utc)


# Statutory holidays fixed by date (全国年节及纪念日放假办法): known for every year, also one the installed
# calendar does not cover yet; the lunar ones come from it or from the process owner's calendar entries.
FIXED_HOLIDAYS = {(1, 1): "元旦", (5, 1): "劳动节", (10, 1): "国庆节"}


def holiday_name_en(name: str) -> str:
    """The English name of a holiday named in Chinese (the calendar's own names; "Holiday" otherwise)."""
    english = {getattr(h, "chinese", None): h.value for h in chinese_calendar.Holiday}
    return english.get(name) or ("Holiday" if name == "节假日" else name)


def holidays_between(first: date, last: date) -> list[tuple[date, str]]:
    """The first day and Chinese name of each statutory holiday starting between ``first`` and ``last``: from
    the installed calendar for the years it knows; for later years the holidays fixed by date and the first
    day of each run of days off the process owner entered (``kefu calendar set``)."""
    from engine import calendar as calendar_mod
    names = {h.value: getattr(h, "chinese", h.value) for h in chinese_calendar.Holiday}
    known_first, known_last = calendar_mod.LIBRARY_YEARS
    overrides = calendar_mod.active().overrides
    found, day = [], first
    while day <= last:
        before = day - timedelta(days=1)
        if known_first <= day.year <= known_last and known_first <= before.year:
            on, name = chinese_calendar.get_holiday_detail(day)
            prev_on, prev_name = chinese_calendar.get_holiday_detail(before)
            if on and name and not (prev_on and prev_name == name):
                found.append((day, names.get(name, name)))
        elif (day.month, day.day) in FIXED_HOLIDAYS:
            found.append((day, FIXED_HOLIDAYS[(day.month, day.day)]))
        elif overrides.get(day) is False and overrides.get(before) is not False and day.weekday() < 5 \
                and not (overrides.get(before - timedelta(days=1)) is False and before.weekday() >= 5):
            found.append((day, "节假日"))
        day += timedelta(days=1)
    return found


class CareService:
    """The care planner (Q1, Q3), the revisit cycles, and the effects of finished care steps (Q1–Q3)."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    # ---------------------------------------------------------------- cycles (Q1)
    def cycles(self) -> list[dict]:
        with self.ctx.db.reading() as s:
            rows = {r.customer_class: r for r in s.scalars(select(CareCycle))}
            return [{"customer_class": c, "months": rows[c].months if c in rows else DEFAULT_CYCLES[c],
                     "updated_by": rows[c].updated_by if c in rows else SYSTEM,
                     "updated_at": iso(rows[c].updated_at) if c in rows else None} for c in CARE_CLASSES]

    def set_cycle(self, customer_class: str, months, actor: str) -> dict:
        """The process owner sets a class's revisit cycle (months; 0 = no periodic revisits). Waiting revisits
        keep their date; the next ones follow the new cycle."""
        if customer_class not in CARE_CLASSES:
            raise InvalidInput(f"customer class must be one of {', '.join(CARE_CLASSES)}", fields=["customer_class"])
        try:
            months = int(months)
        except (TypeError, ValueError):
            raise InvalidInput("months must be a whole number", fields=["months"]) from None
        if not 0 <= months <= MAX_CYCLE_MONTHS:
            raise InvalidInput(f"months must be between 0 and {MAX_CYCLE_MONTHS}", fields=["months"])
        with self.ctx.db.unit_of_work() as s:
            if actor != SYSTEM and not self.ctx.user(s, actor).role_set & CYCLE_ROLES:
                raise NotAllowed(f"user {actor} may not change revisit cycles (needs role process_owner)")
            row = s.get(CareCycle, customer_class)
            if row is None:
                row = CareCycle(customer_class=customer_class)
                s.add(row)
            row.months, row.updated_by, row.updated_at = months, actor, self.ctx.now()
        log.info("revisit cycle of %s set to %d month(s) by %s (Q1)", customer_class, months, actor)
        return next(c for c in self.cycles() if c["customer_class"] == customer_class)

    # ---------------------------------------------------------------- the planner
    def plan(self, now: datetime | None = None, customer_id: int | None = None) -> dict:
        """Start the care instances that are missing: a waiting revisit for every VIP/important customer
        (Q1), greetings before the holidays and anniversaries of the next ``LOOKAHEAD_DAYS`` (Q3). Idempotent."""
        now = now or self.ctx.now()
        started = {"revisits": [], "greetings": []}
        with self.ctx.db.reading() as s:
            if latest(s, CARE_KIND) is None:
                return started  # the care diagram is not deployed: nothing to plan
            cycles = {r.customer_class: r.months for r in s.scalars(select(CareCycle))}
            q = select(Customer.id).where(or_(Customer.vip.is_(True), Customer.customer_class == "important"))
            if customer_id is not None:
                q = q.where(Customer.id == customer_id)
            waiting = select(CarePlan.customer_id).join(Instance, Instance.id == CarePlan.instance_id).where(
                CarePlan.key.like("revisit:%"), CarePlan.customer_id.is_not(None), Instance.status != "completed")
            # read first, so a sweep with nothing to plan takes no write lock per customer
            candidates = list(s.scalars(q.where(Customer.id.not_in(waiting)).order_by(Customer.id)))
        for cid in candidates:
            done = self._plan_revisit(cid, cycles, now)
            if done:
                started["revisits"].append(done)
        if customer_id is None:
            started["greetings"] = self._plan_greetings(now)
        return started

    def plan_job(self) -> dict:
        """The scheduler's job: plan; never raises (it logs; the next run tries again)."""
        try:
            self.ctx.sync()
            return self.plan()
        except Exception:  # noqa: BLE001
            log.exception("care planning failed")
            return {}

    def plan_customer(self, customer_id: int) -> dict:
        """Plan the periodic revisit of one customer (after its profile was created or changed)."""
        return self.plan(customer_id=customer_id)

    def _plan_revisit(self, cid: int, cycles: dict, now: datetime) -> dict | None:
        with self.ctx.db.unit_of_work() as s:
            return plan_revisit_in(self.ctx, self.runner, s, s.get(Customer, cid), now, cycles)

    def _plan_greetings(self, now: datetime) -> list[dict]:
        today = now.astimezone(SHANGHAI).date()
        occasions = [(f"holiday:{day.isoformat()}", day, name, None)
                     for day, name in holidays_between(today, today + timedelta(days=LOOKAHEAD_DAYS))]
        with self.ctx.db.reading() as s:
            for c in s.scalars(select(Customer).where(Customer.anniversary.is_not(None))):
                for year in (today.year, today.year + 1):
                    try:
                        day = c.anniversary.replace(year=year)
                    except ValueError:  # 29 February
                        day = date(year, 3, 1)
                    if today <= day <= today + timedelta(days=LOOKAHEAD_DAYS):
                        occasions.append((f"anniversary:{year}", day, "客户纪念日", c.id))
        started = []
        for key, day, name, only in occasions:
            for cid in ([only] if only else self.greeting_list(now)):
                done = self._plan_greeting(f"greeting:{key}:{cid}", cid, day, name, now)
                if done:
                    started.append(done)
        return started

    def greeting_list(self, now: datetime | None = None) -> list[int]:
        """The customers greeted before a holiday (Q3): VIP customers and those who complained recently."""
        now = now or self.ctx.now()
        with self.ctx.db.reading() as s:
            recent = select(Instance.customer_id).where(
                Instance.kind == "complaint", Instance.customer_id.is_not(None),
                Instance.created_at >= now - timedelta(days=RECENT_COMPLAINT_DAYS))
            return list(s.scalars(select(Customer.id).where(or_(Customer.vip.is_(True), Customer.id.in_(recent)))
                                  .order_by(Customer.id)))

    def _plan_greeting(self, key: str, cid: int, day: date, occasion: str, now: datetime) -> dict | None:
        with self.ctx.db.unit_of_work() as s:
            if s.get(CarePlan, key) is not None:
                return None
            self.ctx.sync_calendar(s)
            c = s.get(Customer, cid)
            due_day = day - timedelta(days=1)
            for _ in range(GREETING_LEAD_WORKING_DAYS):
                while not _working(self.ctx, due_day):
                    due_day -= timedelta(days=1)
            due = max(at_nine(due_day), now)
            inst = self._open(s, key, c, now, {
                "care_kind": "greeting", "customer_name": c.name, "occasion": occasion,
                "occasion_date": day.isoformat(), "greeting_due": iso(due),
                "greeting_consent": bool(c.greeting_consent), "greeting_channel": c.greeting_channel},
                f"{occasion}问候 {c.name}"[:200])
            return {"ticket_no": inst.ticket_no, "customer_id": cid, "customer": c.name, "occasion": occasion,
                    "occasion_date": day.isoformat(), "due_at": iso(due),
                    "owner": None if inst.created_by == SYSTEM else inst.created_by,
                    "consent": bool(c.greeting_consent)}

    def _open(self, s, key: str, c: Customer, now: datetime, variables: dict, summary: str) -> Instance:
        return open_care(self.runner, s, key, c, now, variables, summary)

    # ---------------------------------------------------------------- reading
    def overview(self, now: datetime | None = None) -> dict:
        """What the care page shows: the cycles, the waiting and ready care work, the holidays ahead."""
        now = now or self.ctx.now()
        today = now.astimezone(SHANGHAI).date()
        with self.ctx.db.reading() as s:
            rows = s.execute(select(Instance, CarePlan.key).join(CarePlan, CarePlan.instance_id == Instance.id)
                             .where(Instance.status != "completed").order_by(Instance.id)).all()
            tasks = {t.instance_id: t for t in s.scalars(select(HumanTask).where(
                HumanTask.instance_id.in_([i.id for i, _k in rows] or [0]), HumanTask.state == "ready"))}
            timers = {t.instance_id: t for t in s.scalars(select(Timer).where(
                Timer.instance_id.in_([i.id for i, _k in rows] or [0])))}
            items = []
            for inst, key in rows:
                task, timer = tasks.get(inst.id), timers.get(inst.id)
                items.append({"ticket_no": inst.ticket_no, "instance_id": inst.id, "plan": key,
                              "care_kind": key.split(":")[0], "customer_id": inst.customer_id,
                              "customer": inst.customer.name if inst.customer else None,
                              "owner": task.assignee if task else (None if inst.created_by == SYSTEM
                                                                   else inst.created_by), "summary": inst.summary,
                              "due_at": iso(timer.due_at) if timer else None,
                              "task_id": task.id if task else None, "state": "ready" if task else "waiting"})
        return {"cycles": self.cycles(), "items": items,
                "holidays": [{"date": d.isoformat(), "name": n, "name_en": holiday_name_en(n)}
                             for d, n in holidays_between(today, today + timedelta(days=120))]}


def schedule(scheduler, care: CareService) -> None:
    """The daily planning job (00:10 Asia/Shanghai). No run at start: revisits are planned when a profile
    changes and when a revisit is done, greetings 14 days ahead, so a missed day is caught up the next."""
    scheduler.add_job(care.plan_job, "cron", id="care_plan", timezone=SHANGHAI, replace_existing=True,
                      hour=0, minute=10)


def plan_revisit_in(ctx: Context, runner: Runner, s, c: Customer, now: datetime,
                    cycles: dict | None = None) -> dict | None:
    """Start the customer's next periodic revisit (Q1) in the unit of work ``s`` unless one waits already."""
    if c is None:
        return None
    if cycles is None:
        cycles = {r.customer_class: r.months for r in s.scalars(select(CareCycle))}
    months = cycles.get(customer_class(c), DEFAULT_CYCLES.get(customer_class(c), 0))
    if not months or latest(s, CARE_KIND) is None:
        return None
    waiting = s.scalar(select(CarePlan.key).join(Instance, Instance.id == CarePlan.instance_id).where(
        CarePlan.customer_id == c.id, CarePlan.key.like("revisit:%"), Instance.status != "completed").limit(1))
    if waiting is not None:
        return None
    ctx.sync_calendar(s)
    base = (c.last_revisit_at or c.created_at).astimezone(SHANGHAI).date()
    day = add_months(base, months)
    while not _working(ctx, day):
        day += timedelta(days=1)
    key = f"revisit:{c.id}:{day.isoformat()}"
    if s.get(CarePlan, key) is not None:
        return None
    due = at_nine(day)
    inst = open_care(runner, s, key, c, now, {
        "care_kind": "revisit", "customer_name": c.name, "customer_class": customer_class(c),
        "cycle_months": months, "revisit_due": iso(due)}, f"定期回访 {c.name}"[:200])
    return {"ticket_no": inst.ticket_no, "customer_id": c.id, "customer": c.name, "due_at": iso(due),
            "owner": None if inst.created_by == SYSTEM else inst.created_by}


def open_care(runner: Runner, s, key: str, c: Customer, now: datetime, variables: dict, summary: str) -> Instance:
    """Start one care instance for ``c``: the planner (``system``) starts it, and it belongs to the agent who
    owns the customer (``created_by``: their tickets list, K3 per person)."""
    owner = owner_of(s, c)
    user = s.scalar(select(User).where(User.name == owner)) if owner else None
    if user is None or not user.active or "agent" not in user.role_set:
        owner = None
    inst, _ready = runner.open(s, CARE_KIND, User(name=SYSTEM, roles=""), c, None,
                               initial={**variables, "owner_agent": owner})
    inst.summary = summary
    inst.created_by = owner or SYSTEM
    # the key is the primary key: a planner that started the same instance a moment ago makes this unit of
    # work fail and roll back whole (the caller logs it), never a second instance
    s.add(CarePlan(key=key, instance_id=inst.id, customer_id=c.id, created_at=now))
    s.flush()
    return inst


def _working(ctx: Context, day: date) -> bool:
    """T2; a year without an official calendar uses the weekday rule, reported in the log (not raised here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalendarDataMissing)
        return ctx.calendar.is_working_day(day)


def owner_of(s, c: Customer) -> str | None:
    """The agent who owns the customer: the profile's owner, else the owner of the customer's most recent
    ticket (``Instance.owner`` where that column exists, else the agent who opened it, X1)."""
    if c.owner:
        return c.owner
    inst = s.scalar(select(Instance).where(Instance.customer_id == c.id, Instance.kind.in_(TICKET_KINDS))
                    .order_by(Instance.created_at.desc(), Instance.id.desc()).limit(1))
    return (getattr(inst, "owner", None) or inst.created_by) if inst is not None else None


# ---------------------------------------------------------------- what a finished care step does
def after_task(ctx: Context, runner: Runner, s, inst: Instance, row: HumanTask, clean: dict, actor: str) -> dict:
    """Called in the unit of work that completed ``row``: Q1 writes the profile, Q3 records the greeting,
    Q2 opens the repeat complaint. Returns what it did (for the caller's answer)."""
    now = ctx.now()
    if inst.kind == CARE_KIND and row.bpmn_id == REVISIT_TASK and inst.customer is not None:
        c = inst.customer
        c.last_revisit_at, c.last_satisfaction, c.updated_at = now, clean.get("satisfaction_score"), now
        if clean.get("new_needs"):
            stamp = now.astimezone(SHANGHAI).strftime("%Y-%m-%d")
            c.needs = "\n".join(x for x in (c.needs, f"[{stamp} 回访] {clean['new_needs']}") if x)[-2000:]
        runner.touch(s, inst, [audit.PendingEvent("customer_revisited", actor, now, task_id=row.id,
                                                  bpmn_id=row.bpmn_id, task_name=row.name, rules=["Q1", "K3"], data={
            "customer_id": c.id, "channel": clean.get("revisit_channel"),
            "satisfaction_score": clean.get("satisfaction_score"), "new_needs": clean.get("new_needs")})])
        nxt = plan_revisit_in(ctx, runner, s, c, now)
        return {"profile_updated": c.id, "next_revisit": nxt}
    if inst.kind == CARE_KIND and row.bpmn_id == GREETING_TASK and inst.customer is not None:
        c = inst.customer
        channel = clean.get("greeting_channel")
        consent = bool(c.greeting_consent)
        event = "greeting_sent" if consent else "greeting_withheld"
        data = {"customer_id": c.id, "channel": channel, "consent": consent,
                "occasion": (inst.summary or "")[:100]}
        if consent:
            data["delivery"] = deliver_greeting(c, channel, clean.get("greeting_text"))
        else:
            data["reason"] = "the customer has not agreed to greetings (I4)"
        runner.touch(s, inst, [audit.PendingEvent(event, actor, now, task_id=row.id, bpmn_id=row.bpmn_id,
                                                  task_name=row.name, rules=["Q3", "I4"], data=data)])
        return {event: c.id}
    if inst.kind == "complaint" and row.bpmn_id == CARE_CHECK_TASK and clean.get("care_satisfied") is False:
        user = s.scalar(select(User).where(User.name == actor))
        new, _ready = runner.open(s, "complaint", user, inst.customer, None, initial={
            "repeat_of": [inst.ticket_no], "care_opinion": clean.get("care_opinion")})
        new.summary = (f"再次投诉（{inst.ticket_no}）" + (clean.get("care_opinion") or ""))[:200]
        runner.touch(s, new, [audit.PendingEvent("repeat_complaint_opened", actor, now, rules=["Q2", "X3"],
                                                 data={"repeat_of": [inst.ticket_no]})])
        runner.touch(s, inst, [audit.PendingEvent("repeat_complaint_opened", actor, now, task_id=row.id,
                                                  bpmn_id=row.bpmn_id, task_name=row.name, rules=["Q2", "X3"],
                                                  data={"repeat": new.ticket_no})])
        return {"repeat_complaint": new.ticket_no}
    return {}


def deliver_greeting(c: Customer, channel: str | None, text: str | None) -> dict:
    """The hook to the notification outbox (Q3): where an outbox exists it queues the message for
    ``channel``; until then the greeting is recorded as sent in the audit trail with its channel, and a
    card or a channel without an outbox is sent by the agent by hand."""
    return {"channel": channel, "via": "recorded", "length": len(text or "")}
