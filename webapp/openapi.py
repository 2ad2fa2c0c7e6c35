"""The OpenAPI 3.1 document of the JSON API (``GET /api/v1/openapi.json``).

``tests/test_openapi.py`` keeps it true: every /api/v1 route is documented with its methods and nothing
else is, real responses validate against these schemas, and schemathesis finds no server error.
"""
from __future__ import annotations

import copy

from engine.bpmn.diagram import ROLES
from engine.bpmn.forms import FIELD_TYPES

from .labels import INTAKE_KINDS

ERROR_CODES = ["unauthorized", "forbidden", "not_found", "invalid_input", "conflict", "method_not_allowed",
               "payload_too_large", "unsupported_media_type", "internal_error"]


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
N_STR, N_INT, N_TIME = _nullable(STR), _nullable(INT), _nullable(TIME)
OBJ = {"type": "object"}


def _obj(props: dict, required=None, extra: bool = False) -> dict:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": extra}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


TASK_BRIEF = {
    "id": {"type": "string", "format": "uuid"}, "bpmn_id": STR, "name": STR, "role": N_STR, "assignee": N_STR,
    "candidates": {**_nullable({"type": "array", "items": STR}),
                   "description": "who may work a task of a process without role lanes: 'role:R', 'group:G', "
                                  "'user:U' (null for a task of a role lane)"},
    "state": {"enum": ["ready", "completed", "cancelled"]}, "due_at": N_TIME, "created_at": TIME,
    "ended_at": N_TIME, "completed_by": N_STR, "end_reason": N_STR, "candidate_group": N_STR,
    "offer_due": {**N_TIME, "description": "X1: the task is offered to the case owner, who has until then to claim "
                                         "it (else it returns to the queue); null once claimed or never offered"},
}
FORM_FIELD = _obj({
    "id": STR, "type": {"enum": list(FIELD_TYPES)}, "label": N_STR, "label_en": N_STR, "required": BOOL,
    "options": {"type": "array", "items": _obj({"id": STR, "label": N_STR})},
    "default": {}, "role": STR, "minlength": INT, "maxlength": INT, "min": {"type": "number"},
    "max": {"type": "number"}, "multiline": BOOL, "future": BOOL, "readonly": BOOL,
    "cap": {"type": "string", "description": "T-cap: the SLA target (finish_hours, respond_minutes) this deadline may not exceed"},
    "pii": {"enum": ["phone", "email", "address", "text"],
            "description": "I4: the field holds customer contact data, masked for whoever does not serve the case"},
    "assigns": {**BOOL, "description": "P12: the users picked get work on the ticket (not the staff it names)"},
    "past": BOOL, "default_now": {"type": "boolean", "description": "left empty, a date/time is now"},
    "prefill": {"type": "string", "description": "the data field of an earlier step whose value the form shows"},
    "required_if": {"type": "string", "description": "required when this field has a value ('field') or one "
                                                     "value ('field=value')"},
    "not_before": {"enum": ["opened"], "description": "not before the ticket was opened"},
}, required=["id", "type", "label", "required"])
TASK = _obj({
    **TASK_BRIEF, "instance_id": INT, "instance": INT, "ticket_no": STR, "kind": STR,
    "severity": N_STR, "vip": BOOL, "candidate_group": N_STR, "response_due": N_TIME, "finish_due": N_TIME,
    "clock_paused_at": N_TIME, "escalatable": BOOL, "name_en": N_STR, "rules": {"type": "array", "items": STR},
    "owner": N_STR, "staff_involved": {"type": "array", "items": STR,
                                       "description": "P12: the staff the complaint names; they never act on it"},
    "documentation": N_STR, "form": {"type": "array", "items": _ref("FormField")},
})
CUSTOMER = _obj({
    "id": INT, "name": STR, "phone": N_STR, "email": N_STR, "company": N_STR, "address": N_STR, "region": N_STR,
    "needs": N_STR, "vip": BOOL, "special_note": N_STR, "created_at": TIME, "updated_at": TIME,
    "masked": {"type": "boolean", "description": "I4: phone, email and address are masked (138****5678) for "
                                                 "a caller who serves none of this customer's cases"},
    # care (Q1-Q3)
    "customer_class": {"enum": ["vip", "important", "general"]}, "owner": N_STR, "greeting_consent": BOOL,
    "greeting_channel": N_STR, "anniversary": N_STR, "last_revisit_at": N_TIME, "last_satisfaction": N_INT,
}, required=["id", "name", "phone", "email", "company", "address", "region", "needs", "vip", "special_note",
             "created_at", "updated_at"])
STARTED = _obj({
    "instance_id": INT, "ticket_no": STR, "kind": STR, "status": {"enum": ["active", "completed",
                                                                                    "incident"]},
    "customer_id": N_INT, "tasks": {"type": "array", "items": _ref("TaskBrief")},
})
EVENT = _obj({
    "seq": {"type": "integer", "minimum": 1}, "type": STR, "actor": STR, "at": TIME, "task_id": N_STR,
    "bpmn_id": N_STR, "task_name": N_STR, "rules": {"type": "array", "items": STR}, "data": _nullable(OBJ),
    "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
})
TIMER = _obj({
    "id": STR, "instance_id": INT, "bpmn_id": STR, "name": N_STR, "kind": STR, "interrupting": _nullable(BOOL),
    "attached_task_id": N_STR, "due_at": TIME,
})
CLOCK = _obj({  # T-stop: one deadline of the ticket, from its start until its work is done
    "name": STR, "label": STR, "label_en": STR, "task": STR, "task_id": N_STR, "task_name": N_STR, "started_at": TIME,
    "due_at": TIME, "stopped_at": N_TIME, "state": {"enum": ["running", "paused", "met", "missed"]},
    "responsible": N_STR, "ended_by": _nullable({"enum": ["work", "timer"]}),
})
INSTANCE = _obj({
    "instance_id": INT, "ticket_no": STR, "kind": STR,
    "status": {"enum": ["active", "completed", "incident"]},
    "definition": _obj({"process_id": STR, "version": INT, "sha256": STR}),
    "customer": _nullable(_ref("Customer")), "severity": N_STR, "nature": N_STR, "vip": BOOL, "summary": N_STR,
    "created_by": STR, "owner": N_STR, "staff_involved": {"type": "array", "items": STR}, "created_at": TIME, "updated_at": TIME, "completed_at": N_TIME,
    "incident": _nullable(OBJ), "data": OBJ, "deadlines": OBJ, "clocks": {"type": "array", "items": CLOCK},
    "sla": _nullable(OBJ), "parent_id": N_INT,
    "repeat_of": {"type": "array", "items": STR}, "repeated_by": {"type": "array", "items": STR},  # X3
    "tasks": {"type": "array", "items": _ref("TaskBrief")}, "timers": {"type": "array", "items": _ref("Timer")},
    "external_tasks": {"type": "array", "items": _obj({
        "id": STR, "bpmn_id": STR, "name": N_STR, "topic": STR, "state": {"enum": ["open", "completed", "cancelled"]},
        "retries": INT, "error_message": N_STR, "created_at": TIME, "ended_at": N_TIME})},
    "trace": {"type": "array", "items": _ref("AuditEvent")},
    "contact_masked": {"type": "boolean", "description": "I4: customer contact data (the customer's and the "
                                                         "contact fields of data and trace) is masked: the caller "
                                                         "neither owns the case nor holds a ready task on it"},
    "notes": {"type": "array", "items": _ref("Note")}, "contacts": {"type": "array", "items": _ref("Contact")},
    "attachments": {"type": "array", "items": _ref("Attachment")},
})
NOTE = _obj({"id": {"type": "integer", "description": "the note's audit event number on the ticket"},
             "author": STR, "at": TIME, "text": STR})
CONTACT = _obj({"id": INT, "author": STR, "at": TIME, "channel": {"enum": ["phone", "sms", "visit"]}, "outcome": STR})
ATTACHMENT_FIELDS = {"id": INT, "author": STR, "at": TIME, "filename": STR, "size": INT,
                   "content_type": {"enum": ["image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf",
                                             "text/plain"]},
                   "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "superseded_by": N_INT}
ATTACHMENT = _obj(ATTACHMENT_FIELDS)
SEARCH_ROW = _obj({
    "instance_id": INT, "ticket_no": STR, "kind": STR, "status": STR, "severity": N_STR, "vip": BOOL,
    "summary": N_STR, "customer": N_STR, "customer_id": N_INT,
    "customer_phone": {**N_STR, "description": "masked (I4): 139****5678"}, "created_by": STR, "created_at": TIME,
    "completed_at": N_TIME, "finish_due": N_TIME, "finish_overdue": BOOL})
COMPLETION = _obj({
    "task": _ref("Task"),
    "instance": _obj({"instance_id": INT, "ticket_no": STR, "status": {"enum": ["active", "completed", "incident"]},
                      "incident": _nullable(OBJ)}),
    "tasks": {"type": "array", "items": _ref("TaskBrief")},
})
ERROR = _obj({"error": _obj({
    "code": {"enum": ERROR_CODES}, "message": {"type": "string", "minLength": 1},
    "fields": {"type": "object", "additionalProperties": STR},
}, required=["code", "message"])})

TYPED = {"type": "object", "additionalProperties": _obj({"value": {}, "type": STR, "valueInfo": OBJ},
                                                     required=["value"]),
         "description": "variables by name, Camunda's typed form: {\"amount\": {\"value\": 30, \"type\": "
                        "\"Integer\"}}; plain values ({\"amount\": 30}) are accepted in requests"}
EXTERNAL_TASK = _obj({
    "id": STR, "topicName": STR, "workerId": N_STR, "lockExpirationTime": N_STR, "processInstanceId": STR,
    "businessKey": STR, "activityId": STR, "retries": INT, "errorMessage": N_STR, "variables": TYPED,
}, required=["id", "topicName", "workerId", "lockExpirationTime", "processInstanceId", "businessKey",
             "activityId", "retries", "errorMessage"])
MS = {"type": "integer", "minimum": 0, "maximum": 7 * 24 * 3600 * 1000, "description": "milliseconds"}
WORKER = {"type": "string", "minLength": 1, "maxLength": 255}
BRIEF_INSTANCE = _obj({"instance_id": INT, "ticket_no": STR, "status": STR, "element": STR},
                      required=["instance_id", "ticket_no", "status"])

SCHEMAS = {
    "Error": ERROR, "FormField": FORM_FIELD, "TaskBrief": _obj(TASK_BRIEF), "Task": TASK, "Customer": CUSTOMER,
    "Started": STARTED, "AuditEvent": EVENT, "Timer": TIMER, "Instance": INSTANCE, "Completion": COMPLETION,
    "StartTicket": _obj({
        "kind": {"enum": list(INTAKE_KINDS)},
        "customer_id": {**N_INT, "description": "an existing customer; its contact details prefill the form"},
        "data": {**_nullable(OBJ), "description": "the intake form's values; the form is completed at once"},
    }, required=["kind"]),
    "CompleteTask": _obj({"data": {"type": "object", "description": "the task form's values by field id"}},
                         required=[]),
    "Empty": _obj({}, required=[]),
    "Reveal": _obj({"field": {"type": "string", "description": "phone, email, address or a contact form field"},
                    "reason": {"type": "string", "minLength": 1, "maxLength": 500}}),
    "Note": NOTE, "Contact": CONTACT, "Attachment": ATTACHMENT,
    "AddNote": _obj({"text": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "an internal note"},
                     "channel": {"enum": ["phone", "sms", "visit"], "description": "a contact with the customer"},
                     "outcome": {"type": "string", "minLength": 1, "maxLength": 1000}}, required=[]),
    "NoteAdded": _obj({"id": INT, "ticket_no": STR, "author": STR, "at": TIME, "text": STR, "channel": STR,
                       "outcome": STR}, required=["id", "ticket_no", "author", "at"]),
    "SearchResult": _obj({"rows": {"type": "array", "items": SEARCH_ROW}, "next": N_STR, "query": N_STR,
                          "view": _nullable({"enum": ["mine", "overdue", "vip", "today"]}), "limit": INT}),
    "ExternalTask": EXTERNAL_TASK,
    "FetchAndLock": _obj({
        "workerId": WORKER, "maxTasks": {"type": "integer", "minimum": 1, "maximum": 100},
        "usePriority": BOOL, "asyncResponseTimeout": INT,
        "topics": {"type": "array", "minItems": 1, "maxItems": 100, "items": _obj({
            "topicName": {"type": "string", "minLength": 1, "maxLength": 255}, "lockDuration": MS,
            "variables": {"type": "array", "items": STR}, "localVariables": BOOL, "deserializeValues": BOOL},
            required=["topicName", "lockDuration"])},
    }, required=["workerId", "topics"]),
    "CompleteExternalTask": _obj({"workerId": WORKER, "variables": TYPED, "localVariables": TYPED},
                                 required=["workerId"]),
    "ExternalTaskFailure": _obj({
        "workerId": WORKER, "errorMessage": {"type": "string", "minLength": 1, "maxLength": 2000},
        "errorDetails": {"type": "string", "maxLength": 20000}, "retries": {"type": "integer", "minimum": 0,
                                                                             "maximum": 1000},
        "retryTimeout": MS}, required=["workerId", "errorMessage"]),
    "ExtendLock": _obj({"workerId": WORKER, "newDuration": MS}, required=["workerId", "newDuration"]),
    "Message": _obj({
        "messageName": {"type": "string", "minLength": 1, "maxLength": 255}, "processVariables": TYPED,
        "businessKey": {"type": "string", "maxLength": 64, "description": "the ticket number of the instance"},
        "processInstanceId": {"type": "string", "maxLength": 64}, "all": BOOL, "resultEnabled": BOOL,
        "variablesInResultEnabled": BOOL, "correlationKeys": OBJ}, required=["messageName"]),
    "MessageResult": _obj({
        "message": STR, "correlated": {"type": "array", "items": BRIEF_INSTANCE},
        "started": _nullable(_obj({"instance_id": INT, "ticket_no": STR, "kind": STR, "status": STR,
                                   "tasks": {"type": "array", "items": OBJ}}))}),
    "StartProcess": _obj({"variables": TYPED, "businessKey": STR}, required=[]),
}

_MESSAGES = {
    400: "invalid input: not a JSON object, an unknown or wrong field (``fields`` names each)",
    401: "no token, or an unknown or revoked one", 403: "the caller's roles, lane or group do not allow this",
    404: "no such task, external task, instance, process or customer", 405: "method not allowed",
    409: "the state moved on: the task is no longer ready (completed, cancelled), or a concurrent save",
    413: "the body is too large", 415: "the body is not JSON (an attachment: not application/octet-stream)",
    500: "an unexpected failure (never expected; logged)",
}


def _errors(*codes) -> dict:
    out = {}
    for c in (401, 405, 500, *codes):
        out[str(c)] = {"description": _MESSAGES[c],
                       "content": {"application/json": {"schema": _ref("Error")}}}
    return out


def _ok(status: int, schema: dict, description: str, links: dict | None = None) -> dict:
    out = {"description": description, "content": {"application/json": {"schema": schema}}}
    if links:
        out["links"] = links
    return {str(status): out}


def _task_links(pointer: str) -> dict:
    """Links from a response naming a task (at JSON pointer ``pointer``) to what may be done with it next."""
    expr = f"$response.body#{pointer}"
    return {name: {"operationId": op, "parameters": {"task_id": expr}} for name, op in (
        ("GetTask", "getTask"), ("ClaimTask", "claimTask"), ("UnclaimTask", "unclaimTask"),
        ("CompleteTask", "completeTask"))}


def _body(name: str, required: bool) -> dict:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


REF = {"name": "ref", "in": "path", "required": True, "schema": STR, "description": "instance id or ticket number"}
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": STR,
           "description": "the task's id (a UUID)"}

PATHS = {
    "/api/v1/tickets": {"post": {
        "operationId": "startTicket", "summary": "Open a consultation, complaint or repair",
        "requestBody": _body("StartTicket", True),
        "responses": {**_ok(201, _ref("Started"), "the ticket was opened", {
            **_task_links("/tasks/0/id"),
            "GetInstance": {"operationId": "getInstance", "parameters": {"ref": "$response.body#/ticket_no"}}}),
                      **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/customers": {"get": {
        "operationId": "findCustomers", "summary": "Customers whose phone or name contains q (VIPs first, 20)",
        "parameters": [{"name": "q", "in": "query", "required": False,
                        "schema": {"type": "string", "maxLength": 200}}],
        "responses": {**_ok(200, _obj({"customers": {"type": "array", "items": _ref("Customer")}}),
                            "matching customers"), **_errors(400, 403)}}},
    "/api/v1/customers/{customer_id}": {"get": {
        "operationId": "getCustomer", "summary": "One customer",
        "parameters": [{"name": "customer_id", "in": "path", "required": True, "schema": INT}],
        "responses": {**_ok(200, _ref("Customer"), "the customer"), **_errors(403, 404)}}},
    "/api/v1/customers/{customer_id}/reveal": {"post": {
        "operationId": "revealCustomerValue",
        "summary": "I4: one masked contact value of a customer in full, with a reason (supervisor, QA, auditor); "
                   "recorded in the security log",
        "parameters": [{"name": "customer_id", "in": "path", "required": True, "schema": INT}],
        "requestBody": _body("Reveal", True),
        "responses": {**_ok(200, _obj({"customer_id": INT, "field": STR, "value": {}}), "the value"),
                      **_errors(400, 403, 404, 413, 415)}}},
    "/api/v1/tasks": {"get": {
        "operationId": "listTasks", "summary": "Ready tasks the caller may work: its own and its roles' queues",
        "parameters": [
            {"name": "role", "in": "query", "required": False, "schema": {"enum": list(ROLES)}},
            {"name": "kind", "in": "query", "required": False, "schema": STR},
            {"name": "instance", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 64},
             "description": "instance id or ticket number"}],
        "responses": {**_ok(200, _obj({"tasks": {"type": "array", "items": _ref("Task")}}), "ready tasks"),
                      **_errors(400, 404)}}},
    "/api/v1/tasks/{task_id}": {"get": {
        "operationId": "getTask", "summary": "One task with its form", "parameters": [TASK_ID],
        "responses": {**_ok(200, _ref("Task"), "the task"), **_errors(403, 404)}}},
    "/api/v1/tasks/{task_id}/claim": {"post": {
        "operationId": "claimTask", "summary": "Take a task from the role's queue", "parameters": [TASK_ID],
        "requestBody": _body("Empty", False),
        "responses": {**_ok(200, _ref("Task"), "the task, now the caller's", _task_links("/id")),
                      **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/tasks/{task_id}/unclaim": {"post": {
        "operationId": "unclaimTask", "summary": "Put a claimed task back into its role's queue",
        "parameters": [TASK_ID], "requestBody": _body("Empty", False),
        "responses": {**_ok(200, _ref("Task"), "the task, unassigned", _task_links("/id")), **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/tasks/{task_id}/complete": {"post": {
        "operationId": "completeTask",
        "summary": "Submit the task's form (validated like the web form); nothing is saved unless all is valid",
        "parameters": [TASK_ID], "requestBody": _body("CompleteTask", True),
        "responses": {**_ok(200, _ref("Completion"), "the completed task, its instance and its next ready tasks", {
            **_task_links("/tasks/0/id"),
            "GetInstance": {"operationId": "getInstance",
                            "parameters": {"ref": "$response.body#/instance/ticket_no"}}}),
                      **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/instances/{ref}": {"get": {
        "operationId": "getInstance", "summary": "A ticket by id or ticket number, with its audit trace",
        "parameters": [{"name": "ref", "in": "path", "required": True, "schema": STR,
                        "description": "instance id or ticket number"}],
        "responses": {**_ok(200, _ref("Instance"), "the instance"), **_errors(403, 404)}}},
    "/api/v1/instances/{ref}/reveal": {"post": {
        "operationId": "revealInstanceValue",
        "summary": "I4: one masked contact value of a ticket in full, with a reason (supervisor, QA, auditor); "
                   "recorded on the ticket as value_revealed (field, reason, actor; never the value)",
        "parameters": [{"name": "ref", "in": "path", "required": True, "schema": STR,
                        "description": "instance id or ticket number"}],
        "requestBody": _body("Reveal", True),
        "responses": {**_ok(200, _obj({"ticket_no": STR, "field": STR, "value": {}}), "the value"),
                      **_errors(400, 403, 404, 413, 415)}}},
    "/api/v1/instances/{ref}/notes": {
        "get": {"operationId": "listNotes", "summary": "The ticket's internal notes and contact records",
                "parameters": [REF],
                "responses": {**_ok(200, _obj({"ticket_no": STR, "notes": {"type": "array", "items": _ref("Note")},
                                               "contacts": {"type": "array", "items": _ref("Contact")}}),
                                    "notes and contacts, oldest first"), **_errors(400, 403, 404)}},
        "post": {"operationId": "addNote",
                 "summary": "Add an internal note (text), or log a contact with the customer (channel, outcome)",
                 "parameters": [REF], "requestBody": _body("AddNote", True),
                 "responses": {**_ok(201, _ref("NoteAdded"), "recorded (an audit event on the ticket)"),
                               **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/instances/{ref}/attachments": {
        "get": {"operationId": "listAttachments", "summary": "The ticket's attachments (superseded ones marked)",
                "parameters": [REF],
                "responses": {**_ok(200, _obj({"ticket_no": STR, "attachments": {"type": "array",
                                                                                  "items": _ref("Attachment")}}),
                                    "attachments, oldest first"), **_errors(400, 403, 404)}},
        "post": {"operationId": "addAttachment",
                 "summary": "Upload a file as the body: JPEG, PNG, GIF, WebP, PDF or plain text by its content, "
                            "at most 20 MB; never deleted, only superseded",
                 "parameters": [REF, {"name": "filename", "in": "query", "required": True,
                                      "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
                                {"name": "supersedes", "in": "query", "required": False, "schema": INT,
                                 "description": "the attachment this one replaces"}],
                 "requestBody": {"required": True, "content": {"application/octet-stream": {
                     "schema": {"type": "string", "format": "binary"}}}},
                 "responses": {**_ok(201, _obj({**ATTACHMENT_FIELDS, "ticket_no": STR}),
                                     "stored (an audit event on the ticket)"),
                               **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/search": {"get": {
        "operationId": "searchTickets",
        "summary": "Tickets by number, customer name or phone, with filters and saved views (agents, supervisors "
                   "and the other roles that read every ticket)",
        "parameters": [{"name": k, "in": "query", "required": False, "schema": schema} for k, schema in (
            ("q", {"type": "string", "maxLength": 100}), ("status", {"enum": ["active", "completed", "incident"]}),
            ("kind", {"enum": ["consultation", "complaint", "repair", "escalation"]}),
            ("severity", {"enum": ["general", "urgent", "major"]}), ("assignee", {"type": "string", "maxLength": 64}),
            ("date_from", {"type": "string", "format": "date"}), ("date_to", {"type": "string", "format": "date"}),
            ("view", {"enum": ["mine", "overdue", "vip", "today"]}),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 500}), ("after", {"type": "string", "maxLength": 100}))],
        "responses": {**_ok(200, _ref("SearchResult"), "the matching tickets, newest first"), **_errors(400, 403)}}},
    "/api/v1/external-task/fetchAndLock": {"post": {
        "operationId": "fetchAndLock", "summary": "Lock open external tasks of the given topics for a worker",
        "requestBody": _body("FetchAndLock", True),
        "responses": {**_ok(200, {"type": "array", "items": _ref("ExternalTask")}, "the locked tasks with "
                            "their variables (none: an empty list)"), **_errors(400, 403, 413, 415)}}},
    "/api/v1/external-task": {"get": {
        "operationId": "listExternalTasks", "summary": "Open external tasks, with their locks and retries",
        "parameters": [{"name": "topicName", "in": "query", "required": False,
                        "schema": {"type": "string", "maxLength": 255}}],
        "responses": {**_ok(200, {"type": "array", "items": _ref("ExternalTask")}, "open external tasks"),
                      **_errors(400, 403)}}},
    "/api/v1/external-task/{task_id}/complete": {"post": {
        "operationId": "completeExternalTask", "summary": "Complete a locked external task with variables",
        "parameters": [TASK_ID], "requestBody": _body("CompleteExternalTask", True),
        "responses": {"204": {"description": "completed; the instance ran on"},
                      **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/external-task/{task_id}/failure": {"post": {
        "operationId": "failExternalTask",
        "summary": "Report a failure: the retries left (none left: an incident on the instance)",
        "parameters": [TASK_ID], "requestBody": _body("ExternalTaskFailure", True),
        "responses": {"204": {"description": "recorded"}, **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/external-task/{task_id}/extendLock": {"post": {
        "operationId": "extendExternalTaskLock", "summary": "Keep a locked external task longer",
        "parameters": [TASK_ID], "requestBody": _body("ExtendLock", True),
        "responses": {"204": {"description": "the lock now ends newDuration from now"},
                      **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/message": {"post": {
        "operationId": "correlateMessage",
        "summary": "Deliver a message to the instance waiting for it, or start the process it starts",
        "requestBody": _body("Message", True),
        "responses": {**_ok(200, _ref("MessageResult"), "the instances it reached, or the one it started"),
                      **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/process-definition/key/{key}/start": {"post": {
        "operationId": "startProcessByKey", "summary": "Start the newest version of a process with variables",
        "parameters": [{"name": "key", "in": "path", "required": True, "schema": STR,
                        "description": "the process id"}],
        "requestBody": _body("StartProcess", False),
        "responses": {**_ok(201, _ref("Started"), "the instance was started"),
                      **_errors(400, 403, 404, 409, 413, 415)}}},
    "/api/v1/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This document", "security": [],
        "responses": {**_ok(200, OBJ, "the OpenAPI document"), **{k: v for k, v in _errors().items()
                                                                   if k != "401"}}}},
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "Kefu JSON API", "version": "1",
             "description": "Open tickets, find customers, list, claim and complete tasks, read instances; "
                            "external tasks, messages and starting a process shaped like Camunda 7's REST API. "
                            "Authenticate with 'Authorization: Bearer <token>' ('kefu users token NAME'); a token "
                            "acts as its user, with that user's roles and groups."},
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": PATHS,
    "components": {"schemas": SCHEMAS,
                   "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
}


def document() -> dict:
    return copy.deepcopy(DOCUMENT)
