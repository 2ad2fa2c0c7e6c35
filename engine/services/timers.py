"""Timers: the timer table read back, and due timers claimed and fired in batches, each firing saved exactly as a
user action is (the APScheduler scheduler that calls this lives beside it, in ``scheduler``)."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import bindparam, func, select, text

from engine import clock
from engine.clock import iso
from engine.services import ownership, shapes
from engine.services.context import SYSTEM, WITH_STATE, Context
from engine.services.projections import PRELOADED
from engine.services.runner import Runner
from engine.store import chain as audit, writes
from engine.store.tables import HumanTask, Instance, Timer

log = logging.getLogger("kefu.engine")
FIRE_BATCH = 50  # instances fired per transaction: one commit (one fsync) for many firings
CLAIM_SPACE = 0x6B6566  # the advisory-lock key space of firing claims (PostgreSQL)
STALE_ROUNDS = 3  # an instance found changed this often in one sweep waits for the next sweep
SMALL_SWEEP = 3  # at most this many instances due: fired in one unit of work, without reading ahead


class _ManyDue(Exception):
    """More instances are due than a small sweep fires (its unit of work rolls back: nothing was written)."""


_NEXT_DUE = select(func.min(Timer.due_at))
# The statements of a sweep, built once (building an IN list per call costs more than running it).
_IDS = bindparam("ids", expanding=True)
_BATCH_INSTANCES = select(Instance).where(Instance.id.in_(_IDS))
_BATCH_TIMERS = select(Timer).where(Timer.instance_id.in_(_IDS))
_BATCH_STATES = select(Instance.id, Instance.lock_version, Instance.state).where(Instance.id.in_(_IDS))
_BATCH_READY = select(HumanTask).where(HumanTask.instance_id.in_(_IDS), HumanTask.state == "ready")
_LOCK_VERSIONS = select(Instance.id, Instance.lock_version).where(Instance.id.in_(_IDS))
_LOCK_VERSIONS_LOCKED = _LOCK_VERSIONS.with_for_update(skip_locked=True, of=Instance)
_CANDIDATES: dict = {}


@cache
def _batch_with_state():
    return _BATCH_INSTANCES.options(*WITH_STATE)


def _load_timers(s, pre: dict, ids: list[int]) -> list[Timer]:
    """The timer rows of ``ids``, kept in ``pre`` per instance (an empty list for one without any)."""
    for i in ids:
        pre[("timers", i)] = []
    timers = list(s.scalars(_BATCH_TIMERS, {"ids": ids}))
    for t in timers:
        pre[("timers", t.instance_id)].append(t)
    return timers


def _load_ready(s, pre: dict, ids: list[int]) -> None:
    """The ready task rows of ``ids``, kept in ``pre`` per instance."""
    for i in ids:
        pre[("ready", i)] = []
    for r in s.scalars(_BATCH_READY, {"ids": ids}):
        pre[("ready", r.instance_id)].append(r)


def _candidates(reverse: bool, failed: bool, shard: bool):
    """The instances with due timers, earliest due first (``reverse``: latest first), leaving out the ``failed``
    ones and, with ``shard``, those not of this process's shard; parameters now, failed, shards, shard."""
    key = (reverse, failed, shard)
    q = _CANDIDATES.get(key)
    if q is None:
        order = (Timer.due_at.desc(), Instance.id.desc()) if reverse else (Timer.due_at, Instance.id)
        q = (select(Instance.id).join(Timer, Timer.instance_id == Instance.id)
             .where(Timer.due_at < bindparam("now")).order_by(*order).limit(FIRE_BATCH * 4))
        if failed:
            q = q.where(Instance.id.not_in(bindparam("failed", expanding=True)))
        if shard:
            q = q.where(Instance.id % bindparam("shards") == bindparam("shard"))
        q = _CANDIDATES[key] = q
    return q


@dataclass
class Prepared:
    """One instance's firing computed outside the write lock, from the version ``version`` of its state."""
    id: int
    version: int
    wf: object = None  # None: fired wholly in the lock (only X1 claim deadlines, or an X1 lapse with it)
    before: dict | None = None
    incident: dict | None = None
    projection: Projection | None = None  # the save computed too (rows, audit events): applied as it is


@dataclass
class Projection:
    """What saving one firing writes, computed on a reading session from the rows of ``version``: applied
    unchanged in the write transaction if the instance is still at that version."""
    inst: Instance  # the instance as read, with its new column values set (detached)
    changes: dict  # its changed columns
    writes: dict | None  # engine.store.writes.take()
    events: list  # audit rows (engine.store.chain, buffered)
    feed: list  # (instance, rows) for the notification outbox and the live pages
    timers_due: list  # new due times (the scheduler's next wake-up)
    fired: list  # the answer: the BPMN timers that fired


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

    def fire_due(self, now: datetime | None = None, limit: int | None = None,
                 shard: tuple[int, int] | None = None, reverse: bool = False) -> list[dict]:
        """Fire every timer whose due time has passed (SpiffWorkflow fires strictly after it).

        A batch is first read and its engine work done outside any write transaction: each instance is
        restored (or taken warm), ``refresh_timers()`` + engine steps run, and its save is computed on the
        reading session from the rows of the version read (task and timer rows, clocks, audit events, the
        serialized workflow: ``Runner.project``, recorded, not written). Then one short unit of work applies
        the batch: each instance is locked (``FOR UPDATE SKIP LOCKED``; SQLite's write lock) and the recorded
        writes are issued only if its lock version is still the one read; an instance changed meanwhile (a
        user completed its task, another scheduler fired it) is not overwritten: it is read and fired again,
        or has nothing due any more. An instance whose owner's claim lapsed too (X1), or whose save could not
        be computed ahead, is fired wholly in the lock. So the engine work of several schedulers or processes
        runs on several cores at once while their writes take turns. If anything in
        a batch fails, it is rolled back and redone one instance per transaction, so one broken instance does
        not hold up the others. ``shard`` (i, n): only instances whose id is i modulo n (parallel firing);
        ``reverse``: the latest due first (a process helping another with its shard starts at the far end).

        A sweep that finds no more than ``SMALL_SWEEP`` instances due (the usual case outside a storm: timers
        come due one by one) fires them in a single unit of work instead: reading ahead pays for a short lock
        only when many firings wait for it, and costs a second transaction's reads when few do.
        """
        now = now or self.ctx.now()
        fired, failed, stale_rounds = [], set(), {}
        nxt = self.next_due()
        if nxt is None or nxt >= now:
            return fired  # nothing due: no write transaction (SQLite's write lock) for an idle sweep
        if shard is None and not reverse and (limit is None or limit > SMALL_SWEEP):
            few = self._fire_few(now)
            if few is not None:
                return few
        while limit is None or len(fired) < limit:
            with self._claims() as claim:  # PostgreSQL: other schedulers leave this batch alone meanwhile
                read, prepared = self._prepare(now, failed, shard, claim, reverse)
                if not read:
                    break
                stale = []
                try:
                    if prepared:
                        with self.ctx.db.unit_of_work() as s:
                            batch, stale = self._apply(s, prepared, now)
                        fired.extend(batch)
                except Exception:  # noqa: BLE001 - one broken instance: redo this batch one instance at a time
                    log.warning("a batch of timer firings failed; retrying its %d instance(s) one by one",
                                len(prepared), exc_info=True)
                    for p in prepared:
                        try:
                            with self.ctx.db.unit_of_work() as s:
                                if self._claim_due(s, now, failed, only=p.id):
                                    fired.extend(self._fire_in(s, p.id, now))
                        except Exception:  # noqa: BLE001 - logged; the next sweep tries this instance again
                            log.exception("firing the timers of instance %s failed", p.id)
                            failed.add(p.id)
            for instance_id in stale:  # changed meanwhile: read again; one that keeps changing waits a sweep
                stale_rounds[instance_id] = stale_rounds.get(instance_id, 0) + 1
                if stale_rounds[instance_id] >= STALE_ROUNDS:
                    failed.add(instance_id)
            if read < FIRE_BATCH and not stale:
                break
        return fired

    def _fire_few(self, now: datetime) -> list[dict] | None:
        """Fire the due timers in one unit of work if no more than ``SMALL_SWEEP`` instances have any; None
        (nothing written) if more do, or if a firing failed: the batches of ``fire_due`` take over."""
        try:
            with self.ctx.db.unit_of_work() as s:
                ids = self._claim_due(s, now, set(), limit=SMALL_SWEEP + 1, with_state=False)
                if len(ids) > SMALL_SWEEP:
                    raise _ManyDue
                fired = []
                for instance_id in ids:
                    fired.extend(self._fire_in(s, instance_id, now))
                return fired
        except _ManyDue:
            return None
        except Exception:  # noqa: BLE001 - rolled back; redone instance by instance, failures logged there
            log.debug("a small sweep failed; firing in batches", exc_info=True)
            return None

    def _prepare(self, now: datetime, failed: set, shard: tuple[int, int] | None,
                 claim=None, reverse: bool = False) -> tuple[int, list[Prepared]]:
        """Read a batch of instances with due timers and do their engine work, holding no write lock.
        Returns how many instances with due timers were found, and the firings prepared (those that could
        be computed)."""
        with self.ctx.db.reading() as s:
            self.ctx.sync_calendar(s)  # the calendar the engine steps below count working days on
            params = {"now": now, "failed": sorted(failed), "shards": shard[1] if shard else 1,
                      "shard": shard[0] if shard else 0}
            candidates = list(dict.fromkeys(s.scalars(_candidates(reverse, bool(failed), shard is not None),
                                                      params)))
            ids = claim(candidates, FIRE_BATCH) if claim is not None else candidates[:FIRE_BATCH]
            if not ids:
                return 0, []  # nothing due, or all of it claimed by other schedulers
            # The batch's instances (without their states), their timers and their ready tasks, each read once:
            # what decides which firings run here and what their saves are computed from.
            pre = s.info.setdefault(PRELOADED, {})
            instances = {inst.id: inst for inst in s.scalars(_BATCH_INSTANCES, {"ids": ids})}
            bpmn_due, claims = set(), set()
            for t in _load_timers(s, pre, ids):
                if t.due_at < now:
                    (claims if t.kind == ownership.CLAIM_KIND else bpmn_due).add(t.instance_id)
            rows, cold = {}, []
            warm = self.ctx.warm
            for instance_id, inst in instances.items():
                if instance_id in bpmn_due and inst.status != "completed":
                    # the workflow this process saved last serves if it is of the version read (no state read)
                    wf = warm.take(instance_id, inst.lock_version) if warm.enabled else None
                    if wf is None:
                        cold.append(instance_id)
                    rows[instance_id] = (inst.lock_version, wf, None)
                else:  # only X1 claim deadlines (no engine work), or nothing left to fire
                    rows[instance_id] = (inst.lock_version, None, None)
            if cold:  # the others' states, each with the version it is of (a save may have come between)
                for instance_id, version, state in s.execute(_BATCH_STATES, {"ids": cold}):
                    self.ctx.spec_of(instances[instance_id])  # parsed once per definition version, while in s
                    if version == rows[instance_id][0]:
                        rows[instance_id] = (version, None, state)
                    else:  # saved between the two reads: fired in the lock
                        rows[instance_id] = (rows[instance_id][0], None, None)
            engine = [i for i, (_v, wf, state) in rows.items()
                      if (wf is not None or state is not None) and i not in claims]
            if engine:
                _load_ready(s, pre, engine)
                for i in engine:
                    pre[("instance", i)] = instances[i]
            project = set(engine)
            prepared = []
            for instance_id, (version, wf, state) in sorted(rows.items()):
                if (wf is None and state is None) or instance_id not in project:
                    prepared.append(Prepared(instance_id, version))  # fired in the lock (X1 lapses, no BPMN)
                    continue
                try:
                    if wf is None:
                        wf = self.ctx.serializer.deserialize_json(state)
                    # One instant for the engine steps and the save (SpiffWorkflow's timer code, the deadlines
                    # the diagrams compute and the audit events all read it), as in a unit of work: a replay
                    # pinned to the events' times computes the same deadlines.
                    with clock.one_instant():
                        before = self.runner.states(wf)
                        incident = self.runner.run(wf)
                        p = Prepared(instance_id, version, wf, before, incident)
                        p.projection = self._project(s, p, now)
                    prepared.append(p)
                except Exception:  # noqa: BLE001 - a state nobody can load: logged, the next sweep tries again
                    log.exception("firing the timers of instance %s failed", instance_id)
                    failed.add(instance_id)
        return len(candidates), prepared

    def _project(self, s, p: Prepared, now: datetime) -> Projection | None:
        """Compute the save of a firing on the reading session ``s``: the rows, audit events and instance
        columns it writes, without writing them. None if the rows read are not of the version the
        workflow is of (a save came between the reads): the firing is then saved in the lock."""
        audit.buffer_events(s)  # this instance's events alone; nothing of an earlier one left over
        writes.take(s)
        for key in (audit.FEED, audit.LEDGER, "kefu_timers_due"):
            s.info.pop(key, None)
        pre = s.info[PRELOADED]
        inst = pre.pop(("instance", p.id), None)
        if inst is None:
            return None
        if inst.lock_version != p.version or inst.status == "completed":
            return None
        timers = list(pre.get(("timers", p.id), ()))
        due = [t for t in timers if t.due_at < now]
        if not due:
            return None
        events: list[audit.PendingEvent] = []
        try:
            with s.no_autoflush:
                self.runner.project(s, inst, p.wf, events, SYSTEM, p.before, p.incident, None, warm=False)
        except Exception:  # noqa: BLE001 - saved in the lock instead, where a failure is handled and logged
            log.debug("the save of instance %s's firing could not be computed ahead", p.id, exc_info=True)
            return None
        changes = writes.instance_changes(inst)
        if changes is None:
            return None
        s.expunge(inst)  # kept as it is now: the reading session's end expires what it holds
        fired_ids = {str(e.task_id) for e in events if e.type == "timer_fired"}
        projection = Projection(
            inst=inst, changes=changes, writes=writes.take(s),
            events=s.info.pop(audit.BUFFER), feed=s.info.pop(audit.FEED, []),
            timers_due=s.info.pop("kefu_timers_due", []),
            fired=[{"instance_id": inst.id, "ticket_no": inst.ticket_no, "timer": t.bpmn_id, "name": t.name,
                    "due_at": iso(t.due_at), "fired_at": iso(now)} for t in due if t.id in fired_ids])
        return projection

    @contextmanager
    def _claims(self):
        """On PostgreSQL, a function that claims instances for this process until the block ends (session
        advisory locks, which no transaction holds: the engine work runs outside any). Another scheduler
        skips what is claimed, so two never compute the same firing; a process that dies releases its
        claims with its connection. Users' writes do not look at claims: the lock version guards those.
        On SQLite every process fires its own shard (engine.services.firing); no claim is needed."""
        if self.ctx.db.dialect != "postgresql":
            yield None
            return
        with self.ctx.db.read_engine.connect() as conn:
            def claim(ids: list[int], limit: int) -> list[int]:
                """The first ``limit`` of ``ids`` nobody else claimed, claimed (the scan stops there: no
                instance beyond them is claimed and kept from another scheduler)."""
                if not ids:
                    return []
                return list(conn.execute(text(
                    "SELECT i FROM unnest(CAST(:ids AS bigint[])) AS u(i) "
                    "WHERE pg_try_advisory_lock(CAST(:space AS bigint) + i) LIMIT :limit"),
                    {"ids": ids, "space": CLAIM_SPACE << 32, "limit": limit}).scalars())
            try:
                yield claim
            finally:
                conn.execute(text("SELECT pg_advisory_unlock_all()"))

    def _apply(self, s, prepared: list[Prepared], now: datetime) -> tuple[list[dict], list[int]]:
        """Save the prepared firings whose instances are unchanged since they were read; the others are stale."""
        projected = {p.id: p for p in prepared if p.projection is not None}
        batch, stale = self._apply_projected(s, projected) if projected else ([], [])
        by_id = {p.id: p for p in prepared if p.projection is None}
        if not by_id:
            return batch, stale
        locked = self._claim_due(s, now, set(), among=list(by_id))
        stale += [i for i in by_id if i not in locked]  # another scheduler holds it (PostgreSQL) or fired it
        # The batch's instances are locked for this transaction, so nobody can save them meanwhile:
        # their changes are flushed together (one multi-row statement per table), not one by one.
        audit.buffer_events(s)
        pre = s.info.get(PRELOADED, {})
        with s.no_autoflush:
            for instance_id in locked:
                inst = pre.get(("instance", instance_id))
                if inst is None or inst.lock_version != by_id[instance_id].version:
                    stale.append(instance_id)
                    continue
                # (its engine work is redone here, in the unit of work's instant, with its save)
                batch.extend(self._fire_in(s, instance_id, now, flush=False))
        writes.write(s)
        s.flush()
        audit.write_buffered(s)
        return batch, stale

    def _apply_projected(self, s, projected: dict[int, Prepared]) -> tuple[list[dict], list[int]]:
        """Write the firings whose saves were computed ahead, for the instances still at the version they
        were computed from (locked for this transaction); the others are stale, to be read again."""
        q = _LOCK_VERSIONS_LOCKED if self.ctx.db.dialect == "postgresql" else _LOCK_VERSIONS
        current = dict(s.execute(q, {"ids": list(projected)}).all())
        fresh = [p for i, p in sorted(projected.items()) if current.get(i) == p.version]
        stale = [i for i in projected if current.get(i) != projected[i].version]
        if not fresh:
            return [], stale
        conn = s.connection()
        writes.issue(conn, [p.projection.writes for p in fresh if p.projection.writes])
        writes.save_instances(conn, [(p.projection.inst, p.version, p.projection.changes) for p in fresh])
        rows = [row for p in fresh for row in p.projection.events]
        if rows:
            writes.insert_rows(conn, audit.EVENTS, rows)
        ledger, feed, due = s.info.setdefault(audit.LEDGER, {}), s.info.setdefault(audit.FEED, []), []
        batch = []
        for p in fresh:
            projection = p.projection
            if projection.events:
                ledger[p.id] = projection.inst
            feed.extend(projection.feed)
            due.extend(projection.timers_due)
            batch.extend(projection.fired)
            self.runner.keep_warm(s, projection.inst, p.wf)  # at its new version, once this commits
        if due:
            s.info.setdefault("kefu_timers_due", []).extend(due)
        return batch, stale

    def _claim_due(self, s, now: datetime, failed: set, only: int | None = None,
                   among: list[int] | None = None, limit: int = FIRE_BATCH, with_state: bool = True) -> list[int]:
        """Lock the instances of due timers for this transaction, skipping those another scheduler holds, and
        load up to ``limit`` of them (``with_state``: with their workflow states; without, a warm workflow
        serves and a cold one is read when restored)."""
        self.ctx.sync_calendar(s)
        q = (select(Instance.id).join(Timer, Timer.instance_id == Instance.id)
             .where(Timer.due_at < now).order_by(Timer.due_at, Instance.id).limit(limit * 2)
             .with_for_update(skip_locked=True, of=Instance))
        if only is not None:
            q = q.where(Instance.id == only)
        elif among is not None:
            q = q.where(Instance.id.in_(among))
        elif failed:
            q = q.where(Instance.id.not_in(failed))
        ids = list(dict.fromkeys(s.scalars(q)))[:limit]
        if ids:  # load the batch (with its timers and ready tasks) in three queries, not three per instance
            pre = s.info.setdefault(PRELOADED, {})
            for inst in s.scalars(_batch_with_state() if with_state else _BATCH_INSTANCES, {"ids": ids}):
                pre[("instance", inst.id)] = inst  # a strong reference: the identity map's are weak
            _load_timers(s, pre, ids)
            _load_ready(s, pre, ids)
        return ids

    def _fire_in(self, s, instance_id: int, now: datetime, flush: bool = True) -> list[dict]:
        """Fire the instance's due timers inside the unit of work ``s`` (engine steps and save in its instant)."""
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
        events: list[audit.PendingEvent] = []
        wf = self.runner.load(s, inst, change=True)
        before = self.runner.states(wf)
        incident = self.runner.run(wf)
        self.runner.save(s, inst, wf, events, SYSTEM, before, incident, flush=flush)
        fired_ids = {str(e.task_id) for e in events if e.type == "timer_fired"}
        return [{"instance_id": inst.id, "ticket_no": inst.ticket_no, "timer": t.bpmn_id,
                 "name": t.name, "due_at": iso(t.due_at), "fired_at": iso(now)} for t in due if t.id in fired_ids]

    def due_count(self, now: datetime | None = None, cap: int = 1000) -> int:
        """How many instances have a timer due (counted up to ``cap``)."""
        now = now or self.ctx.now()
        with self.ctx.db.reading() as s:
            due = select(Timer.instance_id).where(Timer.due_at < now).distinct().limit(cap).subquery()
            return s.scalar(select(func.count()).select_from(due))

    def next_due(self) -> datetime | None:
        """The earliest due time in the timer table (the scheduler wakes then); asked before every sweep, so
        on a plain connection (no ORM session for one value)."""
        with self.ctx.db.connection() as conn:
            return conn.scalar(_NEXT_DUE)
