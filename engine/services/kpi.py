"""KPIs (K1–K8) as the service offers them: a month's figures live (scored by the KPI table in force) or as stored,
storing a finished month (K-cycle), the trend, and the monthly QA sample (K4); the figures are computed in
``engine.kpi``."""
from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone

from sqlalchemy import select

from engine.bpmn.kpi_table import KPI_DECISION, KpiTable, default_table, parse_kpi_table
from engine.clock import SHANGHAI
from engine.errors import Conflict, InvalidInput, NotAllowed, NotFound
from engine.kpi import (
    K_CYCLE_CRON, QA_DEFAULT_SIZE, QA_KIND, QA_MAX_SIZE, QA_SIZE_KEY, QA_START_ROLES, READ_ROLES, STORE_ROLES,
    compute, current_month, draw_sample, month_bounds, month_key, parse_month, previous_month, summary,
)
from engine.services.context import SYSTEM, Context
from engine.services.runner import Runner
from engine.services.users import UserService
from engine.store.tables import Instance, KpiReport, Setting, User
from engine.store.versions import latest

log = logging.getLogger("kefu.kpi")


class KpiService:
    """Read, store and sample a month's KPIs."""

    def __init__(self, ctx: Context, runner: Runner, users: UserService):
        self.ctx = ctx
        self.runner = runner
        self.users = users
        self._tables: dict[str, KpiTable] = {}  # parsed KPI tables by SHA-256

    def _check(self, actor: str | None, roles: set) -> None:
        """``actor`` None is the service itself (the K-cycle job, the CLI without --as)."""
        if actor is None or actor == SYSTEM:
            return
        user = self.users.get(actor)
        if user is None:
            raise NotAllowed(f"unknown user {actor!r}")
        if not set(user["roles"]) & roles:
            raise NotAllowed(f"user {actor} may not do this (needs role {' or '.join(sorted(roles))})")

    def _table(self, s) -> tuple[KpiTable, int | None]:
        """The KPI table in force (the latest deployed ``kpi`` decision) and its version; without one, the
        built-in defaults of RULES.md K-score and version None."""
        d = latest(s, KPI_DECISION)
        if d is None:
            return default_table(), None
        table = self._tables.get(d.sha256)
        if table is None:
            table = self._tables[d.sha256] = parse_kpi_table(d.xml.encode("utf-8"), d.filename)
        return table, d.version

    def table(self) -> dict:
        """The KPI table in force: version (None: the built-in defaults) and, per KPI, target, scoring and who
        is charged for a miss."""
        with self.ctx.db.reading() as s:
            table, version = self._table(s)
        return {**table.describe(version), "labels": table.labels}

    def live(self, month, actor: str | None = None) -> dict:
        """The month's figures computed now (a running month as of now, a past one as of its end), scored by
        the KPI table in force."""
        self._check(actor, READ_ROLES)
        with self.ctx.db.reading() as s:
            table, version = self._table(s)
            return compute(s, month, now=self.ctx.now(), table=table, table_version=version)

    def stored(self, month, actor: str | None = None) -> dict | None:
        """The newest stored assessment of ``month``, or None."""
        self._check(actor, READ_ROLES)
        key = month_key(*parse_month(month))
        with self.ctx.db.reading() as s:
            row = s.scalars(select(KpiReport).where(KpiReport.month == key)
                            .order_by(KpiReport.computed_at.desc(), KpiReport.id.desc()).limit(1)).first()
            if row is None:
                return None
            return {**row.data, "computed_at": row.computed_at.isoformat(), "computed_by": row.computed_by}

    def report(self, month, actor: str | None = None) -> dict:
        """The stored assessment if there is one, else the live figures."""
        return self.stored(month, actor) or self.live(month, actor)

    def store(self, month, actor: str | None = None) -> dict:
        """Compute a finished month as of its end with the KPI table in force and store it (K-cycle); the stored
        report keeps those scores and records the table version."""
        self._check(actor, STORE_ROLES)
        key = month_key(*parse_month(month))
        now = self.ctx.now()
        _start, end = month_bounds(key)
        if end > now:
            raise InvalidInput(f"month {key} is not over yet; its assessment is stored from the 1st of the next month")
        with self.ctx.db.unit_of_work() as s:
            table, version = self._table(s)
            data = compute(s, key, as_of=end, now=now, table=table, table_version=version)
            s.add(KpiReport(month=key, computed_at=now, computed_by=actor or SYSTEM, data=data))
        return {**data, "computed_at": now.isoformat(), "computed_by": actor or SYSTEM}

    def k_cycle(self) -> dict | None:
        """At the start of a month: store the previous month's assessment unless it is stored already."""
        month = previous_month(self.ctx.now())
        if self.stored(month) is not None:
            return None
        return self.store(month)

    def trend(self, months: int = 6, until=None, actor: str | None = None,
              known: dict | None = None) -> list[dict]:
        """Department and per-agent figures (no lineage) of the last ``months`` months up to ``until``;
        ``known`` holds reports the caller has already (by month), so they are not computed twice."""
        self._check(actor, READ_ROLES)
        year, mon = parse_month(until or current_month(self.ctx.now()))
        keys = []
        for _ in range(max(1, min(int(months), 24))):
            if year < 1900:  # parse_month's lower bound
                break
            keys.append(month_key(year, mon))
            year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
        out = []
        for key in reversed(keys):
            r = (known or {}).get(key) or self.report(key)
            out.append({"month": key, "department": summary(r),
                        "agents": {a: summary(r, a) for a in r["agents"]}})
        return out

    def sample_size(self) -> int:
        """How many closed tickets QA inspects each month."""
        with self.ctx.db.reading() as s:
            row = s.get(Setting, QA_SIZE_KEY)
            return int(row.value) if row is not None else QA_DEFAULT_SIZE

    def set_sample_size(self, size, actor: str) -> int:
        """The process owner sets how many closed tickets QA inspects each month."""
        if not actor:
            raise NotAllowed("the sample size is set by a process owner (--as)")
        self._check(actor, {"process_owner"})
        try:
            n = int(str(size).strip())
        except ValueError:
            raise InvalidInput(f"sample size must be a whole number, not {str(size)[:40]!r}") from None
        if not 1 <= n <= QA_MAX_SIZE:
            raise InvalidInput(f"sample size must be between 1 and {QA_MAX_SIZE}")
        with self.ctx.db.unit_of_work() as s:
            row = s.get(Setting, QA_SIZE_KEY)
            if row is None:
                s.add(Setting(key=QA_SIZE_KEY, value=str(n)))
            else:
                row.value = str(n)
        return n

    def qa_sample_of(self, month) -> dict | None:
        """The QA sampling instance of ``month``, or None."""
        key = month_key(*parse_month(month))
        with self.ctx.db.reading() as s:
            inst = s.scalars(select(Instance).where(Instance.kind == QA_KIND, Instance.summary == key)).first()
            return None if inst is None else {"instance_id": inst.id, "ticket_no": inst.ticket_no,
                                              "status": inst.status}

    def start_qa_sampling(self, month, actor: str | None = None, size: int | None = None,
                          seed: int | None = None) -> dict:
        """Start the month's ``qa_sampling`` process over a seeded random sample of its closed tickets."""
        self._check(actor, QA_START_ROLES)
        key = month_key(*parse_month(month))
        _start, end = month_bounds(key)
        if end > self.ctx.now():
            raise InvalidInput(f"month {key} is not over yet; its closed tickets are sampled from the 1st of the next month")
        if self.qa_sample_of(key) is not None:
            raise Conflict(f"the QA sample of {key} was drawn already ({self.qa_sample_of(key)['ticket_no']})")
        size = self.sample_size() if size is None else int(size)
        if not 1 <= size <= QA_MAX_SIZE:
            raise InvalidInput(f"sample size must be between 1 and {QA_MAX_SIZE}")
        seed = secrets.randbelow(2 ** 31) if seed is None else int(seed)
        with self.ctx.db.unit_of_work() as s:
            if latest(s, QA_KIND) is None:
                raise NotFound(f"no deployed process {QA_KIND!r}; deploy it with 'kefu deploy'")
            sample = draw_sample(s, key, size, seed)
            user = s.scalar(select(User).where(User.name == actor)) if actor else User(name=SYSTEM, roles="")
            inst, _ready = self.runner.open(s, QA_KIND, user, None, None, initial={
                "sample_month": key, "sample_size": size, "sample_seed": seed, "sample": sample})
            inst.summary = key
            for row in _ready:  # the reviews belong to the qa queue, not to whoever started the sampling
                if "qa" not in user.role_set:
                    row.assignee = None
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "month": key, "size": size,
                    "seed": seed, "sample": sample, "status": inst.status}

    def k_cycle_job(self) -> dict:
        """The monthly job (and its catch-up at start): store the previous month's assessment if missing, and
        draw that month's QA sample if none was drawn and it has closed tickets. Never raises: it logs."""
        done = {"report": None, "qa_sample": None}
        try:
            self.ctx.sync()
            stored_now = self.k_cycle()
            done["report"] = stored_now["month"] if stored_now else None
            month = previous_month(self.ctx.now())
            if self.qa_sample_of(month) is None:
                with self.ctx.db.reading() as s:
                    pool = draw_sample(s, month, 1, 0)
                if pool:
                    done["qa_sample"] = self.start_qa_sampling(month)["ticket_no"]
        except Exception:  # noqa: BLE001 - the next run (or a restart) tries again
            log.exception("K-cycle job failed")
        return done


def schedule(scheduler, kpi: KpiService) -> None:
    """Add the K-cycle cron job (1st of the month, 00:05 Asia/Shanghai) and a catch-up run now."""
    scheduler.add_job(kpi.k_cycle_job, "cron", id="k_cycle", timezone=SHANGHAI,
                      replace_existing=True, **K_CYCLE_CRON)
    scheduler.add_job(kpi.k_cycle_job, "date", id="k_cycle_catch_up", replace_existing=True,
                      run_date=datetime.now(timezone.utc))
