"""Notifications (issue 20): a user's channels and events, the outbox, and a one-shot delivery run (the
scheduler delivers on its own every few seconds)."""
from __future__ import annotations

from engine.cli.common import _print, _service
from engine.services.readers import SYSTEM


def cmd_users_notify(args):
    k = _service()
    if args.email is None and args.webhook is None and args.events is None:
        p = k.notifications.prefs(args.name)
    else:
        p = k.notifications.set_prefs(args.name, args.actor or SYSTEM, email=args.email, webhook=args.webhook,
                                      events=args.events)
    _print(args, p, lambda p: f"{p['user']}: e-mail {p['email'] or '-'}, webhook {p['webhook'] or '-'}, "
                              f"events {','.join(p['events']) or '-'}")


def cmd_deliver(args):
    k = _service()
    r = k.notifications.tick()
    _print(args, r, lambda r: f"queued {r['queued']}, sent {r['sent']}, retrying {r['retrying']}, "
                              f"failed {r['failed']}")


def cmd_list(args):
    states = tuple(args.state) if args.state else ("pending", "sending", "failed")
    rows = _service().notifications.outbox(states if "all" not in states else (), limit=args.limit)
    _print(args, rows, lambda rows: "\n".join(
        f"{m['id']:5} {m['state']:8} {m['attempts']}x {m['channel']:7} {m['user']:12} {m['event']:15} "
        f"{m['ticket_no'] or '':18} {m['last_error'] or ''}" for m in rows) or "no messages")


def cmd_retry(args):
    m = _service().notifications.retry(args.id, args.actor or SYSTEM)
    _print(args, m, lambda m: f"message {m['id']} will be sent again")


def register(sub, add, users) -> None:
    sp = add("notify", cmd_users_notify, "show or set a user's notification channels and events "
             "(events: task, queue, major_complaint, due_soon, overdue)", subparsers=users)
    sp.add_argument("name")
    sp.add_argument("--email", help="e-mail address ('' clears it)")
    sp.add_argument("--webhook", help="http(s) address of an SMS or WeCom gateway ('' clears it)")
    sp.add_argument("--events", help="comma-separated events to hear about ('' for none)")
    group = sub.add_parser("notifications", help="the notifications outbox").add_subparsers(
        dest="sub", required=True, metavar="ACTION")
    add("deliver", cmd_deliver, "announce clocks about to run out and send the messages that are due, once",
        subparsers=group)
    sp = add("list", cmd_list, "messages not yet delivered (or --state sent/all)", subparsers=group)
    sp.add_argument("--state", action="append", choices=("pending", "sending", "failed", "sent", "all"))
    sp.add_argument("--limit", type=int, default=200)
    sp = add("retry", cmd_retry, "send a failed message again", subparsers=group)
    sp.add_argument("id", type=int)
