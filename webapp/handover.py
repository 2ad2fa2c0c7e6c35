"""Shift handover pages (X2): the outgoing agent's handover form (the incoming agent, a note per case and one for
the shift), a handover with both signatures and the incoming agent's acceptance, and the day's handovers (the
supervisor sees every one, open and accepted; an agent their own)."""
from __future__ import annotations

import re
from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from engine import Conflict, InvalidInput
from engine.clock import SHANGHAI

from .auth import kefu, me, roles_required
from .labels import HANDOVER_KINDS, HANDOVER_OUTCOMES, HANDOVER_STATES

bp = Blueprint("handover", __name__)
READERS = ("agent", "supervisor", "auditor", "process_owner")

_NOTES = [
    (r"closed during the handover", lambda m: _("交接期间已办结")),
    (r"owned by (?P<a>.+) meanwhile", lambda m: _("交接期间已归 %(a)s 负责", a=m["a"])),
    (r"done during the handover by (?P<a>.+)", lambda m: _("交接期间已由 %(a)s 完成", a=m["a"])),
    (r"done during the handover", lambda m: _("交接期间已完成")),
    (r"taken by (?P<a>.+) during the handover; stays with them until done",
     lambda m: _("交接期间由 %(a)s 接手，处理完毕前仍由其负责", a=m["a"])),
    (r"needs role (?P<a>.+)", lambda m: _("需要角色 %(a)s", a=m["a"])),
    (r"left out by the outgoing agent \(漏交\)|its case was left out \(漏交\)", lambda m: _("交班人未列入（漏交）")),
]


def outcome_note(text: str | None) -> str:
    """The engine's reason for an item's outcome, in the reader's language."""
    for pattern, words in _NOTES:
        m = re.fullmatch(pattern, text or "")
        if m:
            return words(m)
    return text or ""


def _agents() -> list[dict]:
    return [u for u in kefu().users.all() if u["active"] and "agent" in u["roles"] and u["name"] != me()]


def _render(template: str, **kw):
    return render_template(template, kinds=HANDOVER_KINDS, outcomes=HANDOVER_OUTCOMES, states=HANDOVER_STATES,
                           outcome_note=outcome_note, **kw)


@bp.get("/handovers")
@roles_required(*READERS)
def index():
    """The handovers of a day (today by default) and every one still open."""
    text = request.args.get("day") or ""
    try:
        day = date.fromisoformat(text) if text else kefu().now().astimezone(SHANGHAI).date()
    except ValueError:
        abort(400, _("日期格式应为 YYYY-MM-DD"))
    handovers = kefu().handovers.day(day, actor=me())
    return _render("handovers.html", handovers=handovers, day=day.isoformat(), shifts=kefu().shifts.all(),
                   may_start=current_user.has("agent"), everyone=current_user.has("supervisor", "auditor"))


def _form_page(values=None, error=None, status=200):
    preview = kefu().handovers.preview(me())
    return _render("handover_new.html", preview=preview, agents=_agents(), values=values or {}, error=error), status


@bp.get("/handovers/new")
@roles_required("agent")
def new():
    """What the handover would list now, with the fields the outgoing agent fills in."""
    return _form_page()


@bp.post("/handovers/new")
@roles_required("agent")
def start():
    form = request.form
    cases = form.getlist("case")
    included = set(form.getlist("include"))
    notes = {t: form.get(f"note_{t}", "") for t in cases if form.get(f"note_{t}", "").strip()}
    try:
        h = kefu().handovers.start(me(), form.get("incoming", ""), note=form.get("note"), case_notes=notes,
                                   leave=[t for t in cases if t not in included])
    except (InvalidInput, Conflict) as exc:
        return _form_page(values=form, error=exc.message, status=400 if isinstance(exc, InvalidInput) else 409)
    flash(_("已发起交接班 #%(id)s，等待 %(who)s 接班", id=h["id"], who=h["incoming"]), "success")
    return redirect(url_for("handover.show", hid=h["id"]))


@bp.get("/handovers/<int:hid>")
@roles_required(*READERS)
def show(hid):
    h = kefu().handovers.show(hid, actor=me())
    return _render("handover.html", h=h, may_accept=h["state"] == "open" and h["incoming"] == me())


@bp.post("/handovers/<int:hid>/accept")
@roles_required("agent")
def accept(hid):
    h = kefu().handovers.accept(hid, me())
    taken = sum(1 for i in h["items"] if i["kind"] == "case" and i["outcome"] == "taken")
    flash(_("已接班：%(n)s 张工单移交给您", n=taken), "success")
    return redirect(url_for("handover.show", hid=hid))
