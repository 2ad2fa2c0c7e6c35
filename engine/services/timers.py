"""Timers: the timer table read back, and due timers claimed and fired in batches, each firing saved exactly as a
user action is (the APScheduler scheduler that calls this lives beside it, in ``scheduler``)."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select

from engine.clock import iso
from engine.services import ownership, shapes
from engine.services.context import SYSTEM, WITH_STATE, Context
from engine.services.projections import PRELOADED
from engine.services.runner import Runner
from engine.store import chain as audit, writes
from engine.store.tables import HumanTask, Instance, Timer

log = logging.getLogger("kefu.engine")
FIRE_BATCH = 50  # instances fired per transaction: one commit (one fsync) for many firings


class TimerService:
    """Read the timer table; fire what is due."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    def waiting(self, instance=None) -> list[dict]:
        """The timers waiting to fire (of one instance), soonest first."""
        with self.ctx.db.reading() as s:
            # X1's claim deadlines are not BPMN timers: they show on their tasks (``offer_due``)
            q = select(Timer).where(Timer.kind != ownership.CLAIM_KIND).order_by(Timer.due_at)
            if instance is not None:
                q = q.where(Timer.instance_id == self.ctx.instance(s, instance).id)
            return [shapes.timer_dict(t) for t in s.scalars(q)]

    def fire_due(self, now: datetime | None = None, limit: int | None = None) -> list[dict]:
        """Fire every timer whose due time has passed (SpiffWorkflow fires strictly after it).

        Each batch claims the instances of due timers with ``FOR UPDATE SKIP LOCKED`` (on SQLite the whole
        database is the lock: ``BEGIN IMMEDIATE``), so two schedulers never fire the same timer; each
        instance is loaded, ``refresh_timers()`` + engine steps run, and it is saved exactly as a user action
        is; a batch commits once. If anything in a batch fails, the batch is rolled back and redone one
        instance per transaction, so one broken instance does not hold up the others. A timer whose task was
        completed meanwhile has no row any more: nothing happens.
        """
        now = now or self.ctx.now()
        fired, failed = [], set()
        nxt = self.next_due()
        if nxt is None or nxt >= now:
            return fired  # nothing due: no write transaction (SQLite's write lock) for an idle sweep
        while limit is None or len(fired) < limit:
            ids = []
            try:
                with self.ctx.db.unit_of_work() as s:
                    ids = self._claim_due(s, now, failed)
                    batch = []
                    # The batch's instances are locked for this transaction, so nobody can save them meanwhile:
                    # their changes are flushed together (one multi-row statement per table), not one by one.
                    audit.buffer_events(s)
                    with s.no_autoflush:
                        for instance_id in ids:
                            batch.extend(self._fire_in(s, instance_id, now, flush=False))
                    writes.write(s)
                    s.flush()
                    audit.write_buffered(s)
                fired.extend(batch)
            except Exception:  # noqa: BLE001 - one broken instance: redo this batch one instance at a time
                log.warning("a batch of timer firings failed; retrying its %d instance(s) one by one", len(ids))
                for instance_id in ids:
                    try:
                        with self.ctx.db.unit_of_work() as s:
                            if self._claim_due(s, now, failed, only=instance_id):
                                fired.extend(self._fire_in(s, instance_id, now))
                    except Exception:  # noqa: BLE001 - logged; the next sweep tries this instance again
                        log.exception("firing the timers of instance %s failed", instance_id)
                        failed.add(instance_id)
            if len(ids) < FIRE_BATCH:
                break
        return fired

    def _claim_due(self, s, now: datetime, failed: set, only: int | None = None) -> list[int]:
        """Lock the instances of due timers for this transaction, skipping those another scheduler holds."""
        self.ctx.sync_calendar(s)
        q = (select(Instance.id).join(Timer, Timer.instance_id == Instance.id)
             .where(Timer.due_at < now).order_by(Timer.due_at, Instance.id).limit(FIRE_BATCH * 2)
             .with_for_update(skip_locked=True, of=Instance))
        if only is not None:
            q = q.where(Instance.id == only)
        elif failed:
            q = q.where(Instance.id.not_in(failed))
        ids = list(dict.fromkeys(s.scalars(q)))[:FIRE_BATCH]
        if ids:  # load the batch (with its state, timers and ready tasks) in three queries, not three per instance
            pre = s.info.setdefault(PRELOADED, {})
            for inst in s.scalars(select(Instance).where(Instance.id.in_(ids)).options(*WITH_STATE)):
                pre[("instance", inst.id)] = inst  # a strong reference: the identity map's are weak
            for i in ids:
                pre[("timers", i)], pre[("ready", i)] = [], []
            for t in s.scalars(select(Timer).where(Timer.instance_id.in_(ids))):
                pre[("timers", t.instance_id)].append(t)
            for r in s.scalars(select(HumanTask).where(HumanTask.instance_id.in_(ids), HumanTask.state == "ready")):
                pre[("ready", r.instance_id)].append(r)
        return ids

    def _fire_in(self, s, instance_id: int, now: datetime, flush: bool = True) -> list[dict]:
        pre = s.info.get(PRELOADED, {})
        timers = pre.get(("timers", instance_id))
        inst = pre.get(("instance", instance_id)) or s.get(Instance, instance_id, options=WITH_STATE)
        if inst is None or inst.status == "completed":
            return []
        due = ([t for t in timers if t.due_at < now] if timers is not None else
               list(s.scalars(select(Timer).where(Timer.instance_id == instance_id, Timer.due_at < now))))
        if not due:
            return []  # fired or completed meanwhile by someone else
        lapsed = [t for t in due if t.kind == ownership.CLAIM_KIND]
        if lapsed:  # X1: offers the owner did not claim in time go back to the queue (no BPMN involved)
            for t in lapsed:
                if timers is not None:
                    timers.remove(t)
            events = [e for t in lapsed for e in ownership.lapse(s, inst, t, now)]
            if events:
                inst.updated_at = now
                audit.append(s, inst, events)
            due = [t for t in due if t.kind != ownership.CLAIM_KIND]
            if not due:  # the lapses are audit events; the list answers which BPMN timers fired
                if flush:
                    self.runner.flush(s, inst)
                return []
        wf = self.runner.load(s, inst, change=True)
        events: list[audit.PendingEvent] = []
        before = self.runner.states(wf)
        incident = self.runner.run(wf)
        self.runner.save(s, inst, wf, events, SYSTEM, before, incident, flush=flush)
        fired_ids = {str(e.task_id) for e in events if e.type == "timer_fired"}
        return [{"instance_id": inst.id, "ticket_no": inst.ticket_no, "timer": t.bpmn_id,
                 "name": t.name, "due_at": iso(t.due_at), "fired_at": iso(now)} for t in due if t.id in fired_ids]

    def next_due(self) -> datetime | None:
        """The earliest due time in the timer table (the scheduler wakes then)."""
        with self.ctx.db.reading() as s:
            return s.scalar(select(func.min(Timer.due_at)))
