"""SLA targets (RULES.md "Time limits", T1) from one DMN decision table, ``processes/sla.dmn``.

The table has one input, the case (``"work_order"``, ``"vip"``, ``"emergency"`` ...), and the outputs
``respond_minutes``, ``finish_hours``, ``revisit_min_working_days`` and ``revisit_max_working_days`` (an
empty cell: no such target). A rule's description is its label, ``中文 | English``. The process owner edits and deploys it like a diagram; every deploy is a
version. A new ticket takes a copy of the version in force (``sla_targets`` and ``sla_version`` in its data),
so a running ticket keeps the targets it started with, and diagrams read them there, e.g.
``add_hours(now(), sla_targets["vip"]["finish_hours"])``.

Only the part of DMN 1.1–1.4 a target table needs is accepted: one decision with a decision table, one
input, input entries that are quoted text literals, output entries that are numbers or empty.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from engine.errors import DefinitionError

DMN_NAMESPACES = (
    "https://www.omg.org/spec/DMN/20191111/MODEL/",   # DMN 1.3
    "https://www.omg.org/spec/DMN/20211108/MODEL/",   # DMN 1.4
    "http://www.omg.org/spec/DMN/20180521/MODEL/",    # DMN 1.2
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd",   # DMN 1.1
)
SLA_DECISION = "sla"
OUTPUTS = ("respond_minutes", "finish_hours", "revisit_min_working_days", "revisit_max_working_days")
REQUIRED_CASES = ("work_order", "vip", "emergency", "emergency_large", "urgent", "major", "online_consultation",
                  "consultation", "complaint_feedback", "complaint_revisit", "repair_revisit")
CASE = re.compile(r'^"([a-z][a-z0-9_]{0,40})"$')
MAX_MINUTES = 60 * 24 * 366


@dataclass
class SlaTable:
    decision_id: str
    name: str | None
    sha256: str
    targets: dict[str, dict]
    labels: dict[str, dict]  # case → {"zh": ..., "en": ...} from the rule's description
    filename: str
    xml: bytes


def dmn_root(data: bytes, filename: str):
    """The root element of a DMN 1.1–1.4 document (parsed safely) and its namespace."""
    from engine.bpmn.diagram import safe_xml
    root = safe_xml(data, filename, root_tag=None)
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    if ns not in DMN_NAMESPACES or root.tag != f"{{{ns}}}definitions":
        raise DefinitionError("not a DMN document (expected <definitions> in a DMN 1.1-1.4 namespace)",
                              file=filename)
    return root, ns


def decision_table(data: bytes, filename: str, input_expr: str, row: str):
    """The one decision of a DMN document with its decision table, one row per ``row`` (the hit policy) and one
    input whose expression is ``input_expr``: ``(decision, table, q, bad)``, where ``q`` names a DMN tag and
    ``bad(message, node)`` is the error naming that node's element and line."""
    root, ns = dmn_root(data, filename)
    q = lambda tag: f"{{{ns}}}{tag}"  # noqa: E731
    decisions = root.findall(q("decision"))
    if len(decisions) != 1:
        raise DefinitionError(f"expected exactly one decision, found {len(decisions)}", file=filename)
    decision = decisions[0]
    table = decision.find(q("decisionTable"))
    if table is None:
        raise DefinitionError("the decision has no decision table", file=filename, element=decision.get("id") or "",
                              line=decision.sourceline)

    def bad(msg, node):
        return DefinitionError(msg, file=filename, element=node.get("id"), line=node.sourceline)

    if (table.get("hitPolicy") or "UNIQUE").upper() not in ("UNIQUE", "FIRST", "ANY"):
        raise bad(f"hit policy must be UNIQUE, FIRST or ANY: one row per {row}", table)
    inputs = table.findall(q("input"))
    if len(inputs) != 1:
        raise bad(f"expected one input (the {row}), found {len(inputs)}", table)
    expr = (inputs[0].findtext(f"{q('inputExpression')}/{q('text')}") or "").strip()
    if expr != input_expr:
        raise bad(f"the input expression must be {input_expr!r}, not {expr!r}", inputs[0])
    return decision, table, q, bad


def parse_sla(data: bytes, filename: str) -> SlaTable:
    if isinstance(data, str):
        data = data.encode("utf-8")
    decision, table, q, bad = decision_table(data, filename, "case", "case")
    did = decision.get("id") or ""
    outputs = [o.get("name") for o in table.findall(q("output"))]
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown or len(set(outputs)) != len(outputs):
        raise bad(f"outputs must be distinct names among {', '.join(OUTPUTS)}; got {', '.join(map(str, outputs))}",
                  table)
    targets, labels = {}, {}
    for rule in table.findall(q("rule")):
        entries = rule.findall(q("inputEntry"))
        cells = rule.findall(q("outputEntry"))
        if len(entries) != 1 or len(cells) != len(outputs):
            raise bad("each rule needs one input entry and one entry per output", rule)
        text = (entries[0].findtext(q("text")) or "").strip()
        m = CASE.match(text)
        if not m:
            raise bad(f'input entry {text!r} must be a quoted case name like "work_order"', entries[0])
        case = m.group(1)
        if case in targets:
            raise bad(f"case {case!r} appears twice", rule)
        row = {name: None for name in OUTPUTS}
        for name, cell in zip(outputs, cells):
            raw = (cell.findtext(q("text")) or "").strip()
            if raw in ("", "-", "null"):
                continue
            try:
                value = float(raw)
            except ValueError:
                raise bad(f"{name} of case {case!r} must be a number, not {raw!r}", cell) from None
            if not 0 <= value <= MAX_MINUTES or value != value:
                raise bad(f"{name} of case {case!r} is out of range: {raw}", cell)
            row[name] = int(value) if value == int(value) else value
        if (row["revisit_min_working_days"] is not None and row["revisit_max_working_days"] is not None
                and row["revisit_min_working_days"] > row["revisit_max_working_days"]):
            raise bad(f"the revisit window of case {case!r} ends before it starts", rule)
        targets[case] = row
        zh, _sep, en = (rule.findtext(q("description")) or "").partition(" | ")
        labels[case] = {"zh": zh.strip() or None, "en": en.strip() or None}
    missing = [c for c in REQUIRED_CASES if c not in targets]
    if missing:
        raise bad(f"the table lacks the case(s) the diagrams use: {', '.join(missing)}", table)
    if did != SLA_DECISION:
        raise DefinitionError(f"the SLA decision's id must be {SLA_DECISION!r}, not {did!r}", file=filename,
                              element=did, line=decision.sourceline)
    return SlaTable(did, decision.get("name"), hashlib.sha256(data).hexdigest(), targets, labels, filename, data)
