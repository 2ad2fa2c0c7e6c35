"""The agent's desk and every worker's inbox: queues, task pages with the diagram's forms, claiming,
reassigning, escalating, and the intake of new tickets with customer lookup."""
from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import Conflict, FormValidationError, InvalidInput, NotFound
from engine.bpmn.forms import prefilled
from engine.limits import row_number
from engine.services.masking import CUSTOMER_FIELDS as CONTACT_KINDS, mask

from .access import START_ROLES, may_work, reveal_form, ticket_contact_fields, ticket_view
from .auth import kefu, me, roles_required, safe_next
from .labels import INTAKE_KINDS, KINDS, SEVERITIES, field_message, task_title, to_local

bp = Blueprint("desk", __name__)


def submitted(fields: list[dict], form) -> dict:
    """A form post as the engine takes it (it validates and converts); shown again as typed if refused."""
    values = {}
    for f in fields:
        if f.get("readonly"):
            continue
        if f["type"] == "users":
            values[f["id"]] = [n for n in form.getlist(f["id"]) if n.strip()]
        else:
            values[f["id"]] = form.get(f["id"], "")
    return values


def defaults(fields: list[dict], data: dict | None = None) -> dict:
    """What a form shows before anything is typed: the diagram's defaults, now for ``default_now`` dates and
    times, and the values of earlier steps a field's ``prefill`` names (``data``: the ticket's data)."""
    out = {f["id"]: f.get("default") or ([] if f["type"] == "users" else "") for f in fields}
    now = to_local(kefu().now())
    for f in fields:
        if f.get("default_now") and not out[f["id"]]:
            out[f["id"]] = now.strftime("%Y-%m-%dT%H:%M") if f["type"] == "datetime" else now.date().isoformat()
    out.update(prefilled(fields, data or {}))
    return out


def field_errors(exc: FormValidationError) -> dict:
    return {k: field_message(v) for k, v in exc.errors.items()}


def users_by_role() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for u in kefu().users.all():
        if u["active"]:
            for r in u["roles"]:
                out.setdefault(r, []).append(u)
    return out


def _next_url(default: str) -> str:
    return safe_next(request.form.get("next") or request.args.get("next"), default)


def _filtered(tasks: list[dict], kind: str | None, severity: str | None) -> list[dict]:
    return [t for t in tasks if (not kind or t["kind"] == kind) and (not severity or t["severity"] == severity)]


@bp.get("/")
@login_required
def home():
    """Everyone starts at their inbox."""
    return redirect(url_for("desk.inbox"))


@bp.get("/inbox")
@login_required
def inbox():
    """My tasks and my roles' queues, soonest due first; supervisors also see every ready task."""
    kind, severity = request.args.get("kind") or None, request.args.get("severity") or None
    tasks = _filtered(kefu().tasks.ready(actor=me()), kind, severity)
    queues = [{"key": "mine", "title": _("我的任务"), "tasks": [t for t in tasks if t["assignee"] == me()]}]
    for role in sorted(current_user.roles):
        queue = [t for t in tasks if t["role"] == role and t["assignee"] is None]
        if queue or role not in ("qa", "auditor", "process_owner"):
            queues.append({"key": role, "role": role, "tasks": queue})
    queued = {t["id"] for q in queues for t in q["tasks"]}
    offered = [t for t in tasks if t["id"] not in queued and t["assignee"] is None]  # candidate groups and users
    if offered:
        queues.append({"key": "offered", "title": _("候选任务"), "tasks": offered})
    everyone = None
    if current_user.has("supervisor"):
        everyone = _filtered(kefu().tasks.ready(), kind, severity)
        queues.append({"key": "all", "title": _("全部待办"), "tasks": everyone})
    repeats = _filtered(kefu().repeats.open_repeats(), kind, severity) \
        if current_user.has("supervisor") else []  # X3: flagged to the supervisor
    waiting = [h for h in kefu().handovers.day(actor=me()) if h["state"] == "open" and h["incoming"] == me()] \
        if current_user.has("agent") else []  # X2: a handover waiting for me to take over
    cases = kefu().instances.owned(me()) if current_user.has("agent") else None  # X1: 我的工单
    needing = kefu().instances.needing_owner() if current_user.has("supervisor") else None  # P12
    return render_template("inbox.html", queues=queues, kind=kind, severity=severity, kinds=KINDS,
                           severity_options=SEVERITIES, cases=cases, needing=needing,
                           users=users_by_role() if everyone or needing else {},
                           repeats=repeats, open_handover=waiting[0] if waiting else None)


@bp.post("/cases/<ref>/owner")
@roles_required(*START_ROLES)
def hand_over(ref):
    """Hand a case to another agent (X1): its owner does, or a supervisor (also for a case whose owner was named
    in the complaint, P12)."""
    to_user = request.form.get("to_user", "").strip()
    try:
        r = kefu().instances.set_owner(ref, to_user, me(), request.form.get("reason", ""))
    except (InvalidInput, Conflict) as exc:
        flash(_("未能移交工单：%(why)s", why=exc.message), "error")
    else:
        flash(_("工单 %(ticket)s 已移交给 %(user)s", ticket=r["ticket_no"], user=r["owner"]), "success")
    return redirect(_next_url(url_for("desk.inbox")))


def _task_page(task_id: str, values=None, errors=None, notice=None, status=200):
    # NotAllowed (403) for a user who may neither act on the task nor read its ticket, NotFound (404)
    t = kefu().tasks.get(task_id, actor=me())
    shown = ticket_view(current_user, kefu().instances.show(t["instance_id"]))  # I4: masked unless serving it
    steps = kefu().instances.steps(t["instance_id"])
    workable = may_work(current_user, t)
    values = values if values is not None else defaults(t["form"], shown.get("data"))
    for f in t["form"]:  # a read-only field shows what the process holds (kpi: the QA review's sampled ticket)
        if f.get("readonly") and (shown.get("data") or {}).get(f["id"]) is not None:
            values[f["id"]] = shown["data"][f["id"]]
    return render_template(
        "task.html", t=t, i=shown, steps=steps, workable=workable,
        values=values, errors=errors or {}, notice=notice,
        users=users_by_role(), show_contact=not shown["contact_masked"],
        reveal=reveal_form(current_user, shown["contact_masked"],
                           url_for("records.reveal", ref=shown["ticket_no"]), ticket_contact_fields(shown))), status


@bp.get("/tasks/<task_id>")
@login_required
def task(task_id):
    """One task: its form from the diagram beside the customer, the ticket's history and earlier steps."""
    return _task_page(task_id)


@bp.post("/tasks/<task_id>")
@login_required
def complete(task_id):
    """Submit the task's form; the engine validates it and nothing is saved unless all of it is right."""
    t = kefu().tasks.get(task_id, actor=me())
    values = submitted(t["form"], request.form)
    if t["state"] == "ready" and not may_work(current_user, t):
        abort(403, _("这个任务不属于您的角色或已被他人认领"))
    try:
        result = kefu().tasks.complete(task_id, me(), values)
    except FormValidationError as exc:
        return _task_page(task_id, values, field_errors(exc), status=422)
    except Conflict as exc:
        return _task_page(task_id, values, notice=_conflict_text(exc), status=409)
    flash(_("已提交：%(task)s（%(ticket)s）", task=task_title(t), ticket=result["ticket_no"]), "success")
    return redirect(_follow_up(result))


def _conflict_text(exc: Conflict) -> str:
    if exc.details.get("task_state"):
        return _("这个任务已经被处理过了，您这次提交的内容没有保存，工单也没有任何改变。")
    return _("这张工单刚刚被其他人修改，您这次提交的内容没有保存。请刷新页面后再试。")


def _follow_up(result: dict) -> str:
    """The next task of the same ticket if it is the user's to work, else the inbox."""
    for brief in result.get("tasks", []):
        if may_work(current_user, brief):
            return url_for("desk.task", task_id=brief["id"])
    return url_for("desk.inbox")


@bp.post("/tasks/<task_id>/claim")
@login_required
def claim(task_id):
    """Take a task from the role's queue."""
    t = kefu().tasks.get(task_id, actor=me())
    if not may_work(current_user, t):
        abort(403, _("这个任务不属于您的角色或已被他人认领"))
    try:
        kefu().tasks.claim(task_id, me())
    except Conflict as exc:
        flash(_conflict_text(exc), "error")
    else:
        flash(_("已认领：%(task)s", task=task_title(t)), "success")
    return redirect(_next_url(url_for("desk.task", task_id=task_id)))


@bp.post("/tasks/<task_id>/unclaim")
@login_required
def unclaim(task_id):
    """Put a claimed task back into its role's queue (the assignee, or a supervisor)."""
    t = kefu().tasks.get(task_id, actor=me())
    if t.get("assignee") != me() and not current_user.has("supervisor"):
        abort(403, _("只有认领人或客服主管可以释放任务"))
    try:
        kefu().tasks.unclaim(task_id, me())
    except Conflict as exc:
        flash(_conflict_text(exc), "error")
    else:
        flash(_("已释放：%(task)s", task=task_title(t)), "success")
    return redirect(_next_url(url_for("desk.inbox")))


@bp.post("/tasks/<task_id>/reassign")
@roles_required("supervisor")
def reassign(task_id):
    """A supervisor gives a ready task to a user who holds its role."""
    t = kefu().tasks.get(task_id, actor=me())
    to_user = request.form.get("to_user", "").strip()
    try:
        kefu().tasks.reassign(task_id, me(), to_user)
    except InvalidInput:
        flash(_("不能改派给 %(user)s：该用户不具备任务所需的角色", user=to_user or "—"), "error")
    except Conflict as exc:
        flash(_conflict_text(exc), "error")
    else:
        flash(_("已将“%(task)s”改派给 %(user)s", task=task_title(t), user=to_user), "success")
    return redirect(_next_url(url_for("desk.inbox")))


@bp.post("/tasks/<task_id>/escalate")
@roles_required(*START_ROLES)
def escalate(task_id):
    """Escalate a stalled transferred task to the supervisor (000 §五.1); the task stays where it is."""
    reason = request.form.get("reason", "").strip()
    back = _next_url(url_for("desk.inbox"))
    if not reason:
        flash(_("请填写升级原因"), "error")
        return redirect(back)
    try:
        result = kefu().tasks.escalate(task_id, me(), reason)
    except Conflict:
        flash(_("这个任务已经升级过，主管尚未处理；没有重复升级。"), "error")
    except FormValidationError as exc:
        flash("；".join(field_message(m) for m in exc.errors.values()), "error")
    except InvalidInput:
        flash(_("只有转办给其他部门的任务可以升级"), "error")
    else:
        flash(_("已升级至客服主管：%(ticket)s", ticket=result["ticket_no"]), "success")
    return redirect(back)


# ---------------------------------------------------------------- intake
def _intake_page(kind: str, values=None, errors=None, customer=None, status=200):
    step = kefu().instances.start_form(kind)
    return render_template("intake.html", kind=kind, step=step, values=values or defaults(step["form"]),
                           errors=errors or {}, customer=customer, users=users_by_role()), status


@bp.get("/new/<kind>")
@roles_required(*START_ROLES)
def intake(kind):
    """A new consultation, complaint or repair: the first task's form, with customer lookup."""
    if kind not in INTAKE_KINDS:
        abort(404)
    customer = None
    ref = request.args.get("customer", "").strip()
    if ref:
        if row_number(ref) is None:
            abort(400, _("客户编号不正确：%(ref)s", ref=ref[:20]))
        customer = kefu().masking.customer(kefu().customers.get(row_number(ref)), me())  # I4
    values = None
    if customer:
        step = kefu().instances.start_form(kind)
        values = defaults(step["form"])
        prefill = {"customer_name": customer["name"], "contact_phone": customer["phone"],
                   "region": customer["region"]}
        values.update({k: v for k, v in prefill.items() if k in values and v})
    return _intake_page(kind, values, customer=customer)


@bp.post("/new/<kind>")
@roles_required(*START_ROLES)
def intake_submit(kind):
    """Open the ticket with the intake form completed; on any error nothing is created and nothing lost."""
    if kind not in INTAKE_KINDS:
        abort(404)
    step = kefu().instances.start_form(kind)
    values = submitted(step["form"], request.form)
    ref = request.form.get("kefu_customer_id", "").strip()
    customer = None
    try:
        if ref and row_number(ref) is None:
            raise InvalidInput(_("客户编号不正确：%(ref)s", ref=ref[:20]))
        customer = kefu().customers.get(row_number(ref)) if ref else None
        data = _unmasked(values, customer)
        result = kefu().instances.start(kind, me(), data=data, customer_id=customer["id"] if customer else None)
    except FormValidationError as exc:
        return _intake_page(kind, values, field_errors(exc),
                            customer and kefu().masking.customer(customer, me()), status=422)
    except (InvalidInput, NotFound) as exc:  # e.g. the chosen customer was removed meanwhile: keep the typing
        return _intake_page(kind, values, {"_form": _("无法登记：%(reason)s", reason=exc.message)}, None,
                            status=422)
    flash(_("已登记：%(ticket)s", ticket=result["ticket_no"]), "success")
    if customer is None:
        _warn_same_phone(values, result)
    for brief in result["tasks"]:
        if may_work(current_user, brief):
            return redirect(url_for("desk.task", task_id=brief["id"]))
    return redirect(url_for("records.instance", ref=result["ticket_no"]))


def _unmasked(values: dict, customer: dict | None) -> dict:
    """The intake form with the chosen profile's masked contact values (I4: prefilled as the agent reads them)
    put back as the profile holds them, so the ticket records the real number and address."""
    if not customer:
        return dict(values)
    full = {mask(kind, customer.get(key)): customer.get(key) for key, kind in CONTACT_KINDS.items()
            if customer.get(key)}
    return {k: full.get(v, v) if isinstance(v, str) else v for k, v in values.items()}


def _warn_same_phone(values: dict, result: dict) -> None:
    """A ticket typed for a new customer whose phone is an existing customer's is linked to that customer: say so
    when the names differ (a warning; the agent may correct the profile)."""
    typed = (values.get("customer_name") or "").strip()
    others = [c for c in kefu().customers.same_phone(values.get("contact_phone")) if c["name"] != typed]
    if typed and others:
        flash(_("注意：电话 %(phone)s 已属于客户“%(name)s”，工单已关联到该客户；如不是同一人，请核对客户资料。",
                phone=values.get("contact_phone"), name=others[0]["name"]), "warning")


# ---------------------------------------------------------------- customer lookup for intake
def _lookup_row(c: dict) -> dict:
    return {k: c.get(k, False) for k in ("id", "name", "phone", "company", "address", "region", "vip", "masked")}


@bp.get("/api/customers")
@roles_required(*START_ROLES)
def find_customers():
    """Customers whose phone or name contains ``q`` (VIPs first), for the intake form."""
    found = kefu().masking.customers(kefu().customers.find(request.args.get("q", ""), limit=10), me())
    return jsonify([_lookup_row(c) for c in found])


@bp.post("/api/customers")
@roles_required(*START_ROLES)
def create_customer():
    """Create a customer profile on the spot while the customer is on the phone (I2)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify({"error": {"code": "invalid_input", "message": _("请求格式不正确")}}), 400
    data = {k: body.get(k) for k in ("name", "phone", "company", "address", "region") if body.get(k)}
    data["vip"] = bool(body.get("vip"))
    same = kefu().customers.same_phone(data.get("phone"))
    try:
        c = kefu().customers.create(data, actor=me())
    except InvalidInput as exc:
        errors = {f: field_message(exc.message) for f in exc.details.get("fields") or ["name"]}
        return jsonify({"error": {"code": exc.code, "errors": errors}}), 400
    row = _lookup_row(c)
    if same:  # a warning, not a refusal: the agent sees who already has this number
        row["same_phone"] = [{"id": x["id"], "name": x["name"]} for x in same]
        row["warning"] = _("电话与已有客户相同：%(names)s，请确认不是同一位客户",
                           names="、".join(x["name"] for x in same))
    return jsonify(row), 201
