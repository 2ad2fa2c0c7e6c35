"""The engine's public surface: ``Kefu`` composes the services by noun over one shared context.

The web app, the JSON API and the CLI call the services through it (``kefu.tasks.complete(...)``,
``kefu.audit.verify()``); every service takes the context (and the runner, where it changes instances) and
never this facade, so nothing below imports it. Each service is made, and its module imported, on first use:
a command that lists tasks imports neither SpiffWorkflow nor the web stack.
"""
from __future__ import annotations

import importlib
from datetime import datetime
from functools import cached_property

from typing import TYPE_CHECKING

from engine.clock import Clock
from engine.config import Config
from engine.runtime import tune_collector

if TYPE_CHECKING:
    from engine.services.context import Context
    from engine.store.database import Database

# The context (and with it SQLAlchemy) is imported when the first ``Kefu`` is made: importing ``engine`` for
# its errors, its configuration or a command that reads without SQLAlchemy (``kefu tasks``) loads none of it.


def _service(module: str, name: str, *needs: str, doc: str | None = None) -> cached_property:
    """``engine.services.<module>.<name>(ctx, *needs)``, made when first asked for; ``needs`` name other
    attributes of the facade (``runner``, ``instances``, ``users``)."""
    def make(self):
        cls = getattr(importlib.import_module(f"engine.services.{module}"), name)
        return cls(self.ctx, *(getattr(self, n) for n in needs))
    make.__doc__ = doc or f"engine.services.{module}.{name}"
    return cached_property(make)


class Kefu:
    """One service object per process (or per test): the context and the services built on it."""

    def __init__(self, config: Config | None = None, database: Database | None = None,
                 clock: Clock | None = None):
        tune_collector()  # engine.runtime: workflows allocate many objects per step
        from engine.services.context import Context
        self.ctx: Context = Context(config, database, clock)

    runner = _service("runner", "Runner", doc="Open, load, run and save instances.")
    definitions = _service("definitions", "DefinitionService")
    designer = _service("designer", "DesignerService", "runner")
    users = _service("users", "UserService")
    security = _service("security", "SecurityService", doc="Sign-in throttling, lockouts, security events.")
    masking = _service("masking", "MaskingService", doc="I4: who reads customer contact data in full; reveals.")
    instances = _service("instances", "InstanceService", "runner")
    timers = _service("timers", "TimerService", "runner")
    time = _service("timekeeping", "TimeService")
    audit = _service("audit", "AuditService", "runner", "instances")
    kpi = _service("kpi", "KpiService", "runner", "users")
    external = _service("external", "ExternalTaskService", "runner")
    messages = _service("messages", "MessageService", "runner")
    casefile = _service("casefile", "CaseFileService", "runner", doc="Notes, contact log, attachments.")
    notifications = _service("notifications", "NotificationService", doc="Preferences, outbox, delivery.")
    live = _service("live", "LiveService", doc="The change feed live pages wait on.")
    shifts = _service("shifts", "ShiftService", doc="X2: the shifts.")
    handovers = _service("handovers", "HandoverService", "runner", doc="X2: the shift handover.")
    repeats = _service("repeats", "RepeatService", doc="X3: repeat complaints.")
    care = _service("care", "CareService", "runner", doc="Relationship care (Q1–Q3): cycles, planner.")
    events = _service("events", "EventService", doc="Customer events (Q4).")
    reports = _service("reports", "ReportService", doc="Weekly … yearly summaries (004).")

    @cached_property
    def tasks(self):
        """The task service lists tasks without the runner (and so without SpiffWorkflow)."""
        from engine.services.tasks import TaskService
        return TaskService(self.ctx, _LazyRunner(self))

    @cached_property
    def customers(self):
        from engine.services.customers import CustomerService
        service = CustomerService(self.ctx)
        # a new or changed VIP/important customer: plan the periodic revisit (Q1)
        service.listeners.append(lambda *args, **kw: self.care.plan_customer(*args, **kw))
        return service

    # The shared state, for the scheduler, the web app's setup and tests.
    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def specs(self):
        return self.ctx.specs

    @property
    def calendar(self):
        return self.ctx.calendar

    @property
    def timer_listeners(self) -> list:
        """Called with the earliest due time after a unit of work wrote timers (the in-process scheduler)."""
        return self.ctx.db.timer_listeners

    def now(self) -> datetime:
        """The service's time (the demo/test offset included)."""
        return self.ctx.now()

    def init(self) -> dict:
        """Create or upgrade the schema to the newest migration (``engine.store.schema``)."""
        from engine.store import schema
        return schema.upgrade(self.ctx.db)


class _LazyRunner:
    """The facade's runner, made on first use: the task service reaches it only to change an instance."""

    __slots__ = ("_kefu",)

    def __init__(self, kefu: Kefu):
        self._kefu = kefu

    def __getattr__(self, name):
        return getattr(self._kefu.runner, name)


__all__ = ["Kefu"]
