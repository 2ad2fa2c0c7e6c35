"""Audit exports (issue 6): an instance's trace and a search result as CSV (one row per event or instance;
nested values as compact JSON) — JSON exports are the dictionaries themselves. A search result of any size
is written as it is read (``search_csv_chunks``, ``search_json_chunks``): text in pieces of ``CHUNK`` rows."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from itertools import islice

CHUNK = 500  # rows per piece of a streamed export

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


def _csv(columns, rows, header: bool = True, labels: dict | None = None) -> str:
    """``labels``: column → header text (the web's exports speak the reader's language; the CLI's keep the
    column names)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    if header:
        w.writerow([str((labels or {}).get(c, c)) for c in columns])
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue()


def trace_csv(trace: dict, labels: dict | None = None) -> str:
    rows = [{**e, "ticket_no": trace["ticket_no"], "rules": ",".join(e.get("rules") or [])}
            for e in trace["events"]]
    return _csv(TRACE_COLUMNS, rows, labels=labels)


def rows_to_csv(rows: list[dict]) -> str:
    return _csv(SEARCH_COLUMNS, rows)


def _pieces(rows: Iterable[dict]) -> Iterator[list[dict]]:
    rows = iter(rows)
    while piece := list(islice(rows, CHUNK)):
        yield piece


def search_csv_chunks(rows: Iterable[dict], labels: dict | None = None) -> Iterator[str]:
    """The CSV of ``rows_to_csv``, header first, written as the rows arrive."""
    yield _csv(SEARCH_COLUMNS, [], labels=labels)
    for piece in _pieces(rows):
        yield _csv(SEARCH_COLUMNS, piece, header=False)


def search_json_chunks(filters: dict, rows: Iterable[dict]) -> Iterator[str]:
    """The whole search result as one JSON document ``{"filters", "rows", "next": null, "count"}``, written as
    the rows arrive, one row a line (``next`` is always null: nothing is left out)."""
    yield '{\n  "filters": ' + json.dumps(filters, ensure_ascii=False, sort_keys=True) + ',\n  "rows": ['
    count = 0
    for piece in _pieces(rows):
        yield "".join(("," if count or i else "") + "\n    " + json.dumps(r, ensure_ascii=False, default=str)
                      for i, r in enumerate(piece))
        count += len(piece)
    yield ("\n  " if count else "") + f'],\n  "next": null,\n  "count": {count}\n}}\n'
