"""Where the process a call activity names is found when a diagram is checked or deployed: among the other
diagrams deployed with it, else the newest deployed version of that process."""
from __future__ import annotations

import hashlib

from sqlalchemy.orm import undefer

from engine.bpmn.diagram import B, safe_xml
from engine.errors import DefinitionError
from engine.store.tables import Definition
from engine.store.versions import latest


def siblings(items) -> dict[str, tuple[bytes, str, str]]:
    """Process id → (xml bytes, filename, sha256) of the ``.bpmn`` diagrams among ``items`` ((data, name) pairs);
    a file that is not a diagram is left to its own check."""
    out = {}
    for data, name in items:
        if not str(name).lower().endswith(".bpmn"):
            continue
        try:
            root = safe_xml(data, name)
        except DefinitionError:
            continue
        for proc in root.iter(B + "process"):
            if proc.get("id"):
                out.setdefault(proc.get("id"), (data, name, hashlib.sha256(data).hexdigest()))
    return out


def resolver(ctx, others: dict | None = None):
    """``resolve(process_id)`` for ``diagram.parse_specs``: a diagram of ``others``, else the newest deployed
    version of the process (None when there is neither)."""
    others = others or {}

    def resolve(process_id: str):
        if process_id in others:
            return others[process_id]
        with ctx.db.reading() as s:
            d = latest(s, process_id)
            if d is None or d.filename.lower().endswith(".dmn"):
                return None
            d = s.get(Definition, d.id, options=[undefer(Definition.xml)])
            return d.xml.encode("utf-8"), d.filename, d.sha256
    return resolve
