"""The case file on the ticket page (notes, the contact log, attachments and their download) and the desk's
search for agents and supervisors (issue 20). The engine checks who may read and write; these routes turn its
answers into pages."""
from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import InvalidInput
from engine.services.casefile import MAX_ATTACHMENT

from .access import START_ROLES, WIDE_ROLES
from .auth import kefu, me, roles_required
from .hardening import BODY_LIMITS
from .labels import in_english, to_local, CHANNELS, ENGINE_EVENTS, KINDS, SEVERITIES, STATUSES, VIEWS

bp = Blueprint("casefile", __name__)
BODY_LIMITS["casefile.add_attachment"] = MAX_ATTACHMENT + 256 * 1024  # the file and the form around it
SEARCH_ROLES = START_ROLES


def display_names() -> dict[str, str]:
    """User name → display name, read once per request."""
    if "display_names" not in g:
        g.display_names = {u["name"]: u.get("display_name") or u["name"] for u in kefu().users.all()}
    return g.display_names


def who(name: str | None) -> str:
    """The display name of a user (the user name when there is none); the engine itself is 系统."""
    if not name:
        return ""
    if name == "system":
        return _("系统")
    return display_names().get(name, name)


def day(value) -> str:
    """A day as people say it: 12月1日 (Dec 1 in English), Asia/Shanghai."""
    local = to_local(value)
    if local is None:
        return "—"
    return local.strftime("%b %-d") if in_english() else f"{local.month}月{local.day}日"


def register(app) -> None:
    app.register_blueprint(bp)
    app.jinja_env.filters.update(who=who, day=day)
    app.jinja_env.globals.update(channels=CHANNELS, views=VIEWS, engine_events=ENGINE_EVENTS)


def _back(ref: str) -> str:
    return url_for("records.instance", ref=ref) + "#casefile"


def _refused(ref: str, exc: InvalidInput):
    from .records import instance_page
    return instance_page(ref, casefile_error=_("未保存：%(reason)s", reason=_message(exc)), status=422)


def _message(exc: InvalidInput) -> str:
    """The engine's refusal in the reader's language."""
    reason, fields = exc.details.get("reason"), exc.details.get("fields") or []
    if reason == "type":
        return _("不是可接受的文件类型：只接受 JPEG、PNG、GIF、WebP、PDF 或纯文本（按文件内容检查）")
    if reason == "too_large":
        return _("文件超过 20 MB")
    if reason == "empty":
        return _("文件是空的")
    if "channel" in fields:
        return _("请选择联系方式：电话、短信或上门")
    if "longer than" in exc.message:
        return _("内容过长")
    if fields and exc.message.endswith("is empty"):
        return _("内容不能为空")
    return exc.message


@bp.post("/instances/<ref>/notes")
@login_required
def add_note(ref):
    """An internal note on the ticket."""
    try:
        kefu().casefile.note(ref, me(), request.form.get("text", ""))
    except InvalidInput as exc:
        return _refused(ref, exc)
    flash(_("已添加备注"), "success")
    return redirect(_back(ref))


@bp.post("/instances/<ref>/contacts")
@login_required
def add_contact(ref):
    """A call, a message or a visit to the customer and its outcome."""
    try:
        kefu().casefile.contact(ref, me(), request.form.get("channel", ""), request.form.get("outcome", ""))
    except InvalidInput as exc:
        return _refused(ref, exc)
    flash(_("已记录联系"), "success")
    return redirect(_back(ref))


@bp.post("/instances/<ref>/attachments")
@login_required
def add_attachment(ref):
    """A photo, a scan or a document on the ticket (checked by its content; at most 20 MB)."""
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise InvalidInput(_("请选择要上传的文件"))
        content = upload.read(MAX_ATTACHMENT + 1)
        a = kefu().casefile.attach(ref, me(), upload.filename, content,
                                   supersedes=_number(request.form.get("supersedes")))
    except InvalidInput as exc:
        return _refused(ref, exc)
    flash(_("已上传附件：%(name)s", name=a["filename"]), "success")
    return redirect(_back(ref))


def _number(value):
    value = (value or "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise InvalidInput(_("附件编号不正确"))
    return int(value)


@bp.get("/instances/<ref>/attachments/<int:attachment_id>")
@login_required
def download(ref, attachment_id):
    """The file itself, for whoever may read the ticket; always as a download, never shown inline."""
    a = kefu().casefile.download(attachment_id, me(), ref=ref)
    response = Response(a["content"], mimetype=a["content_type"])
    ascii_name = a["filename"].encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    response.headers["Content-Disposition"] = (f'attachment; filename="{ascii_name}"; '
                                               f"filename*=UTF-8''{quote(a['filename'])}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


# ---------------------------------------------------------------- search
SEARCH_ARGS = ("status", "kind", "severity", "assignee", "date_from", "date_to", "view")


@bp.get("/search")
@roles_required(*SEARCH_ROLES)
def search():
    """Tickets by number, customer name or phone; filters and the saved views."""
    q = request.args.get("q", "").strip()
    filters = {k: request.args.get(k, "").strip() for k in SEARCH_ARGS}
    asked = bool(q or any(filters.values()))
    result, error = {"rows": [], "next": None}, None
    if asked:
        try:
            result = kefu().casefile.search(me(), q, {**filters, "after": request.args.get("after") or None})
        except InvalidInput as exc:
            error = exc.message
    status = 400 if error else 200
    return render_template("search.html", q=q, f=filters, result=result, asked=asked, error=error,
                           kinds=KINDS, statuses=STATUSES, severity_options=SEVERITIES,
                           agents=[u for u in kefu().users.all() if u["active"] and set(u["roles"]) & {
                               "agent", "supervisor", "department", "technician", "taskforce"}],
                           wide=current_user.has(*WIDE_ROLES)), status
