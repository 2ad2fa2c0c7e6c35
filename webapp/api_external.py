"""The JSON API's routes shaped like Camunda 7's REST API, for workers and systems written against it: external
tasks (fetch and lock, complete, failure, extend lock, list), message correlation and starting a process by
its key. Variables are Camunda's typed values (``{"amount": {"value": 30, "type": "Integer"}}``); plain values
are accepted too. Authentication and errors are those of the rest of ``/api/v1``."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import jsonify, request

from .api import ApiError, body, bp, kefu, query_args, require, user

WORKER_ROLES = ("integration", "supervisor", "process_owner")
MESSAGE_ROLES = ("agent", "supervisor", "integration", "process_owner")
START_ROLES = ("agent", "supervisor", "integration")


def typed(variables: dict) -> dict:
    """Plain values as Camunda's typed variables."""
    def kind(v):
        if isinstance(v, bool):
            return "Boolean"
        if isinstance(v, int):
            return "Integer" if -2**31 <= v < 2**31 else "Long"
        if isinstance(v, float):
            return "Double"
        if isinstance(v, str):
            return "String"
        if v is None:
            return "Null"
        return "Json"
    return {k: {"value": v, "type": kind(v), "valueInfo": {}} for k, v in variables.items()}


def _iso_ms(text: str | None) -> str | None:
    if text is None:
        return None
    return datetime.fromisoformat(text).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + \
        datetime.fromisoformat(text).strftime("%z")


def camunda_task(t: dict) -> dict:
    out = {"id": t["id"], "topicName": t["topic"], "workerId": t["worker_id"],
           "lockExpirationTime": _iso_ms(t["lock_expires_at"]), "processInstanceId": str(t["instance_id"]),
           "businessKey": t["ticket_no"], "activityId": t["bpmn_id"], "retries": t["retries"],
           "errorMessage": t["error_message"]}
    if "variables" in t:
        out["variables"] = typed(t["variables"])
    return out


def _int(b: dict, key: str, default=None, low: int = 0, high: int = 2**31 - 1):
    value = b.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ApiError("invalid_input", f"'{key}' must be a whole number from {low} to {high}",
                       {key: f"a whole number from {low} to {high}"})
    return value


def _text(b: dict, key: str, required: bool = True, limit: int = 255) -> str | None:
    value = b.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ApiError("invalid_input", f"'{key}' must be text of 1 to {limit} characters",
                       {key: f"text of 1 to {limit} characters"})
    return value


def _millis(b: dict, key: str, default=None) -> timedelta | None:
    value = _int(b, key, default, 0, 7 * 24 * 3600 * 1000)
    return None if value is None else timedelta(milliseconds=value)


def _object(b: dict, key: str) -> dict | None:
    value = b.get(key)
    if value is not None and not isinstance(value, dict):
        raise ApiError("invalid_input", f"'{key}' must be a JSON object", {key: "must be a JSON object"})
    return value


# ---------------------------------------------------------------- external tasks
@bp.post("/external-task/fetchAndLock")
def fetch_and_lock():
    """Lock up to ``maxTasks`` open external tasks of the given topics for ``workerId``, with their variables."""
    require(*WORKER_ROLES)
    b = body(("workerId", "maxTasks", "topics", "usePriority", "asyncResponseTimeout"))
    worker = _text(b, "workerId")
    left = _int(b, "maxTasks", 1, 1, 100)
    topics = b.get("topics")
    if not isinstance(topics, list) or not topics or len(topics) > 100:
        raise ApiError("invalid_input", "'topics' must be a list of 1 to 100 {topicName, lockDuration}",
                       {"topics": "a list of {topicName, lockDuration}"})
    out = []
    for t in topics:
        if not isinstance(t, dict) or set(t) - {"topicName", "lockDuration", "variables", "localVariables",
                                                "deserializeValues"}:
            raise ApiError("invalid_input", "each topic is {topicName, lockDuration, variables?}",
                           {"topics": "each is {topicName, lockDuration, variables?}"})
        name = _text(t, "topicName")
        lock = _millis(t, "lockDuration")
        if lock is None or lock <= timedelta(0):
            raise ApiError("invalid_input", "'lockDuration' (milliseconds, more than 0) is needed",
                           {"lockDuration": "milliseconds, more than 0"})
        names = t.get("variables")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise ApiError("invalid_input", "'variables' must be a list of names", {"variables": "a list of names"})
        if left <= 0:
            break
        got = kefu().external.fetch_and_lock(worker, [name], lock, left, actor=user().name, variables=names)
        left -= len(got)
        out.extend(camunda_task(x) for x in got)
    return jsonify(out)


@bp.get("/external-task")
def external_tasks():
    """Open external tasks (``topicName``), with their locks and retries."""
    require(*WORKER_ROLES)
    query_args(("topicName",))
    topic = request.args.get("topicName") or None
    if topic is not None and len(topic) > 255:
        raise ApiError("invalid_input", "'topicName' is too long", {"topicName": "too long"})
    return jsonify([camunda_task(t) for t in kefu().external.list(topic=topic)])


@bp.post("/external-task/<task_id>/complete")
def complete_external(task_id):
    """Complete a locked external task with variables; the instance runs on."""
    require(*WORKER_ROLES)
    b = body(("workerId", "variables", "localVariables"))
    variables = {**(_object(b, "localVariables") or {}), **(_object(b, "variables") or {})}
    kefu().external.complete(task_id[:64], _text(b, "workerId"), variables, actor=user().name)
    return "", 204


@bp.post("/external-task/<task_id>/failure")
def fail_external(task_id):
    """Report a failure with the retries left (none left: an incident) and when to try again."""
    require(*WORKER_ROLES)
    b = body(("workerId", "errorMessage", "errorDetails", "retries", "retryTimeout"))
    kefu().external.fail(task_id[:64], _text(b, "workerId"), _text(b, "errorMessage", limit=2000),
                         retries=_int(b, "retries", None, 0, 1000), details=_text(b, "errorDetails", False, 20000),
                         retry_in=_millis(b, "retryTimeout"), actor=user().name)
    return "", 204


@bp.post("/external-task/<task_id>/extendLock")
def extend_lock(task_id):
    """Keep a locked task ``newDuration`` milliseconds longer (from now)."""
    require(*WORKER_ROLES)
    b = body(("workerId", "newDuration"))
    duration = _millis(b, "newDuration")
    if duration is None or duration <= timedelta(0):
        raise ApiError("invalid_input", "'newDuration' (milliseconds, more than 0) is needed",
                       {"newDuration": "milliseconds, more than 0"})
    kefu().external.extend_lock(task_id[:64], _text(b, "workerId"), duration, actor=user().name)
    return "", 204


# ---------------------------------------------------------------- messages and starting by key
def _plain(variables: dict | None) -> dict | None:
    """Typed or plain variables as plain values (the engine checks them)."""
    if variables is None:
        return None
    if variables and all(isinstance(v, dict) and "value" in v for v in variables.values()):
        return {k: v["value"] for k, v in variables.items()}
    return variables


@bp.post("/message")
def message():
    """Correlate a message: to the instance waiting for it (``businessKey`` or ``processInstanceId`` picks one;
    ``all`` reaches every waiting one), else start the process whose start event it names."""
    require(*MESSAGE_ROLES)
    b = body(("messageName", "processVariables", "businessKey", "processInstanceId", "all", "resultEnabled",
              "correlationKeys", "variablesInResultEnabled"))
    if b.get("correlationKeys"):
        raise ApiError("invalid_input", "correlationKeys are not supported: name the instance by businessKey "
                                        "(its ticket number) or processInstanceId",
                       {"correlationKeys": "not supported"})
    everyone = b.get("all", False)
    if not isinstance(everyone, bool):
        raise ApiError("invalid_input", "'all' must be true or false", {"all": "true or false"})
    instance = _text(b, "businessKey", False, 64) or _text(b, "processInstanceId", False, 64)
    result = kefu().messages.correlate(_text(b, "messageName"), user().name,
                                       _plain(_object(b, "processVariables")), instance=instance,
                                       all_instances=everyone)
    return jsonify(result)


@bp.post("/process-definition/key/<key>/start")
def start_by_key(key):
    """Start the newest version of the process ``key`` with ``variables`` as its start data."""
    require(*START_ROLES)
    b = body(("variables", "businessKey"))
    if len(key) > 64:
        raise ApiError("not_found", f"no deployed process {key[:64]!r}…")
    result = kefu().instances.start(key, user().name, variables=_plain(_object(b, "variables")) or {})
    return jsonify(result), 201
