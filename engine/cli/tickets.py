"""Working tickets: open one, list and show tasks, claim, hand over, escalate and complete them, list the cases
one owns (X1), hand a case over, show an instance, and retry one stopped by an incident."""
from __future__ import annotations

from engine.cli.common import _data, _print, _reader, _service


def cmd_start(args):
    r = _service().instances.start(args.kind, args.actor, data=_data(args.data), customer_id=args.customer)
    _print(args, r, lambda r: f"started {r['kind']} {r['ticket_no']} (instance {r['instance_id']}); next: "
                              + (", ".join(f"{t['name']} [{t['role']}]" for t in r["tasks"]) or "none"))


def _task_line(t):
    due = f" due {t['due_at']}" if t.get("due_at") else ""
    who = f" @{t['assignee']}" if t.get("assignee") else ""
    return f"{t['id']}  {t['ticket_no']}  {t['name']} [{t['role']}]{who}{due}"


def cmd_tasks(args):
    # TaskService.ready in plain SQL on a connection of its own: no SQLAlchemy (issue 23: answer at once)
    from engine.services import queue
    ts = queue.ready(_reader(), actor=args.actor, instance=args.instance, role=args.role)
    _print(args, ts, lambda ts: "\n".join(_task_line(t) for t in ts) or "no ready tasks")


def cmd_task(args):
    from engine.services import queue  # TaskService.get, the same way
    _print(args, queue.one(_reader(), args.task, actor=args.actor))


def cmd_claim(args):
    t = _service().tasks.claim(args.task, args.actor)
    _print(args, t, lambda t: f"claimed: {_task_line(t)}")


def cmd_unclaim(args):
    t = _service().tasks.unclaim(args.task, args.actor)
    _print(args, t, lambda t: f"released: {_task_line(t)}")


def cmd_reassign(args):
    t = _service().tasks.reassign(args.task, args.actor, args.to)
    _print(args, t, lambda t: f"reassigned: {_task_line(t)}")


def cmd_escalate(args):
    r = _service().tasks.escalate(args.task, args.actor, args.reason)
    _print(args, r, lambda r: f"escalated to the supervisor: {r['ticket_no']} (ticket {r['parent']})")


def cmd_complete(args):
    r = _service().tasks.complete(args.task, args.actor, _data(args.data) or {})
    _print(args, r, lambda r: f"{r['ticket_no']}: {r['status']}; next: "
                              + (", ".join(f"{t['name']} [{t['role']}]" for t in r["tasks"]) or "none"))


def _show_text(r):
    lines = [f"{r['ticket_no']}  {r['kind']}  {r['status']}  (instance {r['instance_id']}, "
             f"{r['definition']['process_id']} v{r['definition']['version']})"]
    if r["customer"]:
        lines.append(f"customer: {r['customer']['name']}{' (VIP)' if r['customer']['vip'] else ''}")
    if r["incident"]:
        lines.append(f"INCIDENT at {r['incident']['bpmn_id']}: {r['incident']['message']}")
    for t in r["tasks"]:
        if t["state"] == "ready":
            lines.append(f"ready: {t['name']} [{t['role']}] {t['id']}" + (f" due {t['due_at']}" if t["due_at"] else ""))
    for t in r["timers"]:
        lines.append(f"timer: {t['name'] or t['bpmn_id']} due {t['due_at']}")
    for x in r.get("external_tasks", []):
        if x["state"] == "open":
            lines.append(f"external task: {x['name'] or x['bpmn_id']} (topic {x['topic']}) {x['id']}, "
                         f"{x['retries']} retries left" + (f", last error: {x['error_message']}"
                                                           if x["error_message"] else ""))
    for n in r.get("notes", []):
        lines.append(f"note {n['id']}: {n['at']} {n['author']}: {n['text']}")
    for c in r.get("contacts", []):
        lines.append(f"contact {c['id']}: {c['at']} {c['author']} ({c['channel']}): {c['outcome']}")
    for a in r.get("attachments", []):
        lines.append(f"attachment {a['id']}: {a['filename']} ({a['content_type']}, {a['size']} bytes) {a['at']} "
                     f"{a['author']}" + (f", superseded by {a['superseded_by']}" if a["superseded_by"] else ""))
    lines.append("events:")
    for e in r["events"]:
        rules = f" [{', '.join(e['rules'])}]" if e["rules"] else ""
        lines.append(f"  {e['seq']:3} {e['at']} {e['type']:18} {e['actor']:12} {e['task_name'] or ''}{rules}")
    return "\n".join(lines)


def cmd_show(args):
    k = _service()
    # I4: contact data masked unless --as names the case owner or the holder of a ready task on it.
    _print(args, k.masking.ticket(k.instances.show(args.instance), args.actor), _show_text)


def cmd_reveal(args):
    """I4: one masked contact value in full, with a reason; recorded on the ticket as ``value_revealed``."""
    r = _service().masking.reveal(args.instance, args.field, args.actor, args.reason)
    _print(args, r, lambda r: f"{r['ticket_no']} {r['field']}: {r['value']}")


def _case_lines(cases):
    lines = []
    for c in cases:
        lines.append(f"{c['ticket_no']}  {c['kind']}  {c['status']}  owner {c['owner'] or '—'}"
                     + (f"  staff involved: {', '.join(c['staff_involved'])}" if c["staff_involved"] else "")
                     + (f"  {c['summary']}" if c["summary"] else ""))
        for t in c["tasks"]:
            offer = f" (offered, claim by {t['offer_due']})" if t.get("offer_due") else ""
            lines.append(f"    {t['id']}  {t['name']} [{t['role']}] @{t['assignee'] or '—'}{offer}")
    return "\n".join(lines) or "no open cases"


def cmd_cases(args):
    k = _service()
    cases = k.instances.needing_owner(args.actor) if args.needing_owner else k.instances.owned(args.actor)
    _print(args, cases, _case_lines)


def cmd_hand_over(args):
    r = _service().instances.set_owner(args.instance, args.to, args.actor, args.reason)
    _print(args, r, lambda r: f"{r['ticket_no']}: owner {r['previous_owner'] or '—'} → {r['owner']}")


def cmd_incident_retry(args):
    r = _service().instances.retry_incident(args.instance, args.actor, _data(args.data))
    _print(args, r, lambda r: f"{r['ticket_no']}: {r['status']}")


def register(sub, add) -> None:
    sp = add("start", cmd_start, "open a ticket: consultation, complaint, repair or any deployed process id")
    sp.add_argument("kind")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--data", help="intake form as JSON (or @file, or - for stdin)")
    sp.add_argument("--customer", type=int, help="link an existing customer")
    sp = add("tasks", cmd_tasks, "list ready tasks")
    sp.add_argument("--as", dest="actor")
    sp.add_argument("--instance")
    sp.add_argument("--role")
    sp = add("task", cmd_task, "show one task with its form")
    sp.add_argument("task")
    sp.add_argument("--as", dest="actor")
    for name, func, help_ in (("claim", cmd_claim, "claim a task"), ("unclaim", cmd_unclaim, "release a task")):
        sp = add(name, func, help_)
        sp.add_argument("task")
        sp.add_argument("--as", dest="actor", required=True)
    sp = add("reassign", cmd_reassign, "hand a ready task to another user (supervisor)")
    sp.add_argument("task")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--to", required=True, help="user name; must hold the task's role")
    sp = add("escalate", cmd_escalate, "escalate a transferred task to the supervisor (000 §五.1)")
    sp.add_argument("task")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--reason", required=True)
    sp = add("complete", cmd_complete, "complete a task with form data")
    sp.add_argument("task")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--data", default="{}")
    sp = add("cases", cmd_cases, "我的工单: the open tickets a user owns (X1) with their ready tasks")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--needing-owner", action="store_true",
                    help="instead: open complaints without an owner because the owner was named in them (P12)")
    sp = add("hand-over", cmd_hand_over, "hand a case to another agent (X1; the owner or a supervisor)")
    sp.add_argument("instance")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--to", required=True, help="the agent who owns the case from now on")
    sp.add_argument("--reason", required=True)
    sp = add("show", cmd_show, "show an instance (id or ticket number) with its audit events")
    sp.add_argument("instance")
    sp.add_argument("--as", dest="actor", help="read as this user: customer contact data in full only for the "
                                               "case owner or a ready task's holder (I4)")
    sp = add("reveal", cmd_reveal, "show one masked customer contact value of a ticket, with a reason (I4; "
                                   "supervisor, QA, auditor; recorded)")
    sp.add_argument("instance")
    sp.add_argument("--field", required=True, help="phone, email, address or a contact form field (contact_phone)")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--reason", required=True)
    inc = sub.add_parser("incident", help="incidents").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("retry", cmd_incident_retry, "retry the failed step of an instance after fixing its data",
             subparsers=inc)
    sp.add_argument("instance")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--data", help="JSON object of data fixes")
