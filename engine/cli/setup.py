"""Setting a database up: its schema and migrations, the deployed diagrams, and the demo data."""
from __future__ import annotations

from engine.cli.common import _print, _read_diagram, _service
from engine.services.demo import DEMO_PASSWORD, seed_demo


def cmd_init(args):
    k = _service(need_schema=False)
    k.init()
    _print(args, {"database": k.config.database_url, "status": "ready"},
           lambda v: f"database ready: {v['database']}")


def cmd_deploy(args):
    k = _service(need_schema=False)
    k.init()
    if args.actor and args.actor != "system" and args.paths:
        result = _deploy_as_owner(k, args)  # designer: checked, test-run, by a process owner
    else:
        result = k.definitions.deploy(args.paths or None, actor=args.actor or "system")
    _print(args, result, lambda rs: "\n".join(
        f"kept       {r['process_id']} v{r['version']}: {r['file']} is the same as v{r['same_as']}, an older "
        f"version; v{r['version']} stays in force" if r["status"] == "kept" else
        f"{r['status']:10} {r['process_id']} v{r['version']} ({r['filename']}, sha256 {r['sha256'][:12]})"
        for r in rs))


def _deploy_as_owner(k, args) -> list[dict]:
    """Every file checked and test-run first; all deployed in one go, or none."""
    from engine.bpmn.diagram import diagram_files
    files = diagram_files(args.paths)
    out = []
    for r in k.designer.deploy_files([(_read_diagram(str(f)), f.name) for f in files], args.actor):
        for proc in r.get("processes") or [r]:
            out.append({"process_id": proc["process_id"], "version": proc["version"], "filename": r["filename"],
                        "sha256": proc["sha"], "status": "deployed" if proc["created"] else "unchanged",
                        "summary": proc["summary"], "warnings": r["warnings"]})
    return out


def cmd_definitions(args):
    from engine.bpmn.changes import describe
    rs = _service().designer.overview()  # designer: versions with running counts and change summaries
    _print(args, rs, lambda rs: "\n".join(
        f"{p['process_id']} ({p['name'] or ''}): {p['running']} running\n" + "\n".join(
            f"  v{v['version']}  {v['deployed_at']}  {v['deployed_by']:10} {v['sha'][:12]}  "
            f"{v['running']} running / {v['total']} total  {describe(v['summary'])['en']}"
            for v in p["versions"]) for p in rs) or "no definitions deployed")


def cmd_demo(args):
    result = seed_demo(_service(need_schema=False))
    _print(args, result, lambda r: "demo users (password %s): %s\ncustomers: %s" % (
        r["password"], ", ".join(u["name"] for u in r["users"]),
        ", ".join(f"#{c['id']} {c['name']}" for c in r["customers"])))


def cmd_db_upgrade(args):
    from engine.store import schema as migrate
    k = _service(need_schema=False)
    r = migrate.upgrade(k.db, args.revision)
    _print(args, r, lambda r: ("stamped a database from before migrations at the baseline\n" if r["stamped"]
                               else "") + f"schema: {r['from'] or '(empty)'} -> {r['to']}")


def cmd_db_downgrade(args):
    from engine.store import schema as migrate
    r = migrate.downgrade(_service(need_schema=False).db, args.revision)
    _print(args, r, lambda r: f"schema: {r['from'] or '(empty)'} -> {r['to'] or '(empty)'}")


def cmd_db_current(args):
    from engine.store import schema as migrate
    k = _service(need_schema=False)
    rev, newest = migrate.current(k.db), migrate.head()
    legacy = rev is None and k.db.has_schema()
    r = {"current": rev, "head": newest, "up_to_date": rev == newest, "needs_stamp": legacy}
    _print(args, r, lambda r: f"current: {r['current'] or '(none)'}  head: {r['head']}" + (
        "  (up to date)" if r["up_to_date"] else
        "  (tables from before migrations: 'kefu db upgrade' stamps and upgrades them)" if legacy else
        "  (run 'kefu db upgrade')"))


def cmd_db_history(args):
    from engine.store import schema as migrate
    rs = migrate.history()
    _print(args, rs, lambda rs: "\n".join(
        f"{r['down_revision'] or '(base)'} -> {r['revision']}{' (head)' if r['head'] else ''}: {r['message']}"
        for r in rs))


def register(sub, add) -> None:
    add("init", cmd_init, "create or upgrade the database schema (KEFU_DATABASE_URL)")
    sp = add("deploy", cmd_deploy, "deploy diagrams as new definition versions (default: processes/)")
    sp.add_argument("paths", nargs="*")
    sp.add_argument("--as", dest="actor", help="a process owner: each file is checked, test-run and deployed by "
                                               "that user (with files given)")
    add("definitions", cmd_definitions, "list deployed definition versions")
    add("demo", cmd_demo, f"seed demo users (password {DEMO_PASSWORD}) and customers")
    db = sub.add_parser("db", help="schema migrations (Alembic)").add_subparsers(dest="sub", required=True,
                                                                                   metavar="ACTION")
    sp = add("upgrade", cmd_db_upgrade, "upgrade the schema (stamps a database from before migrations first)",
             subparsers=db)
    sp.add_argument("revision", nargs="?", default="head")
    sp = add("downgrade", cmd_db_downgrade, "downgrade the schema to a revision ('base': drop everything)",
             subparsers=db)
    sp.add_argument("revision")
    add("current", cmd_db_current, "the database's revision and the newest one", subparsers=db)
    add("history", cmd_db_history, "every revision, newest first", subparsers=db)
