"""Issue 6: searching instances (each filter, combinations, keyset pages, bad input) and the exports."""
from __future__ import annotations

import csv
import io
import json

import pytest

from engine import InvalidInput
from tests.pg import on_both_databases
from tests.test_complaint import register, transfer
from tests.test_consultation import register as register_consultation
from tests.test_repair import register as register_repair
from tests.webclient import Web


@pytest.fixture
def tickets(scenario, kefu):
    """Two complaints (one urgent, one overdue at the department), a repair, a consultation, a day apart."""
    out = {}
    register(scenario, severity="urgent")
    out["urgent"] = scenario.ticket_no
    scenario.advance(hours=1)
    register(scenario)
    transfer(scenario, hours=2)
    out["late"] = scenario.ticket_no
    scenario.base.clock.advance(__import__("datetime").timedelta(days=1))
    register_repair(scenario)
    out["repair"] = scenario.ticket_no
    register_consultation(scenario, on_spot=True)
    out["consultation"] = scenario.ticket_no
    return out


def tickets_of(kefu, **args):
    return [r["ticket_no"] for r in kefu.audit.search(args)["rows"]]


@on_both_databases
def test_each_filter(tickets, kefu):
    assert tickets_of(kefu) == [tickets["consultation"], tickets["repair"], tickets["late"], tickets["urgent"]]
    assert tickets_of(kefu, ticket=tickets["late"]) == [tickets["late"]]
    assert set(tickets_of(kefu, ticket="TS")) == {tickets["late"], tickets["urgent"]}  # a prefix
    assert tickets_of(kefu, ticket=tickets["late"][:11]) == [tickets["late"], tickets["urgent"]]  # "TS20261123-"
    assert tickets_of(kefu, ticket="TS_") == [] and tickets_of(kefu, ticket="TS%") == []
    assert tickets_of(kefu, kind="repair") == [tickets["repair"]]
    assert tickets_of(kefu, severity="urgent") == [tickets["urgent"]]
    assert tickets_of(kefu, customer="华东银行") == [tickets["late"], tickets["urgent"]]
    customer_id = kefu.instances.show(tickets["late"])["customer"]["id"]
    assert tickets_of(kefu, customer=str(customer_id)) == [tickets["late"], tickets["urgent"]]
    assert tickets_of(kefu, agent="department") == [tickets["late"]]   # accepted the transfer
    assert tickets_of(kefu, agent="nobody") == []
    assert tickets_of(kefu, overdue="1") == [tickets["late"]]        # the department's 2 h passed a day ago
    active, completed = tickets_of(kefu, status="active"), tickets_of(kefu, status="completed")
    assert tickets["late"] in active and set(active) | set(completed) == set(tickets.values())
    first_day = kefu.instances.show(tickets["urgent"])["created_at"][:10]
    assert tickets_of(kefu, date_from=first_day, date_to=first_day) == [tickets["late"], tickets["urgent"]]
    assert tickets_of(kefu, kind="complaint", severity="general", overdue="1") == [tickets["late"]]


@on_both_databases
def test_keyset_pages_walk_everything_once(tickets, kefu):
    seen, cursor = [], None
    while True:
        page = kefu.audit.search({"limit": 1, **({"after": cursor} if cursor else {})})
        seen += [r["ticket_no"] for r in page["rows"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == tickets_of(kefu) and len(seen) == 4


@on_both_databases
@pytest.mark.parametrize("agent", ["agent", "department", "nobody"])
def test_both_agent_plans_find_the_same_pages(tickets, kefu, monkeypatch, agent):
    """The agent filter looks a small set up by id and probes a large one row by row: same rows, same pages."""
    from engine.records import search

    def walk(**args):
        seen, cursor = [], None
        while True:
            page = kefu.audit.search({"agent": agent, "limit": 1, **args, **({"after": cursor} if cursor else {})})
            seen += [r["ticket_no"] for r in page["rows"]]
            cursor = page["next"]
            if cursor is None:
                return seen

    few = walk(), walk(kind="complaint")
    monkeypatch.setattr(search, "AGENT_LOOKUP_LIMIT", -1)   # every agent counts as "many"
    assert (walk(), walk(kind="complaint")) == few
    if agent == "agent":   # opened every ticket
        assert few[0] == tickets_of(kefu) and few[1] == [tickets["late"], tickets["urgent"]]


@pytest.mark.parametrize("args, field", [
    ({"kind": "weather"}, "kind"), ({"status": 3}, "status"), ({"date_from": "yesterday"}, "date_from"),
    ({"date_from": "2026-12-02", "date_to": "2026-12-01"}, "date_from"), ({"limit": "all"}, "limit"),
    ({"limit": 0}, "limit"), ({"limit": 100000}, "limit"), ({"after": "page-2"}, "after"),
    ({"ticket": "x" * 5000}, "ticket"), ({"colour": "red"}, "colour"),
])
def test_bad_input_is_a_clear_error(kefu, args, field):
    with pytest.raises(InvalidInput) as exc:
        kefu.audit.search(args)
    assert field in exc.value.details["fields"]


def test_wildcards_in_a_customer_name_match_literally(tickets, kefu):
    assert tickets_of(kefu, customer="%") == [] and tickets_of(kefu, customer="_") == []


def test_exports(tickets, kefu):
    web = Web(kefu).login_as("auditor")
    r = web.get("/audit/export.csv?kind=complaint&columns=names")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff"))))
    assert [x["ticket_no"] for x in rows] == [tickets["late"], tickets["urgent"]]
    data = json.loads(web.get("/audit/export.json?overdue=1").get_data(as_text=True))
    assert [x["ticket_no"] for x in data["rows"]] == [tickets["late"]]
    trace = list(csv.DictReader(io.StringIO(web.get(f"/audit/{tickets['late']}.csv?columns=names").get_data(as_text=True)
                                            .lstrip("\ufeff"))))
    assert trace[0]["type"] == "instance_started" and [int(x["seq"]) for x in trace] == list(range(1, len(trace) + 1))
    completed = [x for x in trace if x["type"] == "task_completed" and x["bpmn_id"] == "transfer"][0]
    assert completed["actor"] == "agent" and "P4" in completed["rules"]
    assert json.loads(completed["data"])["department"] == "security_ops"
    full = json.loads(web.get(f"/audit/{tickets['late']}.json").get_data(as_text=True))
    assert full["definition"]["process_id"] == "complaint" and full["sla"]["version"] == 1
    assert {d["status"] for d in full["deadlines"]} >= {"missed"}
    assert "transfer" in full["path"]["completed"] and "department_handle" in full["path"]["active"]


def test_an_export_is_the_whole_result(tickets, kefu):
    web = Web(kefu).login_as("auditor")
    rows = list(csv.DictReader(io.StringIO(web.get("/audit/export.csv?kind=complaint&limit=1&columns=names").get_data(
        as_text=True).lstrip("\ufeff"))))
    assert [x["ticket_no"] for x in rows] == [tickets["late"], tickets["urgent"]]   # every page, not the first
    first = kefu.audit.export({}, most=3)
    assert [r["ticket_no"] for r in first["rows"]] == tickets_of(kefu)[:3] and first["next"]
    rest = kefu.audit.export({"after": first["next"]}, most=3)
    assert [r["ticket_no"] for r in rest["rows"]] == tickets_of(kefu)[3:] and rest["next"] is None
    for url in ("/audit/export.csv?kind=weather", "/audit/export.json?after=page-2"):
        r = web.get(url)
        assert r.status_code == 400, (url, r.status_code)


def bare_instances(db, n: int, now, process_id="complaint") -> list[str]:
    """``n`` summary rows in the instances table of ``db`` (no workflow behind them: the search reads only
    these columns), a minute apart before ``now``; their ticket numbers newest first."""
    from datetime import timedelta

    from sqlalchemy import insert, select

    from engine.store.tables import Definition, Instance
    start = now - timedelta(minutes=n)
    with db.unit_of_work() as s:
        definition = s.scalar(select(Definition.id).where(Definition.process_id == process_id))
        s.execute(insert(Instance), [
            {"ticket_no": f"TS-BULK-{i:06d}", "kind": "complaint", "definition_id": definition, "status": "active",
             "severity": "general", "created_by": "agent", "created_at": start + timedelta(minutes=i),
             "updated_at": start + timedelta(minutes=i), "state": "{}", "lock_version": 1} for i in range(n)])
    return [f"TS-BULK-{i:06d}" for i in reversed(range(n))]


@pytest.mark.no_replay  # the bulk rows have no recorded events to replay
def test_an_export_has_every_row_however_many_read_in_batches(kefu, monkeypatch):
    expected = bare_instances(kefu.db, 10_050, kefu.now())
    pages = []
    search = kefu.audit.search
    monkeypatch.setattr(kefu.audit, "search", lambda args: pages.append(search(args)) or pages[-1])
    web = Web(kefu).login_as("auditor")
    r = web.get("/audit/export.csv?kind=complaint&limit=1&columns=names")
    assert r.status_code == 200 and r.is_streamed
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff"))))
    assert [x["ticket_no"] for x in rows] == expected  # every row, past the old 10,000, none twice
    assert len(pages) == 21 and max(len(p["rows"]) for p in pages) == 500  # one batch in memory at a time
    data = json.loads(web.get("/audit/export.json?kind=complaint").get_data(as_text=True))
    assert [x["ticket_no"] for x in data["rows"]] == expected
    assert data["count"] == len(expected) and data["next"] is None and data["filters"] == {"kind": "complaint"}


def test_a_formula_in_submitted_data_is_neutralised_in_csv(scenario, kefu):
    register(scenario, content="=HYPERLINK(\"http://evil\")", place="+cmd")
    text = Web(kefu).login_as("auditor").get("/audit/export.csv?columns=names").get_data(as_text=True)
    row = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))[0]
    assert row["summary"].startswith("'=")


def test_search_page_shows_errors_without_failing(tickets, kefu):
    web = Web(kefu).login_as("auditor")
    r = web.get("/audit?date_from=not-a-date")
    assert r.status_code == 400 and "date_from" in r.get_data(as_text=True)
    page = web.page("/audit?kind=complaint&limit=1")
    assert tickets["late"] in page and "after=" in page
