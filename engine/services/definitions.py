"""Process definitions: deploy the diagrams and decision tables (SLA, KPI) of a folder as versions, list them."""
from __future__ import annotations

import logging

from sqlalchemy import func, select

from engine.bpmn.diagram import diagram_files, parse_diagram
from engine.bpmn.kpi_table import is_table, parse_table
from engine.bpmn.sla import SlaTable
from engine.errors import DefinitionError
from engine.services import calls, designer, shapes
from engine.services.context import SYSTEM, Context
from engine.store.tables import Definition
from engine.store.versions import latest, next_version, version_with

log = logging.getLogger("kefu.engine")


class DefinitionService:
    """Deploy and list process definitions."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def deploy(self, paths=None, actor: str = SYSTEM) -> list[dict]:
        """Deploy every diagram under ``paths``: all of them or none. Every file is checked first; if any fails,
        nothing is deployed and ``DeployRefused`` reports each file (``details["files"]``). Unchanged files keep
        their version; call activities find their processes among the files, else among the deployed ones."""
        files = diagram_files(paths or [self.ctx.config.processes_dir])
        items, outcome = [], []
        for f in files:
            try:
                items.append((f.read_bytes(), f.name))
            except OSError as exc:
                outcome.append(designer.failed_file(f.name, DefinitionError(f"cannot read: {exc.strerror}",
                                                                            file=str(f))))
        resolve = calls.resolver(self.ctx, calls.siblings(items))
        parsed = []
        for data, name in items:
            try:
                if name.lower().endswith(".dmn"):
                    parsed.append(parse_table(data, name))
                else:
                    parsed.append(parse_diagram(data, name, resolve))
                    designer.lint_or_refuse(data, name, resolve)  # designer: the stricter checks (sample timers)
                outcome.append({"file": name, "status": "ok"})
            except DefinitionError as exc:
                outcome.append(designer.failed_file(name, exc))
        seen = {}
        for p in parsed:
            for pid in _ids_of(p):
                if pid in seen:
                    outcome.append(designer.failed_file(p.filename, DefinitionError(
                        f"process or decision {pid!r} is defined in two files ({seen[pid]})", file=p.filename,
                        element=pid)))
                seen[pid] = p.filename
        failed = [o for o in outcome if o["status"] == "failed"]
        if failed:
            raise designer.DeployRefused(failed, len(files))
        results = []
        with self.ctx.db.unit_of_work() as s:
            for p in parsed:
                for pid in _ids_of(p):
                    current = latest(s, pid)
                    if current is not None and current.sha256 == p.sha256:
                        results.append(shapes.definition_dict(current, status="unchanged"))
                        continue
                    older = version_with(s, pid, p.sha256) if current is not None else None
                    if older is not None:
                        # The file is an older version (the process owner has deployed newer ones since):
                        # the newest stays in force; a version is never deployed twice.
                        log.warning("%s is the same as %s v%s; v%s (deployed by %s) stays in force",
                                    p.filename, pid, older.version, current.version, current.deployed_by)
                        results.append({**shapes.definition_dict(current, status="kept"),
                                        "same_as": older.version, "file": p.filename})
                        continue
                    table = is_table(p)
                    d = Definition(process_id=pid, version=next_version(s, pid),
                                   name=p.name if table else p.names.get(pid),
                                   filename=p.filename, sha256=p.sha256,
                                   xml=(p.xml if table else p.data).decode("utf-8"),
                                   deployed_at=self.ctx.now(), deployed_by=actor,
                                   calls=None if table else (p.calls or None))
                    s.add(d)
                    s.flush()
                    if isinstance(p, SlaTable):
                        self.ctx.sla_tables[p.sha256] = p
                    elif not table:
                        self.ctx.specs.put(pid, p.sha256, p.specs[pid])
                        designer.record_change(s, d, current)  # designer: the change summary
                    results.append(shapes.definition_dict(d, status="deployed"))
        return results

    def all(self) -> list[dict]:
        """Every deployed version of every process and table."""
        with self.ctx.db.reading() as s:
            return [shapes.definition_dict(d) for d in
                    s.scalars(select(Definition).order_by(Definition.process_id, Definition.version))]

    def names_en(self) -> dict[str, str]:
        """Chinese name → English of the deployed diagrams' user tasks (newest versions win) and of the clocks."""
        from engine.bpmn import catalogue
        from engine.services.clocks import LABELS
        out = {zh: en for zh, en in LABELS.values()}
        with self.ctx.db.reading() as s:
            for xml in s.scalars(select(Definition.xml).order_by(Definition.version, Definition.id)):
                if "userTask" in xml:
                    out.update(catalogue.names_en(xml))
        return out

    def newest_version(self, process_id: str) -> int | None:
        """The highest deployed version of a process (None when it has none)."""
        with self.ctx.db.reading() as s:
            return s.scalar(select(func.max(Definition.version)).where(Definition.process_id == process_id))


def _ids_of(parsed) -> list[str]:
    """The process ids a diagram defines, or the decision id of a table."""
    return [parsed.decision_id] if is_table(parsed) else parsed.process_ids
