"""How rows read as dictionaries: definitions, users, customers, tasks, timers and form steps, one shape each,
shared by every service and so by the CLI's ``--json``, the web pages and the JSON API."""
from __future__ import annotations

from engine.bpmn.diagram import rule_ids
from engine.bpmn.forms import build_fields
from engine.clock import iso
from engine.store.tables import Customer, Definition, ExternalTask, HumanTask, Instance, Timer, User, name_set

# Tasks worked outside the customer-service department: an agent may escalate them (000 §五.1).
TRANSFERRED_ROLES = {"department", "technician", "taskforce"}
ESCALATION = "escalation"


def definition_dict(d: Definition, status=None) -> dict:
    out = {"process_id": d.process_id, "version": d.version, "name": d.name, "filename": d.filename,
           "sha256": d.sha256, "deployed_at": iso(d.deployed_at), "deployed_by": d.deployed_by}
    if status:
        out["status"] = status
    return out


def user_dict(u: User) -> dict:
    return {**user_fields(u.name, u.display_name, u.roles, u.groups, u.active),
            "session_version": u.session_version or 0}


def user_fields(name, display_name, roles, groups, active) -> dict:
    return {"name": name, "display_name": display_name, "roles": sorted(name_set(roles)),
            "groups": sorted(name_set(groups)), "active": bool(active)}


def customer_dict(c: Customer) -> dict:
    return {"id": c.id, "name": c.name, "phone": c.phone, "email": c.email, "company": c.company,
            "address": c.address, "region": c.region, "needs": c.needs, "vip": bool(c.vip),
            "special_note": c.special_note, "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at)}


def task_brief(r: HumanTask) -> dict:
    return {"id": r.id, "bpmn_id": r.bpmn_id, "name": r.name, "role": r.role, "assignee": r.assignee,
            "candidates": r.candidates.split(",") if r.candidates else [] if r.candidates is not None else None,
            "state": r.state, "due_at": iso(r.due_at), "created_at": iso(r.created_at),
            "ended_at": iso(r.ended_at), "completed_by": r.completed_by, "end_reason": r.end_reason}


def task_dict(ctx, r: HumanTask, inst: Instance) -> dict:
    spec, _subs = ctx.spec_of(inst)
    tspec = spec.task_specs.get(r.spec_name)
    ext = tspec.extensions if tspec is not None else {}
    out = task_brief(r)
    out.update({
        "instance_id": inst.id, "instance": inst.id, "ticket_no": inst.ticket_no, "kind": inst.kind,
        "severity": inst.severity, "vip": inst.vip, "candidate_group": r.candidate_group,
        "response_due": iso(inst.response_due), "finish_due": iso(inst.finish_due),
        "clock_paused_at": iso(inst.clock_paused_at),
        "escalatable": r.state == "ready" and r.role in TRANSFERRED_ROLES and inst.kind != ESCALATION,
        "name_en": ext.get("kefu_properties", {}).get("name_en"),
        "rules": rule_ids(getattr(tspec, "documentation", None)),
        "documentation": getattr(tspec, "documentation", None),
        "form": [f.to_dict() for f in build_fields(ext.get("form"))],
    })
    return out


def timer_dict(t: Timer) -> dict:
    return {"id": t.id, "instance_id": t.instance_id, "bpmn_id": t.bpmn_id, "name": t.name, "kind": t.kind,
            "interrupting": t.interrupting, "attached_task_id": t.attached_task_id, "due_at": iso(t.due_at)}


def external_dict(x: ExternalTask) -> dict:
    """An external task row as an instance shows it (locks are the worker API's business)."""
    return {"id": x.id, "bpmn_id": x.bpmn_id, "name": x.name, "topic": x.topic, "state": x.state,
            "retries": x.retries, "error_message": x.error_message, "created_at": iso(x.created_at),
            "ended_at": iso(x.ended_at)}


def step_dict(tspec) -> dict:
    ext = tspec.extensions
    return {"bpmn_id": tspec.bpmn_id, "task_name": tspec.bpmn_name or tspec.bpmn_id,
            "name_en": ext.get("kefu_properties", {}).get("name_en"),
            "form": [f.to_dict() for f in build_fields(ext.get("form"))]}


def mask_phone(phone: str | None) -> str:
    """138****5678: enough to recognise a number, not to call it (I4)."""
    if not phone:
        return ""
    text = str(phone)
    if len(text) < 7:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 7) + text[-4:]
