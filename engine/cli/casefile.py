"""The case file and the desk's search: notes, contact records and attachments on a ticket; finding tickets."""
from __future__ import annotations

from pathlib import Path

from engine.cli.common import _print, _service
from engine.errors import InvalidInput
from engine.limits import CONTACT_CHANNELS as CHANNELS, MAX_ATTACHMENT


def cmd_note(args):
    r = _service().casefile.note(args.instance, args.actor, args.text)
    _print(args, r, lambda r: f"{r['ticket_no']}: note {r['id']} added by {r['author']}")


def cmd_contact(args):
    r = _service().casefile.contact(args.instance, args.actor, args.channel, args.outcome)
    _print(args, r, lambda r: f"{r['ticket_no']}: {r['channel']} contact {r['id']} logged by {r['author']}")


def cmd_attach(args):
    path = Path(args.file)
    try:
        size = path.stat().st_size
        if size > MAX_ATTACHMENT:  # refused before reading it into memory
            raise InvalidInput(f"{path.name} is {size / 1024 / 1024:.1f} MB; an attachment may have at most "
                               f"{MAX_ATTACHMENT // 1024 // 1024} MB")
        content = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file}: {exc.strerror}") from None
    r = _service().casefile.attach(args.instance, args.actor, args.name or path.name, content,
                                   supersedes=args.supersedes)
    _print(args, r, lambda r: f"{r['ticket_no']}: attachment {r['id']} {r['filename']} ({r['content_type']}, "
                              f"{r['size']} bytes, sha256 {r['sha256'][:12]}…)"
                              + (f", supersedes {args.supersedes}" if args.supersedes else ""))


def _search_text(r):
    lines = [f"{x['ticket_no']:20} {x['kind']:12} {x['status']:9} {x['severity'] or '-':8} "
             f"{'VIP ' if x['vip'] else ''}{x['customer'] or '-'} {x['customer_phone'] or ''} "
             f"{x['created_at']}" for x in r["rows"]]
    return "\n".join(lines) or "no tickets found"


def cmd_search(args):
    filters = {"status": args.status, "kind": args.kind, "severity": args.severity, "assignee": args.assignee,
               "date_from": args.date_from, "date_to": args.date_to, "view": args.view, "limit": args.limit}
    r = _service().casefile.search(args.actor, args.query, filters)
    _print(args, r, _search_text)


def register(sub, add) -> None:
    sp = add("note", cmd_note, "add an internal note to a ticket")
    sp.add_argument("instance", help="ticket number or instance id")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--text", required=True)
    sp = add("contact", cmd_contact, "log a contact with the customer: a call, a message or a visit")
    sp.add_argument("instance", help="ticket number or instance id")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--channel", required=True, choices=CHANNELS)
    sp.add_argument("--outcome", required=True)
    sp = add("attach", cmd_attach, "attach a file to a ticket (JPEG, PNG, GIF, WebP, PDF or text; at most 20 MB)")
    sp.add_argument("instance", help="ticket number or instance id")
    sp.add_argument("file")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--name", help="the file name to record (default: the file's own)")
    sp.add_argument("--supersedes", type=int, help="the id of the attachment this one replaces")
    sp = add("search", cmd_search, "find tickets by number, customer name or phone, with filters and views")
    sp.add_argument("query", nargs="?", default="")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--status", choices=("active", "completed", "incident"))
    sp.add_argument("--kind")
    sp.add_argument("--severity", choices=("general", "urgent", "major"))
    sp.add_argument("--assignee")
    sp.add_argument("--date-from", dest="date_from")
    sp.add_argument("--date-to", dest="date_to")
    sp.add_argument("--view", choices=("mine", "overdue", "vip", "today"))
    sp.add_argument("--limit", type=int, default=50)
