"""The engine's public surface: ``Kefu`` composes the services by noun over one shared context.

The web app, the JSON API and the CLI call the services through it (``kefu.tasks.complete(...)``,
``kefu.audit.verify()``); every service takes the context (and the runner, where it changes instances) and
never this facade, so nothing below imports it.
"""
from __future__ import annotations

from datetime import datetime

from engine.clock import Clock
from engine.config import Config
from engine.services.audit import AuditService
from engine.services.context import Context
from engine.services.customers import CustomerService
from engine.services.definitions import DefinitionService
from engine.services.designer import DesignerService
from engine.services.external import ExternalTaskService
from engine.services.instances import InstanceService
from engine.services.kpi import KpiService
from engine.services.live import LiveService
from engine.services.messages import MessageService
from engine.services.notifications import NotificationService
from engine.services.runner import Runner
from engine.services.security import SecurityService
from engine.services.tasks import TaskService
from engine.services.timekeeping import TimeService
from engine.services.timers import TimerService
from engine.services.users import UserService
from engine.store.database import Database


class Kefu:
    """One service object per process (or per test): the context and the services built on it (external
    tasks: ``kefu.external``; message correlation: ``kefu.messages``)."""

    def __init__(self, config: Config | None = None, database: Database | None = None,
                 clock: Clock | None = None):
        self.ctx = ctx = Context(config, database, clock)
        self.runner = runner = Runner(ctx)
        self.definitions = DefinitionService(ctx)
        self.designer = DesignerService(ctx, runner)
        self.users = UserService(ctx)
        self.security = SecurityService(ctx)  # sign-in throttling, lockouts, security events
        self.customers = CustomerService(ctx)
        self.instances = InstanceService(ctx, runner)
        self.tasks = TaskService(ctx, runner)
        self.timers = TimerService(ctx, runner)
        self.time = TimeService(ctx)
        self.audit = AuditService(ctx, runner, self.instances)
        self.kpi = KpiService(ctx, runner, self.users)
        self.external = ExternalTaskService(ctx, runner)
        self.messages = MessageService(ctx, runner)
        self.notifications = NotificationService(ctx)  # preferences, outbox, delivery (issue 20)
        self.live = LiveService(ctx)  # the change feed live pages wait on (issue 20)

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


__all__ = ["Kefu"]
