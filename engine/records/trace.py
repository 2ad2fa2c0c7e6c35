"""Audit trace (issue 6): everything an auditor needs to see what happened to one ticket — the path taken
through the diagram, every event with its actor, time, data and the rule IDs of its element, the definition
version, the SLA targets and calendar used, and each deadline met or missed."""
from __future__ import annotations

from datetime import datetime

from engine.bpmn.vocabulary import rule_ids

PASSED = {"task_completed", "gateway_passed", "script_ran", "timer_fired", "start_passed", "end_reached"}


def element_rules(spec, subs) -> dict:
    """bpmn id → {name, rules} for every element of the definition whose documentation names rules."""
    out = {}
    for proc in (spec, *subs.values()):
        for t in proc.task_specs.values():
            bpmn_id = getattr(t, "bpmn_id", None)
            rules = rule_ids(getattr(t, "documentation", None))
            if bpmn_id and rules:
                out[bpmn_id] = {"name": getattr(t, "bpmn_name", None) or bpmn_id, "rules": rules}
    return out


def _at(text):
    try:
        value = datetime.fromisoformat(text) if isinstance(text, str) else text
    except ValueError:
        return None
    return value if isinstance(value, datetime) and value.tzinfo else None


def path(events: list[dict], tasks: list[dict]) -> dict:
    """Element ids for the diagram: completed, active, cancelled, timer fired."""
    return {"completed": list(dict.fromkeys(e["bpmn_id"] for e in events if e["bpmn_id"] and e["type"] in PASSED
                                            and e["type"] != "timer_fired")),
            "active": sorted({t["bpmn_id"] for t in tasks if t["state"] == "ready"}),
            "cancelled": list(dict.fromkeys(e["bpmn_id"] for e in events
                                            if e["bpmn_id"] and e["type"] == "task_cancelled")),
            "timer_fired": list(dict.fromkeys(e["bpmn_id"] for e in events
                                              if e["bpmn_id"] and e["type"] == "timer_fired"))}


def deadlines(shown: dict, now: datetime) -> list[dict]:
    """Each deadline the ticket had and whether it was met: task due times (T1 escalation points) and the
    response/finish clocks the diagram set."""
    out = []
    for t in shown["tasks"]:
        due = _at(t["due_at"])
        if due is None:
            continue
        ended = _at(t["ended_at"])
        if t["state"] == "ready":
            status = "missed" if due < now else "running"
        elif t["end_reason"] == "timer" or (ended is not None and ended > due):
            status = "missed"
        else:
            status = "met"
        out.append({"what": "task", "bpmn_id": t["bpmn_id"], "name": t["name"], "due_at": t["due_at"],
                    "ended_at": t["ended_at"], "status": status})
    events = shown["events"]
    for i, e in enumerate(events):
        if e["type"] != "deadline_set" or not e["data"]:
            continue
        clock, due = e["data"].get("clock"), _at(e["data"].get("due_at"))
        if due is None:
            continue
        later = [x for x in events[i + 1:] if x["type"] == "deadline_set" and (x["data"] or {}).get("clock") == clock]
        if later:
            continue  # superseded by a later setting of the same clock
        if clock == "response":
            answer = next((x for x in events[i + 1:] if x["type"] == "task_completed"), None)
            done = _at(answer["at"]) if answer else None
        else:
            done = _at(shown["completed_at"])
        paused = clock == "finish" and shown["deadlines"].get("finish", {}).get("paused_at")
        if done is not None:
            status = "met" if done <= due else "missed"
        elif paused:
            status = "paused"
        else:
            status = "missed" if due < now else "running"
        out.append({"what": "clock", "clock": clock, "due_at": e["data"].get("due_at"),
                    "sla_case": e["data"].get("sla_case"), "ended_at": done.isoformat() if done else None,
                    "status": status})
    return out


def build(shown: dict, rules: dict, definition: dict, now: datetime) -> dict:
    started = next((e for e in shown["events"] if e["type"] == "instance_started"), None)
    sdata = (started or {}).get("data") or {}
    calendars = [e["data"]["calendar"] for e in shown["events"]
                 if e["type"] == "timer_set" and isinstance(e["data"], dict) and e["data"].get("calendar")]
    for e in shown["events"]:
        if not e["rules"] and e["bpmn_id"] in rules:
            e["rules"] = rules[e["bpmn_id"]]["rules"]
    return {
        **{k: shown[k] for k in ("instance_id", "ticket_no", "kind", "status", "severity", "nature", "vip",
                                 "summary", "created_by", "created_at", "completed_at", "incident", "parent_id",
                                 "tasks", "timers", "events")},
        "customer": (shown["customer"] or {}).get("name"),
        "definition": definition,
        "sla": {**(sdata.get("sla") or {}), "case": (shown.get("sla") or {}).get("case")} if sdata.get("sla") else None,
        "calendar": {"at_start": sdata.get("calendar"), "for_deadlines": calendars},
        "element_rules": rules,
        "path": path(shown["events"], shown["tasks"]),
        "deadlines": deadlines(shown, now),
    }


EVENT_COLUMNS = ("ticket_no", "seq", "at", "type", "actor", "bpmn_id", "task_name", "rules", "data", "hash")
