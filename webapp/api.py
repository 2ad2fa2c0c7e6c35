"""The JSON API for integrations (``/api/v1``): a telephony system opens tickets, other systems read them,
integration users list, claim and complete tasks.

Authentication is ``Authorization: Bearer <token>`` only (``kefu users token NAME``); sessions and cookies are
ignored, which is why the blueprint is exempt from CSRF. A token acts as its user: the engine checks roles,
lanes, groups and claims exactly as for the web UI, and validates form data with the same calls.

Every error is ``{"error": {"code": ..., "message": ..., "fields": {...}?}}`` with a stable code:
unauthorized 401, forbidden 403, not_found 404, method_not_allowed 405, conflict 409, payload_too_large 413,
unsupported_media_type 415, invalid_input 400 (``fields`` maps a field to its message), internal_error 500.
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from engine import Conflict, FormValidationError, InvalidInput, KefuError, NotAllowed, NotFound
from engine.bpmn.diagram import ROLES
from engine.limits import load_json
from engine.services.casefile import MAX_ATTACHMENT

from .extensions import csrf
from .hardening import BODY_LIMITS
from .access import WIDE_ROLES, may_see_customer, may_see_instance
from .auth import WebUser
from .labels import INTAKE_KINDS

log = logging.getLogger("kefu.api")

PREFIX = "/api/v1"
MAX_BODY = 256 * 1024  # bytes; intake and task forms are far smaller
MAX_QUERY = 200  # characters of a search text

bp = Blueprint("api", __name__, url_prefix=PREFIX)
csrf.exempt(bp)
BODY_LIMITS["api"] = MAX_BODY

# Who may do what beyond the engine's own checks (which stay authoritative for every change).
TICKET_ROLES = ("agent", "supervisor", "integration")
CUSTOMER_SEARCH_ROLES = ("agent", "supervisor", "integration")
READ_ROLES = (*WIDE_ROLES, "integration")

STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "method_not_allowed": 405, "conflict": 409,
          "payload_too_large": 413, "unsupported_media_type": 415, "invalid_input": 400, "internal_error": 500}


class ApiError(Exception):
    def __init__(self, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields


def error(code: str, message: str, fields: dict | None = None, status: int | None = None):
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return jsonify({"error": body}), status or STATUS[code]


def kefu():
    return current_app.extensions["kefu"]


def user() -> WebUser:
    return g.api_user


# ---------------------------------------------------------------- authentication and request checks
@bp.before_request
def authenticate():
    request.max_content_length = BODY_LIMITS.get(request.endpoint or "", MAX_BODY)
    if request.endpoint == "api.openapi":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error("unauthorized", "send 'Authorization: Bearer <token>'; get a token with "
                                     "'kefu users token NAME'")
    found = kefu().users.token_user(token.strip())
    if found is None:
        return error("unauthorized", "unknown or revoked token, or its user is inactive")
    g.api_user = WebUser(found)
    return None


def body(allowed: tuple[str, ...]) -> dict:
    """The request's JSON object with only ``allowed`` keys; an empty body is ``{}``."""
    if request.content_length and request.content_length > MAX_BODY:
        raise ApiError("payload_too_large", f"the body is larger than {MAX_BODY} bytes")
    raw = request.get_data(cache=True)  # bounded by request.max_content_length
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        raise ApiError("unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'")
    try:
        value = load_json(raw)  # nesting is bounded: a deep body is refused, never a RecursionError
    except InvalidInput as exc:
        raise ApiError("invalid_input", exc.message) from None
    if not isinstance(value, dict):
        raise ApiError("invalid_input", "the body must be a JSON object")
    if _has_nul(value):
        raise ApiError("invalid_input", "the body contains a NUL character (\\u0000), which no field accepts")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ApiError("invalid_input", f"unknown field(s): {', '.join(map(str, unknown))}; "
                                        f"allowed: {', '.join(allowed) or 'none'}",
                       {k: "unknown field" for k in unknown})
    return value


def _has_nul(value) -> bool:
    """Whether a NUL character hides in any key or string of a JSON value (PostgreSQL cannot store one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def object_field(value, name: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError("invalid_input", f"'{name}' must be a JSON object", {name: "must be a JSON object"})
    return value


def require(*roles) -> None:
    if not user().has(*roles):
        raise ApiError("forbidden", f"user {user().name} may not do this (needs role {' or '.join(roles)})")


def query_args(allowed: tuple[str, ...]) -> None:
    unknown = [k for k in request.args if k not in allowed]
    if unknown:
        raise ApiError("invalid_input", f"unknown query parameter(s): {', '.join(unknown)}",
                       {k: "unknown parameter" for k in unknown})


# ---------------------------------------------------------------- errors
def _from_kefu(exc: KefuError):
    if isinstance(exc, FormValidationError):
        return error("invalid_input", exc.headline, {k: str(v) for k, v in exc.errors.items()})
    if isinstance(exc, NotFound):
        return error("not_found", exc.message)
    if isinstance(exc, NotAllowed) or exc.code == "clock_refused":
        return error("forbidden", exc.message)
    if isinstance(exc, Conflict):
        return error("conflict", exc.message)
    if isinstance(exc, InvalidInput):
        fields = exc.details.get("fields")
        return error("invalid_input", exc.message, {f: exc.message for f in fields} if fields else None)
    if exc.code == "incident":  # a script of the diagram failed: the ticket was not opened
        return error("conflict", exc.message)
    log.error("API request %s %s failed: %s", request.method, request.path, exc.message)
    return error("internal_error", "the service could not do this; the error is logged")


_HTTP_CODES = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type"}


def from_http(exc: HTTPException):
    """An HTTP error as the API's JSON error (also for URLs under the prefix that no view matched)."""
    code = _HTTP_CODES.get(exc.code or 500)
    if code is None:
        return error("internal_error" if (exc.code or 500) >= 500 else "invalid_input",
                     exc.description or exc.name, status=exc.code)
    response = error(code, exc.description or exc.name, status=exc.code)
    if exc.code == 405 and getattr(exc, "valid_methods", None):
        response[0].headers["Allow"] = ", ".join(exc.valid_methods)
    return response


@bp.errorhandler(Exception)
def api_error(exc):
    if isinstance(exc, ApiError):
        return error(exc.code, exc.message, exc.fields)
    if isinstance(exc, KefuError):
        return _from_kefu(exc)
    if isinstance(exc, HTTPException):
        return from_http(exc)
    log.exception("API request %s %s failed", request.method, request.path)
    return error("internal_error", "the service could not do this; the error is logged")


# ---------------------------------------------------------------- tickets and customers
@bp.post("/tickets")
def start_ticket():
    """Open a consultation, complaint or repair; with ``data`` the intake form is completed at once."""
    require(*TICKET_ROLES)
    b = body(("kind", "customer_id", "data"))
    kind = b.get("kind")
    if kind not in INTAKE_KINDS:
        raise ApiError("invalid_input", f"'kind' must be one of {', '.join(INTAKE_KINDS)}",
                       {"kind": f"one of {', '.join(INTAKE_KINDS)}"})
    customer_id = b.get("customer_id")
    if customer_id is not None and (not isinstance(customer_id, int) or isinstance(customer_id, bool)):
        raise ApiError("invalid_input", "'customer_id' must be an integer", {"customer_id": "must be an integer"})
    data = object_field(b.get("data"), "data")
    result = kefu().instances.start(kind, user().name, data=data, customer_id=customer_id)
    return jsonify(result), 201


@bp.get("/customers")
def find_customers():
    """Customers whose phone or name contains ``q``, VIPs first (at most 20)."""
    require(*CUSTOMER_SEARCH_ROLES)
    query_args(("q",))
    q = request.args.get("q", "")
    if len(q) > MAX_QUERY:
        raise ApiError("invalid_input", f"'q' is longer than {MAX_QUERY} characters", {"q": "too long"})
    return jsonify({"customers": kefu().masking.customers(kefu().customers.find(q, limit=20), user().name)})


@bp.get("/customers/<int:customer_id>")
def customer(customer_id):
    """One customer profile."""
    c = kefu().customers.get(customer_id)
    if not (user().has(*CUSTOMER_SEARCH_ROLES) or may_see_customer(user(), customer_id)):
        raise ApiError("forbidden", f"user {user().name} may not see customer {customer_id}")
    return jsonify(kefu().masking.customer(c, user().name))


@bp.post("/customers/<int:customer_id>/reveal")
def reveal_customer(customer_id):
    """The full value of a masked contact field (``phone``, ``email``, ``address``) with a reason (I4);
    recorded in the security log as ``value_revealed``."""
    b = body(("field", "reason"))
    kefu().customers.get(customer_id)
    if not may_see_customer(user(), customer_id):
        raise ApiError("forbidden", f"user {user().name} may not see customer {customer_id}")
    return jsonify(kefu().masking.reveal_customer(customer_id, b.get("field"), user().name, b.get("reason")))


# ---------------------------------------------------------------- tasks
@bp.get("/tasks")
def tasks():
    """Ready tasks the caller may work: its own and its roles' queues (``role``, ``kind``, ``instance``)."""
    query_args(("role", "kind", "instance"))
    role, kind, instance = (request.args.get(k) or None for k in ("role", "kind", "instance"))
    if role is not None and role not in ROLES:
        raise ApiError("invalid_input", f"unknown role {role!r}", {"role": f"one of {', '.join(ROLES)}"})
    if instance is not None and len(instance) > 64:
        raise ApiError("invalid_input", "'instance' is too long", {"instance": "too long"})
    rows = kefu().tasks.ready(actor=user().name, instance=instance, role=role)
    if kind:
        rows = [t for t in rows if t["kind"] == kind]
    return jsonify({"tasks": rows})


@bp.get("/tasks/<task_id>")
def task(task_id):
    """One task with its form (fields: id, label, type, required, options…)."""
    return jsonify(kefu().tasks.get(task_id, actor=user().name))


@bp.post("/tasks/<task_id>/claim")
def claim(task_id):
    """Take a task from the role's queue."""
    body(())
    return jsonify(kefu().tasks.claim(task_id, user().name))


@bp.post("/tasks/<task_id>/unclaim")
def unclaim(task_id):
    """Put a claimed task back into its role's queue (the assignee, or a supervisor)."""
    body(())
    return jsonify(kefu().tasks.unclaim(task_id, user().name))


@bp.post("/tasks/<task_id>/complete")
def complete(task_id):
    """Submit the task's form; nothing is saved unless all of it is valid and the task is still ready."""
    b = body(("data",))
    data = object_field(b.get("data"), "data") or {}
    result = kefu().tasks.complete(task_id, user().name, data)
    instance = {k: result[k] for k in ("instance_id", "ticket_no", "status", "incident")}
    return jsonify({"task": result["task"], "instance": instance, "tasks": result["tasks"]})


# ---------------------------------------------------------------- instances
@bp.get("/instances/<ref>")
def instance(ref):
    """A ticket by id or ticket number, with its tasks, timers, data and ``trace`` (its audit events)."""
    if len(ref) > 64:
        raise ApiError("not_found", f"no instance {ref[:64]!r}…")
    shown = kefu().instances.show(ref)
    if not (user().has(*READ_ROLES) or may_see_instance(user(), shown)):
        raise ApiError("forbidden", f"user {user().name} has no task on {shown['ticket_no']} and may not see it")
    shown = kefu().masking.ticket(shown, user().name)  # I4: masked unless the caller serves this case
    shown["trace"] = shown.pop("events")
    return jsonify(shown)


@bp.post("/instances/<ref>/reveal")
def reveal(ref):
    """The full value of one masked contact field of a ticket with a reason (I4); recorded on the ticket as
    ``value_revealed`` (field, reason, actor; never the value)."""
    b = body(("field", "reason"))
    if len(ref) > 64:
        raise ApiError("not_found", f"no instance {ref[:64]!r}…")
    shown = kefu().instances.show(ref)
    if not (user().has(*READ_ROLES) or may_see_instance(user(), shown)):
        raise ApiError("forbidden", f"user {user().name} has no task on {shown['ticket_no']} and may not see it")
    return jsonify(kefu().masking.reveal(ref, b.get("field"), user().name, b.get("reason")))


# ---------------------------------------------------------------- the case file and the desk's search
BODY_LIMITS["api.add_attachment"] = MAX_ATTACHMENT + 1  # the file itself is the body


def _ref_arg(ref: str) -> str:
    if len(ref) > 64:
        raise ApiError("not_found", f"no instance {ref[:64]!r}…")
    return ref


@bp.get("/instances/<ref>/notes")
def notes(ref):
    """The ticket's internal notes and contact records, for whoever may read the ticket."""
    query_args(())
    found = kefu().casefile.of(_ref_arg(ref), user().name)
    return jsonify({"ticket_no": found["ticket_no"], "notes": found["notes"], "contacts": found["contacts"]})


@bp.post("/instances/<ref>/notes")
def add_note(ref):
    """An internal note (``text``) or, with ``channel`` and ``outcome``, a contact with the customer."""
    b = body(("text", "channel", "outcome"))
    if "channel" in b or "outcome" in b:
        if "text" in b:
            raise ApiError("invalid_input", "send either 'text' (a note) or 'channel' and 'outcome' (a contact)",
                           {"text": "not with channel/outcome"})
        return jsonify(kefu().casefile.contact(_ref_arg(ref), user().name, b.get("channel"), b.get("outcome"))), 201
    return jsonify(kefu().casefile.note(_ref_arg(ref), user().name, b.get("text"))), 201


@bp.get("/instances/<ref>/attachments")
def attachments(ref):
    """The ticket's attachments (superseded ones too, marked ``superseded_by``)."""
    query_args(())
    found = kefu().casefile.of(_ref_arg(ref), user().name)
    return jsonify({"ticket_no": found["ticket_no"], "attachments": found["attachments"]})


@bp.post("/instances/<ref>/attachments")
def add_attachment(ref):
    """Upload a file as the raw body (``application/octet-stream``), named by ``filename``; ``supersedes``: the
    attachment it replaces. Checked by its content: JPEG, PNG, GIF, WebP, PDF or plain text, at most 20 MB."""
    query_args(("filename", "supersedes"))
    if request.content_length and request.content_length > MAX_ATTACHMENT:
        raise ApiError("payload_too_large", f"an attachment may have at most {MAX_ATTACHMENT} bytes")
    if request.mimetype != "application/octet-stream":
        raise ApiError("unsupported_media_type", "send the file as the body with "
                                                 "'Content-Type: application/octet-stream'")
    supersedes = request.args.get("supersedes") or None
    if supersedes is not None and (not supersedes.isascii() or not supersedes.isdigit() or len(supersedes) > 12):
        raise ApiError("invalid_input", "'supersedes' must be an attachment id", {"supersedes": "not an id"})
    filename = request.args.get("filename", "")
    if len(filename) > 1000 or "\x00" in filename:
        raise ApiError("invalid_input", "'filename' is not a file name", {"filename": "not a file name"})
    content = request.get_data(cache=False)
    result = kefu().casefile.attach(_ref_arg(ref), user().name, filename, content,
                                    supersedes=int(supersedes) if supersedes else None)
    return jsonify(result), 201


@bp.get("/search")
def search():
    """Tickets the caller may read by number, customer name or phone (masked), with filters and a saved view."""
    require(*WIDE_ROLES)
    allowed = ("q", "status", "kind", "severity", "assignee", "date_from", "date_to", "view", "limit", "after")
    query_args(allowed)
    args = {k: request.args.get(k) for k in allowed if request.args.get(k) not in (None, "")}
    for k, v in args.items():
        if len(v) > MAX_QUERY:
            raise ApiError("invalid_input", f"'{k}' is longer than {MAX_QUERY} characters", {k: "too long"})
    return jsonify(kefu().casefile.search(user().name, args.pop("q", None), args))


# ---------------------------------------------------------------- the document
@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this API (no token needed)."""
    from .openapi import document
    return jsonify(document())

