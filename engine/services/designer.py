"""Changing a procedure: deploy a diagram given as XML (checked, test-run, versioned with a change summary),
the definitions overview with running counts, any version's XML, and moving running instances to a newer
version when that is safe."""
from __future__ import annotations

import hashlib
from pathlib import PurePath

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from engine.bpmn import migration
from engine.bpmn.changes import change_summary
from engine.clock import iso
from engine.services import calls
from engine.services.context import Context
from engine.services.runner import Runner
from engine.store import chain as audit
from engine.limits import row_number
from engine.store.tables import Definition, DefinitionChange, Instance
from engine.bpmn.diagram import B
from engine.store.versions import latest, next_version, version_with
from engine.errors import Conflict, DefinitionError, InvalidInput, NotAllowed, NotFound
from engine.bpmn.lint import lint_diagram

OWNER_ROLE = "process_owner"
RUNNING = ("active", "incident")


class DiagramRejected(DefinitionError):
    """A diagram that fails the lint or the test run; ``details`` carries every finding (zh and en)."""
    code = "diagram_rejected"

    def __init__(self, message: str, message_zh: str, file: str | None = None, findings=(), test_runs=()):
        super().__init__(message, file=file)
        self.details.update(message_zh=message_zh, findings=list(findings), test_runs=list(test_runs))


class DeployRefused(DefinitionError):
    """Some files of a folder cannot be deployed, so none was; ``details["files"]`` says what is wrong with each."""
    code = "deploy_refused"

    def __init__(self, failed: list[dict], total: int):
        first = failed[0]
        others = f" ({len(failed) - 1} more file(s) fail too; nothing was deployed)" if len(failed) > 1 else \
            (f" (nothing was deployed, none of the {total} file(s))" if total > 1 else "")
        super().__init__(first["reason"] + others, file=first["file"], element=first["element"],
                         line=first["line"])
        for key in ("problems", "findings"):
            if first[key]:
                self.details[key] = first[key]
        self.details.update(files=failed)


def failed_file(name: str, exc: DefinitionError) -> dict:
    problems = exc.details.get("problems") or [exc.to_dict()]
    return {"file": name, "status": "failed", "message": exc.message,
            "reason": exc.details.get("reason") or exc.message,
            "element": exc.details.get("element"),
            "line": exc.details.get("line"), "problems": problems,
            "findings": exc.details.get("findings") or []}


class VersionExists(Conflict):
    """The diagram is an older version of its process, already deployed once."""
    code = "version_exists"

    def __init__(self, message: str, message_zh: str, **details):
        super().__init__(message, message_zh=message_zh, **details)


class MigrationRefused(Conflict):
    """Moving an instance to a newer version is unsafe; ``details["reasons"]`` says why."""
    code = "migration_refused"

    def __init__(self, ticket_no: str, version: int, reasons: list[str], reasons_zh: list[str]):
        super().__init__(f"instance {ticket_no} cannot move to version {version}: " + "; ".join(reasons),
                         reasons=reasons, reasons_zh=reasons_zh,
                         message_zh=f"工单 {ticket_no} 不能迁移到版本 {version}：" + "；".join(reasons_zh))


def check_owner(ctx, actor: str) -> None:
    with ctx.db.reading() as s:
        roles = ctx.user_roles(s, actor)
    if roles is None:
        raise NotAllowed(f"unknown or inactive user {actor!r}")
    if OWNER_ROLE not in roles:
        raise NotAllowed(f"user {actor} may not change procedures (needs role {OWNER_ROLE})")


def _clean_name(filename) -> str:
    name = PurePath(str(filename or "diagram.bpmn").replace("\\", "/")).name.strip() or "diagram.bpmn"
    return name[:255]


def _as_bytes(data) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidInput(f"a diagram must be given as XML text or bytes, not {type(data).__name__}")


def _xml_text(data: bytes, filename: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DefinitionError("the diagram must be UTF-8 encoded", file=filename) from None


def lint_or_refuse(data: bytes, filename: str, resolver=None):
    report = lint_diagram(data, filename, resolver=resolver)
    if report.errors:
        first = report.errors[0]
        where = f" (element '{first.element}')" if first.element else ""
        err = DiagramRejected(
            f"{len(report.errors)} problem(s) must be fixed before deploy; first{where}: {first.en}",
            f"部署前必须修正 {len(report.errors)} 个问题；第一个"
            + (f"（元素 {first.element}）" if first.element else "") + f"：{first.zh}",
            file=filename, findings=[f.to_dict() for f in report.findings])
        err.details.update(element=first.element, line=first.line)
        raise err
    return report


def record_change(s, definition: Definition, previous: Definition | None) -> dict:
    """Store (and return) what ``definition`` changed against ``previous`` (None: the first version)."""
    summary = change_summary(previous.xml if previous is not None else None, definition.xml)
    s.add(DefinitionChange(definition_id=definition.id, summary=summary,
                           previous_version=previous.version if previous is not None else None))
    return summary


def deploy_xml(ctx, data, filename: str, actor: str, *, dry_run: bool = False) -> dict:
    filename = _clean_name(filename)
    data = _as_bytes(data)
    check_owner(ctx, actor)
    if filename.lower().endswith(".dmn"):
        return _deploy_table(ctx, data, filename, actor, dry_run)
    checked = _check(ctx, data, filename, calls.resolver(ctx))
    try:
        with ctx.db.unit_of_work() as s:
            results = _write_in(ctx, s, checked, actor, dry_run)
            if dry_run:
                s.rollback()
    except IntegrityError:
        raise Conflict("another version of this process was deployed at the same time; nothing was saved, "
                       "reload and try again") from None
    return _outcome(checked, results, dry_run)


def deploy_files(ctx, items, actor: str) -> list[dict]:
    """Check and test-run every diagram of ``items`` ((data, filename) pairs), then deploy all of them in one
    unit of work, or none: ``DeployRefused`` says what failed in each file."""
    check_owner(ctx, actor)
    items = [(_as_bytes(data), _clean_name(name)) for data, name in items]
    resolve = calls.resolver(ctx, calls.siblings(items))
    checked, failed = [], []
    for data, name in items:
        try:
            checked.append(("table", (data, name)) if name.lower().endswith(".dmn")
                           else ("diagram", _check(ctx, data, name, resolve)))
        except DefinitionError as exc:
            failed.append(failed_file(name, exc))
    if failed:
        raise DeployRefused(failed, len(items))
    out = []
    try:
        with ctx.db.unit_of_work() as s:
            for kind, item in checked:
                if kind == "diagram":
                    out.append(_outcome(item, _write_in(ctx, s, item, actor, False), False))
        for kind, item in checked:  # tables: one unit of work each, after the diagrams that may use them
            if kind == "table":
                out.append(_deploy_table(ctx, item[0], item[1], actor, False))
    except IntegrityError:
        raise Conflict("another version of one of these processes was deployed at the same time; nothing was "
                       "saved, try again") from None
    return out


def _check(ctx, data: bytes, filename: str, resolver) -> dict:
    """The lint and the test run of one diagram (DiagramRejected when either fails) and what deploying it needs."""
    report = lint_or_refuse(data, filename, resolver)
    xml = _xml_text(data, filename)
    runs = _test_run_or_refuse(report, filename)
    return {"report": report, "data": data, "xml": xml, "sha": hashlib.sha256(data).hexdigest(),
            "names": {p.get("id"): p.get("name") for p in report.root.iter(B + "process")}, "filename": filename,
            "runs": runs}


def _outcome(checked: dict, results: list[dict], dry_run: bool) -> dict:
    out = dict(results[0])
    out.update(warnings=[f.to_dict() for f in checked["report"].warnings], dry_run=dry_run,
               filename=checked["filename"], processes=results, test_runs=[r.to_dict() for r in checked["runs"]])
    return out


def _write_in(ctx, s, checked: dict, actor: str, dry_run: bool) -> list[dict]:
    report, data, xml, sha, names, filename = (checked[k] for k in ("report", "data", "xml", "sha", "names",
                                                                     "filename"))
    results = []
    for pid in report.process_ids:
        current = latest(s, pid)
        _same_kind(current, pid, filename, table=False)
        if current is not None and current.sha256 == sha:
            change = s.get(DefinitionChange, current.id)
            results.append({"process_id": pid, "version": current.version, "sha": sha, "sha256": sha,
                            "created": False, "summary": change.summary if change else None})
            continue
        _not_an_older_version(s, current, pid, sha, filename)
        summary = change_summary(current.xml if current is not None else None, data)
        version = next_version(s, pid)
        if not dry_run:
            d = Definition(process_id=pid, version=version, name=names.get(pid), filename=filename,
                           sha256=sha, xml=xml, deployed_at=ctx.now(), deployed_by=actor,
                           calls=report.calls or None)
            s.add(d)
            s.flush()
            s.add(DefinitionChange(definition_id=d.id, summary=summary,
                                   previous_version=current.version if current is not None else None))
            ctx.specs.put(pid, sha, report.specs[pid])
        results.append({"process_id": pid, "version": version, "sha": sha, "sha256": sha,
                        "created": not dry_run, "summary": summary})
    return results


def _test_run_or_refuse(report, filename: str) -> list:
    from engine.bpmn.testrun import test_run
    runs = test_run(report)
    failed = [(r.process_id, p) for r in runs for p in r.paths if p.failure]
    if failed:
        pid, path = failed[0]
        at = f" at '{path.failed_at}'" if path.failed_at else ""
        raise DiagramRejected(
            f"the test run of {pid!r} fails on {len(failed)} path(s); first{at}: {path.failure}",
            f"流程 {pid!r} 的试运行在 {len(failed)} 条路径上失败；第一个"
            + (f"（在 {path.failed_at}）" if path.failed_at else "") + f"：{path.failure}",
            file=filename, test_runs=[r.to_dict() for r in runs])
    return runs


def _not_an_older_version(s, current, pid: str, sha: str, filename: str) -> None:
    """A version is deployed once: content identical to an older version is refused, saying which."""
    older = version_with(s, pid, sha) if current is not None else None
    if older is not None:
        raise VersionExists(
            f"this diagram is identical to version {older.version} of {pid!r}; version {current.version} is in "
            "force. A version is deployed only once: to go back to it, change something in it (for example "
            "its documentation) and deploy that as a new version",
            f"这个流程图与 {pid!r} 的第 {older.version} 版完全相同，当前生效的是第 {current.version} 版。"
            "同一内容只能部署一次：如要恢复旧版，请在其中做些修改（例如补充说明）后作为新版本部署",
            file=filename, process_id=pid, same_as=older.version, current=current.version)


def _same_kind(current, pid: str, filename: str, table: bool) -> None:
    """A process may not take the id of a decision table, nor a table the id of a process."""
    if current is not None and current.filename.lower().endswith(".dmn") != table:
        what = "a decision table" if not table else "a process"
        raise DefinitionError(f"{pid!r} is already the id of {what}; choose another id", file=filename,
                              element=pid)


def _deploy_table(ctx, data: bytes, filename: str, actor: str, dry_run: bool) -> dict:
    from engine.bpmn.kpi_table import parse_table
    table = parse_table(data, filename)
    xml = _xml_text(data, filename)
    with ctx.db.unit_of_work() as s:
        current = latest(s, table.decision_id)
        _same_kind(current, table.decision_id, filename, table=True)
        if current is None or current.sha256 != table.sha256:
            _not_an_older_version(s, current, table.decision_id, table.sha256, filename)
        if current is not None and current.sha256 == table.sha256:
            return {"process_id": table.decision_id, "version": current.version, "sha": table.sha256,
                    "sha256": table.sha256, "created": False, "summary": None, "warnings": [],
                    "dry_run": dry_run, "filename": filename}
        version = next_version(s, table.decision_id)
        before = parse_table(current.xml.encode("utf-8"), current.filename) if current is not None else None
        summary = _table_summary(before, table)
        if not dry_run:
            d = Definition(process_id=table.decision_id, version=version, name=table.name, filename=filename,
                           sha256=table.sha256, xml=xml, deployed_at=ctx.now(), deployed_by=actor)
            s.add(d)
            s.flush()
            s.add(DefinitionChange(definition_id=d.id, summary=summary,
                                   previous_version=current.version if current is not None else None))
        else:
            s.rollback()
    return {"process_id": table.decision_id, "version": version, "sha": table.sha256, "sha256": table.sha256,
            "created": not dry_run, "summary": summary, "warnings": [], "dry_run": dry_run, "filename": filename}


def _table_summary(before, table) -> dict:
    """What a new version of a decision table changed: the SLA targets before and after; for the KPI table the
    rules before and after and, per KPI, the cells that changed (shown like changed diagram elements)."""
    from engine.bpmn.kpi_table import KpiTable
    if not isinstance(table, KpiTable):  # the SLA table
        return {"targets_before": before.targets if before is not None else None, "targets": table.targets,
                "first_version": before is None}
    old = {k: r.as_dict() for k, r in before.rules.items()} if before is not None else None
    new = {k: r.as_dict() for k, r in table.rules.items()}
    changed = [{"id": f"Rule_{k}", "name": k, "changed": [f"{f}: {_cell(old[k].get(f))} → {_cell(v)}"
                                                          for f, v in row.items()
                                                          if f != "formula" and old[k].get(f) != v]}
               for k, row in new.items() if old is not None and old.get(k) != row]
    return {"rules_before": old, "rules": new, "first_version": before is None, "elements_changed": changed}


def _cell(value) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)


def definition_overview(ctx) -> list[dict]:
    with ctx.db.reading() as s:
        counts: dict[int, dict[str, int]] = {}
        for def_id, status, n in s.execute(select(Instance.definition_id, Instance.status, func.count())
                                           .group_by(Instance.definition_id, Instance.status)):
            counts.setdefault(def_id, {})[status] = n
        changes = {c.definition_id: c.summary for c in s.scalars(select(DefinitionChange))}
        out: dict[str, dict] = {}
        for d in s.scalars(select(Definition).order_by(Definition.process_id, Definition.version.desc())):
            c = counts.get(d.id, {})
            entry = out.setdefault(d.process_id, {
                "process_id": d.process_id, "name": d.name,
                "kind": "decision" if d.filename.lower().endswith(".dmn") else "process",
                "latest": d.version, "running": 0, "versions": []})
            running = sum(n for st, n in c.items() if st in RUNNING)
            entry["running"] += running
            entry["versions"].append({
                "version": d.version, "sha": d.sha256, "sha256": d.sha256, "filename": d.filename,
                "deployed_by": d.deployed_by, "deployed_at": iso(d.deployed_at), "summary": changes.get(d.id),
                "running": running, "total": sum(c.values())})
        return list(out.values())


def _definition(s, process_id, version, with_xml=False) -> Definition:
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise NotFound(f"no version {version!r} of {process_id!r}") from None
    q = select(Definition).where(Definition.process_id == str(process_id), Definition.version == number)
    if with_xml:
        q = q.options(undefer(Definition.xml))
    d = s.scalar(q)
    if d is None:
        raise NotFound(f"no version {version!r} of {process_id!r}")
    return d


def definition_xml(ctx, process_id: str, version) -> bytes:
    with ctx.db.reading() as s:
        return _definition(s, process_id, version, with_xml=True).xml.encode("utf-8")


def _target(s, inst, to_version) -> Definition:
    """The version ``to_version`` of the instance's process; NotFound otherwise."""
    number = row_number(str(to_version).strip()) if to_version is not None else None
    if number is None:  # not a whole number, or one no database column holds
        raise NotFound(f"no version {to_version!r} of {inst.kind!r}")
    d = s.scalar(select(Definition).where(Definition.process_id == inst.definition.process_id,
                                          Definition.version == number))
    if d is None:
        raise NotFound(f"no version {number} of {inst.definition.process_id!r}")
    return d


def _migrate(ctx, runner, s, inst, target: Definition, actor: str) -> dict:
    wf = runner.load(s, inst)
    why = migration.reasons(ctx, inst, target, wf)
    if why:
        return {"migrated": False, "reasons": why}
    before = runner.states(wf)
    migration.apply_migration(ctx, wf, target)
    old = inst.definition
    inst.definition = target
    now = ctx.now()
    events = [audit.PendingEvent("instance_migrated", actor, now, data={
        "definition": target.process_id, "from_version": old.version, "to_version": target.version,
        "from_sha256": old.sha256, "to_sha256": target.sha256})]
    runner.save(s, inst, wf, events, actor, before, None)
    runner.forget_warm(s, inst)  # the next change restores it on its new version, as any other process would
    return {"migrated": True, "reasons": [], "from_version": old.version, "to_version": target.version}


class DesignerService:
    """The process owner's changes to procedures and the instances running on them."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    def deploy_xml(self, data, filename: str, actor: str, *, dry_run: bool = False) -> dict:
        """Check, test-run and deploy one diagram as a new immutable version (process_owner only)."""
        return deploy_xml(self.ctx, data, filename, actor, dry_run=dry_run)

    def lint(self, data, filename: str):
        """The lint of one diagram; a call activity finds its process among the deployed ones."""
        return lint_diagram(_as_bytes(data), filename, resolver=calls.resolver(self.ctx))

    def test_run(self, data, filename: str) -> list:
        """The test run of one diagram (``engine.bpmn.testrun``); called processes as for ``lint``."""
        from engine.bpmn.testrun import test_run_xml
        return test_run_xml(_as_bytes(data), filename, resolver=calls.resolver(self.ctx))

    def deploy_files(self, items, actor: str) -> list[dict]:
        """Check and test-run every diagram of ``items`` ((data, filename) pairs) and deploy all or none."""
        return deploy_files(self.ctx, items, actor)

    @staticmethod
    def change_summary(old_xml, new_xml) -> dict:
        """What changed between two versions of a diagram, for people."""
        return change_summary(old_xml, new_xml)

    def overview(self) -> list[dict]:
        """Every process with its versions (newest first) and how many instances run on each."""
        return definition_overview(self.ctx)

    def xml(self, process_id: str, version) -> bytes:
        """The XML of one deployed version."""
        return definition_xml(self.ctx, process_id, version)

    def migration_check(self, instance_id, to_version, locale: str = "en") -> list[str]:
        """Why moving the instance to ``to_version`` of its process is unsafe (in English, or Chinese with
        ``locale="zh_CN"``); empty when it is safe."""
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, instance_id, with_state=True)
            target = _target(s, inst, to_version)
            found = migration.reasons(self.ctx, inst, target, self.runner.load(s, inst))
            return [r.message(locale) for r in found]

    def migrate_instance(self, instance_id, to_version, actor: str) -> dict:
        """Move a running instance to a newer version when it is safe (process_owner only); audited."""
        check_owner(self.ctx, actor)
        with self.ctx.db.unit_of_work() as s:
            inst = self.ctx.instance(s, instance_id, with_state=True)
            result = _migrate(self.ctx, self.runner, s, inst, _target(s, inst, to_version), actor)
            if not result["migrated"]:
                raise MigrationRefused(inst.ticket_no, int(to_version), [str(r) for r in result["reasons"]],
                                       [r.zh for r in result["reasons"]])
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, **result}
