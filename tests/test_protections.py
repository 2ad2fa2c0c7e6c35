"""Protections that each need a test failing when they are removed: the audit ledger's entry check and the
branches of verify that no other tamper test reaches (a rewritten previous hash, a changed event count, events
written outside the application), read-only form fields (a QA review cannot point its K4 score at another
ticket), and the masking of contact details on the customer page (email) and the /customers search page."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import insert

from engine import FormValidationError
from engine.store import chain as audit
from engine.store.chain import canonical, chain_hash
from engine.store.tables import AuditEvent
from tests.tamper import drop_guards, sql
from tests.test_audit_log import events, only, two  # noqa: F401 - the two-complaint fixture
from tests.test_kpi_qa import close_three_and_reach_december
from tests.webclient import Web

tampered = pytest.mark.no_replay  # the record is changed on purpose


@tampered
def test_a_forged_ledger_ticket_is_reported_by_the_entry_check(two, kefu):
    _sc, (iid, ticket), _second = two
    drop_guards(kefu)
    sql(kefu, "UPDATE audit_ledger SET ticket_no='TS20990101-0001' WHERE id=1")
    p = only(kefu.audit.verify())
    assert p["kind"] == "ledger" and p["problem"].startswith("ledger entry 1 (TS20990101-0001 up to event #")


@tampered
def test_an_event_that_no_longer_follows_its_predecessor_is_named(two, kefu):
    """Its own hash recomputed over a new previous hash: only the previous-hash check sees it."""
    _sc, (iid, ticket), _second = two
    second = events(kefu, iid)[1]
    forged_prev = "f" * 64
    drop_guards(kefu)
    sql(kefu, "UPDATE audit_events SET prev_hash=:p, hash=:h WHERE id=:id", p=forged_prev,
        h=chain_hash(forged_prev, canonical(iid, second.seq, second)), id=second.id)
    p = only(kefu.audit.verify(iid))
    assert (p["ticket_no"], p["seq"], p["kind"]) == (ticket, 2, "altered")
    assert "does not follow event #1" in p["problem"]


@tampered
def test_an_instance_whose_event_count_was_changed_is_named(two, kefu):
    _sc, (iid, ticket), _second = two
    count = len(events(kefu, iid))
    drop_guards(kefu)
    sql(kefu, "UPDATE instances SET audit_count=audit_count + 1 WHERE id=:i", i=iid)
    p = only(kefu.audit.verify())
    assert p["ticket_no"] == ticket and p["kind"] == "deleted"
    assert p["problem"] == f"the chain ends at event #{count} but the instance recorded #{count + 1}"


@tampered
def test_events_written_outside_the_application_are_named(two, kefu):
    """A well-chained event added by SQL, the instance's count and head moved along: only the ledger lacks it."""
    _sc, (iid, ticket), _second = two
    last = events(kefu, iid)[-1]
    seq = last.seq + 1
    forged = audit.PendingEvent("task_completed", "mallory", datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc),
                                data={"note": "backdated"})
    digest = chain_hash(last.hash, canonical(iid, seq, forged))
    with kefu.db.engine.begin() as conn:
        conn.execute(insert(AuditEvent.__table__), {
            "instance_id": iid, "seq": seq, "type": forged.type, "actor": forged.actor, "at": forged.at,
            "task_id": None, "bpmn_id": None, "task_name": None, "rules": None, "data": forged.data,
            "prev_hash": last.hash, "hash": digest})
    sql(kefu, "UPDATE instances SET audit_count=:n, audit_head=:h WHERE id=:i", n=seq, h=digest, i=iid)
    p = only(kefu.audit.verify())
    assert (p["ticket_no"], p["seq"], p["kind"]) == (ticket, seq, "unrecorded")
    assert f"events #{seq}-#{seq} are not in the ledger" in p["problem"]


def _qa_review_task(kefu):
    close_three_and_reach_december(kefu)
    started = kefu.kpi.start_qa_sampling("2026-11", "supervisor", seed=7)
    task = next(t for t in kefu.tasks.ready(actor="qa") if t["bpmn_id"] == "qa_review")
    return started, task


def _k4_tickets(kefu) -> set[str]:
    return {r["ticket_no"] for r in kefu.kpi.live("2026-12")["department"]["K4"]["counted"]}


def test_qa_cannot_point_a_k4_score_at_another_ticket_in_the_engine(kefu):
    started, task = _qa_review_task(kefu)
    other = next(t["ticket_no"] for t in kefu.instances.recent() if t["ticket_no"] not in started["sample"]
                 and t["kind"] == "consultation")
    with pytest.raises(FormValidationError) as refused:
        kefu.tasks.complete(task["id"], "qa", {"sampled_ticket": other, "entry_accurate": False,
                                               "service_quality": 10})
    assert refused.value.errors == {"sampled_ticket": "field is read-only"}
    assert _k4_tickets(kefu) == set()


def test_qa_cannot_point_a_k4_score_at_another_ticket_in_the_browser(kefu):
    started, task = _qa_review_task(kefu)
    sampled = kefu.tasks.get(task["id"])
    other = next(t["ticket_no"] for t in kefu.instances.recent() if t["ticket_no"] not in started["sample"]
                 and t["kind"] == "consultation")
    web = Web(kefu).login_as("qa")
    r = web.post(f"/tasks/{task['id']}", {"sampled_ticket": other, "entry_accurate": "false",
                                           "service_quality": "10"})
    assert r.status_code == 302  # saved, with the posted read-only value dropped
    counted = _k4_tickets(kefu)
    assert len(counted) == 1 and other not in counted and counted <= set(started["sample"]), sampled


@pytest.fixture
def emailed(kefu):
    """The VIP customer with an email address and a phone; nobody holds a ready task on their tickets."""
    vip = kefu.customers.find("021-6321")[0]
    kefu.customers.update(vip["id"], {"email": "wang.min@huadong-bank.example"})
    return vip


def test_the_customer_page_masks_the_email_for_those_without_a_ticket_at_hand(kefu, emailed):
    """I4: only those serving the customer (a case of theirs, or a ready task on one) read it in full."""
    url = f"/customers/{emailed['id']}"
    for who in ("agent", "supervisor", "auditor", "qa", "owner"):
        page = Web(kefu).login_as(who).page(url)
        assert "wang.min@huadong-bank.example" not in page and "w***@huadong-bank.example" in page, who
        assert "wang.min" not in page, who  # neither shown nor prefilled in the edit form


def test_the_customer_search_page_masks_phones_for_everyone_not_serving_the_customer(kefu, emailed):
    url = "/customers?q=" + "华东"
    for who in ("agent", "supervisor", "auditor", "qa", "owner"):
        page = Web(kefu).login_as(who).page(url)
        assert "华东银行" in page and "021-63210000" not in page and "021*****0000" in page, who
