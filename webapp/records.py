"""Tickets and customers: the instance page with its diagram and timeline, customer profiles (I3) with
contact details masked where the ticket at hand does not need them (I4)."""
from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import InvalidInput, NotFound

from .access import (CUSTOMER_EDIT_ROLES, WIDE_ROLES, check_instance, contact_visible, may_reveal,
                     may_see_customer, may_work, reveal_form, ticket_contact_fields, ticket_view)
from .auth import kefu, roles_required
from .designer import OWNER as MIGRATE_ROLES  # who may move a ticket (the migrate routes' own roles)
from .labels import field_message

bp = Blueprint("records", __name__)

CUSTOMER_FORM = ("name", "phone", "email", "company", "address", "region", "needs", "special_note",
                 "customer_class", "owner", "greeting_channel", "anniversary")  # care (Q1, Q3)
HIDDEN_CONTACT = ("phone", "email", "address")
PASSED = {"task_completed", "gateway_passed", "script_ran", "timer_fired", "start_passed", "end_reached"}


@bp.get("/instances/<ref>")
@login_required
def instance(ref):
    """One ticket, the whole case on one page: status, deadlines, the diagram, each completed step with its data
    and clock, the case file (notes, contacts, attachments), and the timeline or the full audit trail."""
    return instance_page(ref)


def instance_page(ref, casefile_error: str | None = None, status: int = 200, revealed=None, reveal_error=None):
    shown = kefu().instances.show(ref)
    check_instance(current_user, shown)
    shown = ticket_view(current_user, shown)  # I4: contact data masked unless the user serves this case
    ready = kefu().tasks.ready(instance=shown["instance_id"])
    my_tasks = {t["id"] for t in ready if may_work(current_user, t)}
    escalatable = {t["id"] for t in ready if t.get("escalatable")}
    steps = kefu().instances.steps(shown["instance_id"])
    # Everything the ticket has passed through: completed tasks, gateways taken, scripts, timers, ends.
    done = list(dict.fromkeys(e["bpmn_id"] for e in shown["events"] if e["bpmn_id"] and e["type"] in PASSED))
    return render_template("instance.html", i=shown, steps=steps, done=done, cards=step_cards(shown, steps),
                           my_tasks=my_tasks, escalatable=escalatable, may_migrate=_may_migrate(shown),
                           may_write=not current_user.has("auditor") or len(current_user.roles) > 1,
                           casefile_error=casefile_error,
                           show_contact=not shown["contact_masked"],
                           reveal=reveal_form(current_user, shown["contact_masked"],
                                              url_for("records.reveal", ref=shown["ticket_no"]),
                                              ticket_contact_fields(shown), revealed, reveal_error)), status


@bp.post("/instances/<ref>/reveal")
@login_required
def reveal(ref):
    """Reveal one masked contact value of a ticket with a reason (I4); recorded as ``value_revealed``."""
    shown = kefu().instances.show(ref)
    check_instance(current_user, shown)
    if not may_reveal(current_user):
        abort(403, _("您的角色不能查看完整的客户联系方式"))
    field, reason = request.form.get("field", "").strip(), request.form.get("reason", "").strip()
    if not reason:
        return instance_page(ref, reveal_error=_("请填写查看原因"), status=400)
    try:
        result = kefu().masking.reveal(ref, field, current_user.name, reason)
    except (InvalidInput, NotFound) as exc:
        return instance_page(ref, reveal_error=exc.message, status=400)
    return instance_page(ref, revealed=result)


def step_cards(shown: dict, steps: dict) -> list[dict]:
    """Each completed step: who and when, the values submitted with their form's fields, and the clocks it
    stopped (met or late)."""
    clocks = {}
    for c in shown.get("clocks") or []:
        if c.get("task_id") and c["state"] in ("met", "missed"):
            clocks.setdefault(c["task_id"], []).append(c)
    cards = []
    for e in shown["events"]:
        if e["type"] != "task_completed":
            continue
        step = steps.get(e["bpmn_id"]) or {"task_name": e["task_name"], "form": []}
        data = e["data"] or {}
        values = [{"field": f, "value": data[f["id"]]} for f in step["form"]
                  if data.get(f["id"]) not in (None, "", [])]
        cards.append({"event": e, "step": step, "shown": values, "clocks": clocks.get(e["task_id"], [])})
    return cards


def _may_migrate(shown: dict) -> bool:
    """Whether the ticket page offers a move to a newer version: to the process owner (who alone may move a
    ticket), for a ticket still running, when a newer version of its process is deployed."""
    if not current_user.has(*MIGRATE_ROLES) or shown["status"] not in ("active", "incident"):
        return False
    newest = kefu().definitions.newest_version(shown["definition"]["process_id"])
    return newest is not None and newest > shown["definition"]["version"]


@bp.get("/instances/<ref>/diagram.xml")
@login_required
def diagram(ref):
    """The BPMN XML of the definition version this ticket runs on, for the viewer."""
    check_instance(current_user, kefu().instances.show(ref))
    return Response(kefu().instances.diagram_xml(ref)["xml"], mimetype="application/xml")


@bp.get("/customers")
@roles_required(*WIDE_ROLES)
def customers():
    """Find customers by phone or name."""
    q = request.args.get("q", "").strip()
    found = kefu().masking.customers(kefu().customers.find(q, limit=50), current_user.name) if q else []
    return render_template("customers.html", q=q, found=found, show_contact=False)


def _customer_page(customer_id: int, values=None, errors=None, status=200, revealed=None, reveal_error=None):
    c = kefu().customers.get(customer_id)
    if not may_see_customer(current_user, customer_id):
        abort(403, _("您没有处理这位客户的工单，不能查看"))
    c = kefu().masking.customer(c, current_user.name)  # I4
    show_contact = not c["masked"]
    if values is None and not show_contact:  # the edit form: hidden contact fields blank (left blank: unchanged)
        values = {**c, **{k: "" for k in HIDDEN_CONTACT}}
    fields = [k for k in HIDDEN_CONTACT if c.get(k)]
    return render_template("customer.html", c=c, tickets=kefu().instances.recent(customer_id=customer_id, limit=500),
                           show_contact=show_contact,
                           editable=current_user.has(*CUSTOMER_EDIT_ROLES),
                           history=kefu().customers.history(customer_id),
                           reveal=reveal_form(current_user, not show_contact,
                                              url_for("records.customer_reveal", customer_id=customer_id),
                                              fields, revealed, reveal_error),
                           values=values or c, errors=errors or {}), status


@bp.post("/customers/<int:customer_id>/reveal")
@login_required
def customer_reveal(customer_id):
    """Reveal one masked contact value of a profile with a reason (I4); recorded in the security log."""
    kefu().customers.get(customer_id)
    if not may_see_customer(current_user, customer_id) or not may_reveal(current_user):
        abort(403, _("您的角色不能查看完整的客户联系方式"))
    field, reason = request.form.get("field", "").strip(), request.form.get("reason", "").strip()
    if not reason:
        return _customer_page(customer_id, reveal_error=_("请填写查看原因"), status=400)
    try:
        result = kefu().masking.reveal_customer(customer_id, field, current_user.name, reason)
    except InvalidInput as exc:
        return _customer_page(customer_id, reveal_error=exc.message, status=400)
    return _customer_page(customer_id, revealed=result)


@bp.get("/customers/<int:customer_id>")
@login_required
def customer(customer_id):
    """A customer's profile and all their tickets."""
    return _customer_page(customer_id)


@bp.post("/customers/<int:customer_id>")
@roles_required(*CUSTOMER_EDIT_ROLES)
def customer_update(customer_id):
    """Keep the profile up to date (I3); a refused change keeps what was typed."""
    kefu().customers.get(customer_id)
    values = {k: request.form.get(k, "").strip() for k in CUSTOMER_FORM}
    data = {k: (v or None) for k, v in values.items()}
    if not contact_visible(current_user, customer_id):  # hidden contact fields left blank stay as they are
        for key in HIDDEN_CONTACT:
            if not values[key] or "****" in values[key]:  # blank, or the masked value sent back (I4)
                del data[key]
    data["vip"] = values["vip"] = request.form.get("vip") == "on"
    data["greeting_consent"] = values["greeting_consent"] = request.form.get("greeting_consent") == "on"
    try:
        kefu().customers.update(customer_id, data, actor=current_user.name)
    except InvalidInput as exc:
        errors = {f: field_message(exc.message) for f in exc.details.get("fields") or ["name"]}
        shown = kefu().masking.customer(kefu().customers.get(customer_id), current_user.name)
        return _customer_page(customer_id, {**shown, **values}, errors, status=422)  # what was typed, kept
    flash(_("客户资料已更新"), "success")
    return redirect(url_for("records.customer", customer_id=customer_id))
