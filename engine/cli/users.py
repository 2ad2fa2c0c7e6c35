"""Users: add one or give it roles, list them, create or revoke its API tokens, and lift a sign-in lockout."""
from __future__ import annotations

from engine.cli.common import _print, _service
from engine.cli.notifications import register as register_notifications
from engine.errors import InvalidInput
from engine.services.readers import SYSTEM


def cmd_users_add(args):
    u = _service().users.add(args.name, args.role, display_name=args.display_name, groups=args.group or (),
                            password=args.password)
    _print(args, u, lambda u: f"user {u['name']}: {', '.join(u['roles'])}")


def cmd_users_list(args):
    k = _service()
    us = k.users.all()
    prefs = k.notifications.all_prefs()
    for u in us:  # notifications (issue 20): the user's channels and events
        u["notify"] = prefs.get(u["name"]) or {"user": u["name"], "email": None, "webhook": None, "events": []}
    _print(args, us, lambda us: "\n".join(f"{u['name']:14} {','.join(u['roles']):20} {u['display_name'] or ''}"
                                          for u in us) or "no users")


def cmd_users_token(args):
    k = _service()
    if args.revoke:
        r = k.users.revoke_tokens(args.name)
        _print(args, r, lambda r: f"revoked {r['revoked']} token(s) of {r['user']}")
        return
    t = k.users.create_token(args.name, args.label)
    _print(args, t, lambda t: t["token"])  # shown once; only its hash is stored


def cmd_users_unlock(args):
    if bool(args.name) == bool(args.address):
        raise InvalidInput("name a user, or give --address, to unlock")
    r = _service().security.unlock(args.name, args.address, actor=args.actor or SYSTEM)
    _print(args, r, lambda r: f"unlocked {r['kind']} {r['subject']} ({r['failures']} failed sign-in(s) cleared"
                              + (", it was locked)" if r["was_locked"] else ")"))


def cmd_users_lockouts(args):
    rows = _service().security.lockouts()
    _print(args, rows, lambda rows: "\n".join(f"{r['kind']:8} {r['subject']:24} {r['failures']:3} failures, "
                                              f"locked until {r['locked_until']}" for r in rows) or "no lockouts")


def cmd_users_active(args):
    u = _service().users.set_active(args.name, args.func is cmd_users_activate)
    _print(args, u, lambda u: f"user {u['name']}: {'active' if u['active'] else 'inactive'}"
                              + (f", {u['tasks_returned']} task(s) back to their queues" if u["tasks_returned"] else ""))


def cmd_users_activate(args):
    return cmd_users_active(args)


def register(sub, add) -> None:
    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("add", cmd_users_add, "add a user or give it more roles", subparsers=users)
    sp.add_argument("name")
    sp.add_argument("--role", action="append", required=True)
    sp.add_argument("--group", action="append", help="department/group id (repeatable)")
    sp.add_argument("--display-name")
    sp.add_argument("--password")
    add("list", cmd_users_list, "list users", subparsers=users)
    # JSON API (issue 8): bearer tokens
    sp = add("token", cmd_users_token, "create an API token for a user (printed once), or --revoke its tokens",
             subparsers=users)
    sp.add_argument("name")
    sp.add_argument("--label", help="what the token is for, e.g. the telephony system")
    sp.add_argument("--revoke", action="store_true", help="revoke every token of the user")
    sp = add("unlock", cmd_users_unlock, "lift the sign-in lockout of a user (or of an --address) and clear "
             "its failed sign-ins", subparsers=users)
    sp.add_argument("name", nargs="?")
    sp.add_argument("--address", help="a client address locked after failed sign-ins")
    for name, func, help_ in (("deactivate", cmd_users_active, "deactivate a user: no more sign-ins; their ready "
                               "tasks go back to the queues (X1)"),
                              ("activate", cmd_users_activate, "activate a deactivated user again")):
        sp = add(name, func, help_, subparsers=users)
        sp.add_argument("name")
    add("lockouts", cmd_users_lockouts, "user names and addresses locked after failed sign-ins",
        subparsers=users)
    register_notifications(sub, add, users)
