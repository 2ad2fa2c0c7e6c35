"""The KPI scoring table (RULES.md K-score, K-who) from one DMN decision, ``processes/kpi.dmn``, and its scores.

The table has one input, the KPI (``"K1"`` … ``"K8"``), and the outputs ``target`` (met at or above it), ``floor``
(below it the score is 0), ``denominator`` (linear score = actual ÷ denominator, capped at 100; empty: the
target), ``points_per_point`` (instead of the linear score: points off per percentage point below the
``threshold``, or below the target when the threshold is empty; above the threshold the department assesses
itself, K5) and ``charged`` (who a miss is charged to: ``"owner"``, the ticket's first responsible agent, X1, or
``"responsible"``, the holder of the clock that ran out). Values are percentages; K3's mean score 0–100 is read
as one. A rule's description is its label, ``中文 | English``. The process owner edits and deploys it beside
``sla.dmn``; every deploy is a version, and a month is scored with the version in force when it is computed.

Only what such a table needs is accepted, as strictly as the SLA table: one decision ``kpi`` with a decision
table, one input ``kpi``, every KPI exactly once, numbers or empty cells, and a quoted ``charged`` value.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

from engine.bpmn.sla import SlaTable, decision_table, dmn_root, parse_sla
from engine.errors import DefinitionError

KPI_DECISION = "kpi"
KPI_IDS = ("K1", "K2", "K3", "K4", "K5", "K6", "K7", "K8")
NUMBERS = ("target", "floor", "denominator", "points_per_point", "threshold")
OUTPUTS = NUMBERS + ("charged",)
CHARGED = ("owner", "responsible")
KPI_CELL = re.compile(r'^"(K[1-8])"$')
WORD_CELL = re.compile(r'^"([a-z]+)"$')


@dataclass(frozen=True)
class KpiRule:
    """How one KPI is scored and who is charged for its misses."""
    target: float
    floor: float | None = None
    denominator: float | None = None
    points_per_point: float | None = None
    threshold: float | None = None
    charged: str = "owner"

    def score(self, value: float | None) -> float | None:
        """The K-score (0–100) of ``value``; None when there is no value."""
        if value is None:
            return None
        if self.floor is not None and value < self.floor:
            return 0.0
        if self.points_per_point is not None:
            start = self.threshold if self.threshold is not None else self.target
            return round(max(0.0, 100.0 - self.points_per_point * max(0.0, start - value)), 2)
        return round(min(1.0, value / (self.denominator or self.target)) * 100, 2)

    def self_assessed(self, value: float | None) -> bool | None:
        """With a threshold (K5): True above it (the department assesses itself), False at or below it (each
        miss is charged to its responsible person); None without a threshold or a value."""
        if self.threshold is None or value is None:
            return None
        return value > self.threshold

    def formula(self) -> str:
        """The scoring rule in words (English; the web pages say it in the reader's language)."""
        if self.points_per_point is not None:
            start = self.threshold if self.threshold is not None else self.target
            text = f"100 - {_num(self.points_per_point)} per percentage point below {_num(start)}"
            if self.threshold is not None:
                text += f"; above {_num(start)} the department assesses itself"
        else:
            text = f"actual ÷ {_num(self.denominator or self.target)}, capped at 100"
        if self.floor is not None:
            text = f"0 below {_num(self.floor)}; " + text
        return text

    def as_dict(self) -> dict:
        return {**asdict(self), "formula": self.formula()}


def _num(x: float) -> str:
    return f"{x:g}"


DEFAULT_RULES = {
    "K1": KpiRule(95.0, charged="responsible"),
    "K2": KpiRule(100.0, charged="responsible"),
    "K3": KpiRule(90.0, floor=90.0, denominator=98.0),                           # 002 第九条.3
    "K4": KpiRule(98.0),
    "K5": KpiRule(90.0, points_per_point=2.0, threshold=99.0, charged="responsible"),  # 002 第二十一条.5
    "K6": KpiRule(90.0, floor=70.0, denominator=90.0, charged="responsible"),   # 002 第九条.5
    "K7": KpiRule(98.0),
    "K8": KpiRule(70.0, points_per_point=0.5, charged="responsible"),           # 002 第二十一条.6
}


@dataclass
class KpiTable:
    decision_id: str
    name: str | None
    sha256: str | None           # None: the built-in defaults (no table deployed)
    rules: dict[str, KpiRule]
    labels: dict[str, dict]      # KPI → {"zh": ..., "en": ...} from the rule's description
    filename: str | None
    xml: bytes | None

    def describe(self, version: int | None) -> dict:
        """What a report records of the table it was scored with."""
        return {"decision": self.decision_id, "version": version, "sha256": self.sha256,
                "rules": {k: r.as_dict() for k, r in self.rules.items()}}


def default_table() -> KpiTable:
    """The RULES.md K-score defaults, used while no KPI table is deployed (the shipped kpi.dmn says the same)."""
    return KpiTable(KPI_DECISION, None, None, dict(DEFAULT_RULES), {}, None, None)


def parse_table(data: bytes, filename: str) -> SlaTable | KpiTable:
    """A .dmn file's decision table: the KPI table when its decision is ``kpi``, else the SLA table (whose
    parser says what is wrong with anything else)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    root, ns = dmn_root(data, filename)
    ids = [d.get("id") for d in root.findall(f"{{{ns}}}decision")]
    if ids == [KPI_DECISION]:
        return parse_kpi_table(data, filename)
    return parse_sla(data, filename)


def is_table(parsed) -> bool:
    return isinstance(parsed, (SlaTable, KpiTable))


def parse_kpi_table(data: bytes, filename: str) -> KpiTable:
    if isinstance(data, str):
        data = data.encode("utf-8")
    decision, table, q, bad = decision_table(data, filename, "kpi", "KPI")
    did = decision.get("id") or ""
    if did != KPI_DECISION:
        raise DefinitionError(f"the KPI decision's id must be {KPI_DECISION!r}, not {did!r}", file=filename,
                              element=did, line=decision.sourceline)
    outputs = [o.get("name") for o in table.findall(q("output"))]
    if sorted(map(str, outputs)) != sorted(OUTPUTS) or len(set(outputs)) != len(outputs):
        raise bad(f"the outputs must be exactly {', '.join(OUTPUTS)}; got {', '.join(map(str, outputs))}", table)
    rules, labels = {}, {}
    for rule in table.findall(q("rule")):
        entries = rule.findall(q("inputEntry"))
        cells = rule.findall(q("outputEntry"))
        if len(entries) != 1 or len(cells) != len(outputs):
            raise bad("each rule needs one input entry and one entry per output", rule)
        text = (entries[0].findtext(q("text")) or "").strip()
        m = KPI_CELL.match(text)
        if not m:
            raise bad(f'input entry {text!r} must be a quoted KPI id from "K1" to "K8"', entries[0])
        kpi = m.group(1)
        if kpi in rules:
            raise bad(f"KPI {kpi} appears twice", rule)
        row = {}
        for name, cell in zip(outputs, cells):
            row[name] = _cell(name, kpi, (cell.findtext(q("text")) or "").strip(), lambda msg, c=cell: bad(msg, c))
        _check_row(kpi, row, lambda msg, r=rule: bad(msg, r))
        rules[kpi] = KpiRule(**row)
        zh, _sep, en = (rule.findtext(q("description")) or "").partition(" | ")
        labels[kpi] = {"zh": zh.strip() or None, "en": en.strip() or None}
    missing = [k for k in KPI_IDS if k not in rules]
    if missing:
        raise bad(f"the table lacks the KPI(s) {', '.join(missing)}", table)
    return KpiTable(did, decision.get("name"), hashlib.sha256(data).hexdigest(),
                    {k: rules[k] for k in KPI_IDS}, labels, filename, data)


def _cell(name: str, kpi: str, raw: str, bad):
    empty = raw in ("", "-", "null")
    if name == "charged":
        m = WORD_CELL.match(raw)
        if not m or m.group(1) not in CHARGED:
            raise bad(f'charged of {kpi} must be "owner" or "responsible", not {raw!r}')
        return m.group(1)
    if empty:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad(f"{name} of {kpi} must be a number, not {raw!r}") from None
    if value != value or not 0 <= value <= 100:
        raise bad(f"{name} of {kpi} must be between 0 and 100 (a percentage), not {raw}")
    return value


def _check_row(kpi: str, row: dict, bad) -> None:
    if not row["target"]:
        raise bad(f"target of {kpi} is required and must be above 0")
    if row["denominator"] is not None and row["denominator"] <= 0:
        raise bad(f"denominator of {kpi} must be above 0")
    if row["denominator"] is not None and row["points_per_point"] is not None:
        raise bad(f"{kpi} has both a denominator (linear score) and points off per percentage point: choose one")
    if row["threshold"] is not None and row["points_per_point"] is None:
        raise bad(f"threshold of {kpi} needs points_per_point (points off below the threshold)")

