"""Changing a procedure: lint a diagram, test-run it on sample data, move a running instance to a newer version."""
from __future__ import annotations

from pathlib import Path

from engine.cli.common import _print, _read_diagram, _service
from engine.errors import InvalidInput


def _finding_line(f: dict) -> str:
    where = ", ".join(p for p in (f"element '{f['element']}'" if f.get("element") else None,
                                  f"line {f['line']}" if f.get("line") else None) if p)
    return f"  {f['severity']:7} {f['code']}: {where + ': ' if where else ''}{f['message']['en']}" \
           f"\n          {f['message']['zh']}"


def cmd_lint(args):
    """Each diagram of the files and folders given; a call activity finds its process among them."""
    from engine.bpmn.diagram import diagram_files
    from engine.bpmn.lint import lint_diagram
    from engine.services.calls import siblings
    files = [f for p in args.files for f in (diagram_files([p]) if Path(p).is_dir() else [Path(p)])
             if f.suffix.lower() != ".dmn"]
    items = [(_read_diagram(str(f)), f.name) for f in files]
    others = siblings(items)
    reports = [lint_diagram(data, name, resolver=others.get).to_dict() for data, name in items]
    _print(args, reports, lambda rs: "\n".join(
        f"{r['file']}: {'ok' if r['ok'] else 'FAILED'} ({r['errors']} error(s), {r['warnings']} warning(s))"
        + "".join("\n" + _finding_line(f) for f in r["findings"]) for r in rs))
    return 0 if all(r["ok"] for r in reports) else 2


def _path_line(p: dict) -> str:
    state = "ok" if p["failure"] is None else f"FAILED at {p['failed_at'] or '?'}: {p['failure']}"
    choice = ", ".join(f"{k}={v}" for k, v in p["choice"].items()) or "defaults"
    if p.get("boundary"):
        choice += f"; {p['boundary']} fires"
    timers = f"; timers fired: {', '.join(p['timers_fired'])}" if p["timers_fired"] else ""
    return f"  path [{choice}] {state}\n    steps: {' → '.join(p['steps'])}{timers}"


def cmd_testrun(args):
    """A call activity finds its process among the other diagrams of the file's folder."""
    from engine.bpmn.testrun import test_run_xml
    from engine.services.calls import siblings
    here = Path(args.file)
    folder = [(f.read_bytes(), f.name) for f in sorted(here.parent.glob("*.bpmn")) if f.name != here.name]
    others = siblings(folder)
    reports = [r.to_dict() for r in test_run_xml(_read_diagram(args.file), here.name, resolver=others.get)]
    _print(args, reports, lambda rs: "\n".join(
        f"{args.file}: {t['message']['en']}\n" + "\n".join(_finding_line(f) for f in t["lint_errors"])
        if t.get("lint_errors") else
        f"{t['process_id']}: {'ok' if t['ok'] else 'FAILED'} ({len(t['paths'])} path(s))\n"
        + "\n".join(_path_line(p) for p in t["paths"])
        + "".join(f"\n  not reached: {u['gateway']} → {u['target']} ({u['flow']})" if "gateway" in u else
                  f"\n  never fires: boundary {u['event']} event {u['boundary']} on {u['attached_to']}"
                  for u in t["unreached"])
        for t in rs))
    return 0 if all(t["ok"] for t in reports) else 2


def cmd_migrate(args):
    k = _service()
    if args.check:
        reasons = k.designer.migration_check(args.instance, args.to)
        _print(args, {"instance": args.instance, "to_version": args.to, "safe": not reasons, "reasons": reasons},
               lambda r: "safe to move" if r["safe"] else "unsafe:\n" + "\n".join(f"  {x}" for x in r["reasons"]))
        return 0 if not reasons else 5
    if not args.actor:
        raise InvalidInput("--as USER (a process owner) is needed to move an instance")
    r = k.designer.migrate_instance(args.instance, args.to, args.actor)
    _print(args, r, lambda r: f"{r['ticket_no']} moved from v{r['from_version']} to v{r['to_version']}")


def register(sub, add) -> None:
    sp = add("lint", cmd_lint, "check diagrams (files or folders) before deploy (exit 2 when one has errors)")
    sp.add_argument("files", nargs="+", metavar="FILE_OR_FOLDER")
    sp = add("testrun", cmd_testrun, "run a diagram on sample data along each path, without the database")
    sp.add_argument("file")
    sp = add("migrate", cmd_migrate, "move a running instance to a newer version when safe (process_owner)")
    sp.add_argument("instance", help="instance id or ticket number")
    sp.add_argument("--to", required=True, type=int, help="version number")
    sp.add_argument("--as", dest="actor", help="a process owner (not needed with --check)")
    sp.add_argument("--check", action="store_true", help="only say whether the move is safe, and why not")
