"""What every service shares: the configuration, the database, the clock, the working-day calendar, the parsed
specs and the SLA table in force, plus the lookups (instance, user) that each unit of work starts with.

Services receive one ``Context`` and never the ``Kefu`` facade, so nothing below the facade imports it.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache, cached_property
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from engine import calendar as calendar_mod, clock as clock_mod
from engine.bpmn.sla import SLA_DECISION, SlaTable, parse_sla
from engine.clock import Clock
from engine.config import Config
from engine.errors import NotFound
from engine.services.warm import WarmInstances
from engine.services.readers import SYSTEM, Reader, instance_keys  # noqa: F401 - re-exported
from engine.store import light, plain
from engine.store.database import Database
from engine.limits import MAX_ROW_ID

if TYPE_CHECKING:
    from engine.store.tables import Instance, User

# The mapped classes (engine.store.tables) and SQLAlchemy's ORM are imported by the methods that use them: a
# command that only lists tasks (engine.services.queue) maps no class.

CALENDAR_REVISION = "calendar_revision"
CLOCK_OFFSET = "clock_offset_seconds"
SYNCED = "kefu_synced"  # session.info key: the shared settings were read in this unit of work
PRELOADED = "kefu_preloaded"  # session.info key: rows a firing batch loaded for all its instances at once


def row_id(value) -> bool:
    """An integer a primary key can hold; any other number names no row (and the database would refuse it)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID


@cache
def state_options() -> tuple:
    """The loader options that load an instance with its workflow (also ``WITH_STATE``, made when first asked
    for: it needs the mapped classes)."""
    from sqlalchemy.orm import undefer
    from engine.store.tables import Instance
    return (undefer(Instance.state),)


def __getattr__(name: str):
    if name == "WITH_STATE":
        return state_options()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def setting(key: str):
    """A scalar subquery reading one shared setting (joined into a unit of work's first statement)."""
    from engine.store.tables import Setting
    return select(Setting.value).where(Setting.key == key).scalar_subquery()


@cache
def _settings_read():
    """The two shared settings a unit of work picks up (built once: the ORM's IN list costs more than the read)."""
    from engine.store.tables import Setting
    return select(Setting.key, Setting.value).where(Setting.key.in_((CALENDAR_REVISION, CLOCK_OFFSET)))


class Context(Reader):
    """The shared state of one ``Kefu``: database, clock, calendar, spec cache and SLA tables; the reads of
    plain rows (``engine.services.readers``) on connections of the database's reading pool.

    The spec cache and the workflow serializer are made when first used: they import SpiffWorkflow, which a
    command that runs no workflow (``kefu tasks``) never needs."""

    def __init__(self, config: Config | None = None, database: Database | None = None,
                 clock: Clock | None = None):
        super().__init__(config or Config.from_env())
        self.db = database or Database(self.config.database_url)
        self.clock = clock_mod.use(clock or Clock.from_config(self.config))
        # The workflows saved last through this database (engine.services.warm), shared by the contexts on it.
        if self.db.warm is None:
            self.db.warm = WarmInstances(self.config.instance_cache_bytes)
        self.warm: WarmInstances = self.db.warm
        self.sla_tables: dict[str, SlaTable] = {}
        self.settings_read = False
        self.calendar = calendar_mod.use(calendar_mod.WorkingCalendar(revision=-1))

    @cached_property
    def specs(self):
        """Parsed specs by definition (``engine.bpmn.diagram.SpecCache``)."""
        from engine.bpmn.diagram import SpecCache
        return SpecCache(loader=self._called_diagram)

    @cached_property
    def serializer(self):
        """The workflow serializer that stores a reference to the spec (``engine.bpmn.diagram``)."""
        from engine.bpmn.diagram import make_serializer
        return make_serializer(self.specs)

    # ---- time and the shared settings
    def now(self) -> datetime:
        # The process-wide clock (the one SpiffWorkflow's timers and form checks read), never a private copy.
        if not self.settings_read and self.config.time_controls_allowed:
            self.settings_read = True  # a demo/test clock offset set by another process counts from the start
            try:
                self.sync()
            except SQLAlchemyError:  # no schema yet: nothing to read
                pass
        return clock_mod.now()

    def sync(self) -> None:
        """Refresh the shared settings (clock offset, calendar) now; the scheduler calls it before a sweep."""
        with self.db.reading() as s:
            self.sync_calendar(s)

    def sync_calendar(self, s, settings: dict | None = None) -> None:
        """Pick up what another process changed: the calendar overrides and the demo/test clock offset
        (once per unit of work). ``settings``: those two values read already by the caller's query."""
        if s.info.get(SYNCED):
            return
        s.info[SYNCED] = self.settings_read = True
        from engine.store.tables import CalendarDay
        if settings is None:
            settings = dict(s.execute(_settings_read()).all())
        settings = {k: v for k, v in settings.items() if v is not None}
        rev = int(settings.get(CALENDAR_REVISION, 0))
        if rev != self.calendar.revision:
            overrides = {r.day: r.working for r in s.scalars(select(CalendarDay))}
            self.calendar = calendar_mod.use(calendar_mod.WorkingCalendar(overrides, rev))
        else:
            calendar_mod.use(self.calendar)
        if self.config.time_controls_allowed:
            self.clock.offset = timedelta(seconds=float(settings.get(CLOCK_OFFSET, 0)))

    def sla(self, s):
        """The SLA table in force (latest deployed version) and its definition row, or None."""
        from engine.store.versions import latest
        d = latest(s, SLA_DECISION)
        if d is None:
            return None
        table = self.sla_tables.get(d.sha256)
        if table is None:
            table = self.sla_tables[d.sha256] = parse_sla(d.xml.encode("utf-8"), d.filename)
        return d, table

    def _called_diagram(self, definition, process_id: str, sha: str):
        """The diagram of a process that ``definition`` calls, as recorded at its deploy: (xml bytes, filename,
        sha256), or None."""
        from sqlalchemy.orm import object_session, undefer
        from engine.store.tables import Definition
        s = object_session(definition)
        q = select(Definition).where(Definition.process_id == process_id, Definition.sha256 == sha) \
            .options(undefer(Definition.xml))
        if s is not None:
            d = s.scalar(q)
            return (d.xml.encode("utf-8"), d.filename, d.sha256) if d is not None else None
        with self.db.reading() as s:
            d = s.scalar(q)
            return (d.xml.encode("utf-8"), d.filename, d.sha256) if d is not None else None

    # ---- lookups every unit of work starts with
    def spec_of(self, inst: Instance) -> tuple:
        """The parsed spec of the instance's definition version, found by its id: the definition row is loaded
        only when this process has not parsed that version yet."""
        return self.specs.get_by_id(inst.definition_id, lambda: inst.definition)

    def plain(self):
        """A connection of the reading pool as a DB-API connection (``Database.plain``)."""
        return self.db.plain()

    def _definition(self, definition_id: int, s=None):
        """The definition row on ``s``: a plain connection, a session or a Core connection (by default the
        instance's session, else a connection of the reading pool)."""
        if s is None or isinstance(s, plain.Connection):
            return super()._definition(definition_id, s)
        from sqlalchemy import text
        return s.execute(text(f"{light.definitions.select} WHERE \"id\" = :id"), {"id": definition_id}).one()

    def task_info(self, inst, spec_name: str, s=None) -> dict:
        if s is None and inst.definition_id not in self.catalogues and not isinstance(inst, tuple):
            from sqlalchemy.orm import object_session
            s = object_session(inst)
        return super().task_info(inst, spec_name, s)

    @staticmethod
    def instance(s, ref, with_state=False) -> Instance:
        """The instance named by its id or ticket number; NotFound otherwise."""
        from engine.store.tables import Instance
        options = state_options() if with_state else ()
        for key, value in instance_keys(ref):
            inst = s.get(Instance, value, options=options) if key == "id" else \
                s.scalar(select(Instance).where(Instance.ticket_no == value).options(*options))
            if inst is not None:
                return inst
        raise NotFound(f"no instance {ref!r}")

    def user(self, s, name: str) -> User:
        """The active user ``name``; NotAllowed for an unknown or inactive one."""
        from engine.store.tables import User
        return self.active(s.scalar(select(User).where(User.name == name)) if name else None, name)

    @staticmethod
    def user_roles(s, name: str):
        """The roles of the active user ``name``, or None."""
        from engine.store.tables import User
        user = s.scalar(select(User).where(User.name == name))
        return user.role_set if user is not None and user.active else None
