"""P13 / 004 七.(5): verified complaints per responsible person, a section of the monthly KPI report.

A complaint's accountability record is the last completion of ``department_handle`` (or of ``consolidate``,
the supervisor's record of a task force's work) recorded before the report's ``as_of``. It is *verified*
when the record says ``acceptance = accepted`` and a supervisor approved it: the next ``approve_solution``
after it says ``solution_approved = true`` (a ``consolidate`` record is the supervisor's own, so approved).
Each verified complaint is listed under its ``responsible_person`` (``—`` when none was named) with the
department, the cause and the corrective action; a record not accepted or not (yet) approved is listed
among ``pending`` with the reason, so the section explains every complaint it names. Complaints recorded on
a diagram version without the record (a ``handling_result`` only) are ``pending`` with that reason.
"""
from __future__ import annotations

RECORD_TASKS = ("department_handle", "consolidate")
APPROVAL_TASK = "approve_solution"
NOBODY = "—"


def _record(t):
    """The last accountability record of a ticket and whether it was approved: (event, approval event)."""
    record, approval = None, None
    for e in t.events:
        if e.type != "task_completed":
            continue
        if e.bpmn_id in RECORD_TASKS:
            record, approval = e, (e if e.bpmn_id == "consolidate" else None)
        elif e.bpmn_id == APPROVAL_TASK and record is not None:
            approval = e
    return record, approval


def verified_complaints(tickets) -> dict:
    """The P13 section: per responsible person, the verified complaints of the month; the others pending."""
    people: dict[str, list] = {}
    pending = []
    for t in tickets:
        if t.kind != "complaint":
            continue
        record, approval = _record(t)
        data = (record.data or {}) if record is not None else {}
        row = {"ticket_no": t.ticket_no, "responsible_person": data.get("responsible_person"),
               "responsible_department": data.get("responsible_department"), "cause": data.get("cause"),
               "corrective_action": data.get("corrective_action"), "handling": data.get("handling_result"),
               "recorded_by": record.actor if record is not None else None,
               "approved_by": approval.actor if approval is not None else None}
        approved = approval is not None and (approval is record or (approval.data or {}).get("solution_approved"))
        if record is None:
            reason = "no accountability record yet"
        elif "acceptance" not in data:
            reason = "recorded without an accountability record (an earlier diagram version)"
        elif data.get("acceptance") != "accepted":
            reason = f"not accepted: {data.get('acceptance_reason') or '—'}"
        elif not approved:
            reason = ("solution rejected by the supervisor" if approval is not None
                      else "awaiting the supervisor's approval")
        else:
            people.setdefault(data.get("responsible_person") or NOBODY, []).append(row)
            continue
        pending.append({**row, "reason": reason})
    return {"rule": "P13", "people": {p: {"verified": len(rows), "complaints": rows}
                                      for p, rows in sorted(people.items())},
            "verified": sum(len(r) for r in people.values()), "pending": pending}
