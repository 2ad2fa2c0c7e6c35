"""Notifications for people (issue 20): each user sets where they are told (e-mail, a webhook for an SMS or
WeCom gateway) and about what; supervisors see the messages not yet delivered and send a failed one again."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import login_required

from engine import InvalidInput, NotFound
from engine.limits import row_number

from .auth import kefu, me, roles_required

bp = Blueprint("notify", __name__)

EVENTS = {"task": _l("分配给我的新任务"), "queue": _l("我所在队列的新任务"), "major_complaint": _l("重大投诉（主管）"),
          "due_soon": _l("时限即将到期"), "overdue": _l("超时预警")}
STATES = {"pending": _l("待发送"), "sending": _l("发送中"), "sent": _l("已发送"), "failed": _l("发送失败")}
CHANNELS = {"email": _l("邮件"), "webhook": _l("Webhook（短信/企业微信）")}


@bp.route("/notifications", methods=["GET", "POST"])
@login_required
def prefs():
    """My notification channels and events."""
    errors = {}
    if request.method == "POST":
        chosen = [e for e in request.form.getlist("events") if e in EVENTS]
        try:
            kefu().notifications.set_prefs(me(), me(), email=request.form.get("email", "").strip(),
                                           webhook=request.form.get("webhook", "").strip(), events=chosen)
            flash(_("通知设置已保存"), "success")
            return redirect(url_for("notify.prefs"))
        except InvalidInput as exc:
            errors = {f: _("请填写有效的邮件地址") if f == "email" else _("请填写 http:// 或 https:// 开头的地址")
                      for f in (exc.details.get("fields") or ["email"])}
    p = kefu().notifications.prefs(me())
    if request.method == "POST":
        p = {**p, "email": request.form.get("email", ""), "webhook": request.form.get("webhook", ""),
             "events": request.form.getlist("events")}
    return render_template("notify_prefs.html", p=p, events=EVENTS, errors=errors), 400 if errors else 200


@bp.get("/notifications/outbox")
@roles_required("supervisor")
def outbox():
    """Messages not delivered yet, failed first; the newest sent below them."""
    k = kefu()
    waiting = k.notifications.outbox(("failed", "pending", "sending"))
    waiting.sort(key=lambda m: (m["state"] != "failed", -m["id"]))
    return render_template("notify_outbox.html", waiting=waiting, sent=k.notifications.outbox(("sent",), 50),
                           states=STATES, channels=CHANNELS, events=EVENTS)


@bp.post("/notifications/outbox/<message_id>/retry")
@roles_required("supervisor")
def retry(message_id):
    n = row_number(message_id)
    if n is None:
        raise NotFound(f"no message {message_id!r}")
    kefu().notifications.retry(n, me())
    flash(_("消息将重新发送"), "success")
    return redirect(url_for("notify.outbox"))
