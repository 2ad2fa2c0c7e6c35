"""Time: the waiting timers and the scheduler that fires them, the service's clock, the working-day calendar."""
from __future__ import annotations

import json
import sys

from engine.cli.common import _print, _service
from engine.errors import InvalidInput
from engine.services.readers import SYSTEM


def cmd_timers_list(args):
    ts = _service().timers.waiting(instance=args.instance)
    _print(args, ts, lambda ts: "\n".join(f"{t['due_at']}  instance {t['instance_id']}  {t['name'] or t['bpmn_id']}"
                                          for t in ts) or "no waiting timers")


def cmd_timers_fire_due(args):
    k = _service()
    shard = _shard(args.shard) if args.shard else None
    # care (Q1, Q3): the revisits and greetings whose timers are to wait (not in each shard's process)
    planned = k.care.plan() if shard is None else []
    fired = k.timers.fire_due(shard=shard)
    _print(args, {"fired": fired, "count": len(fired), "care_planned": planned}, lambda r: f"fired {r['count']} timer(s)" + "".join(
        f"\n  {f['ticket_no']} {f['name'] or f['timer']} (due {f['due_at']})" for f in r["fired"]))


def _shard(text: str) -> tuple[int, int]:
    i, sep, n = text.partition("/")
    try:
        shard = int(i), int(n)
    except ValueError:
        shard = None
    if not sep or shard is None or not 0 <= shard[0] < shard[1] <= 1000:
        raise InvalidInput(f"--shard must be I/N with 0 <= I < N <= 1000, not {text!r}")
    return shard


def cmd_scheduler(args):
    from engine.logs import configure_logging
    from engine.services.scheduler import run_forever
    configure_logging()
    k = _service()
    _warn_missing_calendar(k)

    def print_fired(fired):  # one JSON line per timer fired, for tools that watch the scheduler
        for f in fired:
            print(json.dumps(f, ensure_ascii=False), flush=True)
    return run_forever(k, sweep_seconds=args.sweep, until_idle=args.until_idle,
                       on_fired=print_fired if args.json else None)


def _warn_missing_calendar(k) -> None:
    for y in k.time.calendar_status()["years"]:
        if y["missing"]:
            print(f"kefu: warning: no official working-day calendar for {y['year']}; Monday-Friday is used "
                  f"until the process owner enters it ('kefu calendar set')", file=sys.stderr)


def cmd_clock_show(args):
    _print(args, _service().time.clock_status(), _clock_text)


def cmd_clock_advance(args):
    from engine.clock import parse_duration
    k = _service()
    r = k.time.advance_clock(parse_duration(args.duration), actor=args.actor or SYSTEM)
    if not args.no_fire:
        r["care_planned"] = k.care.plan()  # care (Q1, Q3): holidays and cycles the new time reached
        r["fired"] = k.timers.fire_due()
    _print(args, r, lambda r: _clock_text(r) + (f"\nfired {len(r['fired'])} timer(s)" + "".join(
        f"\n  {f['ticket_no']} {f['name'] or f['timer']} (due {f['due_at']})" for f in r["fired"])
        if "fired" in r else ""))


def _clock_text(r):
    off = int(r["offset_seconds"])
    span = " ".join(f"{v}{u}" for v, u in ((off // 86400, "d"), (off % 86400 // 3600, "h"),
                                            (off % 3600 // 60, "m"), (off % 60, "s")) if v) if off > 0 else ""
    return (f"now {r['now']} (KEFU_ENV={r['env']}" + (", pinned" if r["pinned"] else "")
            + (f", advanced by {span}" if span else "") + ")")


def cmd_calendar_status(args):
    years = range(args.year, args.year + 1) if args.year else None
    k = _service()
    r = {**k.time.calendar_status(years), "overrides": k.time.calendar_days(args.year)}
    _print(args, r, lambda r: "\n".join(
        [f"{r['library']} knows {r['library_years'][0]}-{r['library_years'][1]}"]
        + [f"{y['year']}: {y['source']}" + (f" ({y['overrides']} override(s))" if y["overrides"] else "")
           + ("  <- missing: Monday-Friday is used" if y["missing"] else "") for y in r["years"]]
        + [f"  {o['day']} {'working day' if o['working'] else 'day off'}"
           + (f"  {o['note']}" if o["note"] else "") for o in r["overrides"]]))


def cmd_calendar_set(args):
    working = {"working": True, "holiday": False, "off": False}[args.kind]
    r = _service().time.set_calendar_day(args.day, working, args.actor, note=args.note)
    _print(args, r, lambda r: f"{r['day']}: {'working day' if r['working'] else 'day off'} ({r['source']})")


def cmd_calendar_unset(args):
    r = _service().time.set_calendar_day(args.day, None, args.actor)
    _print(args, r, lambda r: f"{r['day']}: {'working day' if r['working'] else 'day off'} ({r['source']})")


def cmd_calendar_add(args):
    r = _service().time.add_working_days(args.start, args.days)
    _print(args, r, lambda r: f"{r['working_days']} working day(s) after {r['start']}: {r['due_at']}"
           + (f"  (weekday rule for {r['calendar']['weekday_rule_years']})"
              if r["calendar"].get("weekday_rule_years") else ""))


def register(sub, add) -> None:
    timers = sub.add_parser("timers", help="waiting timers").add_subparsers(dest="sub", required=True,
                                                                            metavar="ACTION")
    sp = add("list", cmd_timers_list, "list waiting timers", subparsers=timers)
    sp.add_argument("--instance")
    sp = add("fire-due", cmd_timers_fire_due, "fire every timer due now", subparsers=timers)
    sp.add_argument("--shard", metavar="I/N", help="only the instances whose id is I modulo N (parallel firing)")
    sp = add("scheduler", cmd_scheduler, "run a timer scheduler process (several may share one database)")
    sp.add_argument("--sweep", type=float, default=1.0, help="seconds between sweeps (default 1)")
    sp.add_argument("--until-idle", action="store_true", help="fire what is due, then exit (catch up)")
    clock = sub.add_parser("clock", help="the service's clock (moves only in demo and test)").add_subparsers(
        dest="sub", required=True, metavar="ACTION")
    add("show", cmd_clock_show, "show the service's current time", subparsers=clock)
    sp = add("advance", cmd_clock_advance, "move the clock forward, e.g. 3d, 2h30m, P1DT2H (demo/test only)",
             subparsers=clock)
    sp.add_argument("duration")
    sp.add_argument("--no-fire", action="store_true", help="do not fire the timers that fell due")
    cal = sub.add_parser("calendar", help="the working-day calendar (T2)").add_subparsers(
        dest="sub", required=True, metavar="ACTION")
    sp = add("status", cmd_calendar_status, "which years are known, and the overrides", subparsers=cal)
    sp.add_argument("--year", type=int)
    sp = add("set", cmd_calendar_set, "override a day as a working day or a day off (process_owner)",
             subparsers=cal)
    sp.add_argument("day", help="YYYY-MM-DD")
    sp.add_argument("kind", choices=["working", "holiday", "off"])
    sp.add_argument("--note")
    sp.add_argument("--as", dest="actor", required=True)
    sp = add("unset", cmd_calendar_unset, "drop a day's override", subparsers=cal)
    sp.add_argument("day")
    sp.add_argument("--as", dest="actor", required=True)
    sp = add("add", cmd_calendar_add, "the date N working days after a start", subparsers=cal)
    sp.add_argument("start", help="ISO date or time (Asia/Shanghai when no offset)")
    sp.add_argument("days", type=int)
