"""The engine's public surface: ``Kefu`` composes the services by noun over one shared context.

The web app, the JSON API and the CLI call the services through it (``kefu.tasks.complete(...)``,
``kefu.audit.verify()``); every service takes the context (and the runner, where it changes instances) and
never this facade, so nothing below imports it.
"""
from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from engine.clock import Clock
from engine.config import Config
from engine.services.context import Context
from engine.store.database import Database

if TYPE_CHECKING:  # the services are imported when first used (see Kefu)
    from engine.services.audit import AuditService
    from engine.services.customers import CustomerService
    from engine.services.definitions import DefinitionService
    from engine.services.designer import DesignerService
    from engine.services.external import ExternalTaskService
    from engine.services.instances import InstanceService
    from engine.services.kpi import KpiService
    from engine.services.messages import MessageService
    from engine.services.runner import Runner
    from engine.services.security import SecurityService
    from engine.services.tasks import TaskService
    from engine.services.timekeeping import TimeService
    from engine.services.timers import TimerService
    from engine.services.users import UserService
    from engine.services.masking import MaskingService
    from engine.services.casefile import CaseFileService
    from engine.services.live import LiveService
    from engine.services.notifications import NotificationService
    from engine.services.shifts import ShiftService
    from engine.services.handovers import HandoverService
    from engine.services.repeats import RepeatService
    from engine.services.care import CareService
    from engine.services.events import EventService
    from engine.services.reports import ReportService


class Kefu:
    """One service object per process (or per test): the context and the services built on it (external
    tasks: ``kefu.external``; message correlation: ``kefu.messages``).

    Each service is made, and its module imported, when first used: a command that lists tasks imports
    neither SpiffWorkflow (the runner's) nor the designer's or the KPI's modules."""

    def __init__(self, config: Config | None = None, database: Database | None = None,
                 clock: Clock | None = None):
        self.ctx = Context(config, database, clock)

    @cached_property
    def runner(self) -> Runner:
        from engine.services.runner import Runner
        return Runner(self.ctx)

    @cached_property
    def definitions(self) -> DefinitionService:
        from engine.services.definitions import DefinitionService
        return DefinitionService(self.ctx)

    @cached_property
    def designer(self) -> DesignerService:
        from engine.services.designer import DesignerService
        return DesignerService(self.ctx, self.runner)

    @cached_property
    def users(self) -> UserService:
        from engine.services.users import UserService
        return UserService(self.ctx)

    @cached_property
    def security(self) -> SecurityService:
        """Sign-in throttling, lockouts, security events."""
        from engine.services.security import SecurityService
        return SecurityService(self.ctx)

    @cached_property
    def customers(self) -> CustomerService:
        from engine.services.customers import CustomerService
        service = CustomerService(self.ctx)
        # a new or changed VIP/important customer: plan the periodic revisit (Q1)
        service.listeners.append(lambda *args, **kw: self.care.plan_customer(*args, **kw))
        return service

    @cached_property
    def masking(self) -> MaskingService:
        """I4: who reads customer contact data in full; reveals."""
        from engine.services.masking import MaskingService
        return MaskingService(self.ctx)

    @cached_property
    def instances(self) -> InstanceService:
        from engine.services.instances import InstanceService
        return InstanceService(self.ctx, self.runner)

    @cached_property
    def tasks(self) -> TaskService:
        from engine.services.tasks import TaskService
        return TaskService(self.ctx, _LazyRunner(self))

    @cached_property
    def timers(self) -> TimerService:
        from engine.services.timers import TimerService
        return TimerService(self.ctx, self.runner)

    @cached_property
    def time(self) -> TimeService:
        from engine.services.timekeeping import TimeService
        return TimeService(self.ctx)

    @cached_property
    def audit(self) -> AuditService:
        from engine.services.audit import AuditService
        return AuditService(self.ctx, self.runner, self.instances)

    @cached_property
    def kpi(self) -> KpiService:
        from engine.services.kpi import KpiService
        return KpiService(self.ctx, self.runner, self.users)

    @cached_property
    def external(self) -> ExternalTaskService:
        from engine.services.external import ExternalTaskService
        return ExternalTaskService(self.ctx, self.runner)

    @cached_property
    def messages(self) -> MessageService:
        from engine.services.messages import MessageService
        return MessageService(self.ctx, self.runner)

    @cached_property
    def casefile(self) -> CaseFileService:
        """Notes, the contact log and attachments of a ticket."""
        from engine.services.casefile import CaseFileService
        return CaseFileService(self.ctx, self.runner)

    @cached_property
    def notifications(self) -> NotificationService:
        """Preferences, the outbox and its delivery (issue 20)."""
        from engine.services.notifications import NotificationService
        return NotificationService(self.ctx)

    @cached_property
    def live(self) -> LiveService:
        """The change feed live pages wait on (issue 20)."""
        from engine.services.live import LiveService
        return LiveService(self.ctx)

    @cached_property
    def shifts(self) -> ShiftService:
        """X2: the shifts, and the handovers between them."""
        from engine.services.shifts import ShiftService
        return ShiftService(self.ctx)

    @cached_property
    def handovers(self) -> HandoverService:
        from engine.services.handovers import HandoverService
        return HandoverService(self.ctx, self.runner)

    @cached_property
    def repeats(self) -> RepeatService:
        """X3: repeat complaints."""
        from engine.services.repeats import RepeatService
        return RepeatService(self.ctx)

    @cached_property
    def care(self) -> CareService:
        """Relationship care (Q1–Q3): cycles and the planner."""
        from engine.services.care import CareService
        return CareService(self.ctx, self.runner)

    @cached_property
    def events(self) -> EventService:
        """Customer events (Q4)."""
        from engine.services.events import EventService
        return EventService(self.ctx)

    @cached_property
    def reports(self) -> ReportService:
        """Weekly … yearly summaries (004)."""
        from engine.services.reports import ReportService
        return ReportService(self.ctx)

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
    """The facade's runner, made on first use: the task service lists tasks without it (and so without
    SpiffWorkflow) and reaches it only to change an instance."""

    __slots__ = ("_kefu",)

    def __init__(self, kefu: Kefu):
        self._kefu = kefu

    def __getattr__(self, name):
        return getattr(self._kefu.runner, name)


__all__ = ["Kefu"]
