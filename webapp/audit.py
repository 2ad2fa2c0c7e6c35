"""Audit (issue 6): search every ticket, its trace (the diagram with the path taken, every event with actor,
time, data and rule IDs, the definition version, SLA targets and calendar used, deadlines met or missed),
exports as CSV and JSON. Read-only: nothing here changes anything, and the auditor role can change nothing
anywhere (tests/test_audit_readonly.py walks every route)."""
from __future__ import annotations

import itertools
import json

from flask import Blueprint, Response, abort, render_template, request
from flask_login import current_user
from flask_babel import gettext as _, lazy_gettext as _l

from engine import InvalidInput
from engine.records.exports import search_csv_chunks, search_json_chunks, trace_csv

from .access import ticket_view
from .auth import kefu, roles_required
from .labels import csv_headers

bp = Blueprint("audit", __name__)

AUDIT_ROLES = ("auditor", "supervisor", "process_owner")
READ_ONLY_ROLES = {"auditor"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SESSION_ENDPOINTS = {"auth.login", "auth.logout", "auth.language", "auth.password"}  # one's own sign-in, no record changes
# Reading a masked contact value with a reason (I4) changes no record: it only adds its own audit event.
READING_ENDPOINTS = {"records.reveal", "records.customer_reveal"}
SEARCH_ARGS = ("ticket", "customer", "kind", "severity", "status", "agent", "date_from", "date_to", "overdue",
               "limit", "after")
DEADLINE_STATES = {"met": _l("按时"), "missed": _l("超时"), "running": _l("进行中"), "paused": _l("计时暂停")}


def _search_args() -> dict:
    return {k: request.args.get(k) for k in SEARCH_ARGS if request.args.get(k) not in (None, "")}


def _json(value, filename: str) -> Response:
    return Response(json.dumps(value, ensure_ascii=False, indent=2, default=str), mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _csv(text: str, filename: str) -> Response:
    # A byte-order mark lets spreadsheet programs read the UTF-8 Chinese text.
    return Response("\ufeff" + text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.before_app_request
def read_only_roles_change_nothing():
    """A user holding only read-only roles (the auditor) is refused every changing request, on every route,
    including routes added later; the engine's own checks stay in force behind this."""
    if request.method in SAFE_METHODS or request.endpoint in SESSION_ENDPOINTS | READING_ENDPOINTS:
        return None
    if current_user.is_authenticated and not (current_user.roles - READ_ONLY_ROLES):
        abort(403, _("审计角色只能查看，不能修改任何内容"))
    return None


@bp.app_template_filter("pretty_json")
def pretty_json(value) -> str:
    """Submitted data as people read it (Chinese kept, not escaped); the template escapes the HTML."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "), default=str)


@bp.get("/audit")
@roles_required(*AUDIT_ROLES)
def search():
    """Find tickets by number, customer, kind, severity, status, agent, dates, overdue; newest first."""
    args = _search_args()
    try:
        page, error = kefu().audit.search(args), None
    except InvalidInput as exc:
        page, error = {"rows": [], "next": None, "filters": {}}, exc.message
    status = 400 if error else 200
    return render_template("audit_search.html", args=args, page=page, error=error,
                           kind_choices=("consultation", "complaint", "repair", "escalation")), status


@bp.get("/audit/export.<any(csv, json):fmt>")
@roles_required(*AUDIT_ROLES)
def export_search(fmt):
    """The whole search result, every row, as CSV or JSON: streamed as it is read, in batches."""
    filters, rows = kefu().audit.rows(_search_args())  # bad filters: 400 before anything is sent
    rows = _first_read(rows)  # and a failing first read: an error page, not a broken download
    if fmt == "json":
        return Response(search_json_chunks(filters, rows), mimetype="application/json",
                        headers={"Content-Disposition": 'attachment; filename="kefu-search.json"'})
    return Response(_with_bom(search_csv_chunks(rows, csv_headers())), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="kefu-search.csv"'})


def _first_read(rows):
    """``rows`` with its first batch read now, before the response's headers are sent."""
    first = next(rows, None)
    return iter(()) if first is None else itertools.chain([first], rows)


def _with_bom(chunks):
    yield "\ufeff"  # as in _csv: spreadsheet programs then read the UTF-8 Chinese text
    yield from chunks


@bp.get("/audit/<ref>")
@roles_required(*AUDIT_ROLES)
def trace(ref):
    """Everything that happened to one ticket, and whether its record is whole."""
    t = ticket_view(current_user, kefu().audit.trace(ref))  # I4: contact data masked
    problems = kefu().audit.verify(t["instance_id"])
    return render_template("audit_trace.html", t=t, problems=problems, steps=kefu().instances.steps(t["instance_id"]),
                           deadline_states=DEADLINE_STATES)


@bp.get("/audit/<ref>.<any(csv, json):fmt>")
@roles_required(*AUDIT_ROLES)
def export_trace(ref, fmt):
    """An instance's trace: CSV (one row per event) or JSON (everything on the trace page)."""
    t = ticket_view(current_user, kefu().audit.trace(ref))  # I4: contact data masked
    if fmt == "json":
        return _json(t, f"{t['ticket_no']}.json")
    return _csv(trace_csv(t, csv_headers()), f"{t['ticket_no']}.csv")


@bp.get("/audit/<ref>/diagram.xml")
@roles_required(*AUDIT_ROLES)
def diagram(ref):
    """The BPMN XML of the definition version the ticket ran on."""
    return Response(kefu().instances.diagram_xml(ref)["xml"], mimetype="application/xml")
