"""The audit record (issue 6): verify its hash chains, print its head, replay, search and export instances."""
from __future__ import annotations

import json
import sys

from engine.cli.common import _print, _service
from engine.errors import InvalidInput


def cmd_audit_verify(args):
    problems = _service().audit.verify(args.instance or args.ref, anchor=_anchor(args.anchor))
    _print(args, {"ok": not problems, "problems": problems},
           lambda r: "audit chain verified" if r["ok"] else "\n".join(
               f"{p['ticket_no'] or 'ledger'}: {p['problem']}" for p in r["problems"]))
    return 0 if not problems else 7


def _anchor(text):
    if not text:
        return None
    entry, _, digest = text.partition(":")
    if not entry.isdigit() or len(digest) != 64:
        raise InvalidInput("--anchor must be ENTRY:HASH as printed by 'kefu audit head'")
    return int(entry), digest


def cmd_audit_head(args):
    head = _service().audit.head()
    _print(args, head, lambda h: f"{h['entry']}:{h['hash']}  ({h['at']})" if h else "the ledger is empty")


def cmd_audit_replay(args):
    if not args.all and not args.instance:
        raise InvalidInput("name an instance (id or ticket number) or give --all")
    results = _service().audit.replay(None if args.all else args.instance)
    bad = [r for r in results if not r["matches"]]
    _print(args, {"ok": not bad, "replayed": len(results), "mismatches": bad, "results": results},
           lambda r: "\n".join(f"{x['ticket_no']}: {'matches' if x['matches'] else 'MISMATCH: ' + x['difference']}"
                               for x in results) or "no instances")
    return 0 if not bad else 8


def _search_args(args) -> dict:
    return {k: getattr(args, k) for k in ("ticket", "customer", "kind", "severity", "status", "agent",
                                         "date_from", "date_to", "limit", "after")} | {"overdue": args.overdue}


def cmd_audit_search(args):
    k = _service()
    if args.all:
        return _audit_search_all(k, args)
    page = k.audit.search(_search_args(args))
    if args.format:
        from engine.records.exports import rows_to_csv
        sys.stdout.write(rows_to_csv(page["rows"]) if args.format == "csv" else
                         json.dumps(page, ensure_ascii=False, indent=2) + "\n")
        return 0
    _print(args, page, lambda p: "\n".join(_search_line(r) for r in p["rows"])
           + (f"\nnext page: --after {p['next']}" if p["next"] else "") if p["rows"] else "no instances match")


def _audit_search_all(k, args):
    """Every row of the result, written as it is read (in batches of the search's largest page)."""
    from engine.records.exports import search_csv_chunks, search_json_chunks
    filters, rows = k.audit.rows(_search_args(args))
    if args.format == "csv":
        chunks = search_csv_chunks(rows)
    elif args.format == "json" or args.json:
        chunks = search_json_chunks(filters, rows)
    else:
        chunks = (_search_line(r) + "\n" for r in rows)
    empty = True
    for chunk in chunks:
        sys.stdout.write(chunk)
        empty = False
    if empty:
        print("no instances match")
    return 0


def _search_line(r: dict) -> str:
    return (f"{r['ticket_no']:16} {r['kind']:12} {r['status']:9} {r['severity'] or '-':8} {r['created_at']}  "
            f"{r['customer'] or ''}")


def cmd_audit_export(args):
    from engine.records.exports import trace_csv
    k = _service()
    t = k.masking.ticket(k.audit.trace(args.instance), args.actor)  # I4: contact data masked
    if args.format == "csv":
        sys.stdout.write(trace_csv(t))
    else:
        sys.stdout.write(json.dumps(t, ensure_ascii=False, indent=2, default=str) + "\n")


def cmd_audit_security(args):
    rows = _service().security.events(args.limit)
    _print(args, rows, lambda rows: "\n".join(f"{e['at']}  {e['type']:18} {e['subject']:24} by {e['actor']}"
                                              + (f" from {e['address']}" if e["address"] else "")
                                              for e in rows) or "no security events")


def register(sub, add) -> None:
    aud = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("verify", cmd_audit_verify, "verify the hash chains of the audit log", subparsers=aud)
    sp.add_argument("--instance")
    sp.add_argument("--anchor", help="ENTRY:HASH from 'kefu audit head', recorded outside the database")
    sp.add_argument("ref", nargs="?", metavar="INSTANCE")
    add("head", cmd_audit_head, "the newest ledger entry (record it elsewhere; verify --anchor checks it)",
        subparsers=aud)
    sp = add("replay", cmd_audit_replay, "rebuild instances from their recorded events and compare", subparsers=aud)
    sp.add_argument("instance", nargs="?")
    sp.add_argument("--all", action="store_true")
    sp = add("search", cmd_audit_search, "search instances (newest first)", subparsers=aud)
    for name in ("ticket", "customer", "kind", "severity", "status", "agent", "date-from", "date-to", "after"):
        sp.add_argument(f"--{name}")
    sp.add_argument("--overdue", action="store_true")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--format", choices=["csv", "json"], help="export the page instead of listing it")
    sp.add_argument("--all", action="store_true", help="the whole result, every row (written as it is read), not one page")
    sp = add("security", cmd_audit_security, "security events outside tickets (sign-in lockouts, unlocks), "
             "newest first", subparsers=aud)
    sp.add_argument("--limit", type=int, default=100)
    sp = add("export", cmd_audit_export, "an instance's trace as CSV (events) or JSON (everything)",
             subparsers=aud)
    sp.add_argument("instance")
    sp.add_argument("--format", choices=["csv", "json"], default="json")
    sp.add_argument("--as", dest="actor", help="export as this user (contact data masked unless serving, I4)")
