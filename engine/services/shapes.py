"""How rows read as dictionaries: definitions, users, customers, tasks, timers and form steps, one shape each,
shared by every service and so by the CLI's ``--json``, the web pages and the JSON API."""
from __future__ import annotations

from typing import TYPE_CHECKING

from engine.bpmn.forms import build_fields
from engine.clock import iso
from engine.store.light import name_set

if TYPE_CHECKING:  # the shapes read attributes: mapped rows, or plain rows of the same columns (task lists)
    from engine.store.tables import Customer, Definition, ExternalTask, HumanTask, Instance, Timer, User

# Tasks worked outside the customer-service department: an agent may escalate them (000 §五.1).
TRANSFERRED_ROLES = {"department", "technician", "taskforce"}
ESCALATION = "escalation"
START_ROLES = {"agent", "supervisor"}  # the roles that open tickets


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
            "updated_at": iso(c.updated_at),
            # care (Q1-Q3): the class the revisit cycle follows, the owning agent, greetings, last revisit
            "customer_class": customer_class(c), "owner": c.owner, "greeting_consent": bool(c.greeting_consent),
            "greeting_channel": c.greeting_channel,
            "anniversary": c.anniversary.isoformat() if c.anniversary else None,
            "last_revisit_at": iso(c.last_revisit_at), "last_satisfaction": c.last_satisfaction}


def customer_class(c: Customer) -> str:
    """vip (the VIP mark), important (marked so) or general: the class whose revisit cycle applies (Q1)."""
    return "vip" if c.vip else (c.customer_class or "general")


def task_brief(r: HumanTask) -> dict:
    return {"id": r.id, "bpmn_id": r.bpmn_id, "name": r.name, "role": r.role, "assignee": r.assignee,
            "candidates": r.candidates.split(",") if r.candidates else [] if r.candidates is not None else None,
            "state": r.state, "due_at": iso(r.due_at), "created_at": iso(r.created_at),
            "ended_at": iso(r.ended_at), "completed_by": r.completed_by, "end_reason": r.end_reason,
            "candidate_group": r.candidate_group, "offer_due": iso(r.offer_due)}


def task_dict(ctx, r: HumanTask, inst: Instance, s=None) -> dict:
    """A task with its instance's headline and its form; the task spec's part comes from the stored diagram
    (``Context.task_info``, read on ``s`` if given), so listing tasks parses no diagram and imports no
    SpiffWorkflow."""
    out = task_brief(r)
    out.update({
        "instance_id": inst.id, "instance": inst.id, "ticket_no": inst.ticket_no, "kind": inst.kind,
        "severity": inst.severity, "vip": inst.vip, "candidate_group": r.candidate_group, "owner": inst.owner,
        "staff_involved": sorted(name_set(inst.staff_involved)),
        "response_due": iso(inst.response_due), "finish_due": iso(inst.finish_due),
        "clock_paused_at": iso(inst.clock_paused_at),
        "escalatable": r.state == "ready" and r.role in TRANSFERRED_ROLES and inst.kind != ESCALATION,
        **ctx.task_info(inst, r.spec_name, s),
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
