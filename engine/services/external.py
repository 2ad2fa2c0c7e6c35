"""External tasks (Camunda's pattern): workers fetch and lock the service tasks of a topic, complete them with
variables, report failures with the retries left (none left: an incident on the instance) or extend their lock.

A lock is held by one worker until it expires; meanwhile no other worker fetches, completes or fails the task.
After a lock expired the task is fetched again; the worker that held it may still complete it as long as no
other worker has taken it since. Completion runs the instance on (the same unit of work as a user's
completion); failures and completions are audit events of the instance. The rows mirror the workflow's
started external tasks (``engine.services.projections.sync_external``).
"""
from __future__ import annotations

import copy
from datetime import timedelta

from sqlalchemy import or_, select
from SpiffWorkflow.util.task import TaskState

from engine.bpmn import sandbox as scripting
from engine.clock import iso
from engine.errors import Conflict, InvalidInput, NotAllowed, NotFound
from engine.services.context import SYSTEM, Context
from engine.services.projections import find_task
from engine.services.runner import Runner
from engine.store import chain as audit
from engine.store.tables import ExternalTask, Instance

WORKER_ROLES = {"integration", "supervisor", "process_owner"}
MAX_LOCK = timedelta(days=7)
MAX_TASKS = 100
MAX_ERROR = 2000  # characters of an error message kept; details up to ten times that


class ExternalTaskService:
    """Fetch-and-lock, complete, failure and lock extension of external tasks."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    # ---------------------------------------------------------------- reading
    def list(self, topic: str | None = None, instance=None) -> list[dict]:
        """Open external tasks (of a topic, of an instance), oldest first, with their lock and retries."""
        with self.ctx.db.reading() as s:
            q = select(ExternalTask, Instance.ticket_no).join(Instance, Instance.id == ExternalTask.instance_id) \
                .where(ExternalTask.state == "open").order_by(ExternalTask.created_at, ExternalTask.id)
            if topic:
                q = q.where(ExternalTask.topic == topic)
            if instance is not None:
                q = q.where(ExternalTask.instance_id == self.ctx.instance(s, instance).id)
            now = self.ctx.now()
            return [self._dict(row, ticket, now) for row, ticket in s.execute(q)]

    def _dict(self, row: ExternalTask, ticket_no: str, now, variables=None) -> dict:
        locked = row.worker_id is not None and row.lock_expires_at is not None and row.lock_expires_at > now
        out = {"id": row.id, "topic": row.topic, "instance_id": row.instance_id, "ticket_no": ticket_no,
               "bpmn_id": row.bpmn_id, "name": row.name, "state": row.state, "retries": row.retries,
               "worker_id": row.worker_id if locked else None, "lock_expires_at": iso(row.lock_expires_at)
               if locked else None, "error_message": row.error_message, "created_at": iso(row.created_at)}
        if variables is not None:
            out["variables"] = variables
        return out

    # ---------------------------------------------------------------- fetch and lock
    def fetch_and_lock(self, worker_id: str, topics, lock: timedelta, max_tasks: int = 1,
                       actor: str | None = None, variables: list[str] | None = None) -> list[dict]:
        """Lock up to ``max_tasks`` open tasks of ``topics`` (None: any topic) for ``worker_id`` for ``lock``;
        each comes with its instance's variables (only ``variables`` when given)."""
        worker_id = _worker(worker_id)
        lock = _lock(lock)
        if not isinstance(max_tasks, int) or isinstance(max_tasks, bool) or not 1 <= max_tasks <= MAX_TASKS:
            raise InvalidInput(f"maxTasks must be a whole number from 1 to {MAX_TASKS}", fields=["maxTasks"])
        topics = None if topics is None else [t for t in topics if isinstance(t, str) and t]
        with self.ctx.db.unit_of_work() as s:
            self._check_actor(s, actor)
            now = self.ctx.now()
            q = (select(ExternalTask).where(
                ExternalTask.state == "open", ExternalTask.retries > 0,
                or_(ExternalTask.lock_expires_at.is_(None), ExternalTask.lock_expires_at <= now),
                or_(ExternalTask.retry_at.is_(None), ExternalTask.retry_at <= now))
                 .order_by(ExternalTask.created_at, ExternalTask.id).limit(max_tasks)
                 .with_for_update(skip_locked=True))
            if topics is not None:
                if not topics:
                    return []
                q = q.where(ExternalTask.topic.in_(topics))
            rows = list(s.scalars(q))
            out = []
            for row in rows:
                row.worker_id, row.lock_expires_at = worker_id, now + lock
                inst = self.ctx.instance(s, row.instance_id, with_state=True)
                wf = self.runner.load(s, inst)
                task = find_task(wf, row.id)
                data = {k: v for k, v in (task.data if task is not None else {}).items() if not k.startswith("_")}
                if variables is not None:
                    data = {k: v for k, v in data.items() if k in variables}
                else:  # Kefu's copy of the SLA table: no worker's business unless asked for
                    data = {k: v for k, v in data.items() if k not in ("sla_targets", "sla_version")}
                out.append(self._dict(row, inst.ticket_no, now, copy.deepcopy(data)))
            return out

    # ---------------------------------------------------------------- complete, fail, extend
    def complete(self, task_id: str, worker_id: str, variables: dict | None = None,
                 actor: str | None = None) -> dict:
        """Complete a task this worker has locked, with its variables, and run the instance on."""
        worker_id = _worker(worker_id)
        clean = _variables(variables)
        with self.ctx.db.unit_of_work() as s:
            row, inst = self._held(s, task_id, worker_id, actor)
            wf = self.runner.load(s, inst, change=True)
            task = find_task(wf, row.id)
            if task is None or task.state != TaskState.STARTED:
                raise Conflict(f"external task {row.id} is no longer waiting in its instance; nothing was changed")
            now = self.ctx.now()
            before = self.runner.states(wf)
            task.data.update(copy.deepcopy(clean))
            task.complete()
            events = [audit.PendingEvent("external_task_completed", actor or SYSTEM, now, task_id=row.id,
                                         bpmn_id=row.bpmn_id, task_name=row.name,
                                         data={"topic": row.topic, "worker_id": worker_id, "variables": clean})]
            incident = self.runner.run(wf)
            ready = self.runner.save(s, inst, wf, events, actor or SYSTEM, before, incident)
            return {"id": row.id, "topic": row.topic, "instance_id": inst.id, "ticket_no": inst.ticket_no,
                    "status": inst.status, "incident": inst.incident,
                    "tasks": [{"id": r.id, "name": r.name, "role": r.role, "assignee": r.assignee} for r in ready]}

    def fail(self, task_id: str, worker_id: str, error: str, retries: int | None = None,
             details: str | None = None, retry_in: timedelta | None = None, actor: str | None = None) -> dict:
        """Report that the worker could not do the task: ``retries`` left (default: one fewer than before);
        with none left the instance gets an incident. ``retry_in``: not fetched again before then."""
        worker_id = _worker(worker_id)
        if not isinstance(error, str) or not error.strip():
            raise InvalidInput("an error message is needed", fields=["errorMessage"])
        if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
            raise InvalidInput("retries must be a whole number, 0 or more", fields=["retries"])
        if details is not None and not isinstance(details, str):
            raise InvalidInput("errorDetails must be text", fields=["errorDetails"])
        wait = timedelta(0) if retry_in is None else retry_in
        if wait < timedelta(0) or wait > MAX_LOCK:
            raise InvalidInput("the retry timeout must be between 0 and 7 days", fields=["retryTimeout"])
        with self.ctx.db.unit_of_work() as s:
            row, inst = self._held(s, task_id, worker_id, actor)
            now = self.ctx.now()
            left = max(0, row.retries - 1) if retries is None else min(retries, 1000)
            row.retries, row.error_message = left, error.strip()[:MAX_ERROR]
            row.error_details = details[:MAX_ERROR * 10] if details else None
            row.lock_expires_at, row.retry_at = None, now + wait if wait else None
            events = [audit.PendingEvent("external_task_failed", actor or SYSTEM, now, task_id=row.id,
                                         bpmn_id=row.bpmn_id, task_name=row.name,
                                         data={"topic": row.topic, "worker_id": worker_id,
                                               "error": row.error_message, "retries": left})]
            incident = None
            if left == 0:
                incident = {"task_id": row.id, "bpmn_id": row.bpmn_id, "name": row.name,
                            "error_type": "ExternalTaskFailed", "external_task_id": row.id, "topic": row.topic,
                            "message": f"external task {row.name or row.bpmn_id} (topic {row.topic}) failed and has "
                                       f"no retries left: {row.error_message}"[:500],
                            "line_number": None, "error_line": None, "at": iso(now)}
            wf = self.runner.load(s, inst, change=True)
            self.runner.save(s, inst, wf, events, actor or SYSTEM, None, incident)
            return {"id": row.id, "topic": row.topic, "instance_id": inst.id, "ticket_no": inst.ticket_no,
                    "retries": left, "status": inst.status, "incident": inst.incident}

    def extend_lock(self, task_id: str, worker_id: str, duration: timedelta, actor: str | None = None) -> dict:
        """Lock a task this worker holds for ``duration`` from now."""
        worker_id = _worker(worker_id)
        duration = _lock(duration)
        with self.ctx.db.unit_of_work() as s:
            row, inst = self._held(s, task_id, worker_id, actor, live=True)
            now = self.ctx.now()
            row.lock_expires_at = now + duration
            return self._dict(row, inst.ticket_no, now)

    # ---------------------------------------------------------------- shared checks
    def _check_actor(self, s, actor: str | None) -> None:
        if actor is None:
            return
        roles = self.ctx.user_roles(s, actor)
        if roles is None:
            raise NotAllowed(f"unknown or inactive user {actor!r}")
        if not roles & WORKER_ROLES:
            raise NotAllowed(f"user {actor} may not work external tasks "
                             f"(needs role {' or '.join(sorted(WORKER_ROLES))})")

    def _held(self, s, task_id: str, worker_id: str, actor: str | None, live: bool = False):
        """The open task row (locked for the change) held by ``worker_id``, and its instance."""
        self._check_actor(s, actor)
        row = s.scalar(select(ExternalTask).where(ExternalTask.id == str(task_id)[:36]).with_for_update())
        if row is None:
            raise NotFound(f"no external task {task_id!r}")
        if row.state != "open":
            raise Conflict(f"external task {row.id} is already {row.state}; nothing was changed", task_state=row.state)
        now = self.ctx.now()
        if row.worker_id is None or row.lock_expires_at is None:
            raise NotAllowed(f"external task {row.id} is not locked by worker {worker_id}: fetch and lock it first")
        if row.worker_id != worker_id:
            raise NotAllowed(f"external task {row.id} is locked by another worker ({row.worker_id}) until "
                             f"{iso(row.lock_expires_at)}" if row.lock_expires_at > now else
                             f"external task {row.id} was last locked by another worker ({row.worker_id})")
        if live and row.lock_expires_at <= now:
            raise Conflict(f"the lock of worker {worker_id} on external task {row.id} has expired; fetch it again")
        inst = self.ctx.instance(s, row.instance_id, with_state=True)
        self.ctx.sync_calendar(s)
        return row, inst


def _worker(worker_id) -> str:
    if not isinstance(worker_id, str) or not worker_id.strip() or len(worker_id) > 255:
        raise InvalidInput("a worker id (1 to 255 characters) is needed", fields=["workerId"])
    return worker_id.strip()


def _lock(lock) -> timedelta:
    if not isinstance(lock, timedelta) or lock <= timedelta(0) or lock > MAX_LOCK:
        raise InvalidInput("the lock duration must be more than 0 and at most 7 days", fields=["lockDuration"])
    return lock


def _variables(variables) -> dict:
    """Variables a worker sends, as plain data: ``{"name": value}`` or Camunda's typed form
    ``{"name": {"value": value, "type": "String"}}``."""
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        raise InvalidInput("variables must be a JSON object", fields=["variables"])
    typed = bool(variables) and all(isinstance(v, dict) and "value" in v and set(v) <= {"value", "type", "valueInfo"}
                                    for v in variables.values())
    out = {}
    for key, value in variables.items():
        if not isinstance(key, str) or not key or key.startswith("_") or len(key) > 64:
            raise InvalidInput(f"variable name {key!r} must be 1 to 64 characters, not starting with '_'",
                               fields=["variables"])
        out[key] = value["value"] if typed else value
    try:
        return {k: scripting._plain(v, k) for k, v in out.items()}
    except (TypeError, scripting.ScriptRejected) as exc:
        raise InvalidInput(f"variables: {exc}", fields=["variables"]) from None
