"""Period summaries (004 月、季、年度总结): who may read them, and the summary of a week, month, quarter or year
(computed in ``engine.records.reports``)."""
from __future__ import annotations


from engine.clock import SHANGHAI
from engine.errors import NotAllowed
from engine.kpi import READ_ROLES
from engine.records import reports
from engine.services.context import SYSTEM, Context


class ReportService:
    """The weekly, monthly, quarterly and yearly summaries."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def summary(self, period: str = "month", at=None, actor: str | None = None) -> dict:
        """The summary of the ``period`` containing ``at`` (a date; default today, Asia/Shanghai)."""
        now = self.ctx.now()
        day = reports.parse_day(at) if at not in (None, "") else now.astimezone(SHANGHAI).date()
        with self.ctx.db.reading() as s:
            if actor not in (None, SYSTEM) and not self.ctx.user(s, actor).role_set & READ_ROLES:
                raise NotAllowed(f"user {actor} may not read the summaries (needs role supervisor, "
                                 "process_owner, qa or auditor)")
            reports.bounds(period, day)  # a clear error for an unknown period
            return reports.summary(s, period, day, now)

    @staticmethod
    def csv_rows(report: dict):
        yield list(reports.CSV_COLUMNS)
        yield from reports.csv_rows(report)


__all__ = ["ReportService"]
