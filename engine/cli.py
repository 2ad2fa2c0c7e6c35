"""``kefu``: the scriptable surface for operators and tests. ``--json`` gives machine-readable output;
errors go to stderr with a non-zero exit code (1 other error, 2 bad input, 3 not allowed, 4 not found,
5 conflict, 6 incident, 7 ``audit verify`` found a broken chain)."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from engine.errors import InvalidInput, KefuError

DEMO_PASSWORD = "kefu-demo"
DEMO_USERS = [
    ("agent", ["agent"], "客服专员 王敏"),
    ("agent2", ["agent"], "客服专员 李娜"),
    ("supervisor", ["supervisor"], "客服主管 张伟"),
    ("department", ["department"], "责任部门 刘强"),
    ("technician", ["technician"], "维修人员 陈刚"),
    ("technician2", ["technician"], "维修人员 赵磊"),
    ("taskforce1", ["taskforce"], "专项小组 孙丽"),
    ("taskforce2", ["taskforce"], "专项小组 周杰"),
    ("qa", ["qa"], "质检 吴芳"),
    ("auditor", ["auditor"], "审计 郑洁"),
    ("owner", ["process_owner"], "流程负责人 何平"),
]
DEMO_CUSTOMERS = [
    {"name": "华东银行股份有限公司", "phone": "021-63210000", "company": "华东银行", "address": "上海市黄浦区中山东一路 18 号",
     "region": "上海", "needs": "营业网点安保与监控维护", "vip": True, "special_note": "重点客户，7×24 小时响应"},
    {"name": "李先生", "phone": "13800138000", "address": "北京市朝阳区建国路 88 号", "region": "北京",
     "needs": "家庭防盗报警系统", "vip": False},
    {"name": "星河物业管理有限公司", "phone": "0755-88886666", "company": "星河物业", "address": "深圳市福田区福华路 1 号",
     "region": "深圳", "needs": "小区门禁与巡逻", "vip": False},
]


_opened = []


def _service(need_schema=True):
    from engine.service import Kefu
    k = Kefu()
    _opened.append(k)
    if need_schema and not k.db.has_schema():
        raise KefuError(f"the database {k.config.database_url} has no Kefu schema yet; run 'kefu init'")
    if need_schema:
        from engine.store import schema as migrate
        if not migrate.is_current(k.db):
            raise KefuError(f"the database {k.config.database_url} is at schema revision "
                            f"{migrate.current(k.db) or '(none)'}, this Kefu needs {migrate.head()}; "
                            "run 'kefu db upgrade'")
    return k


def _data(text: str | None):
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    if not isinstance(value, dict):
        raise InvalidInput("--data must be a JSON object")
    return value


def _print(args, value, text=None):
    if args.json or text is None:
        print(json.dumps(value, ensure_ascii=False, indent=2, default=str))
    else:
        print(text(value) if callable(text) else text)


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
        result = k.deploy(args.paths or None, actor=args.actor or "system")
    _print(args, result, lambda rs: "\n".join(
        f"kept       {r['process_id']} v{r['version']}: {r['file']} is the same as v{r['same_as']}, an older "
        f"version; v{r['version']} stays in force" if r["status"] == "kept" else
        f"{r['status']:10} {r['process_id']} v{r['version']} ({r['filename']}, sha256 {r['sha256'][:12]})"
        for r in rs))


def cmd_definitions(args):
    from engine.bpmn.changes import describe
    rs = _service().definition_overview()  # designer: versions with running counts and change summaries
    _print(args, rs, lambda rs: "\n".join(
        f"{p['process_id']} ({p['name'] or ''}): {p['running']} running\n" + "\n".join(
            f"  v{v['version']}  {v['deployed_at']}  {v['deployed_by']:10} {v['sha'][:12]}  "
            f"{v['running']} running / {v['total']} total  {describe(v['summary'])['en']}"
            for v in p["versions"]) for p in rs) or "no definitions deployed")


# --- changing a procedure (designer): lint, test run, deploy by a process owner, migrate
def _read_diagram(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _finding_line(f: dict) -> str:
    where = ", ".join(p for p in (f"element '{f['element']}'" if f.get("element") else None,
                                  f"line {f['line']}" if f.get("line") else None) if p)
    return f"  {f['severity']:7} {f['code']}: {where + ': ' if where else ''}{f['message']['en']}" \
           f"\n          {f['message']['zh']}"


def cmd_lint(args):
    from engine.bpmn.lint import lint_diagram
    reports = [lint_diagram(_read_diagram(path), Path(path).name).to_dict() for path in args.files]
    _print(args, reports, lambda rs: "\n".join(
        f"{r['file']}: {'ok' if r['ok'] else 'FAILED'} ({r['errors']} error(s), {r['warnings']} warning(s))"
        + "".join("\n" + _finding_line(f) for f in r["findings"]) for r in rs))
    return 0 if all(r["ok"] for r in reports) else 2


def _path_line(p: dict) -> str:
    state = "ok" if p["failure"] is None else f"FAILED at {p['failed_at'] or '?'}: {p['failure']}"
    choice = ", ".join(f"{k}={v}" for k, v in p["choice"].items()) or "defaults"
    timers = f"; timers fired: {', '.join(p['timers_fired'])}" if p["timers_fired"] else ""
    return f"  path [{choice}] {state}\n    steps: {' → '.join(p['steps'])}{timers}"


def cmd_testrun(args):
    from engine.bpmn.testrun import test_run_xml
    reports = [r.to_dict() for r in test_run_xml(_read_diagram(args.file), Path(args.file).name)]
    _print(args, reports, lambda rs: "\n".join(
        f"{args.file}: {t['message']['en']}\n" + "\n".join(_finding_line(f) for f in t["lint_errors"])
        if t.get("lint_errors") else
        f"{t['process_id']}: {'ok' if t['ok'] else 'FAILED'} ({len(t['paths'])} path(s))\n"
        + "\n".join(_path_line(p) for p in t["paths"])
        + "".join(f"\n  not reached: {u['gateway']} → {u['target']} ({u['flow']})" for u in t["unreached"])
        for t in rs))
    return 0 if all(t["ok"] for t in reports) else 2


def _deploy_as_owner(k, args) -> list[dict]:
    from engine.bpmn.diagram import diagram_files
    out = []
    for f in diagram_files(args.paths):
        r = k.deploy_xml(_read_diagram(str(f)), f.name, args.actor)
        for proc in r.get("processes") or [r]:
            out.append({"process_id": proc["process_id"], "version": proc["version"], "filename": f.name,
                        "sha256": proc["sha"], "status": "deployed" if proc["created"] else "unchanged",
                        "summary": proc["summary"], "warnings": r["warnings"]})
    return out


def cmd_migrate(args):
    k = _service()
    if args.check:
        reasons = k.migration_check(args.instance, args.to)
        _print(args, {"instance": args.instance, "to_version": args.to, "safe": not reasons, "reasons": reasons},
               lambda r: "safe to move" if r["safe"] else "unsafe:\n" + "\n".join(f"  {x}" for x in r["reasons"]))
        return 0 if not reasons else 5
    if not args.actor:
        raise InvalidInput("--as USER (a process owner) is needed to move an instance")
    r = k.migrate_instance(args.instance, args.to, args.actor)
    _print(args, r, lambda r: f"{r['ticket_no']} moved from v{r['from_version']} to v{r['to_version']}")


def cmd_users_add(args):
    u = _service().add_user(args.name, args.role, display_name=args.display_name, groups=args.group or (),
                            password=args.password)
    _print(args, u, lambda u: f"user {u['name']}: {', '.join(u['roles'])}")


def cmd_users_list(args):
    us = _service().users()
    _print(args, us, lambda us: "\n".join(f"{u['name']:14} {','.join(u['roles']):20} {u['display_name'] or ''}"
                                          for u in us) or "no users")


def seed_demo(k, password: str | None = DEMO_PASSWORD) -> dict:
    """Demo users for every role (all with ``password``) and a few customers, one of them VIP."""
    k.init()
    users = [k.add_user(n, roles, display_name=d, password=password) for n, roles, d in DEMO_USERS]
    customers = []
    for c in DEMO_CUSTOMERS:
        existing = [x for x in k.find_customers(c["phone"]) if x["phone"] == c["phone"]]
        customers.append(existing[0] if existing else k.create_customer(c))
    return {"users": users, "password": password, "customers": customers}


def cmd_demo(args):
    result = seed_demo(_service(need_schema=False))
    _print(args, result, lambda r: "demo users (password %s): %s\ncustomers: %s" % (
        r["password"], ", ".join(u["name"] for u in r["users"]),
        ", ".join(f"#{c['id']} {c['name']}" for c in r["customers"])))


def cmd_customers_add(args):
    c = _service().create_customer(_data(args.data) or {})
    _print(args, c, lambda c: f"customer #{c['id']} {c['name']}")


def cmd_customers_update(args):
    c = _service().update_customer(args.id, _data(args.data) or {})
    _print(args, c, lambda c: f"customer #{c['id']} {c['name']} updated")


def cmd_customers_find(args):
    cs = _service().find_customers(args.query)
    _print(args, cs, lambda cs: "\n".join(f"#{c['id']:<5} {c['name']}  {c['phone'] or ''}"
                                          f"{'  VIP' if c['vip'] else ''}" for c in cs) or "no match")


def cmd_customers_show(args):
    _print(args, _service().get_customer(args.id))


def cmd_start(args):
    r = _service().start(args.kind, args.actor, data=_data(args.data), customer_id=args.customer)
    _print(args, r, lambda r: f"started {r['kind']} {r['ticket_no']} (instance {r['instance_id']}); next: "
                              + (", ".join(f"{t['name']} [{t['role']}]" for t in r["tasks"]) or "none"))


def _task_line(t):
    due = f" due {t['due_at']}" if t.get("due_at") else ""
    who = f" @{t['assignee']}" if t.get("assignee") else ""
    return f"{t['id']}  {t['ticket_no']}  {t['name']} [{t['role']}]{who}{due}"


def cmd_tasks(args):
    ts = _service().tasks(actor=args.actor, instance=args.instance, role=args.role)
    _print(args, ts, lambda ts: "\n".join(_task_line(t) for t in ts) or "no ready tasks")


def cmd_task(args):
    _print(args, _service().task(args.task, actor=args.actor))


def cmd_claim(args):
    t = _service().claim(args.task, args.actor)
    _print(args, t, lambda t: f"claimed: {_task_line(t)}")


def cmd_unclaim(args):
    t = _service().unclaim(args.task, args.actor)
    _print(args, t, lambda t: f"released: {_task_line(t)}")


def cmd_reassign(args):
    t = _service().reassign(args.task, args.actor, args.to)
    _print(args, t, lambda t: f"reassigned: {_task_line(t)}")


def cmd_escalate(args):
    r = _service().escalate(args.task, args.actor, args.reason)
    _print(args, r, lambda r: f"escalated to the supervisor: {r['ticket_no']} (ticket {r['parent']})")


def cmd_complete(args):
    r = _service().complete(args.task, args.actor, _data(args.data) or {})
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
    lines.append("events:")
    for e in r["events"]:
        rules = f" [{', '.join(e['rules'])}]" if e["rules"] else ""
        lines.append(f"  {e['seq']:3} {e['at']} {e['type']:18} {e['actor']:12} {e['task_name'] or ''}{rules}")
    return "\n".join(lines)


def cmd_show(args):
    _print(args, _service().show(args.instance), _show_text)


def cmd_timers_list(args):
    ts = _service().timers(instance=args.instance)
    _print(args, ts, lambda ts: "\n".join(f"{t['due_at']}  instance {t['instance_id']}  {t['name'] or t['bpmn_id']}"
                                          for t in ts) or "no waiting timers")


def cmd_timers_fire_due(args):
    fired = _service().fire_due_timers()
    _print(args, {"fired": fired, "count": len(fired)}, lambda r: f"fired {r['count']} timer(s)" + "".join(
        f"\n  {f['ticket_no']} {f['name'] or f['timer']} (due {f['due_at']})" for f in r["fired"]))


def cmd_incident_retry(args):
    r = _service().retry_incident(args.instance, args.actor, _data(args.data))
    _print(args, r, lambda r: f"{r['ticket_no']}: {r['status']}")


def cmd_audit_verify(args):
    problems = _service().verify_audit(args.instance or args.ref, anchor=_anchor(args.anchor))
    _print(args, {"ok": not problems, "problems": problems},
           lambda r: "audit chain verified" if r["ok"] else "\n".join(
               f"{p['ticket_no'] or 'ledger'}: {p['problem']}" for p in r["problems"]))
    return 0 if not problems else 7


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
    for y in k.calendar_status()["years"]:
        if y["missing"]:
            print(f"kefu: warning: no official working-day calendar for {y['year']}; Monday-Friday is used "
                  f"until the process owner enters it ('kefu calendar set')", file=sys.stderr)


def cmd_clock_show(args):
    _print(args, _service().clock_status(), _clock_text)


def cmd_clock_advance(args):
    from engine.clock import parse_duration
    k = _service()
    r = k.advance_clock(parse_duration(args.duration))
    if not args.no_fire:
        r["fired"] = k.fire_due_timers()
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
    r = {**k.calendar_status(years), "overrides": k.calendar_days(args.year)}
    _print(args, r, lambda r: "\n".join(
        [f"{r['library']} knows {r['library_years'][0]}-{r['library_years'][1]}"]
        + [f"{y['year']}: {y['source']}" + (f" ({y['overrides']} override(s))" if y["overrides"] else "")
           + ("  <- missing: Monday-Friday is used" if y["missing"] else "") for y in r["years"]]
        + [f"  {o['day']} {'working day' if o['working'] else 'day off'}"
           + (f"  {o['note']}" if o["note"] else "") for o in r["overrides"]]))


def cmd_calendar_set(args):
    working = {"working": True, "holiday": False, "off": False}[args.kind]
    r = _service().set_calendar_day(args.day, working, args.actor, note=args.note)
    _print(args, r, lambda r: f"{r['day']}: {'working day' if r['working'] else 'day off'} ({r['source']})")


def cmd_calendar_unset(args):
    r = _service().set_calendar_day(args.day, None, args.actor)
    _print(args, r, lambda r: f"{r['day']}: {'working day' if r['working'] else 'day off'} ({r['source']})")


def cmd_calendar_add(args):
    r = _service().add_working_days(args.start, args.days)
    _print(args, r, lambda r: f"{r['working_days']} working day(s) after {r['start']}: {r['due_at']}"
           + (f"  (weekday rule for {r['calendar']['weekday_rule_years']})"
              if r["calendar"].get("weekday_rule_years") else ""))


def cmd_serve(args):
    # The web layer is loaded by name so the engine package itself never depends on it.
    webapp = importlib.import_module("webapp")
    return webapp.serve(host=args.host, port=args.port, demo=not args.no_demo)


# ------------------------------------------------------------------ schema migrations (scale-out)
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


# ---------------------------------------------------------------- JSON API (issue 8)
def cmd_users_token(args):
    k = _service()
    if args.revoke:
        r = k.revoke_tokens(args.name)
        _print(args, r, lambda r: f"revoked {r['revoked']} token(s) of {r['user']}")
        return
    t = k.create_token(args.name, args.label)
    _print(args, t, lambda t: t["token"])  # shown once; only its hash is stored


def default_web_workers() -> int:
    """One gunicorn worker per core (at least two, so one slow request never holds the only one; at most 8:
    each holds database connections). Each has two threads, which overlap one request's database waits with
    another's Python work; more processes than cores only switch among themselves."""
    return max(2, min(8, os.cpu_count() or 1))


def cmd_web(args):
    if args.workers < 1 or args.threads < 1 or args.timeout < 1:
        raise InvalidInput("--workers, --threads and --timeout must be at least 1")
    _service()  # refuse to start on a database without the schema
    webapp = importlib.import_module("webapp.server")
    return webapp.run_gunicorn(args.bind, workers=args.workers, threads=args.threads, timeout=args.timeout)


# ---------------------------------------------------------------- audit (issue 6)
# Every command is one or the other; tests/test_audit_readonly.py fails on a command in neither set.
MUTATING = {"init", "deploy", "users add", "demo", "customers add", "customers update", "start", "claim",
            "unclaim", "reassign", "escalate", "complete", "timers fire-due", "incident retry", "clock advance",
            "calendar set", "calendar unset", "scheduler", "serve", "web", "users token", "db upgrade",
            "db downgrade", "kpi report", "qa sample", "qa sample-size", "migrate"}
READ_ONLY = {"definitions", "users list", "customers find", "customers show", "tasks", "task", "show",
             "timers list", "audit verify", "audit replay", "audit search", "audit export", "audit head",
             "clock show", "calendar status", "calendar add", "db current", "db history", "lint",
             "testrun"}


def _anchor(text):
    if not text:
        return None
    entry, _, digest = text.partition(":")
    if not entry.isdigit() or len(digest) != 64:
        raise InvalidInput("--anchor must be ENTRY:HASH as printed by 'kefu audit head'")
    return int(entry), digest


def cmd_audit_head(args):
    head = _service().audit_head()
    _print(args, head, lambda h: f"{h['entry']}:{h['hash']}  ({h['at']})" if h else "the ledger is empty")


def cmd_audit_replay(args):
    if not args.all and not args.instance:
        raise InvalidInput("name an instance (id or ticket number) or give --all")
    results = _service().audit_replay(None if args.all else args.instance)
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
    page = k.audit_search(_search_args(args))
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
    filters, rows = k.audit_rows(_search_args(args))
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
    t = _service().audit_trace(args.instance)
    if args.format == "csv":
        sys.stdout.write(trace_csv(t))
    else:
        sys.stdout.write(json.dumps(t, ensure_ascii=False, indent=2, default=str) + "\n")


def _command_path(parser, prefix=()):
    """(path, parser) of every leaf command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_path(sub, prefix + (name,))
            return
    yield " ".join(prefix), parser


def _add_audit_commands(sub, add, common):
    aud = next(a for a in sub.choices["audit"]._actions if isinstance(a, argparse._SubParsersAction))
    verify = aud.choices["verify"]
    verify.add_argument("--anchor", help="ENTRY:HASH from 'kefu audit head', recorded outside the database")
    verify.add_argument("ref", nargs="?", metavar="INSTANCE")
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
    sp = add("export", cmd_audit_export, "an instance's trace as CSV (events) or JSON (everything)",
             subparsers=aud)
    sp.add_argument("instance")
    sp.add_argument("--format", choices=["csv", "json"], default="json")


def _read_only_guard(parser) -> None:
    """Every mutating command takes ``--as``; an auditor (read-only role) given there is refused."""
    for path, sp in _command_path(parser):
        if path in MUTATING and not any("--as" in a.option_strings for a in sp._actions):
            sp.add_argument("--as", dest="actor")
        sp.set_defaults(command_path=path)


def _check_may_change(args) -> None:
    if getattr(args, "command_path", None) in MUTATING and getattr(args, "actor", None):
        k = _service(need_schema=False)
        if k.db.has_schema():
            k.check_may_change(args.actor)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kefu", description="Kefu customer-service process service")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_, parents=(common,), subparsers=sub):
        sp = subparsers.add_parser(name, help=help_, parents=list(parents), description=help_)
        sp.set_defaults(func=func)
        return sp

    add("init", cmd_init, "create or upgrade the database schema (KEFU_DATABASE_URL)")
    sp = add("deploy", cmd_deploy, "deploy diagrams as new definition versions (default: processes/)")
    sp.add_argument("paths", nargs="*")
    sp.add_argument("--as", dest="actor", help="a process owner: each file is checked, test-run and deployed by "
                                               "that user (with files given)")
    add("definitions", cmd_definitions, "list deployed definition versions")
    # designer
    sp = add("lint", cmd_lint, "check diagrams before deploy (exit 2 when one has errors)")
    sp.add_argument("files", nargs="+")
    sp = add("testrun", cmd_testrun, "run a diagram on sample data along each path, without the database")
    sp.add_argument("file")
    sp = add("migrate", cmd_migrate, "move a running instance to a newer version when safe (process_owner)")
    sp.add_argument("instance", help="instance id or ticket number")
    sp.add_argument("--to", required=True, type=int, help="version number")
    sp.add_argument("--as", dest="actor", help="a process owner (not needed with --check)")
    sp.add_argument("--check", action="store_true", help="only say whether the move is safe, and why not")
    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("add", cmd_users_add, "add a user or give it more roles", subparsers=users)
    sp.add_argument("name")
    sp.add_argument("--role", action="append", required=True)
    sp.add_argument("--group", action="append", help="department/group id (repeatable)")
    sp.add_argument("--display-name")
    sp.add_argument("--password")
    add("list", cmd_users_list, "list users", subparsers=users)
    # JSON API (issue 8): bearer tokens and the gunicorn web server
    sp = add("token", cmd_users_token, "create an API token for a user (printed once), or --revoke its tokens",
             subparsers=users)
    sp.add_argument("name")
    sp.add_argument("--label", help="what the token is for, e.g. the telephony system")
    sp.add_argument("--revoke", action="store_true", help="revoke every token of the user")
    add("demo", cmd_demo, f"seed demo users (password {DEMO_PASSWORD}) and customers")
    cust = sub.add_parser("customers", help="customer registry").add_subparsers(dest="sub", required=True,
                                                                                 metavar="ACTION")
    sp = add("add", cmd_customers_add, "create a customer from --data JSON", subparsers=cust)
    sp.add_argument("--data", required=True)
    sp = add("update", cmd_customers_update, "update a customer", subparsers=cust)
    sp.add_argument("id", type=int)
    sp.add_argument("--data", required=True)
    sp = add("find", cmd_customers_find, "find customers by phone or name", subparsers=cust)
    sp.add_argument("query")
    sp = add("show", cmd_customers_show, "show a customer", subparsers=cust)
    sp.add_argument("id", type=int)
    sp = add("start", cmd_start, "open a ticket: consultation, complaint or repair")
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
    sp = add("show", cmd_show, "show an instance (id or ticket number) with its audit events")
    sp.add_argument("instance")
    timers = sub.add_parser("timers", help="waiting timers").add_subparsers(dest="sub", required=True,
                                                                            metavar="ACTION")
    sp = add("list", cmd_timers_list, "list waiting timers", subparsers=timers)
    sp.add_argument("--instance")
    add("fire-due", cmd_timers_fire_due, "fire every timer due now", subparsers=timers)
    inc = sub.add_parser("incident", help="incidents").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("retry", cmd_incident_retry, "retry the failed step of an instance after fixing its data",
             subparsers=inc)
    sp.add_argument("instance")
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--data", help="JSON object of data fixes")
    aud = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("verify", cmd_audit_verify, "verify the hash chains of the audit log", subparsers=aud)
    sp.add_argument("--instance")
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
    sp = add("serve", cmd_serve, "run the service: web UI, scheduler, embedded database")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=5000)
    sp.add_argument("--no-demo", action="store_true", help="do not seed demo users and customers")
    sp = add("web", cmd_web, "run the web UI and JSON API under gunicorn (no scheduler: run 'kefu scheduler')")
    sp.add_argument("--bind", default="127.0.0.1:8000", help="host:port (default 127.0.0.1:8000)")
    # Defaults from bench/http.py on 2 cores: one worker per core with two threads each used 9-10 ms of CPU per
    # completion, four workers 9.5-11 ms (more processes than cores switch more); 2 x 4 threads did worse.
    sp.add_argument("--workers", type=int, default=default_web_workers(),
                    help="worker processes (default one per CPU core, at least 2 and at most 8)")
    sp.add_argument("--threads", type=int, default=2, help="threads per worker (default 2)")
    sp.add_argument("--timeout", type=int, default=60, help="seconds before a silent worker is restarted")
    # --- kpi (issue 7): kefu kpi, kefu kpi report, kefu qa sample, kefu qa sample-size ---
    from engine.kpi_cli import add_commands as add_kpi_commands
    add_kpi_commands(sub, add, common)
    # --- end kpi ---
    _add_audit_commands(sub, add, common)  # audit (issue 6)
    _read_only_guard(p)
    return p


def _report(args, exc: KefuError) -> None:
    if args.json:
        print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False, default=str), file=sys.stderr)
    else:
        print(f"kefu: error: {getattr(exc, 'headline', exc.message)}", file=sys.stderr)
        for field, msg in (getattr(exc, "errors", None) or {}).items():
            print(f"  {field}: {msg}", file=sys.stderr)
        for problem in exc.details.get("problems", [])[1:]:
            print(f"  also: {problem['message']}", file=sys.stderr)


def main(argv=None) -> int:
    import warnings
    from engine.calendar import CalendarDataMissing
    warnings.simplefilter("ignore", CalendarDataMissing)  # reported through the log and 'calendar status'
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    try:
        _check_may_change(args)  # audit (issue 6): read-only roles change nothing
        rc = args.func(args)
        return rc or 0
    except KefuError as exc:
        _report(args, exc)
        return exc.exit_code
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        _report(args, KefuError(f"database error: {detail}"))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of the output went away (``kefu tasks --json | head``): what was done stays done; say
        # nothing more, and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe's reader left
    finally:
        while _opened:  # close the connections: SQLite folds its write-ahead log back into the file
            _opened.pop().db.dispose()


if __name__ == "__main__":
    sys.exit(main())
