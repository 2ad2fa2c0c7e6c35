"""Relationship care pages (000 §四.5): the care overview with the revisit cycles (Q1–Q3), customer events with
attendees and feedback (Q4), and the weekly … yearly summaries (004 月、季、年度总结) with CSV and charts."""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup, escape

from engine import InvalidInput
from engine.kpi import READ_ROLES

from .access import WIDE_ROLES
from .auth import kefu, me, roles_required
from .labels import KINDS, field_message

bp = Blueprint("care", __name__)

CARE_ROLES = ("agent", "supervisor", "process_owner", "auditor")
EVENT_EDIT = ("agent", "supervisor")
PLAN_ROLES = ("supervisor", "process_owner")
REPORT_ROLES = tuple(sorted(READ_ROLES))
CLASSES = {"vip": _l("VIP 客户"), "important": _l("重要客户"), "general": _l("一般客户")}
CARE_KINDS = {"revisit": _l("定期回访"), "greeting": _l("节日问候")}
EVENT_KINDS = {"seminar": _l("客户座谈会"), "training": _l("安全知识培训"), "trial": _l("新品体验活动"),
               "other": _l("其他活动")}
PERIODS = {"week": _l("周报"), "month": _l("月报"), "quarter": _l("季报"), "year": _l("年报")}
CHANNELS = {"phone": _l("电话"), "online": _l("在线"), "unrecorded": _l("未记录")}
NATURES = {"service_attitude": _l("服务态度"), "service_quality": _l("服务质量"), "product": _l("产品问题")}


@bp.get("/care")
@roles_required(*CARE_ROLES)
def overview():
    """Revisit cycles, the waiting and ready care work, and the holidays ahead (Q1, Q3)."""
    return render_template("care.html", o=kefu().care.overview(), classes=CLASSES, care_kinds=CARE_KINDS,
                           may_edit_cycles=current_user.has("process_owner"), may_plan=current_user.has(*PLAN_ROLES))


@bp.post("/care/cycles")
@roles_required("process_owner")
def cycles():
    """The process owner sets the revisit cycle of each class (Q1)."""
    try:
        for cls in ("vip", "important"):
            if request.form.get(cls, "").strip() != "":
                kefu().care.set_cycle(cls, request.form[cls].strip(), me())
    except InvalidInput as exc:
        flash(field_message(exc.message), "error")
        return redirect(url_for("care.overview")), 303
    flash(_("回访周期已保存"), "success")
    return redirect(url_for("care.overview"))


@bp.post("/care/plan")
@roles_required(*PLAN_ROLES)
def plan():
    """Plan now what the daily job would plan: revisits on their cycle, greetings before holidays."""
    r = kefu().care.plan()
    flash(_("已安排 %(r)d 个定期回访、%(g)d 个节日问候", r=len(r["revisits"]), g=len(r["greetings"])), "success")
    return redirect(url_for("care.overview"))


# ---------------------------------------------------------------- customer events (Q4)
@bp.get("/events")
@roles_required(*WIDE_ROLES)
def events():
    return render_template("events.html", events=kefu().events.list(), event_kinds=EVENT_KINDS,
                           editable=current_user.has(*EVENT_EDIT), values={}, errors={})


@bp.post("/events")
@roles_required(*EVENT_EDIT)
def event_add():
    values = {k: request.form.get(k, "").strip() for k in ("name", "date", "place", "kind", "notes")}
    try:
        ev = kefu().events.add(values["name"], values["date"], place=values["place"] or None,
                               kind=values["kind"] or "seminar", notes=values["notes"] or None, actor=me())
    except InvalidInput as exc:
        errors = {f: field_message(exc.message) for f in exc.details.get("fields") or ["name"]}
        return render_template("events.html", events=kefu().events.list(), event_kinds=EVENT_KINDS, editable=True,
                               values=values, errors=errors), 422
    flash(_("活动已登记"), "success")
    return redirect(url_for("care.event", event_id=ev["id"]))


@bp.get("/events/<int:event_id>")
@roles_required(*WIDE_ROLES)
def event(event_id):
    q = request.args.get("q", "").strip()
    found = kefu().customers.find(q, limit=30) if q else []
    return render_template("event.html", e=kefu().events.get(event_id), q=q, found=found, event_kinds=EVENT_KINDS,
                           editable=current_user.has(*EVENT_EDIT))


@bp.post("/events/<int:event_id>/attendees")
@roles_required(*EVENT_EDIT)
def event_invite(event_id):
    ids = request.form.getlist("customer")
    if not ids:
        flash(_("请选择客户"), "error")
        return redirect(url_for("care.event", event_id=event_id)), 303
    kefu().events.invite(event_id, ids, actor=me())
    flash(_("已添加参加客户"), "success")
    return redirect(url_for("care.event", event_id=event_id))


@bp.post("/events/<int:event_id>/feedback")
@roles_required(*EVENT_EDIT)
def event_feedback(event_id):
    try:
        customer = int(request.form.get("customer", ""))
    except ValueError:
        raise InvalidInput("no customer given", fields=["customer"]) from None
    try:
        kefu().events.feedback(event_id, customer, request.form.get("feedback", ""),
                               score=request.form.get("score", "").strip() or None, actor=me())
    except InvalidInput as exc:
        flash(field_message(exc.message), "error")
        return redirect(url_for("care.event", event_id=event_id)), 303
    flash(_("反馈已记录"), "success")
    return redirect(url_for("care.event", event_id=event_id))


# ---------------------------------------------------------------- summaries (004)
def _summary():
    period = request.args.get("period", "month")
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}", fields=["period"])
    return kefu().reports.summary(period, request.args.get("at") or None, actor=me())


@bp.get("/reports")
@roles_required(*REPORT_ROLES)
def reports():
    """The printable summary of a week, month, quarter or year, with two charts."""
    r = _summary()
    kinds = [(str(KINDS.get(k, k)), v) for k, v in r["by_kind"].items()]
    channels = [(str(CHANNELS.get(k, k)), v) for k, v in r["by_channel"].items()]
    return render_template("reports.html", r=r, periods=PERIODS, natures=NATURES, kinds=KINDS,
                           kind_chart=count_bars(kinds, _("各类工单数量")),
                           channel_chart=count_bars(channels, _("各渠道工单数量")))


@bp.get("/reports.csv")
@roles_required(*REPORT_ROLES)
def reports_csv():
    r = _summary()
    buf = io.StringIO()
    w = csv.writer(buf)
    for row in kefu().reports.csv_rows(r):
        w.writerow(row)
    return Response("\ufeff" + buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename=summary-{r['label']}.csv"})


def count_bars(rows: list[tuple[str, int]], title: str, width: int = 320) -> Markup:
    """Inline SVG: one horizontal bar per row (label, count), drawn on the server."""
    label_w, right, row_h = 90, 40, 20
    height = max(1, len(rows)) * row_h + 8
    w = width - label_w - right
    top = max([1] + [v for _l, v in rows])
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (label, v) in enumerate(rows):
        y = 4 + i * row_h
        bar = w * v / top
        parts.append(f'<text x="{label_w - 4}" y="{y + 13}" font-size="11" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{max(1.0, bar):.1f}" height="{row_h - 7}" fill="#2b6cb0"/>'
                     f'<text x="{label_w + bar + 4:.1f}" y="{y + 13}" font-size="11">{v}</text>')
    if not rows:
        parts.append(f'<text x="{label_w}" y="16" font-size="11" fill="#a0aec0">—</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
