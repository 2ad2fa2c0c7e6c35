"""Audit exports (issue 6): an instance's trace and a search result as CSV (one row per event or instance;
nested values as compact JSON) — JSON exports are the dictionaries themselves."""
from __future__ import annotations

import csv
import io
import json

TRACE_COLUMNS = ("ticket_no", "seq", "at", "type", "actor", "bpmn_id", "task_name", "rules", "data", "hash")
SEARCH_COLUMNS = ("instance_id", "ticket_no", "kind", "status", "severity", "vip", "customer", "customer_id",
                  "created_by", "created_at", "completed_at", "response_due", "finish_due", "finish_overdue",
                  "summary")


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    text = str(value)
    # A spreadsheet would run a cell starting with = + - @ as a formula: neutralise it (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(columns, rows) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue()


def trace_csv(trace: dict) -> str:
    rows = [{**e, "ticket_no": trace["ticket_no"], "rules": ",".join(e.get("rules") or [])}
            for e in trace["events"]]
    return _csv(TRACE_COLUMNS, rows)


def rows_to_csv(rows: list[dict]) -> str:
    return _csv(SEARCH_COLUMNS, rows)
