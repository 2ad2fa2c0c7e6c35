"""Audit replay (issue 6): rebuild an instance from its definition version and its recorded events and
compare the result with the stored state.

A new workflow is made from the definition version the instance runs on, given the data it started with
(ticket, kind, starter, customer, the SLA snapshot of ``instance_started``), and the recorded events are
applied in order with the clock pinned to each event's time: task completions with their submitted data,
timer firings (the engine fires what is due at that moment, as the scheduler did), incident retries with
their fixes. Task ids are random, so a recorded task is found by its element: ``task_created`` events map
recorded ids to the rebuilt tasks in creation order (parallel members keep their own data).

The rebuilt workflow is compared with the stored one: the state of every task per element, the due times of
waiting timers, the newest task data and the status. Limits: the working-day calendar is today's (a day
override changed since the instance ran can move a deadline), and the process clock is pinned while a replay
runs, so replay from the CLI or tests, not inside a serving process.
"""
from __future__ import annotations

import copy
import warnings
from collections import Counter

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine.store import chain as audit
from engine import clock as clock_mod
from engine.bpmn import sandbox as scripting
from engine.bpmn.deadlines import move_deadline
from engine.calendar import CalendarDataMissing
from engine.clock import Clock, aware

COMPARED_STATES = {TaskState.READY: "ready", TaskState.WAITING: "waiting", TaskState.COMPLETED: "completed",
                   TaskState.CANCELLED: "cancelled", TaskState.ERROR: "error", TaskState.STARTED: "started"}
APPLIED = {"task_completed", "timer_fired", "incident_retried", "external_task_completed", "message_received"}
CUSTOMER_KEYS = ("customer_id", "vip")


class ReplayError(Exception):
    pass


def _signature(wf) -> Counter:
    return Counter((t.task_spec.bpmn_id, COMPARED_STATES[t.state]) for t in wf.get_tasks_iterator()
                   if getattr(t.task_spec, "bpmn_id", None) and t.state in COMPARED_STATES)


def _timers(wf) -> list:
    out = []
    for t in wf.get_tasks_iterator(state=TaskState.WAITING):
        value = t.internal_data.get("event_value")
        if isinstance(value, dict):
            value = value.get("next")
        if value is not None:
            out.append((t.task_spec.bpmn_id, str(value)))
    return sorted(out)


def _newest_data(wf) -> dict:
    ready = wf.get_tasks(state=TaskState.READY, manual=True)
    source = ready[0] if ready else wf.last_task
    return dict(source.data) if source is not None else {}


def _first_difference(stored, rebuilt) -> str | None:
    a, b = _signature(stored), _signature(rebuilt)
    for key in sorted(set(a) | set(b)):
        if a[key] != b[key]:
            return (f"element {key[0]}: stored {a[key]} task(s) {key[1]}, rebuilt {b[key]}")
    if stored.is_completed() != rebuilt.is_completed():
        return f"stored workflow completed={stored.is_completed()}, rebuilt completed={rebuilt.is_completed()}"
    ta, tb = _timers(stored), _timers(rebuilt)
    if ta != tb:
        first = next((x for x in ta if x not in tb), None) or next(x for x in tb if x not in ta)
        return f"waiting timer {first[0]}: stored due {dict(ta).get(first[0])}, rebuilt due {dict(tb).get(first[0])}"
    da, db = _newest_data(stored), _newest_data(rebuilt)
    for key in sorted(set(da) | set(db), key=str):
        if da.get(key, "<missing>") != db.get(key, "<missing>"):
            return f"data {key!r}: stored {da.get(key, '<missing>')!r}, rebuilt {db.get(key, '<missing>')!r}"
    return None


def replay(ctx, runner, instance_ref) -> dict:
    """Rebuild one instance; ``{"matches": bool, "difference": str|None, "events_applied": n, …}``."""
    with ctx.db.reading() as s:
        inst = ctx.instance(s, instance_ref, with_state=True)
        events = audit.events_of(s, inst.id)
        stored = runner.load(s, inst)
        # A moved instance (instance_migrated) started on an older version: rebuild from that one and move
        # it where the record says it moved.
        moves = {e.seq: _definition(s, inst.definition.process_id, (e.data or {}).get("to_version"))
                 for e in events if e.type == "instance_migrated"}
        first = min(moves, default=None)
        origin = inst.definition if first is None else _definition(
            s, inst.definition.process_id, (next(e for e in events if e.seq == first).data or {}).get("from_version"))
        if origin is None or None in moves.values():
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "matches": False, "events_applied": 0,
                    "difference": "an instance_migrated event names a definition version that does not exist"}
        spec, subs = ctx.specs.get(origin)
        for target in moves.values():
            ctx.specs.get(target)  # parsed while the rows are attached; the move reads them from the cache
        about = {"instance_id": inst.id, "ticket_no": inst.ticket_no,
                 "definition": {"process_id": inst.definition.process_id, "version": inst.definition.version,
                                "sha256": inst.definition.sha256}}
        origin_sha = origin.sha256
        vip, linked_customer = bool(inst.vip), inst.customer_id
        s.expunge_all()
    if not events or events[0].type != "instance_started":
        return {**about, "matches": False, "events_applied": 0,
                "difference": "the first recorded event is not instance_started"}
    started = events[0]
    if (started.data or {}).get("sha256") not in (None, origin_sha):
        return {**about, "matches": False, "events_applied": 0,
                "difference": "instance_started names another definition version than the instance runs on"}
    previous = clock_mod.active()
    clock = clock_mod.use(Clock(started.at))
    try:
        with warnings.catch_warnings():  # a missing calendar year was reported when the instance ran
            warnings.simplefilter("ignore", CalendarDataMissing)
            rebuilt, applied = _rebuild(ctx, runner, spec, subs, stored, started, events[1:], clock, vip, linked_customer,
                                        moves)
    except Exception as exc:  # noqa: BLE001 - a record that cannot be applied is a mismatch, not a crash
        return {**about, "matches": False, "events_applied": None,
                "difference": f"the recorded events cannot be applied: {exc}"}
    finally:
        clock_mod.use(previous)
    difference = _first_difference(stored, rebuilt)
    return {**about, "matches": difference is None, "difference": difference, "events_applied": applied}


def _initial_data(stored, started, vip: bool) -> dict:
    """What the instance started with: the stored root data (it holds what an escalation was opened with)
    checked against, and overridden by, what ``instance_started`` recorded."""
    data = copy.deepcopy(dict(stored.task_tree.data))
    recorded = started.data or {}
    data["started_by"] = started.actor
    data["customer_id"] = recorded.get("customer_id")
    data["vip"] = vip if recorded.get("customer_id") is not None else False
    sla = recorded.get("sla")
    if sla:
        data["sla_targets"] = copy.deepcopy(sla.get("targets"))
        data["sla_version"] = sla.get("version")
    return data


def _definition(s, process_id: str, version):
    from sqlalchemy import select
    from engine.store.tables import Definition
    if not isinstance(version, int):
        return None
    return s.scalar(select(Definition).where(Definition.process_id == process_id, Definition.version == version))


def _rebuild(ctx, runner, spec, subs, stored, started, events, clock: Clock, vip, linked_customer, moves=None):
    ctx.sync()
    wf = BpmnWorkflow(spec, subs, script_engine=scripting.make_script_engine())
    wf.task_tree.data.update(_initial_data(stored, started, vip))
    runner.run(wf)
    mapped: dict[str, object] = {}
    applied = 0
    for e in events:
        clock.set(max(clock.now(), e.at))
        if e.type == "external_task_created":
            used = {id(t) for t in mapped.values()}
            task = next((t for t in wf.get_tasks(state=TaskState.STARTED)
                         if t.task_spec.bpmn_id == e.bpmn_id and id(t) not in used), None)
            if task is not None:
                mapped[e.task_id] = task
        elif e.type == "task_created":
            used = {id(t) for t in mapped.values()}
            task = next((t for t in wf.get_tasks(state=TaskState.READY, manual=True)
                         if t.task_spec.bpmn_id == e.bpmn_id and id(t) not in used), None)
            if task is not None:
                mapped[e.task_id] = task
        elif e.type == "task_completed":
            task = mapped.get(e.task_id)
            if task is None or task.state != TaskState.READY:
                task = next((t for t in wf.get_tasks(state=TaskState.READY, manual=True)
                             if t.task_spec.bpmn_id == e.bpmn_id), None)
            if task is None:
                raise ReplayError(f"event #{e.seq}: no ready task {e.bpmn_id} to complete")
            clean = copy.deepcopy(e.data or {})
            task.data.update(clean)
            if wf.task_tree.data.get("customer_id") is None and clean.get("customer_name") \
                    and linked_customer is not None:
                wf.task_tree.data["customer_id"] = linked_customer
                for t in wf.get_tasks(state=TaskState.READY):
                    t.data["customer_id"], t.data["vip"] = linked_customer, vip
            task.run()
            runner.run(wf)
            applied += 1
        elif e.type == "timer_fired":
            runner.run(wf)
            applied += 1
        elif e.type == "deadline_extended":
            task = mapped.get(e.task_id)
            if task is not None and task.state == TaskState.READY:
                move_deadline(task, aware((e.data or {}).get("due_at")).isoformat())
            applied += 1
        elif e.type == "instance_migrated":
            from engine.bpmn.migration import apply_migration
            apply_migration(ctx, wf, moves[e.seq])
            applied += 1
        elif e.type == "external_task_completed":
            task = _started(wf, mapped.get(e.task_id), e.bpmn_id)
            if task is None:
                raise ReplayError(f"event #{e.seq}: no waiting external task {e.bpmn_id} to complete")
            task.data.update(copy.deepcopy((e.data or {}).get("variables") or {}))
            task.complete()
            runner.run(wf)
            applied += 1
        elif e.type == "message_received":
            from engine.bpmn.tasktypes import deliver
            if not deliver(wf, (e.data or {}).get("name"), copy.deepcopy((e.data or {}).get("payload") or {}),
                           e.bpmn_id):
                raise ReplayError(f"event #{e.seq}: nothing waits for message {(e.data or {}).get('name')!r}")
            runner.run(wf)
            applied += 1
        elif e.type == "incident_retried" and (e.data or {}).get("external_task"):
            task = _started(wf, mapped.get(e.task_id), e.bpmn_id)
            if task is not None:
                task.data.update(copy.deepcopy((e.data or {}).get("fix") or {}))
            applied += 1
        elif e.type == "incident_retried":
            fix = (e.data or {}).get("fix") or {}
            for task in wf.get_tasks(state=TaskState.ERROR):
                wf.reset_from_task_id(task.id)
                wf.get_task_from_id(task.id).data.update(copy.deepcopy(fix))
            runner.run(wf)
            applied += 1
    return wf, applied


def _started(wf, task, bpmn_id: str):
    """The mapped external task if it still waits, else the first waiting one of that element."""
    if task is not None and task.state == TaskState.STARTED:
        return task
    return next((t for t in wf.get_tasks(state=TaskState.STARTED) if t.task_spec.bpmn_id == bpmn_id), None)


def replay_all(ctx, runner) -> list[dict]:
    from sqlalchemy import select
    from engine.store.tables import Instance
    with ctx.db.reading() as s:
        ids = list(s.scalars(select(Instance.id).order_by(Instance.id)))
    return [replay(ctx, runner, i) for i in ids]
