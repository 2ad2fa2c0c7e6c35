"""``kefu care`` (periodic revisits and greetings, Q1–Q3), ``kefu events`` (customer events, Q4) and
``kefu report`` (weekly … yearly summaries, 004)."""
from __future__ import annotations

import csv
import sys

from engine.cli.common import _print, _service
from engine.errors import InvalidInput
from engine.services.readers import SYSTEM


def cmd_care_plan(args):
    r = _service().care.plan()
    _print(args, r, _plan_text)


def _plan_text(r):
    lines = [f"planned {len(r['revisits'])} revisit(s), {len(r['greetings'])} greeting(s)"]
    lines += [f"  {x['ticket_no']} revisit {x['customer']} due {x['due_at']} ({x['owner']})" for x in r["revisits"]]
    lines += [f"  {x['ticket_no']} {x['occasion']} {x['occasion_date']} {x['customer']} due {x['due_at']}"
              for x in r["greetings"]]
    return "\n".join(lines)


def cmd_care_list(args):
    r = _service().care.overview()
    _print(args, r, lambda r: "\n".join(
        [f"cycles: " + ", ".join(f"{c['customer_class']} every {c['months']} month(s)" for c in r["cycles"])]
        + [f"  {i['ticket_no']} {i['care_kind']:<8} {i['customer'] or '-'}  {i['state']}"
           + (f" due {i['due_at']}" if i["due_at"] else "") + f"  {i['owner'] or '-'}" for i in r["items"]]
        + [f"holiday {h['date']} {h['name']}" for h in r["holidays"]]))


def cmd_care_cycle(args):
    k = _service()
    if args.set:
        cls, _, months = args.set.partition("=")
        if not months:
            raise InvalidInput("--set takes CLASS=MONTHS, e.g. vip=1")
        k.care.set_cycle(cls.strip(), months.strip(), args.actor or SYSTEM)
    r = k.care.cycles()
    _print(args, r, lambda r: "\n".join(f"{c['customer_class']}: every {c['months']} month(s) "
                                        f"(set by {c['updated_by']})" for c in r))


def cmd_events_add(args):
    r = _service().events.add(args.name, args.date, place=args.place, kind=args.kind,
                              attendees=args.attendee or [], notes=args.notes, actor=args.actor or SYSTEM)
    _print(args, r, _event_text)


def cmd_events_invite(args):
    r = _service().events.invite(args.id, args.attendee, actor=args.actor or SYSTEM)
    _print(args, r, _event_text)


def cmd_events_feedback(args):
    r = _service().events.feedback(args.id, args.customer, args.text, score=args.score, actor=args.actor or SYSTEM)
    _print(args, r, _event_text)


def cmd_events_show(args):
    _print(args, _service().events.get(args.id), _event_text)


def cmd_events_list(args):
    r = _service().events.list()
    _print(args, r, lambda r: "\n".join(f"{e['id']}  {e['date']}  {e['kind']:<8} {e['name']}  {e['place'] or ''}  "
                                        f"{e['attendees']} attendee(s), {e['feedback']} feedback" for e in r)
           or "no customer events")


def _event_text(e):
    lines = [f"event {e['id']}: {e['name']} ({e['kind']}) on {e['date']}" + (f" at {e['place']}" if e["place"] else "")]
    for a in e["attendees"]:
        lines.append(f"  {a['customer_id']:>5} {a['name']}" + (f"  feedback: {a['feedback']}" if a["feedback"] else "")
                     + (f" (score {a['score']})" if a["score"] is not None else ""))
    return "\n".join(lines)


def cmd_report(args):
    k = _service()
    r = k.reports.summary(args.period, args.at, actor=args.actor)
    if args.csv:
        w = csv.writer(sys.stdout)
        for row in k.reports.csv_rows(r):
            w.writerow(row)
        return 0
    _print(args, r, _report_text)


def _report_text(r):
    def pct(x):
        return "—" if x is None else f"{x:.2f}%"
    lines = [f"summary {r['label']} ({r['start']} – {r['end']}; {'final' if r['final'] else 'as of ' + r['as_of']})",
             f"  tickets {r['tickets']}: " + ", ".join(f"{k} {v}" for k, v in r["by_kind"].items()),
             "  channels: " + (", ".join(f"{k} {v}" for k, v in r["by_channel"].items()) or "—"),
             f"  K1 consultation timeliness {pct(r['timeliness']['K1']['value'])}, "
             f"K5 work-order timeliness {pct(r['timeliness']['K5']['value'])}, "
             f"K2 complaints handled {pct(r['complaints_handled']['value'])}",
             f"  satisfaction (K3) {r['satisfaction']['mean'] if r['satisfaction']['mean'] is not None else '—'} "
             f"over {r['satisfaction']['revisits']} revisit(s)",
             f"  repeat complaints {r['repeat_complaints']['count']}",
             "  top natures: " + (", ".join(f"{n['nature']} {n['count']}" for n in r["top_natures"]) or "—"),
             "  top places: " + (", ".join(f"{n['place']} {n['count']}" for n in r["top_places"]) or "—"),
             "  average handling (h): " + ", ".join(f"{k} {'—' if v is None else v}"
                                                    for k, v in r["avg_handling_hours"].items()),
             "  care: " + ", ".join(f"{k} {v}" for k, v in r["care"].items())]
    return "\n".join(lines)


def register(sub, add) -> None:
    care = sub.add_parser("care", help="relationship care: periodic revisits, greetings (Q1-Q3)").add_subparsers(
        dest="sub", required=True, metavar="ACTION")
    add("plan", cmd_care_plan, "start the revisits and greetings that are due to be planned", subparsers=care)
    add("list", cmd_care_list, "the revisit cycles, open care work and the holidays ahead", subparsers=care)
    sp = add("cycles", cmd_care_cycle, "show the revisit cycles; --set CLASS=MONTHS (process_owner)",
             subparsers=care)
    sp.add_argument("--set", metavar="CLASS=MONTHS", help="vip or important, months (0 = none)")
    sp.add_argument("--as", dest="actor")
    ev = sub.add_parser("events", help="customer events: seminars, safety training (Q4)").add_subparsers(
        dest="sub", required=True, metavar="ACTION")
    sp = add("add", cmd_events_add, "record a customer event", subparsers=ev)
    sp.add_argument("--name", required=True)
    sp.add_argument("--date", required=True, help="YYYY-MM-DD")
    sp.add_argument("--place")
    sp.add_argument("--kind", default="seminar", choices=["seminar", "training", "trial", "other"])
    sp.add_argument("--attendee", action="append", type=str, metavar="CUSTOMER_ID")
    sp.add_argument("--notes")
    sp = add("invite", cmd_events_invite, "add attendees from the customer registry", subparsers=ev)
    sp.add_argument("id")
    sp.add_argument("--attendee", action="append", required=True, metavar="CUSTOMER_ID")
    sp = add("feedback", cmd_events_feedback, "record an attendee's feedback", subparsers=ev)
    sp.add_argument("id")
    sp.add_argument("--customer", required=True, type=int)
    sp.add_argument("--text", required=True)
    sp.add_argument("--score", type=int)
    sp = add("show", cmd_events_show, "show an event with its attendees and feedback", subparsers=ev)
    sp.add_argument("id")
    add("list", cmd_events_list, "list customer events", subparsers=ev)
    sp = add("report", cmd_report, "weekly, monthly, quarterly or yearly summary (004)")
    sp.add_argument("--period", default="month", choices=["week", "month", "quarter", "year"])
    sp.add_argument("--at", help="a date in the period (default today)")
    sp.add_argument("--csv", action="store_true", help="CSV rows: period, section, key, value")
    sp.add_argument("--as", dest="actor")
