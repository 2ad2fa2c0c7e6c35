"""Deadlines and time: the SLA table in force, the working-day calendar with the process owner's overrides
(T2), and in demo/test the service clock, which can be moved forward to watch timers fall due."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import ClockError, KefuError
from engine.clock import parse_duration

from .auth import kefu, me, roles_required, safe_next

bp = Blueprint("timekeeping", __name__)

CLOCK_STEPS = ("1h", "1d", "3d")


@bp.app_context_processor
def demo_clock():
    """In demo and test the header shows the service's time, which may run ahead of the wall clock."""
    k = kefu()
    return {"demo_now": k.now().isoformat() if k.config.time_controls_allowed else None}


@bp.get("/deadlines")
@login_required
def deadlines():
    k = kefu()
    status = k.time.calendar_status()
    years = [y["year"] for y in status["years"]]
    overrides = [o for o in k.time.calendar_days() if int(o["day"][:4]) >= years[0]]
    return render_template("deadlines.html", sla=k.time.sla_table(), calendar=status, overrides=overrides,
                           clock=k.time.clock_status(), steps=CLOCK_STEPS,
                           may_edit=current_user.has("process_owner"),
                           may_move=current_user.has("supervisor", "process_owner"))


@bp.post("/calendar")
@roles_required("process_owner")
def set_day():
    day, kind = request.form.get("day", ""), request.form.get("kind", "")
    note = (request.form.get("note") or "").strip() or None
    if kind not in ("working", "off", "clear"):
        flash(_("请选择工作日或休息日"), "error")
        return redirect(url_for(".deadlines"))
    try:
        r = kefu().time.set_calendar_day(day, None if kind == "clear" else kind == "working", me(), note=note)
    except KefuError as exc:
        flash(_("日历未修改：%(reason)s", reason=exc.message), "error")
    else:
        flash(_("%(day)s 现在是%(what)s", day=r["day"], what=_("工作日") if r["working"] else _("休息日")),
              "success")
    return redirect(url_for(".deadlines"))


@bp.post("/clock/advance")
@roles_required("supervisor", "process_owner")
def advance_clock():
    step = request.form.get("step", "")
    if step not in CLOCK_STEPS:
        flash(_("无效的时间步长"), "error")
        return redirect(url_for(".deadlines"))
    k = kefu()
    try:
        k.time.advance_clock(parse_duration(step), actor=me())
        fired = k.timers.fire_due()
    except ClockError:
        flash(_("时钟只能在演示和测试环境中调整"), "error")
    except KefuError as exc:
        flash(_("时钟未调整：%(reason)s", reason=exc.message), "error")
    else:
        flash(_("时钟已前进 %(step)s，触发了 %(n)s 个定时器", step=step, n=len(fired)), "success")
    return redirect(safe_next(request.form.get("next"), url_for(".deadlines")))
