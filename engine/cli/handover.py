"""Shift handover (X2) and the shifts, and the repeat-complaint window (X3): ``kefu handover start|accept|show|
list``, ``kefu shifts list|set|remove``, ``kefu repeats window``."""
from __future__ import annotations

from datetime import date

from engine.cli.common import _print, _service
from engine.errors import InvalidInput


def _when(text):
    return (text or "")[:16].replace("T", " ")


def _handover_text(h):
    lines = [f"handover #{h['id']}  {h['outgoing']} → {h['incoming']}  shift {h['shift']} "
             f"({_when(h['window_start'])}–{_when(h['window_end'])})  {h['state']}",
             f"  signed by {h['outgoing']} at {_when(h['started_at'])}"
             + (f"; accepted by {h['incoming']} at {_when(h['accepted_at'])}" if h["accepted_at"] else
                "; not accepted yet")]
    if h.get("note"):
        lines.append(f"  shift note: {h['note']}")
    for i in h.get("items", []):
        flag = "" if i["included"] else "  [left out]"
        due = f" due {_when(i['due_at'])}" if i["due_at"] else ""
        outcome = f"  → {i['outcome']}" + (f" ({i['outcome_note']})" if i["outcome_note"] else "") \
            if i["outcome"] else ""
        lines.append(f"  {i['kind']:10} {i['ticket_no']}  {i['label'] or ''}{due}{flag}{outcome}")
        if i["note"]:
            lines.append(f"             note: {i['note']}")
    if not h.get("items"):
        lines.append("  nothing to hand over")
    return "\n".join(lines)


def _case_notes(values) -> dict:
    out = {}
    for v in values or ():
        ticket, sep, text = v.partition("=")
        if not sep or not ticket.strip():
            raise InvalidInput(f"--case-note takes TICKET=TEXT, not {v!r}")
        out[ticket.strip()] = text
    return out


def cmd_start(args):
    h = _service().handovers.start(args.actor, args.to, note=args.note, case_notes=_case_notes(args.case_note),
                                   leave=args.leave)
    _print(args, h, _handover_text)


def cmd_accept(args):
    h = _service().handovers.accept(args.handover, args.actor)
    _print(args, h, _handover_text)


def cmd_show(args):
    _print(args, _service().handovers.show(args.handover, actor=args.actor), _handover_text)


def cmd_list(args):
    try:
        day = date.fromisoformat(args.day) if args.day else None
    except ValueError:
        raise InvalidInput(f"--day must be a date YYYY-MM-DD, not {args.day!r}") from None
    hs = _service().handovers.day(day, actor=args.actor)
    _print(args, hs, lambda hs: "\n".join(_handover_text(h).splitlines()[0] for h in hs) or "no handovers")


def _shifts_text(shifts):
    return "\n".join(f"{s['name']}  {s['start']}–{s['end']}" for s in shifts)


def cmd_shifts_list(args):
    _print(args, _service().shifts.all(), _shifts_text)


def cmd_shifts_set(args):
    _print(args, _service().shifts.set(args.name, args.start, args.end, args.actor), _shifts_text)


def cmd_shifts_remove(args):
    _print(args, _service().shifts.remove(args.name, args.actor), _shifts_text)


def cmd_repeats_window(args):
    k = _service()
    r = k.repeats.set_window(args.days, args.actor) if args.days is not None else k.repeats.window()
    _print(args, r, lambda r: f"repeat window: {r['window_days']} days")


def register(sub, add) -> None:
    grp = sub.add_parser("handover", help="shift handover (X2): start, accept, show, list").add_subparsers(
        dest="sub", required=True, metavar="ACTION")
    sp = add("start", cmd_start, "hand one's open cases and tasks over to the next shift's agent",
             subparsers=grp)
    sp.add_argument("--as", dest="actor", required=True, help="the outgoing agent")
    sp.add_argument("--to", required=True, help="the incoming agent")
    sp.add_argument("--note", help="the note for the shift")
    sp.add_argument("--case-note", action="append", metavar="TICKET=TEXT", help="a note on one case (repeatable)")
    sp.add_argument("--leave", action="append", metavar="TICKET", help="leave a case out (repeatable)")
    sp = add("accept", cmd_accept, "accept a handover (the incoming agent): the listed cases and tasks pass to you",
             subparsers=grp)
    sp.add_argument("handover", help="handover number")
    sp.add_argument("--as", dest="actor", required=True)
    sp = add("show", cmd_show, "show one handover with its items", subparsers=grp)
    sp.add_argument("handover", help="handover number")
    sp.add_argument("--as", dest="actor")
    sp = add("list", cmd_list, "the handovers of a day and every open one", subparsers=grp)
    sp.add_argument("--day", help="YYYY-MM-DD (Asia/Shanghai); today by default")
    sp.add_argument("--as", dest="actor")
    grp = sub.add_parser("shifts", help="the shifts (X2)").add_subparsers(dest="sub", required=True,
                                                                         metavar="ACTION")
    add("list", cmd_shifts_list, "list the shifts", subparsers=grp)
    sp = add("set", cmd_shifts_set, "add a shift or change its times (supervisor)", subparsers=grp)
    sp.add_argument("name")
    sp.add_argument("--start", required=True, help="HH:MM, Asia/Shanghai")
    sp.add_argument("--end", required=True, help="HH:MM; not after the start: the next day")
    sp.add_argument("--as", dest="actor", required=True)
    sp = add("remove", cmd_shifts_remove, "remove a shift (supervisor)", subparsers=grp)
    sp.add_argument("name")
    sp.add_argument("--as", dest="actor", required=True)
    grp = sub.add_parser("repeats", help="repeat complaints (X3)").add_subparsers(dest="sub", required=True,
                                                                                metavar="ACTION")
    sp = add("window", cmd_repeats_window, "show or (with --days, a supervisor) set the repeat window",
             subparsers=grp)
    sp.add_argument("--days", type=int)
    sp.add_argument("--as", dest="actor")
