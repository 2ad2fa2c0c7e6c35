"""The tables: definitions, users, customers, instances with their human tasks and timers, the audit events
and ledger, and the small tables beside them (settings, counters, tokens, stored KPI reports)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from engine.store.types import UTCDateTime, name_set  # noqa: F401 - name_set: re-exported


class Base(DeclarativeBase):
    pass


class Definition(Base):
    """One immutable, deployed version of one process diagram."""
    __tablename__ = "definitions"
    __table_args__ = (UniqueConstraint("process_id", "version"), UniqueConstraint("process_id", "sha256"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    xml: Mapped[str] = mapped_column(Text, deferred=True)  # large; loaded only to parse a new version
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str] = mapped_column(String(64))
    # the processes its call activities call that live in other diagrams: process id → sha256 of that diagram
    calls: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))


# --- changing a procedure (designer): what a deployed version changed against the one before it
class DefinitionChange(Base):
    __tablename__ = "definition_changes"

    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"), primary_key=True)
    previous_version: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[dict] = mapped_column(JSON)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    roles: Mapped[str] = mapped_column(String(255), default="")
    groups: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Sign-in: a web session carries the version it started under; logout (and a new password) moves it on,
    # so a session cookie copied before opens nothing after.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def role_set(self) -> set[str]:
        return name_set(self.roles)

    @property
    def group_set(self) -> set[str]:
        return name_set(self.groups)


class Customer(Base):
    """A customer profile (I1–I3); ``vip`` marks important/special customers."""
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_digits: Mapped[str | None] = mapped_column(String(32), index=True)  # "021-6321 0000" → "02163210000"
    email: Mapped[str | None] = mapped_column(String(128))
    company: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(300))
    region: Mapped[str | None] = mapped_column(String(100))
    needs: Mapped[str | None] = mapped_column(Text)
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    special_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # --- care (issue 21, Q1-Q3): class, the owning agent, consent to greetings, anniversary, last revisit ---
    customer_class: Mapped[str | None] = mapped_column(String(16))  # "important" (Q1); VIP is ``vip``
    owner: Mapped[str | None] = mapped_column(String(64), index=True)  # the agent who owns the customer
    greeting_consent: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    greeting_channel: Mapped[str | None] = mapped_column(String(16))  # sms | email | card | wechat
    anniversary: Mapped[date | None] = mapped_column(Date)
    last_revisit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_satisfaction: Mapped[int | None] = mapped_column(Integer)


class Instance(Base):
    """A running or finished ticket: serialized workflow (spec by reference) plus summary columns."""
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_kind_status", "kind", "status"),
                      # audit search (issue 6): filters combined with the newest-first order
                      Index("ix_instances_kind_status_created", "kind", "status", "created_at"),
                      Index("ix_instances_status_created", "status", "created_at"),
                      Index("ix_instances_severity_created", "severity", "created_at"),
                      Index("ix_instances_customer_created", "customer_id", "created_at"),
                      Index("ix_instances_creator_created", "created_by", "created_at"),
                      Index("ix_instances_finish_due", "finish_due"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_no: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    severity: Mapped[str | None] = mapped_column(String(16))
    nature: Mapped[str | None] = mapped_column(String(32))
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(64))
    # X1: the first responsible agent (第一责任人) until the case closes; None when no agent opened it
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    # P12: the staff the customer complains about (comma-joined user names); they never act on the ticket
    staff_involved: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    incident: Mapped[dict | None] = mapped_column(JSON)
    # The two clocks of a work order (T1) as the diagram last set them; finish may be paused (R4).
    response_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finish_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clock_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), index=True)  # escalations
    parent_task_id: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(Text, deferred=True)  # loaded by the units of work that run it
    audit_count: Mapped[int] = mapped_column(Integer, default=0)
    audit_head: Mapped[str] = mapped_column(String(64), default="")
    lock_version: Mapped[int] = mapped_column(Integer, nullable=False)

    definition: Mapped[Definition] = relationship(lazy="joined")
    customer: Mapped[Customer | None] = relationship(lazy="joined")

    # Read-only views, eager-loaded by TaskService.complete in the statement that locks the task: the rows that mirror
    # the workflow's ready user tasks and its waiting timers (see engine.services.projections).
    ready_rows: Mapped[list["HumanTask"]] = relationship(
        viewonly=True, lazy="raise",
        primaryjoin="and_(HumanTask.instance_id == Instance.id, HumanTask.state == 'ready')")
    timer_rows: Mapped[list["Timer"]] = relationship(viewonly=True, lazy="raise",
                                                     primaryjoin="Timer.instance_id == Instance.id")

    __mapper_args__ = {"version_id_col": lock_version}


class HumanTask(Base):
    """A user task as people see it: the projection of a SpiffWorkflow task into a queryable row."""
    __tablename__ = "human_tasks"
    __table_args__ = (Index("ix_human_tasks_state_role", "state", "role"),
                      # audit search (issue 6): by agent, overdue tasks
                      Index("ix_human_tasks_completed_by", "completed_by", "instance_id"),
                      Index("ix_human_tasks_assignee_instance", "assignee", "instance_id"),
                      Index("ix_human_tasks_state_due", "state", "due_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    bpmn_id: Mapped[str] = mapped_column(String(128))
    spec_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(32))
    candidate_group: Mapped[str | None] = mapped_column(String(64))
    # A task of a process without role lanes (engine.services.routing): who may work it, as "role:x",
    # "group:y" and "user:z" joined by commas; NULL for a task of a lane (the lane's role and candidate_group).
    candidates: Mapped[str | None] = mapped_column(String(1000))
    assignee: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))  # ready | completed | cancelled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(64))
    end_reason: Mapped[str | None] = mapped_column(String(64))
    # X1: the task was assigned to the ticket's owner, who has until then to claim it (else back to the queue);
    # None once claimed, or for a task that was never offered
    offer_due: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExternalTask(Base):
    """A service task waiting for a worker (Camunda's external task pattern): fetched and locked by one worker
    at a time, completed with variables, or failed with retries left (none left: an incident)."""
    __tablename__ = "external_tasks"
    __table_args__ = (Index("ix_external_tasks_state_topic", "state", "topic"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the SpiffWorkflow task id
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    bpmn_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    topic: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))  # open | completed | cancelled
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lock_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retries: Mapped[int] = mapped_column(Integer)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # not fetched before (after a failure)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_details: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MessageWait(Base):
    """An instance waiting for a named message (an intermediate or boundary message event, a receive task)."""
    __tablename__ = "message_waits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the SpiffWorkflow task id of the event
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    bpmn_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Timer(Base):
    """One row per waiting timer; ``due_at`` is what the scheduler wakes for."""
    __tablename__ = "timers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the SpiffWorkflow timer task id
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    bpmn_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # boundary | intermediate | claim (X1, not BPMN)
    interrupting: Mapped[bool] = mapped_column(Boolean, default=True)
    attached_task_id: Mapped[str | None] = mapped_column(String(36))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only record of what happened to an instance; each event hashes its predecessor's hash."""
    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("instance_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    task_id: Mapped[str | None] = mapped_column(String(36))
    bpmn_id: Mapped[str | None] = mapped_column(String(128))
    task_name: Mapped[str | None] = mapped_column(String(200))
    rules: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))  # None is SQL NULL, not JSON null
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Attachment(Base):
    """A file on a ticket (a CCTV still, a photo of the repair, a signed work order): its bytes in the database,
    never deleted; a newer version supersedes it (``superseded_by``). Each one is an audit event on the ticket."""
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # loaded only to download it
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    superseded_by: Mapped[int | None] = mapped_column(Integer)


class AuditLedger(Base):
    """Audit (issue 6): the global, hash-chained ledger of instance heads. Each unit of work that wrote audit
    events appends one entry per instance it touched (its ticket, last event number and chain head), chained
    over the previous entry: deleting an instance, truncating its chain or dropping entries breaks it."""
    __tablename__ = "audit_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # gapless, 1, 2, 3 …
    instance_id: Mapped[int] = mapped_column(Integer, index=True)  # no foreign key: outlives a deleted instance
    ticket_no: Mapped[str] = mapped_column(String(32))
    event_seq: Mapped[int] = mapped_column(Integer)
    head: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class SignInThrottle(Base):
    """Failed sign-ins counted per user name and per client address (``user:NAME``, ``address:IP``), shared by
    every process on the database; ``locked_until`` is a lockout, lifted by time or by an administrator."""
    __tablename__ = "sign_in_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SecurityEvent(Base):
    """Append-only record of security events outside any ticket: lockouts and their lifting, password
    changes. Read by auditors (``kefu audit security``); triggers refuse UPDATE and DELETE."""
    __tablename__ = "security_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    type: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))  # the user name or client address concerned
    address: Mapped[str | None] = mapped_column(String(64))  # where the request came from, if it was one
    data: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))


class CalendarDay(Base):
    """The process owner's override of one day: working or not (T2), e.g. a year chinese-calendar lacks."""
    __tablename__ = "calendar_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    working: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Setting(Base):
    """Small service-wide values: the demo clock offset, the SLA and calendar revisions."""
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Counter(Base):
    __tablename__ = "counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


# ---------------------------------------------------------------- API tokens (JSON API, issue 8)
class ApiToken(Base):
    """A bearer token of the JSON API; only its SHA-256 is stored. It acts as its user (roles, groups)."""
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- kpi (issue 7): stored monthly assessments (K-cycle) ---------------------------------------------
class KpiReport(Base):
    """One computed monthly assessment (K1–K8 with lineage); the newest row of a month is the report."""
    __tablename__ = "kpi_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # "2026-11", Asia/Shanghai
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    computed_by: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON)
# --- end kpi ----------------------------------------------------------------------------------------


# --- shift handover (X2) and ticket links (X3) ------------------------------------------------------
class Handover(Base):
    """One shift handover (交接班, X2): the outgoing agent lists what passes to the incoming one; both sign
    (互签: both names and times). ``state``: open until the incoming agent accepts it."""
    __tablename__ = "handovers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shift: Mapped[str] = mapped_column(String(32))  # the incoming shift's name
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    outgoing: Mapped[str] = mapped_column(String(64), index=True)
    incoming: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | accepted
    note: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HandoverItem(Base):
    """One line of a handover: a case, a ready task, a promise falling due in the next shift or an open
    escalation. ``included`` False: the outgoing agent left the case out (漏交); ``outcome`` at acceptance:
    taken, skipped (no longer the outgoing agent's: taken or closed meanwhile) or left_out."""
    __tablename__ = "handover_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handover_id: Mapped[int] = mapped_column(ForeignKey("handovers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # case | task | promise | escalation
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    ticket_no: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(36))
    label: Mapped[str | None] = mapped_column(String(200))
    holder: Mapped[str | None] = mapped_column(String(64))  # a task's assignee when listed
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    included: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_note: Mapped[str | None] = mapped_column(String(200))


class TicketLink(Base):
    """A link between two tickets; ``kind`` "repeat": ``instance_id`` is a repeat complaint of ``earlier_id``
    (X3, 002 第四章.3)."""
    __tablename__ = "ticket_links"
    __table_args__ = (UniqueConstraint("instance_id", "earlier_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    earlier_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    basis: Mapped[str | None] = mapped_column(String(16))  # detected | explicit
# --- care (issue 21): revisit cycles, started care instances, customer events -------------------------
class CareCycle(Base):
    """The revisit cycle of one customer class in months (Q1), edited by the process owner."""
    __tablename__ = "care_cycles"

    customer_class: Mapped[str] = mapped_column(String(16), primary_key=True)  # vip | important
    months: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CarePlan(Base):
    """One care instance started by the planner, under a unique key (``revisit:<customer>:<n>``,
    ``holiday:<date>``, ``anniversary:<customer>:<year>``), so two planners never start it twice."""
    __tablename__ = "care_plans"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CustomerEvent(Base):
    """A customer event (Q4): a seminar, a safety training, a product trial."""
    __tablename__ = "customer_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # seminar | training | trial | other
    day: Mapped[date] = mapped_column(Date, index=True)
    place: Mapped[str | None] = mapped_column(String(300))
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EventAttendee(Base):
    """A customer invited to an event, and the feedback collected from them (Q4)."""
    __tablename__ = "event_attendees"
    __table_args__ = (UniqueConstraint("event_id", "customer_id", name="uq_event_attendee"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("customer_events.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    feedback: Mapped[str | None] = mapped_column(Text)
    score: Mapped[int | None] = mapped_column(Integer)
    feedback_by: Mapped[str | None] = mapped_column(String(64))
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
# --- end care ---------------------------------------------------------------------------------------
# --- notifications (issue 20): a user's channels and subscriptions, and the outbox the scheduler delivers ---
class NotificationPref(Base):
    """Where a user wants to be told (an e-mail address, a webhook for an SMS or WeCom gateway) and about what
    (comma-separated event names: task, queue, major_complaint, due_soon, overdue)."""
    __tablename__ = "notification_prefs"

    user_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """One message to deliver, written in the same transaction as the unit of work that caused it; the
    scheduler sends it (pending → sending → sent, or back to pending with a later ``next_attempt_at``, or
    failed when its attempts are used up)."""
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_name: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))  # email | webhook
    target: Mapped[str] = mapped_column(String(500))
    event: Mapped[str] = mapped_column(String(32))
    ticket_no: Mapped[str | None] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    # one message per cause and channel: a clock about to run out is announced once
    dedup_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
# --- end notifications ------------------------------------------------------------------------------


def next_counter(session: Session, key: str) -> int:
    """Add one to the counter ``key`` (created at 1) and return it; concurrent callers never share a value."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        # Two transactions creating the same new row would race on its primary key; an upsert cannot:
        # the second waits for the first and then increments the committed row.
        stmt = (pg_insert(Counter).values(key=key, value=1)
                .on_conflict_do_update(index_elements=[Counter.key], set_={"value": Counter.value + 1})
                .returning(Counter.value))
        return session.execute(stmt).scalar_one()
    # SQLite: the transaction already holds the database's write lock (BEGIN IMMEDIATE).
    row = session.get(Counter, key, with_for_update=True)
    if row is None:
        row = Counter(key=key, value=0)
        session.add(row)
    row.value += 1
    session.flush()
    return row.value
