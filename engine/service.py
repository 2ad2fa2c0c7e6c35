"""The service layer: every user action and timer firing is one unit of work.

    load instance (with its lock version) → check who may act → validate → run SpiffWorkflow →
    write workflow state + human tasks + timers + summary columns + audit events → commit once

A stale lock version (someone else saved the instance meanwhile) is a Conflict, never an overwrite.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.script_task import ScriptTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.exceptions import SpiffWorkflowException, TaskNotFoundException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import joinedload, lazyload, undefer
from sqlalchemy.orm.exc import StaleDataError

from engine.store import chain as audit, writes
from engine import calendar as calendar_mod, clock as clock_mod
from engine.services import designer
from engine.bpmn import sandbox as scripting
from engine.clock import SHANGHAI, Clock
from engine.config import Config
from engine.store.tables import (
    CalendarDay, Customer, Definition, HumanTask, Instance, Setting, Timer, User, name_set, next_counter
)
from engine.store.database import Database
from engine.bpmn.diagram import (
    ROLES, SpecCache, diagram_files, lane_role, make_serializer, parse_diagram, rule_ids
)
from engine.store.versions import latest, next_version, version_with
from engine.errors import (
    ClockError, Conflict, DefinitionError, FormValidationError, IncidentError, InvalidInput, NotAllowed,
    NotFound
)
from engine.bpmn.forms import FormValidator, build_fields
from engine.bpmn.sla import SLA_DECISION, SlaTable, parse_sla
from engine.services.users import check_password, check_roles, check_user_name, hash_password

log = logging.getLogger("kefu.engine")
TICKET_PREFIX = {"consultation": "ZX", "complaint": "TS", "repair": "BX", "escalation": "SJ"}
START_ROLES = {"agent", "supervisor"}
OPEN_ROLES = START_ROLES | {"integration"}  # may open tickets (the JSON API's integration users)
MAX_ROW_ID = 2**31 - 1  # the largest INTEGER primary key PostgreSQL stores
# Tasks worked outside the customer-service department: an agent may escalate them (000 §五.1).
TRANSFERRED_ROLES = {"department", "technician", "taskforce"}
ESCALATION = "escalation"
INCIDENT_ROLES = {"supervisor", "process_owner"}
SUMMARY_FIELDS = ("question", "content", "fault_symptom")
CUSTOMER_FIELDS = ("name", "phone", "email", "company", "address", "region", "needs", "vip", "special_note")
SYSTEM = "system"
CALENDAR_REVISION = "calendar_revision"
CLOCK_OFFSET = "clock_offset_seconds"
FIRE_BATCH = 50  # instances fired per transaction: one commit (one fsync) for many firings
PRELOADED = "kefu_preloaded"  # session.info key: rows a firing batch loaded for all its instances at once
CALENDAR_ROLES = {"process_owner"}
# Data keys the diagrams use for the two clocks of a work order (T1) and their pause (R4).
CLOCKS = ("response", "finish")
MAX_ENGINE_ROUNDS = 20


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(SHANGHAI).isoformat()


def _aware(text: str | None) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


_WITH_STATE = (undefer(Instance.state),)


def _setting(key: str):
    return select(Setting.value).where(Setting.key == key).scalar_subquery()


# Kefu._ready_task: a task row locked for the change, its instance (with the workflow), the acting user and
# the two shared settings, in one round trip. On SQLite FOR UPDATE is left out (the write lock is held).
_READY_TASK = (select(HumanTask, Instance, User, _setting(CALENDAR_REVISION), _setting(CLOCK_OFFSET))
               .join(Instance, Instance.id == HumanTask.instance_id)
               .outerjoin(User, User.name == bindparam("actor"))
               .where(HumanTask.id == bindparam("task_id"))
               # The definition (its spec is cached by id) and the customer are loaded only if used.
               .options(undefer(Instance.state), lazyload(Instance.definition), lazyload(Instance.customer))
               .with_for_update(of=HumanTask))
# The same, with the rows complete() brings up to date: the instance's ready tasks and its timers.
_READY_TASK_AND_ROWS = _READY_TASK.options(joinedload(Instance.ready_rows), joinedload(Instance.timer_rows))


def _row_id(value) -> bool:
    """An integer a primary key can hold; any other number names no row (and the database would refuse it)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID


def phone_digits(phone) -> str | None:
    """The digits of a phone number, so that 021-6321 0000 and 02163210000 find the same customer."""
    digits = "".join(ch for ch in str(phone or "") if ch.isdigit())
    return digits or None


def _find_task(wf, task_id: str):
    try:
        return wf.get_task_from_id(UUID(task_id))
    except TaskNotFoundException:
        return None


class Kefu:
    """The engine's public surface. ``webapp`` and the CLI talk to this object only."""

    def __init__(self, config: Config | None = None, database: Database | None = None,
                 clock: Clock | None = None):
        self.config = config or Config.from_env()
        self.db = database or Database(self.config.database_url)
        self.clock = clock_mod.use(clock or Clock.from_config(self.config))
        self.specs = SpecCache()
        self.serializer = make_serializer(self.specs)
        self._sla_tables: dict[str, SlaTable] = {}
        self._settings_read = False
        # Called with the earliest due time after a unit of work wrote timers (the in-process scheduler).
        self.timer_listeners = self.db.timer_listeners
        self.calendar = calendar_mod.use(calendar_mod.WorkingCalendar(revision=-1))

    def now(self) -> datetime:
        # The process-wide clock (the one SpiffWorkflow's timers and form checks read), never a private copy.
        if not self._settings_read and self.config.time_controls_allowed:
            self._settings_read = True  # a demo/test clock offset set by another process counts from the start
            try:
                self.sync()
            except SQLAlchemyError:  # no schema yet: nothing to read
                pass
        return clock_mod.now()

    # ------------------------------------------------------------------ setup
    def init(self) -> dict:
        """Create or upgrade the schema to the newest migration (engine/store/schema.py)."""
        from engine.store import schema as migrate
        return migrate.upgrade(self.db)

    def deploy(self, paths=None, actor: str = SYSTEM) -> list[dict]:
        """Deploy every diagram under ``paths``; all of them or none. Unchanged files keep their version."""
        files = diagram_files(paths or [self.config.processes_dir])
        parsed = []
        for f in files:
            try:
                data = f.read_bytes()
            except OSError as exc:
                raise DefinitionError(f"cannot read: {exc.strerror}", file=str(f)) from None
            parsed.append(parse_sla(data, f.name) if f.suffix == ".dmn" else parse_diagram(data, f.name))
            if f.suffix != ".dmn":
                designer.lint_or_refuse(data, f.name)  # designer: the stricter checks (timers on sample data)
        seen = {}
        for p in parsed:
            for pid in self._ids_of(p):
                if pid in seen:
                    raise DefinitionError(f"process or decision {pid!r} is defined in two files ({seen[pid]})",
                                          file=p.filename, element=pid)
                seen[pid] = p.filename
        results = []
        with self.db.unit_of_work() as s:
            for p in parsed:
                for pid in self._ids_of(p):
                    current = latest(s, pid)
                    if current is not None and current.sha256 == p.sha256:
                        results.append(self._definition_dict(current, status="unchanged"))
                        continue
                    older = version_with(s, pid, p.sha256) if current is not None else None
                    if older is not None:
                        # The file is an older version (the process owner has deployed newer ones since):
                        # the newest stays in force; a version is never deployed twice.
                        log.warning("%s is the same as %s v%s; v%s (deployed by %s) stays in force",
                                    p.filename, pid, older.version, current.version, current.deployed_by)
                        results.append({**self._definition_dict(current, status="kept"),
                                        "same_as": older.version, "file": p.filename})
                        continue
                    is_table = isinstance(p, SlaTable)
                    d = Definition(process_id=pid, version=next_version(s, pid),
                                   name=p.name if is_table else p.names.get(pid),
                                   filename=p.filename, sha256=p.sha256,
                                   xml=(p.xml if is_table else p.data).decode("utf-8"),
                                   deployed_at=self.now(), deployed_by=actor)
                    s.add(d)
                    s.flush()
                    if is_table:
                        self._sla_tables[p.sha256] = p
                    else:
                        self.specs.put(pid, p.sha256, p.specs[pid])
                        designer.record_change(s, d, current)  # designer: the change summary
                    results.append(self._definition_dict(d, status="deployed"))
        return results

    @staticmethod
    def _ids_of(parsed) -> list[str]:
        return [parsed.decision_id] if isinstance(parsed, SlaTable) else parsed.process_ids

    def definitions(self) -> list[dict]:
        with self.db.reading() as s:
            return [self._definition_dict(d) for d in
                    s.scalars(select(Definition).order_by(Definition.process_id, Definition.version))]

    def newest_version(self, process_id: str) -> int | None:
        """The highest deployed version of a process (None when it has none)."""
        with self.db.reading() as s:
            return s.scalar(select(func.max(Definition.version)).where(Definition.process_id == process_id))

    @staticmethod
    def _definition_dict(d: Definition, status=None) -> dict:
        out = {"process_id": d.process_id, "version": d.version, "name": d.name, "filename": d.filename,
               "sha256": d.sha256, "deployed_at": iso(d.deployed_at), "deployed_by": d.deployed_by}
        if status:
            out["status"] = status
        return out

    # ------------------------------------------------------------------ changing a procedure (designer)
    def deploy_xml(self, data, filename: str, actor: str, *, dry_run: bool = False) -> dict:
        """Check, test-run and deploy one diagram as a new immutable version (process_owner only)."""
        return designer.deploy_xml(self, data, filename, actor, dry_run=dry_run)

    def change_summary(self, old_xml, new_xml) -> dict:
        from engine.bpmn.changes import change_summary
        return change_summary(old_xml, new_xml)

    def definition_overview(self) -> list[dict]:
        """Every process with its versions (newest first) and how many instances run on each."""
        return designer.definition_overview(self)

    def definition_xml(self, process_id: str, version) -> bytes:
        return designer.definition_xml(self, process_id, version)

    def migration_check(self, instance_id, to_version, locale: str = "en") -> list[str]:
        """Why moving the instance to ``to_version`` of its process is unsafe (in English, or Chinese with
        ``locale="zh_CN"``); empty when it is safe."""
        from engine.bpmn import migration
        with self.db.reading() as s:
            inst = self._instance(s, instance_id, with_state=True)
            found = migration.reasons(self, s, inst, migration._target(s, inst, to_version))
            return [r.message(locale) for r in found]

    def migrate_instance(self, instance_id, to_version, actor: str) -> dict:
        """Move a running instance to a newer version when it is safe (process_owner only); audited."""
        from engine.bpmn import migration
        designer.check_owner(self, actor)
        with self.db.unit_of_work() as s:
            inst = self._instance(s, instance_id, with_state=True)
            result = migration.migrate(self, s, inst, migration._target(s, inst, to_version), actor)
            if not result["migrated"]:
                raise designer.MigrationRefused(inst.ticket_no, int(to_version), [str(r) for r in result["reasons"]],
                                                [r.zh for r in result["reasons"]])
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, **result}

    # ------------------------------------------------------------------ users
    def add_user(self, name: str, roles, display_name: str | None = None, groups=(),
                 password: str | None = None) -> dict:
        check_user_name(name)
        roles = check_roles(roles)
        digest = hash_password(password) if password else None  # slow on purpose: not while holding the lock
        with self.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                user = User(name=name, roles="", groups="", created_at=self.now(), active=True)
                s.add(user)
            merged = list(dict.fromkeys([*user.role_set, *roles]))
            user.roles = ",".join(r for r in ROLES if r in merged)
            if groups:
                user.groups = ",".join(dict.fromkeys([*user.group_set, *groups]))
            if display_name:
                user.display_name = display_name
            if digest:
                user.password_hash = digest
            s.flush()
            return self._user_dict(user)

    def users(self) -> list[dict]:
        with self.db.reading() as s:
            return [self._user_dict(u) for u in s.scalars(select(User).order_by(User.name))]

    def authenticate(self, name: str, password: str) -> dict | None:
        with self.db.reading() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None or not user.active or not check_password(user.password_hash, password):
                return None
            return self._user_dict(user)

    @staticmethod
    def _user_dict(u: User) -> dict:
        return Kefu._user_fields(u.name, u.display_name, u.roles, u.groups, u.active)

    @staticmethod
    def _user_fields(name, display_name, roles, groups, active) -> dict:
        return {"name": name, "display_name": display_name, "roles": sorted(name_set(roles)),
                "groups": sorted(name_set(groups)), "active": bool(active)}

    def _user(self, s, name: str) -> User:
        return self._active(s.scalar(select(User).where(User.name == name)) if name else None, name)

    @staticmethod
    def _active(user: User | None, name: str) -> User:
        """``user`` (the row found for ``name``) if it exists and is active; NotAllowed otherwise."""
        if user is None or not user.active:
            raise NotAllowed(f"unknown or inactive user {name!r}; add it with 'kefu users add'")
        return user

    def _user_roles(self, s, name: str):
        user = s.scalar(select(User).where(User.name == name))
        return user.role_set if user is not None and user.active else None

    # ------------------------------------------------------------------ customers (I1–I3)
    def create_customer(self, data: dict, actor: str = SYSTEM) -> dict:
        with self.db.unit_of_work() as s:
            c = self._new_customer(s, data)
            return self._customer_dict(c)

    def update_customer(self, customer_id: int, data: dict) -> dict:
        with self.db.unit_of_work() as s:
            c = s.get(Customer, customer_id) if _row_id(customer_id) else None
            if c is None:
                raise NotFound(f"no customer {customer_id}")
            self._apply_customer(c, data, partial=True)
            c.updated_at = self.now()
            return self._customer_dict(c)

    def get_customer(self, customer_id: int) -> dict:
        with self.db.reading() as s:
            c = s.get(Customer, customer_id) if _row_id(customer_id) else None
            if c is None:
                raise NotFound(f"no customer {customer_id}")
            return self._customer_dict(c)

    def find_customers(self, query: str, limit: int = 20) -> list[dict]:
        q = (query or "").strip()
        if not q:
            return []
        like = f"%{q.replace('%', '').replace('_', '')}%"
        digits = phone_digits(q)
        matches = [Customer.name.like(like), Customer.phone.like(like)]
        if digits and len(digits) >= 3:
            matches.append(Customer.phone_digits.like(f"%{digits}%"))
        with self.db.reading() as s:
            rows = s.scalars(select(Customer).where(or_(*matches))
                             .order_by(Customer.vip.desc(), Customer.name).limit(limit))
            return [self._customer_dict(c) for c in rows]

    def _new_customer(self, s, data: dict) -> Customer:
        c = Customer(created_at=self.now(), updated_at=self.now(), vip=False)
        self._apply_customer(c, data, partial=False)
        s.add(c)
        s.flush()
        return c

    @staticmethod
    def _apply_customer(c: Customer, data: dict, partial: bool) -> None:
        if not isinstance(data, dict):
            raise InvalidInput("customer data must be a JSON object")
        unknown = [k for k in data if k not in CUSTOMER_FIELDS]
        if unknown:
            raise InvalidInput(f"unknown customer field(s): {', '.join(map(str, unknown))}",
                               fields=unknown)
        if not partial or "name" in data:
            name = data.get("name")
            if not isinstance(name, str) or not name.strip():
                raise InvalidInput("a customer needs a name", fields=["name"])
        for key in CUSTOMER_FIELDS:
            if key not in data:
                continue
            value = data[key]
            if key == "vip":
                if not isinstance(value, bool):
                    raise InvalidInput("vip must be true or false", fields=["vip"])
            elif value is not None:
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise InvalidInput(f"customer {key} must be text", fields=[key])
                value = str(value).strip()[:2000] or None
            setattr(c, key, value)
        c.phone_digits = phone_digits(c.phone)

    @staticmethod
    def _customer_dict(c: Customer) -> dict:
        return {"id": c.id, "name": c.name, "phone": c.phone, "email": c.email, "company": c.company,
                "address": c.address, "region": c.region, "needs": c.needs, "vip": bool(c.vip),
                "special_note": c.special_note, "created_at": iso(c.created_at),
                "updated_at": iso(c.updated_at)}

    # ------------------------------------------------------------------ instances
    def start(self, kind: str, actor: str, data: dict | None = None, customer_id: int | None = None) -> dict:
        """Open a ticket. With ``data`` the first task (the intake form) is completed at once."""
        with self.db.unit_of_work() as s:
            user = self._user(s, actor)
            if not user.role_set & OPEN_ROLES:
                raise NotAllowed(f"user {actor} may not open tickets (needs role agent, supervisor or integration)")
            if kind == ESCALATION:
                raise InvalidInput("an escalation is opened from the task it escalates ('escalate'), not directly")
            customer = None
            if customer_id is not None:
                customer = s.get(Customer, customer_id) if _row_id(customer_id) else None
                if customer is None:
                    raise NotFound(f"no customer {customer_id}")
            inst, ready = self._open(s, kind, user, customer, data)
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "kind": kind,
                    "status": inst.status, "customer_id": inst.customer_id,
                    "tasks": [self._task_brief(t) for t in ready]}

    def _open(self, s, kind: str, user: User, customer: Customer | None, data: dict | None,
              initial: dict | None = None, parent: Instance | None = None):
        """Create an instance of the latest version of ``kind`` and run it to its first wait."""
        actor = user.name
        definition = latest(s, kind)
        if definition is None:
            raise NotFound(f"no deployed process {kind!r}; deploy it with 'kefu deploy'")
        self._sync_calendar(s)
        spec, subs = self.specs.get(definition)
        wf = BpmnWorkflow(spec, subs, script_engine=scripting.make_script_engine())
        now = self.now()
        ticket_no = self._next_ticket_no(s, kind, now)
        sla = self._sla(s) if kind != ESCALATION else None
        if sla is not None:
            sla_def, table = sla
            initial = {**(initial or {}), "sla_targets": copy.deepcopy(table.targets),
                       "sla_version": sla_def.version}
        wf.task_tree.data.update({**(initial or {}), "ticket_no": ticket_no, "kind": kind, "started_by": actor,
                                  "customer_id": customer.id if customer else None,
                                  "vip": bool(customer.vip) if customer else False})
        inst = Instance(ticket_no=ticket_no, kind=kind, definition=definition, customer=customer,
                        status="active", vip=bool(customer.vip) if customer else False,
                        created_by=actor, created_at=now, updated_at=now, state="", audit_count=0,
                        audit_head="", parent_id=parent.id if parent is not None else None)
        s.add(inst)
        s.flush()
        events = [audit.PendingEvent("instance_started", actor, now, data={
            "definition": definition.process_id, "version": definition.version,
            "sha256": definition.sha256, "customer_id": inst.customer_id,
            **({"sla": {"decision": sla[0].process_id, "version": sla[0].version, "sha256": sla[0].sha256,
                        "targets": sla[1].targets}} if sla is not None else {}),
            "calendar": self.calendar.describe(),
            **({"parent": parent.ticket_no} if parent is not None else {})})]
        before = self._states(wf)
        incident = self._run(wf)
        if incident:
            raise IncidentError(f"process {kind!r} failed before its first task: {incident['message']}",
                                incident=incident)
        first = next(iter(wf.get_tasks(state=TaskState.READY, manual=True)), None)
        if data is not None:
            if first is None:
                raise DefinitionError(f"process {kind!r} has no first user task to take the data")
            if customer is not None:
                data = {**{k: v for k, v in self._customer_prefill(first, customer).items()
                           if k not in data}, **data}
            events.extend(self._step_events(wf, before, actor, now))
            before = self._states(wf)
            incident = self._complete_in(s, inst, wf, first, user, data, events)
        # An integration user (no lane) leaves the intake task in the agents' queue.
        claimer = None if data is not None or parent is not None or not user.role_set & START_ROLES else actor
        ready = self._save(s, inst, wf, events, actor, before, incident, claimer=claimer)
        return inst, ready

    def _customer_prefill(self, task, customer: Customer) -> dict:
        fields = {f.id for f in self._fields(task)}
        mapping = {"customer_name": customer.name, "contact_phone": customer.phone, "region": customer.region}
        return {k: v for k, v in mapping.items() if k in fields and v}

    def _next_ticket_no(self, s, kind: str, now: datetime) -> str:
        prefix = TICKET_PREFIX.get(kind, kind[:2].upper())
        key = f"{prefix}{now.astimezone(SHANGHAI):%Y%m%d}"
        return f"{key}-{next_counter(s, key):04d}"

    def _sla(self, s):
        """The SLA table in force (latest deployed version) and its definition row, or None."""
        d = latest(s, SLA_DECISION)
        if d is None:
            return None
        table = self._sla_tables.get(d.sha256)
        if table is None:
            table = self._sla_tables[d.sha256] = parse_sla(d.xml.encode("utf-8"), d.filename)
        return d, table

    def _sync_calendar(self, s, settings: dict | None = None) -> None:
        """Pick up what another process changed: the calendar overrides and the demo/test clock offset
        (once per unit of work). ``settings``: those two values read already by the caller's query."""
        if s.info.get("kefu_synced"):
            return
        s.info["kefu_synced"] = self._settings_read = True
        if settings is None:
            settings = {r.key: r.value for r in s.scalars(select(Setting).where(
                Setting.key.in_((CALENDAR_REVISION, CLOCK_OFFSET))))}
        settings = {k: v for k, v in settings.items() if v is not None}
        rev = int(settings.get(CALENDAR_REVISION, 0))
        if rev != self.calendar.revision:
            overrides = {r.day: r.working for r in s.scalars(select(CalendarDay))}
            self.calendar = calendar_mod.use(calendar_mod.WorkingCalendar(overrides, rev))
        else:
            calendar_mod.use(self.calendar)
        if self.config.time_controls_allowed:
            self.clock.offset = timedelta(seconds=float(settings.get(CLOCK_OFFSET, 0)))

    def sync(self) -> None:
        """Refresh the shared settings (clock offset, calendar) now; the scheduler calls it before a sweep."""
        with self.db.reading() as s:
            self._sync_calendar(s)

    def _load(self, s, inst: Instance) -> BpmnWorkflow:
        self._sync_calendar(s)
        self._spec_of(inst)
        return self.serializer.deserialize_json(inst.state)

    def _spec_of(self, inst: Instance) -> tuple:
        """The parsed spec of the instance's definition version, found by its id: the definition row is loaded
        only when this process has not parsed that version yet."""
        return self.specs.get_by_id(inst.definition_id, lambda: inst.definition)

    def _instance(self, s, ref, with_state=False) -> Instance:
        options = _WITH_STATE if with_state else ()
        inst = None
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
            if 0 < int(ref) <= MAX_ROW_ID:  # beyond it no row exists, and the database refuses the number
                inst = s.get(Instance, int(ref), options=options)
        if inst is None and isinstance(ref, str):
            inst = s.scalar(select(Instance).where(Instance.ticket_no == ref).options(*options))
        if inst is None:
            raise NotFound(f"no instance {ref!r}")
        return inst

    # ------------------------------------------------------------------ tasks
    def tasks(self, actor: str | None = None, instance=None, role: str | None = None) -> list[dict]:
        """Ready human tasks; with ``actor`` only those the user may work (their roles, lanes, claims)."""
        with self.db.reading() as s:
            q = select(HumanTask).where(HumanTask.state == "ready")
            known = {}
            if instance is not None:
                inst = self._instance(s, instance)
                known[inst.id] = inst
                q = q.where(HumanTask.instance_id == inst.id)
            if role:
                q = q.where(HumanTask.role == role)
            user = None
            if actor is not None:
                user = self._user(s, actor)
                q = q.where(HumanTask.role.in_(user.role_set))
                q = q.where(or_(HumanTask.assignee.is_(None), HumanTask.assignee == actor))
            rows = [r for r in s.scalars(q.order_by(HumanTask.due_at.is_(None), HumanTask.due_at,
                                                    HumanTask.created_at))
                    if user is None or self._group_ok(user, r)]
            missing = {r.instance_id for r in rows} - set(known)
            instances = {**known, **({i.id: i for i in s.scalars(select(Instance).where(
                Instance.id.in_(missing)))} if missing else {})}
            return [self._task_dict(r, instances[r.instance_id]) for r in rows]

    def task(self, task_id: str, actor: str | None = None) -> dict:
        with self.db.reading() as s:
            row = self._task_row(s, task_id)
            inst = s.get(Instance, row.instance_id)
            if actor is not None:
                user = self._user(s, actor)
                if not self._may_see(user, row):
                    raise NotAllowed(f"user {actor} may not see task {task_id}")
            return self._task_dict(row, inst)

    def claim(self, task_id: str, actor: str) -> dict:
        with self.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            self._authorize(user, row)
            if row.assignee == actor:
                return self._task_dict(row, inst)
            row.assignee = actor
            self._touch(s, inst, [audit.PendingEvent("task_claimed", actor, self.now(), task_id=row.id,
                                                     bpmn_id=row.bpmn_id, task_name=row.name)])
            return self._task_dict(row, inst)

    def unclaim(self, task_id: str, actor: str) -> dict:
        with self.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            if row.assignee != actor and "supervisor" not in user.role_set:
                raise NotAllowed(f"only {row.assignee or 'the assignee'} or a supervisor may release this task")
            if row.assignee is not None:
                previous, row.assignee = row.assignee, None
                self._touch(s, inst, [audit.PendingEvent("task_unclaimed", actor, self.now(), task_id=row.id,
                                                         bpmn_id=row.bpmn_id, task_name=row.name,
                                                         data={"previous_assignee": previous})])
            return self._task_dict(row, inst)

    def escalate(self, task_id: str, actor: str, reason: str) -> dict:
        """Escalate a transferred task whose department stalls (000 §五.1): the supervisor gets an escalation
        ticket naming the task and the reason; the task itself stays where it is."""
        reason = (reason or "").strip() if isinstance(reason, str) or reason is None else None
        if not reason:
            raise FormValidationError({"reason": "请填写升级原因"}, "escalate")
        if len(reason) > 2000:
            raise FormValidationError({"reason": "升级原因不能超过 2000 字"}, "escalate")
        with self.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            if not user.role_set & START_ROLES:
                raise NotAllowed(f"user {actor} may not escalate (needs role agent or supervisor)")
            if row.role not in TRANSFERRED_ROLES or inst.kind == ESCALATION:
                raise InvalidInput(f"task {row.name} is not a transferred task; only tasks of a department, "
                                   "technician or task force can be escalated")
            open_escalation = s.scalar(select(Instance).where(
                Instance.parent_id == inst.id, Instance.kind == ESCALATION, Instance.status != "completed",
                Instance.parent_task_id == row.id))
            if open_escalation is not None:
                raise Conflict(f"task {row.name} is already escalated ({open_escalation.ticket_no}); "
                               "the supervisor has not decided yet")
            child, ready = self._open(s, ESCALATION, user, inst.customer, None, initial={
                "parent_ticket_no": inst.ticket_no, "parent_instance_id": inst.id,
                "escalated_task_id": row.id, "escalated_task_name": row.name, "escalated_role": row.role,
                "escalated_assignee": row.assignee, "escalated_group": row.candidate_group,
                "escalation_reason": reason}, parent=inst)
            child.parent_task_id = row.id  # one open escalation per task
            child.summary = f"{inst.ticket_no} {row.name}: {reason}"[:200]
            child.severity = inst.severity
            self._touch(s, inst, [audit.PendingEvent(
                "task_escalated", actor, self.now(), task_id=row.id, bpmn_id=row.bpmn_id, task_name=row.name,
                data={"reason": reason, "escalation": child.ticket_no, "role": row.role,
                      "assignee": row.assignee, "candidate_group": row.candidate_group})])
            return {"instance_id": child.id, "ticket_no": child.ticket_no, "kind": ESCALATION,
                    "parent": inst.ticket_no, "tasks": [self._task_brief(t) for t in ready]}

    def complete(self, task_id: str, actor: str, data: dict | None) -> dict:
        """Validate ``data`` against the task's form, complete the task and run the engine to the next wait."""
        with self.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor, with_rows=True)
            self._authorize(user, row)
            wf = self._load(s, inst)
            task = _find_task(wf, row.id)
            if task is None or task.state != TaskState.READY:
                raise Conflict(f"task {row.name} ({row.id}) is not ready in the workflow; reload and try again")
            events: list[audit.PendingEvent] = []
            before = self._states(wf)
            incident = self._complete_in(s, inst, wf, task, user, data or {}, events)
            ready = self._save(s, inst, wf, events, actor, before, incident)
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "status": inst.status,
                    "incident": inst.incident, "tasks": [self._task_brief(t) for t in ready],
                    "task": self._task_dict(row, inst)}  # the completed task (the JSON API answers with it)

    def _complete_in(self, s, inst, wf, task, user, data, events):
        """Validate and complete one ready task inside the current unit of work; returns an incident or None."""
        fields = self._fields(task)
        clean = FormValidator(fields, lambda n: self._user_roles(s, n)).validate(
            data, task_name=task.task_spec.bpmn_name or task.task_spec.bpmn_id)
        now = self.now()
        task.data.update(copy.deepcopy(clean))
        self._link_customer(s, inst, wf, clean)
        task.run()
        events.append(audit.PendingEvent("task_completed", user.name, now, task_id=str(task.id),
                                         bpmn_id=task.task_spec.bpmn_id, task_name=task.task_spec.bpmn_name,
                                         rules=rule_ids(task.task_spec.documentation), data=clean))
        for key in ("severity", "nature"):
            if clean.get(key):
                setattr(inst, key, clean[key])
        for key in SUMMARY_FIELDS:
            if clean.get(key):
                inst.summary = str(clean[key])[:200]
                break
        return self._run(wf)

    def _link_customer(self, s, inst: Instance, wf, clean: dict) -> None:
        """I2: the first form naming the customer links the ticket to a profile, created if new."""
        if inst.customer_id is not None or not clean.get("customer_name"):
            return
        phone = clean.get("contact_phone")
        digits = phone_digits(phone)
        customer = s.scalar(select(Customer).where(Customer.phone_digits == digits)
                            .order_by(Customer.id).limit(1)) if digits else None
        if customer is None:
            customer = self._new_customer(s, {"name": clean["customer_name"], "phone": phone,
                                              "region": clean.get("region")})
        inst.customer = customer
        inst.vip = bool(customer.vip)
        wf.task_tree.data["customer_id"] = customer.id
        for t in wf.get_tasks(state=TaskState.READY):
            t.data["customer_id"] = customer.id
            t.data["vip"] = bool(customer.vip)

    # ------------------------------------------------------------------ timers
    def timers(self, instance=None) -> list[dict]:
        with self.db.reading() as s:
            q = select(Timer).order_by(Timer.due_at)
            if instance is not None:
                q = q.where(Timer.instance_id == self._instance(s, instance).id)
            return [self._timer_dict(t) for t in s.scalars(q)]

    def fire_due_timers(self, now: datetime | None = None, limit: int | None = None) -> list[dict]:
        """Fire every timer whose due time has passed (SpiffWorkflow fires strictly after it).

        Each batch claims the instances of due timers with ``FOR UPDATE SKIP LOCKED`` (on SQLite the whole
        database is the lock: ``BEGIN IMMEDIATE``), so two schedulers never fire the same timer; each
        instance is loaded, ``refresh_timers()`` + engine steps run, and it is saved exactly as a user action
        is; a batch commits once. If anything in a batch fails, the batch is rolled back and redone one
        instance per transaction, so one broken instance does not hold up the others. A timer whose task was
        completed meanwhile has no row any more: nothing happens.
        """
        now = now or self.now()
        fired, failed = [], set()
        nxt = self.next_timer_due()
        if nxt is None or nxt >= now:
            return fired  # nothing due: no write transaction (SQLite's write lock) for an idle sweep
        while limit is None or len(fired) < limit:
            ids = []
            try:
                with self.db.unit_of_work() as s:
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
                        with self.db.unit_of_work() as s:
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
        self._sync_calendar(s)
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
            for inst in s.scalars(select(Instance).where(Instance.id.in_(ids)).options(*_WITH_STATE)):
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
        inst = pre.get(("instance", instance_id)) or s.get(Instance, instance_id, options=_WITH_STATE)
        if inst is None or inst.status == "completed":
            return []
        due = ([t for t in timers if t.due_at < now] if timers is not None else
               list(s.scalars(select(Timer).where(Timer.instance_id == instance_id, Timer.due_at < now))))
        if not due:
            return []  # fired or completed meanwhile by someone else
        wf = self._load(s, inst)
        events: list[audit.PendingEvent] = []
        before = self._states(wf)
        incident = self._run(wf)
        self._save(s, inst, wf, events, SYSTEM, before, incident, flush=flush)
        fired_ids = {str(e.task_id) for e in events if e.type == "timer_fired"}
        return [{"instance_id": inst.id, "ticket_no": inst.ticket_no, "timer": t.bpmn_id,
                 "name": t.name, "due_at": iso(t.due_at), "fired_at": iso(now)} for t in due if t.id in fired_ids]

    def next_timer_due(self) -> datetime | None:
        """The earliest due time in the timer table (the scheduler wakes then)."""
        with self.db.reading() as s:
            return s.scalar(select(func.min(Timer.due_at)))

    # ------------------------------------------------------------------ demo and test time
    def clock_status(self) -> dict:
        self.sync()
        return {"now": iso(self.now()), "env": self.config.env, "pinned": self.clock.pinned,
                "offset_seconds": self.clock.offset.total_seconds(),
                "controls": self.config.time_controls_allowed}

    def advance_clock(self, delta: timedelta, actor: str = SYSTEM) -> dict:
        """Move the service's clock (every process sharing the database) forward; demo and test only."""
        if not self.config.time_controls_allowed:
            raise ClockError(f"the clock cannot be moved when KEFU_ENV={self.config.env!r}; "
                             "time controls exist only in 'demo' and 'test'")
        if delta < timedelta(0):
            raise InvalidInput("the clock only moves forward (timers already fired cannot be undone)")
        with self.db.unit_of_work() as s:
            row = s.get(Setting, CLOCK_OFFSET, with_for_update=True)
            if row is None:
                row = Setting(key=CLOCK_OFFSET, value="0")
                s.add(row)
            row.value = repr(float(row.value) + delta.total_seconds())
            self.clock.offset = timedelta(seconds=float(row.value))
        log.info("%s advanced the clock by %s to %s", actor, delta, iso(self.now()))
        return self.clock_status()

    def sla_table(self) -> dict | None:
        """The SLA targets in force for new tickets (the latest deployed ``sla.dmn``), case by case."""
        with self.db.reading() as s:
            found = self._sla(s)
            if found is None:
                return None
            d, table = found
            return {"version": d.version, "sha256": d.sha256, "deployed_at": iso(d.deployed_at),
                    "deployed_by": d.deployed_by, "name": table.name,
                    "cases": [{"case": case, "label": (table.labels.get(case) or {}).get("zh"),
                               "label_en": (table.labels.get(case) or {}).get("en"), **targets}
                              for case, targets in table.targets.items()]}

    # ------------------------------------------------------------------ working-day calendar (T2)
    def calendar_days(self, year: int | None = None) -> list[dict]:
        with self.db.reading() as s:
            q = select(CalendarDay).order_by(CalendarDay.day)
            if year is not None:
                q = q.where(CalendarDay.day >= date(year, 1, 1), CalendarDay.day <= date(year, 12, 31))
            return [{"day": r.day.isoformat(), "working": r.working, "note": r.note, "updated_by": r.updated_by,
                     "updated_at": iso(r.updated_at)} for r in s.scalars(q)]

    def calendar_status(self, years=None) -> dict:
        self.sync()
        this = self.now().astimezone(SHANGHAI).year
        years = list(years or range(this - 1, this + 2))
        return {"library": calendar_mod.LIBRARY, "library_years": list(calendar_mod.LIBRARY_YEARS),
                "revision": self.calendar.revision, "years": self.calendar.status(years)}

    def set_calendar_day(self, day, working: bool | None, actor: str, note: str | None = None) -> dict:
        """Override one day (``working`` True/False), or drop the override (``working`` None)."""
        if isinstance(day, str):
            try:
                day = date.fromisoformat(day.strip())
            except ValueError:
                raise InvalidInput(f"not a date (YYYY-MM-DD): {day!r}") from None
        if not 2000 <= day.year <= 2100:
            raise InvalidInput(f"a day between 2000 and 2100, not {day}")
        if note is not None and len(note) > 200:
            raise InvalidInput("the note is longer than 200 characters")
        with self.db.unit_of_work() as s:
            user = self._user(s, actor)
            if not user.role_set & CALENDAR_ROLES:
                raise NotAllowed(f"user {actor} may not change the working-day calendar (needs process_owner)")
            row = s.get(CalendarDay, day)
            if working is None:
                if row is None:
                    raise NotFound(f"no override for {day}")
                s.delete(row)
            elif row is None:
                s.add(CalendarDay(day=day, working=working, note=note, updated_by=actor, updated_at=self.now()))
            else:
                row.working, row.note, row.updated_by, row.updated_at = working, note, actor, self.now()
            rev = s.get(Setting, CALENDAR_REVISION, with_for_update=True)
            if rev is None:
                rev = Setting(key=CALENDAR_REVISION, value="0")
                s.add(rev)
            rev.value = str(int(rev.value) + 1)
        self.sync()
        return {"day": day.isoformat(), "working": self.calendar.is_working_day(day),
                "source": self.calendar.source(day), "note": note if working is not None else None}

    def add_working_days(self, start, days: int) -> dict:
        """Where ``days`` working days after ``start`` fall, and what decided it (for people checking)."""
        self.sync()
        try:
            when = self.calendar.add_working_days(start, int(days))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(str(exc)) from None
        return {"start": start if isinstance(start, str) else iso(start), "working_days": int(days),
                "due_at": iso(when), "calendar": self.calendar.describe(start, when)}

    # ------------------------------------------------------------------ incidents
    def retry_incident(self, instance_ref, actor: str, data: dict | None = None) -> dict:
        """Reset the failed step, apply ``data`` fixes to its task data and run the engine again."""
        with self.db.unit_of_work() as s:
            inst = self._instance(s, instance_ref, with_state=True)
            user = self._user(s, actor)
            if not user.role_set & INCIDENT_ROLES:
                raise NotAllowed("only a supervisor or process owner may retry an incident")
            if not inst.incident:
                raise Conflict(f"instance {inst.ticket_no} has no incident")
            if data is not None and (not isinstance(data, dict) or any(
                    not isinstance(k, str) or k.startswith("_") for k in data)):
                raise InvalidInput("the fix must be a JSON object whose keys do not start with '_'")
            fix = {k: scripting._plain(v, k) for k, v in (data or {}).items()}
            wf = self._load(s, inst)
            failed = wf.get_tasks(state=TaskState.ERROR)
            if not failed:
                raise Conflict("the workflow has no failed step to retry")
            events = [audit.PendingEvent("incident_retried", actor, self.now(), task_id=str(failed[0].id),
                                         bpmn_id=failed[0].task_spec.bpmn_id,
                                         task_name=failed[0].task_spec.bpmn_name, data={"fix": fix})]
            before = self._states(wf)
            for task in failed:
                wf.reset_from_task_id(task.id)
                again = wf.get_task_from_id(task.id)
                again.data.update(copy.deepcopy(fix))
            inst.incident = None
            incident = self._run(wf)
            self._save(s, inst, wf, events, actor, before, incident)
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "status": inst.status,
                    "incident": inst.incident}

    # ------------------------------------------------------------------ reading an instance
    def show(self, instance_ref) -> dict:
        with self.db.reading() as s:
            inst = self._instance(s, instance_ref, with_state=True)
            d = inst.definition
            rows = list(s.scalars(select(HumanTask).where(HumanTask.instance_id == inst.id)
                                  .order_by(HumanTask.created_at)))
            wf = self._load(s, inst)
            data = {k: v for k, v in (wf.last_task.data if wf.last_task else wf.data).items()}
            return {
                "instance_id": inst.id, "ticket_no": inst.ticket_no, "kind": inst.kind, "status": inst.status,
                "definition": {"process_id": d.process_id, "version": d.version, "sha256": d.sha256},
                "customer": self._customer_dict(inst.customer) if inst.customer else None,
                "severity": inst.severity, "nature": inst.nature, "vip": inst.vip, "summary": inst.summary,
                "created_by": inst.created_by, "created_at": iso(inst.created_at),
                "updated_at": iso(inst.updated_at), "completed_at": iso(inst.completed_at),
                "incident": inst.incident, "data": data,
                "deadlines": self._deadlines(wf),
                "sla": {"version": data.get("sla_version"), "case": data.get("sla_case"),
                        "targets": data.get("sla_targets")} if data.get("sla_version") else None,
                "parent_id": inst.parent_id,
                "tasks": [self._task_brief(r) for r in rows],
                "timers": [self._timer_dict(t) for t in s.scalars(
                    select(Timer).where(Timer.instance_id == inst.id).order_by(Timer.due_at))],
                "events": [{"seq": e.seq, "type": e.type, "actor": e.actor, "at": iso(e.at),
                            "task_id": e.task_id, "bpmn_id": e.bpmn_id, "task_name": e.task_name,
                            "rules": e.rules.split(",") if e.rules else [], "data": e.data, "hash": e.hash}
                           for e in audit.events_of(s, inst.id)],
            }

    def instances(self, status: str | None = None, kind: str | None = None, limit: int = 50,
                  customer_id: int | None = None) -> list[dict]:
        """Most recent instances first, as summary rows."""
        with self.db.reading() as s:
            q = select(Instance).order_by(Instance.id.desc()).limit(max(1, min(int(limit), 500)))
            if status:
                q = q.where(Instance.status == status)
            if kind:
                q = q.where(Instance.kind == kind)
            if customer_id is not None:
                q = q.where(Instance.customer_id == customer_id)
            return [{"instance_id": i.id, "ticket_no": i.ticket_no, "kind": i.kind, "status": i.status,
                     "severity": i.severity, "vip": i.vip, "summary": i.summary,
                     "customer": i.customer.name if i.customer else None, "created_at": iso(i.created_at),
                     "version": i.definition.version} for i in s.scalars(q)]

    def verify_audit(self, instance_ref=None, anchor: tuple[int, str] | None = None) -> list[dict]:
        """Audit (issue 6): every problem in the ledger and the instances' chains, each naming the first
        changed, deleted or reordered event (see ``engine.store.chain``)."""
        with self.db.reading() as s:
            instance_id = self._instance(s, instance_ref).id if instance_ref is not None else None
            return audit.verify(s, instance_id, anchor=anchor)

    # ------------------------------------------------------------------ audit (issue 6): trace, search, replay
    def audit_trace(self, instance_ref) -> dict:
        """Everything that happened to one ticket, for auditors (``engine.records.trace``)."""
        from engine.records import trace
        shown = self.show(instance_ref)
        with self.db.reading() as s:
            inst = self._instance(s, shown["instance_id"])
            spec, subs = self.specs.get(inst.definition)
            d = inst.definition
            definition = {"process_id": d.process_id, "version": d.version, "sha256": d.sha256,
                          "filename": d.filename, "deployed_at": iso(d.deployed_at), "deployed_by": d.deployed_by}
        return trace.build(shown, trace.element_rules(spec, subs), definition, self.now())

    def audit_search(self, args: dict) -> dict:
        """Filtered, newest-first, keyset-paginated instances (``engine.records.search``)."""
        from engine.records import search
        f = search.parse(args or {})
        with self.db.reading() as s:
            page = search.search(s, f, self.now())
        for row in page["rows"]:
            for key in ("created_at", "completed_at", "response_due", "finish_due"):
                row[key] = iso(row[key])
        return {**page, "filters": f.params(), "limit": f.limit}

    def audit_export(self, args: dict, most: int = 10_000) -> dict:
        """Up to ``most`` rows of a search result in one dictionary, keyset pages walked; ``next`` (None when
        the result is complete) continues after them. An export of the whole result uses ``audit_rows``."""
        from engine.records.search import MAX_PAGE
        rows, args = [], {**(args or {}), "limit": None}
        while True:
            args["limit"] = min(MAX_PAGE, most - len(rows))
            page = self.audit_search(args)
            rows += page["rows"]
            if page["next"] is None or len(rows) >= most:
                return {**page, "rows": rows, "limit": most}
            args["after"] = page["next"]

    def audit_rows(self, args: dict, batch: int | None = None) -> tuple[dict, Iterator[dict]]:
        """Every row of a search result, for an export of any size: ``(filters, rows)``. The filters are
        checked at once (a bad one raises InvalidInput before anything is written); the rows follow lazily,
        newest first, read in keyset batches of ``batch`` rows, each batch a short read of its own, so an
        export holds one batch in memory and no transaction stays open while the caller writes."""
        from engine.records import search
        args = {k: v for k, v in (args or {}).items() if k != "limit"}  # a page size means nothing here
        f = search.parse({**args, "limit": batch or search.MAX_PAGE})
        return f.params(), self._audit_batches({**args, "limit": f.limit})

    def _audit_batches(self, args: dict) -> Iterator[dict]:
        while True:
            page = self.audit_search(args)
            yield from page["rows"]
            if page["next"] is None:
                return
            args = {**args, "after": page["next"]}

    def audit_replay(self, instance_ref=None) -> list[dict]:
        """Rebuild one instance (or all) from its recorded events and compare (``engine.records.replay``)."""
        from engine.records import replay
        return replay.replay_all(self) if instance_ref is None else [replay.replay(self, instance_ref)]

    READ_ONLY_ROLES = frozenset({"auditor"})

    def check_may_change(self, actor: str) -> None:
        """Refuse a user who may only read (the auditor role) before any change is attempted."""
        with self.db.reading() as s:
            user = s.scalar(select(User).where(User.name == actor))
            if user is None:
                return  # the command's own check decides about unknown users, as before
            if not user.role_set - self.READ_ONLY_ROLES:
                raise NotAllowed(f"user {actor} may only read (role {', '.join(sorted(user.role_set))}); "
                                 "nothing was changed")

    def audit_head(self) -> dict | None:
        """The newest ledger entry: record it outside the database to anchor later verifications."""
        with self.db.reading() as s:
            head = audit.ledger_head(s)
        return head and {**head, "at": iso(head["at"])}

    # ------------------------------------------------------------------ engine internals
    def _run(self, wf: BpmnWorkflow) -> dict | None:
        """Run the engine until nothing is left to do now; a failing step becomes an incident."""
        try:
            for _ in range(MAX_ENGINE_ROUNDS):
                wf.refresh_timers()
                wf.do_engine_steps()
                if not any(True for _t in wf.get_tasks_iterator(state=TaskState.READY, manual=False)):
                    break
        except SpiffWorkflowException as exc:
            return self._incident(wf, exc)
        except scripting.ScriptRejected as exc:  # pragma: no cover - wrapped by SpiffWorkflow normally
            return self._incident(wf, exc)
        return None

    def _incident(self, wf, exc) -> dict:
        task = getattr(exc, "task", None)
        if task is None:
            failed = wf.get_tasks(state=TaskState.ERROR)
            task = failed[0] if failed else None
        spec = task.task_spec if task is not None else getattr(exc, "task_spec", None)
        cause = getattr(exc, "__cause__", None) or getattr(exc, "exception", None) \
            or getattr(exc, "__context__", None)  # SpiffWorkflow raises an expression's error inside its except
        message = str(exc).split("\n")[0]
        reason = str(cause).split("\n")[0] if cause is not None else ""
        if reason and reason not in message:  # a condition's or timer's "Error evaluating expression" says no more
            message = f"{message.rstrip(' .')}: {type(cause).__name__}: {reason}"
        return {"task_id": str(task.id) if task is not None else None,
                "bpmn_id": getattr(spec, "bpmn_id", None), "name": getattr(spec, "bpmn_name", None),
                "error_type": type(cause).__name__ if cause else type(exc).__name__,
                "message": message[:500],
                "line_number": getattr(exc, "line_number", None) or None,
                "error_line": getattr(exc, "error_line", None) or None,
                "at": iso(self.now())}

    @staticmethod
    def _states(wf) -> dict:
        return {t.id: t.state for t in wf.get_tasks_iterator()}

    def _fields(self, task):
        return build_fields(task.task_spec.extensions.get("form"))

    def _save(self, s, inst: Instance, wf, events, actor, before, incident, claimer: str | None = None,
              flush: bool = True):
        with s.no_autoflush:  # one flush at the end, not one per projection query
            ready = self._project(s, inst, wf, events, actor, before, incident, claimer)
        if flush:
            self._flush(s, inst)
        return ready

    def _project(self, s, inst: Instance, wf, events, actor, before, incident, claimer):
        now = self.now()
        if before is not None:
            events.extend(self._step_events(wf, before, actor, now))
        if incident:
            inst.incident = incident
            events.append(audit.PendingEvent("incident_raised", SYSTEM, now, task_id=incident["task_id"],
                                             bpmn_id=incident["bpmn_id"], task_name=incident["name"],
                                             data=incident))
        inst.status = "incident" if inst.incident else ("completed" if wf.is_completed() else "active")
        if inst.status == "completed" and inst.completed_at is None:
            inst.completed_at = now
            events.append(audit.PendingEvent("instance_completed", SYSTEM, now))
        created, ready = self._sync_tasks(s, inst, wf, now, claimer, events)
        events.extend(created)
        events.extend(self._sync_timers(s, inst, wf, now))
        deadlines = self._deadlines(wf)
        inst.response_due = _aware(deadlines.get("response", {}).get("due_at"))
        inst.finish_due = _aware(deadlines.get("finish", {}).get("due_at"))
        inst.clock_paused_at = _aware(deadlines.get("finish", {}).get("paused_at"))
        inst.state = self.serializer.serialize_json(wf)
        inst.updated_at = now
        audit.append(s, inst, events)
        return ready

    def _touch(self, s, inst: Instance, events) -> None:
        inst.updated_at = self.now()
        audit.append(s, inst, events)
        self._flush(s, inst)

    @staticmethod
    def _flush(s, inst: Instance) -> None:
        """Write what the unit of work changed so far: the mirrored rows, then the instance (one version-checked
        UPDATE when it is the only changed object, else the ORM's flush of everything)."""
        ticket = inst.ticket_no
        try:
            writes.write(s)
            if not writes.save_instance(s, inst):
                s.flush()
        except StaleDataError:
            raise Conflict(f"instance {ticket} was changed by someone else meanwhile; nothing was saved, "
                           "reload and try again") from None

    def _step_events(self, wf, before: dict, actor: str, now: datetime) -> list[audit.PendingEvent]:
        """Audit events for what the engine did on its own: scripts, gateways, timers, ends."""
        out = []
        for t in wf.get_tasks_iterator():
            was = before.get(t.id)
            spec = t.task_spec
            if not getattr(spec, "bpmn_id", None) or t.state == was:
                continue
            common = dict(task_id=str(t.id), bpmn_id=spec.bpmn_id, task_name=spec.bpmn_name,
                          rules=rule_ids(spec.documentation))
            if t.state == TaskState.COMPLETED and not isinstance(spec, UserTask):
                if isinstance(spec, CatchingEvent) and isinstance(spec.event_definition, TimerEventDefinition):
                    out.append(audit.PendingEvent("timer_fired", SYSTEM, now, **common, data={
                        "due_at": t.internal_data.get("event_value")}))
                elif isinstance(spec, ScriptTask):
                    out.append(audit.PendingEvent("script_ran", SYSTEM, now, **common,
                                                  data=self._changed(t)))
                    out.extend(self._clock_events(t, now, common))
                elif isinstance(spec, ExclusiveGateway):
                    taken = [c.task_spec.bpmn_id for c in t.children if c.state == TaskState.COMPLETED or
                             c.state in (TaskState.READY, TaskState.WAITING, TaskState.STARTED)]
                    out.append(audit.PendingEvent("gateway_passed", SYSTEM, now, **common,
                                                  data={"to": taken}))
                elif isinstance(spec, EndEvent):
                    out.append(audit.PendingEvent("end_reached", SYSTEM, now, **common))
                elif isinstance(spec, StartEvent):
                    out.append(audit.PendingEvent("start_passed", SYSTEM, now, **common))
            elif t.state == TaskState.CANCELLED and was == TaskState.READY and isinstance(spec, UserTask):
                out.append(audit.PendingEvent("task_cancelled", SYSTEM, now, **common))
        # A timer firing explains the cancellations it causes, so it comes first.
        return sorted(out, key=lambda e: e.type != "timer_fired")

    @staticmethod
    def _changed(task) -> dict:
        parent = task.parent.data if task.parent is not None else {}
        return {k: v for k, v in task.data.items() if parent.get(k, object()) != v and not k.startswith("_")}

    def _sync_tasks(self, s, inst: Instance, wf, now: datetime, claimer: str | None, done_events):
        completed_by = {e.task_id: e.actor for e in done_events if e.type == "task_completed"}
        timer_fired = any(e.type == "timer_fired" for e in done_events)
        events = []
        preloaded = s.info.get(PRELOADED, {}).pop(("ready", inst.id), None)
        existing = {r.id: r for r in (preloaded if preloaded is not None else s.scalars(select(HumanTask).where(
            HumanTask.instance_id == inst.id, HumanTask.state == "ready")))}
        ready = {str(t.id): t for t in wf.get_tasks(state=TaskState.READY, manual=True)}
        due = self._boundary_due(wf)
        for tid, row in existing.items():
            if tid in ready:
                if due.get(tid, row.due_at) != row.due_at:
                    writes.change(s, row, due_at=due[tid])
                continue
            task = _find_task(wf, tid)
            state = task.state if task is not None else TaskState.CANCELLED
            if state == TaskState.COMPLETED:
                writes.change(s, row, state="completed", ended_at=now, completed_by=completed_by.get(tid))
            else:
                # A task gone from the tree (a multi-instance member) went with its parent's timer.
                by_timer = self._cancelled_by_timer(task) if task is not None else timer_fired
                writes.change(s, row, state="cancelled", ended_at=now,
                              end_reason="timer" if by_timer else "cancelled")
        for tid, task in ready.items():
            if tid in existing:
                continue
            spec = task.task_spec
            ext = spec.extensions
            assignee = self._expr(wf, task, ext.get("kefu_assignee"))
            group = self._expr(wf, task, ext.get("kefu_candidateGroups"))
            row = HumanTask(id=tid, instance_id=inst.id, bpmn_id=spec.bpmn_id, spec_name=spec.name,
                            name=spec.bpmn_name or spec.bpmn_id, role=lane_role(spec.lane), state="ready",
                            assignee=assignee if isinstance(assignee, str) else claimer if
                            spec.lane and claimer else None,
                            candidate_group=group if isinstance(group, str) else None,
                            created_at=now, due_at=due.get(tid), ended_at=None, completed_by=None,
                            end_reason=None)
            writes.add(s, row)
            events.append(audit.PendingEvent("task_created", SYSTEM, now, task_id=tid, bpmn_id=spec.bpmn_id,
                                             task_name=row.name, rules=rule_ids(spec.documentation),
                                             data={"role": row.role, "assignee": row.assignee,
                                                   "candidate_group": row.candidate_group,
                                                   "due_at": iso(row.due_at)}))
            existing[tid] = row
        return events, sorted((r for r in existing.values() if r.state == "ready"), key=lambda r: r.created_at)

    @staticmethod
    def _cancelled_by_timer(task) -> bool:
        if task is None or task.parent is None:
            return False
        return any(isinstance(c.task_spec, BoundaryEvent) and c.state == TaskState.COMPLETED
                   and isinstance(c.task_spec.event_definition, TimerEventDefinition)
                   for c in task.parent.children)

    @staticmethod
    def _expr(wf, task, expr):
        if not expr:
            return None
        try:
            value = wf.script_engine.evaluate(task, expr)
        except Exception:  # noqa: BLE001 - a bad assignee leaves the task in its role's queue
            return None
        return value if isinstance(value, str) and value else None

    def _waiting_timers(self, wf):
        for t in list(wf.event_manager.tasks.values()):
            spec = t.task_spec
            if not isinstance(spec.event_definition, TimerEventDefinition) or t.state != TaskState.WAITING:
                continue
            value = t.internal_data.get("event_value")
            if isinstance(value, dict):
                value = value.get("next")
            due = _aware(value) if isinstance(value, str) else None
            if due is None:
                continue
            attached = None
            if isinstance(spec, BoundaryEvent) and t.parent is not None:
                attached = next((c for c in t.parent.children if not isinstance(c.task_spec, BoundaryEvent)),
                                None)
            yield t, due, attached

    def _boundary_due(self, wf) -> dict:
        """Task id → the earliest of its boundary timers: the moment it escalates (re-dispatch or warning)."""
        due = {}
        for _timer, when, attached in self._waiting_timers(wf):
            if attached is None:
                continue
            targets = [attached] + [c for c in attached.children if c.state == TaskState.READY]
            for target in targets:
                key = str(target.id)
                due[key] = min(due.get(key, when), when)
        return due

    def _sync_timers(self, s, inst: Instance, wf, now: datetime) -> list[audit.PendingEvent]:
        """Mirror the waiting timers into the timer table; each new or moved due time gets an audit event
        naming what produced it (the SLA version and case, the calendar)."""
        current = {}
        for t, when, attached in self._waiting_timers(wf):
            current[str(t.id)] = (t, when, attached)
        preloaded = s.info.get(PRELOADED, {}).pop(("timers", inst.id), None)
        existing = {r.id: r for r in (preloaded if preloaded is not None else
                                      s.scalars(select(Timer).where(Timer.instance_id == inst.id)))}
        for tid, row in existing.items():
            if tid not in current:
                writes.remove(s, row)
        events = []
        for tid, (t, when, attached) in current.items():
            row = existing.get(tid)
            if row is not None and row.due_at == when:
                continue
            spec = t.task_spec
            if row is None:
                writes.add(s, Timer(id=tid, instance_id=inst.id, bpmn_id=spec.bpmn_id, name=spec.bpmn_name,
                                  kind="boundary" if isinstance(spec, BoundaryEvent) else "intermediate",
                                  interrupting=bool(getattr(spec, "cancel_activity", True)),
                                  attached_task_id=str(attached.id) if attached is not None else None,
                                  due_at=when, created_at=now))
            else:
                writes.change(s, row, due_at=when)
            s.info.setdefault("kefu_timers_due", []).append(when)
            events.append(audit.PendingEvent("timer_set", SYSTEM, now, task_id=tid, bpmn_id=spec.bpmn_id,
                                             task_name=spec.bpmn_name, rules=rule_ids(spec.documentation),
                                             data=self._due_basis(t, when, attached, now)))
        return events

    def _due_basis(self, timer, when: datetime, attached, now: datetime) -> dict:
        data = timer.data
        basis = {"due_at": iso(when), "expression": getattr(timer.task_spec.event_definition, "expression", None),
                 "calendar": self.calendar.describe(now, when)}
        if attached is not None:
            basis["task"] = attached.task_spec.bpmn_id
        version, case = data.get("sla_version"), data.get("sla_case")
        if version is not None:
            basis["sla_version"] = version
        if isinstance(case, str):
            basis["sla_case"] = case
            target = (data.get("sla_targets") or {}).get(case)
            if isinstance(target, dict):
                basis["sla_target"] = target
        return basis

    @staticmethod
    def _clock_events(task, now: datetime, common: dict) -> list[audit.PendingEvent]:
        """Deadlines set, paused and resumed by a script (T1, R4): read from the clock keys it changed."""
        parent = task.parent.data if task.parent is not None else {}
        out = []
        for clock in CLOCKS:
            due_key, paused_key = f"{clock}_due", f"{clock}_paused_at"
            was_paused, paused = parent.get(paused_key), task.data.get(paused_key)
            if paused and paused != was_paused:
                out.append(audit.PendingEvent("clock_paused", SYSTEM, now, **common, data={
                    "clock": clock, "paused_at": paused, "due_at": task.data.get(due_key),
                    "remaining_seconds": task.data.get(f"{clock}_remaining_seconds")}))
            elif was_paused and not paused:
                out.append(audit.PendingEvent("clock_resumed", SYSTEM, now, **common, data={
                    "clock": clock, "paused_at": was_paused, "due_at": task.data.get(due_key)}))
            elif task.data.get(due_key) and task.data.get(due_key) != parent.get(due_key):
                out.append(audit.PendingEvent("deadline_set", SYSTEM, now, **common, data={
                    "clock": clock, "due_at": task.data.get(due_key), "sla_case": task.data.get("sla_case"),
                    "sla_version": task.data.get("sla_version")}))
        return out

    @staticmethod
    def _deadlines(wf) -> dict:
        """The two clocks of a work order as the workflow sees them now (from the newest task data)."""
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        data = ready[0].data if ready else (wf.last_task.data if wf.last_task is not None else {})
        out = {}
        for clock in CLOCKS:
            due = data.get(f"{clock}_due")
            if due:
                out[clock] = {"due_at": due, "paused_at": data.get(f"{clock}_paused_at"),
                              "remaining_seconds": data.get(f"{clock}_remaining_seconds")
                              if data.get(f"{clock}_paused_at") else None}
        return out

    # ------------------------------------------------------------------ helpers for tasks
    @staticmethod
    def _task_id(task_id) -> str:
        """``task_id`` as text if it can name a task (a UUID); NotFound otherwise."""
        try:
            UUID(str(task_id))
        except ValueError:
            raise NotFound(f"no task {task_id!r}") from None
        return str(task_id)

    def _task_row(self, s, task_id: str) -> HumanTask:
        row = s.get(HumanTask, self._task_id(task_id))
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return row

    def _ready_task(self, s, task_id: str, actor: str, with_rows: bool = False):
        """The task row (locked), its instance and the acting user; Conflict unless the task is ready.

        One statement: the task row (``FOR UPDATE``), its instance with the workflow state, the actor and the
        shared settings ``_sync_calendar`` needs, where four round trips did the same before. ``with_rows``:
        also the instance's ready task rows and timer rows, for the ``_save`` that follows."""
        params = {"task_id": self._task_id(task_id), "actor": actor or ""}
        if with_rows:
            rows = s.execute(_READY_TASK_AND_ROWS, params).unique().all()
            found = rows[0] if rows else None
        else:
            found = s.execute(_READY_TASK, params).first()
        if found is None:
            raise NotFound(f"no task {task_id!r}")
        row, inst, user, revision, offset = found
        if with_rows:
            preloaded = s.info.setdefault(PRELOADED, {})
            preloaded[("ready", inst.id)] = list(inst.ready_rows)
            preloaded[("timers", inst.id)] = list(inst.timer_rows)
        self._active(user, actor)
        self._check_ready(row)
        self._sync_calendar(s, {CALENDAR_REVISION: revision, CLOCK_OFFSET: offset})
        return row, inst, user

    @staticmethod
    def _check_ready(row: HumanTask) -> None:
        if row.state != "ready":
            raise Conflict(f"task {row.name} is already {row.state}"
                           + (f" by {row.completed_by}" if row.completed_by else "")
                           + "; nothing was changed", task_state=row.state)

    @staticmethod
    def _group_ok(user: User, row: HumanTask) -> bool:
        groups = user.group_set
        return not (row.candidate_group and groups and row.candidate_group not in groups)

    def _may_see(self, user: User, row: HumanTask) -> bool:
        return bool(user.role_set & {row.role, "supervisor", "auditor"}) or row.assignee == user.name

    def _authorize(self, user: User, row: HumanTask) -> None:
        if row.role not in user.role_set:
            raise NotAllowed(f"task {row.name} belongs to the {row.role} lane; user {user.name} "
                             f"has role(s) {', '.join(sorted(user.role_set)) or 'none'}")
        if row.assignee and row.assignee != user.name:
            raise NotAllowed(f"task {row.name} is assigned to {row.assignee}")
        if not self._group_ok(user, row):
            raise NotAllowed(f"task {row.name} is for group {row.candidate_group}")

    @staticmethod
    def _task_brief(r: HumanTask) -> dict:
        return {"id": r.id, "bpmn_id": r.bpmn_id, "name": r.name, "role": r.role, "assignee": r.assignee,
                "state": r.state, "due_at": iso(r.due_at), "created_at": iso(r.created_at),
                "ended_at": iso(r.ended_at), "completed_by": r.completed_by, "end_reason": r.end_reason}

    def _task_dict(self, r: HumanTask, inst: Instance) -> dict:
        spec, _subs = self._spec_of(inst)
        tspec = spec.task_specs.get(r.spec_name)
        ext = tspec.extensions if tspec is not None else {}
        out = self._task_brief(r)
        out.update({
            "instance_id": inst.id, "instance": inst.id, "ticket_no": inst.ticket_no, "kind": inst.kind,
            "severity": inst.severity, "vip": inst.vip, "candidate_group": r.candidate_group,
            "response_due": iso(inst.response_due), "finish_due": iso(inst.finish_due),
            "clock_paused_at": iso(inst.clock_paused_at),
            "escalatable": r.state == "ready" and r.role in TRANSFERRED_ROLES and inst.kind != ESCALATION,
            "name_en": ext.get("kefu_properties", {}).get("name_en"),
            "rules": rule_ids(getattr(tspec, "documentation", None)),
            "documentation": getattr(tspec, "documentation", None),
            "form": [f.to_dict() for f in build_fields(ext.get("form"))],
        })
        return out

    @staticmethod
    def _timer_dict(t: Timer) -> dict:
        return {"id": t.id, "instance_id": t.instance_id, "bpmn_id": t.bpmn_id, "name": t.name, "kind": t.kind,
                "interrupting": t.interrupting, "attached_task_id": t.attached_task_id, "due_at": iso(t.due_at)}

    # ---- web support
    def get_user(self, name: str) -> dict | None:
        """One active user by name, or None (the web login keeps only the name in its session)."""
        with self.db.reading() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            return self._user_dict(user) if user is not None and user.active else None

    def reassign(self, task_id: str, actor: str, to_user: str) -> dict:
        """A supervisor hands a ready task to another user who holds the task's role."""
        with self.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            if "supervisor" not in user.role_set:
                raise NotAllowed(f"only a supervisor may reassign tasks; user {actor} may not")
            target = s.scalar(select(User).where(User.name == to_user)) if to_user else None
            if target is None or not target.active:
                raise InvalidInput(f"no active user {to_user!r}", fields=["to_user"])
            if row.role not in target.role_set or not self._group_ok(target, row):
                raise InvalidInput(f"user {to_user} cannot work task {row.name} (needs role {row.role}"
                                   + (f", group {row.candidate_group}" if row.candidate_group else "") + ")",
                                   fields=["to_user"])
            if row.assignee != to_user:
                previous, row.assignee = row.assignee, to_user
                self._touch(s, inst, [audit.PendingEvent("task_reassigned", actor, self.now(), task_id=row.id,
                                                         bpmn_id=row.bpmn_id, task_name=row.name,
                                                         data={"previous_assignee": previous,
                                                               "assignee": to_user})])
            return self._task_dict(row, inst)

    def start_form(self, kind: str) -> dict:
        """The first user task of the latest version of ``kind`` with its form: the intake form."""
        with self.db.reading() as s:
            definition = latest(s, kind)
            if definition is None:
                raise NotFound(f"no deployed process {kind!r}; deploy it with 'kefu deploy'")
            spec, _subs = self.specs.get(definition)
            about = {"kind": kind, "name": definition.name, "version": definition.version}
        seen, queue = set(), [spec.start]
        while queue:
            tspec = queue.pop(0)
            if isinstance(tspec, UserTask):
                return {**about, **self._step_dict(tspec)}
            if tspec.name not in seen:
                seen.add(tspec.name)
                queue.extend(tspec.outputs)
        raise DefinitionError(f"process {kind!r} has no user task", element=kind)

    def steps(self, instance_ref) -> dict:
        """bpmn id → name, English name and form of every user task of the instance's definition version."""
        with self.db.reading() as s:
            inst = self._instance(s, instance_ref)
            spec, _subs = self.specs.get(inst.definition)
        return {t.bpmn_id: self._step_dict(t) for t in spec.task_specs.values() if isinstance(t, UserTask)}

    @staticmethod
    def _step_dict(tspec) -> dict:
        ext = tspec.extensions
        return {"bpmn_id": tspec.bpmn_id, "task_name": tspec.bpmn_name or tspec.bpmn_id,
                "name_en": ext.get("kefu_properties", {}).get("name_en"),
                "form": [f.to_dict() for f in build_fields(ext.get("form"))]}

    def diagram_xml(self, instance_ref) -> dict:
        """The BPMN XML of the definition version an instance runs on (for drawing it)."""
        with self.db.reading() as s:
            inst = self._instance(s, instance_ref)
            d = s.scalar(select(Definition).where(Definition.id == inst.definition_id)
                         .options(undefer(Definition.xml)))
            return {"process_id": d.process_id, "version": d.version, "sha256": d.sha256, "xml": d.xml}

    # ------------------------------------------------------------------ API tokens (JSON API, issue 8)
    def create_token(self, name: str, label: str | None = None) -> dict:
        """A new bearer token for the existing user ``name``; the token text is returned only here."""
        from engine.store import tokens
        with self.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                raise NotFound(f"no user {name!r}; add it with 'kefu users add'")
            token, row = tokens.create(s, user, label, self.now())
            return {"token": token, "id": row.id, "user": user.name, "label": row.label,
                    "created_at": iso(row.created_at)}

    def revoke_tokens(self, name: str) -> dict:
        """Revoke every live token of user ``name``."""
        from engine.store import tokens
        with self.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                raise NotFound(f"no user {name!r}")
            return {"user": user.name, "revoked": tokens.revoke(s, user, self.now())}

    def token_user(self, token: str) -> dict | None:
        """The active user a live bearer token acts as, or None."""
        from engine.store import tokens
        row = tokens.user_of(self.db, token)
        return self._user_fields(*row) if row is not None else None


__all__ = ["Kefu", "iso", "phone_digits"]
