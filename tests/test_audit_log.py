"""Issue 6: the audit record is append-only and tamper-evident. An attacker with database access (who drops
the guards first) changes, deletes, reorders events or whole instances; ``verify`` catches each case and
names the event."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from engine import NotAllowed
from engine.store import chain as audit
from engine.store.chain import canonical, chain_hash
from engine.store.tables import AuditEvent, AuditLedger
from tests.pg import on_both_databases
from tests.tamper import drop_guards, sql
from tests.test_complaint import register, transfer

pytestmark = pytest.mark.no_replay  # these tests tamper with the record on purpose


@pytest.fixture
def two(scenario):
    """Two complaints: the first transferred and accepted (a dozen events), the second just registered."""
    register(scenario)
    first = scenario.instance_id, scenario.ticket_no
    transfer(scenario)
    register(scenario)
    second = scenario.instance_id, scenario.ticket_no
    scenario.instance_id, scenario.ticket_no = first
    assert scenario.k.audit.verify() == []
    return scenario, first, second


def events(k, instance_id):
    with k.db.reading() as s:
        found = audit.events_of(s, instance_id)
        s.expunge_all()
        return found


def only(problems):
    assert len(problems) == 1, problems
    return problems[0]


@on_both_databases
def test_sql_cannot_change_or_delete_audit_events_or_the_ledger(two, kefu):
    _sc, (iid, _t), _second = two
    for statement in ("UPDATE audit_events SET actor='mallory' WHERE instance_id=:i",
                      "DELETE FROM audit_events WHERE instance_id=:i",
                      "UPDATE audit_ledger SET head='x' WHERE instance_id=:i",
                      "DELETE FROM audit_ledger WHERE instance_id=:i"):
        with pytest.raises(DBAPIError, match="append-only"):
            sql(kefu, statement, i=iid)
    assert kefu.audit.verify() == []


def test_the_application_cannot_change_or_delete_ledger_entries(two, kefu):
    for change in (lambda s, e: setattr(e, "head", "x"), lambda s, e: s.delete(e)):
        with pytest.raises(NotAllowed):
            with kefu.db.unit_of_work() as s:
                change(s, s.scalars(select(AuditLedger)).first())
    with pytest.raises(NotAllowed):
        with kefu.db.unit_of_work() as s:
            s.delete(s.scalars(select(AuditEvent)).first())


@on_both_databases
def test_a_changed_field_is_named(two, kefu):
    _sc, (iid, ticket), _second = two
    drop_guards(kefu)
    target = next(e for e in events(kefu, iid) if e.type == "task_completed" and e.seq > 3)
    sql(kefu, "UPDATE audit_events SET data=:d WHERE id=:id",
        d=json.dumps({**target.data, "handling_requirement": "不用处理"}), id=target.id)
    p = only(kefu.audit.verify())
    assert (p["ticket_no"], p["seq"], p["kind"]) == (ticket, target.seq, "altered")
    assert f"event #{target.seq} (task_completed) was altered" in p["problem"]


def test_a_changed_actor_or_time_is_named(two, kefu):
    _sc, (iid, _t), _second = two
    drop_guards(kefu)
    sql(kefu, "UPDATE audit_events SET at=:at WHERE instance_id=:i AND seq=2", at="2020-01-01 00:00:00", i=iid)
    assert only(kefu.audit.verify())["seq"] == 2


@on_both_databases
def test_a_deleted_middle_event_is_named(two, kefu):
    _sc, (iid, ticket), _second = two
    drop_guards(kefu)
    sql(kefu, "DELETE FROM audit_events WHERE instance_id=:i AND seq=4", i=iid)
    p = only(kefu.audit.verify())
    assert (p["ticket_no"], p["seq"], p["kind"]) == (ticket, 4, "deleted") and "event #4 was deleted" in p["problem"]


@on_both_databases
def test_a_deleted_last_event_with_the_head_rolled_back_is_caught(two, kefu):
    _sc, (iid, ticket), _second = two
    evs = events(kefu, iid)
    last, before_last = evs[-1], evs[-2]
    drop_guards(kefu)
    sql(kefu, "DELETE FROM audit_events WHERE id=:id", id=last.id)
    sql(kefu, "UPDATE instances SET audit_count=:n, audit_head=:h WHERE id=:i",
        n=before_last.seq, h=before_last.hash, i=iid)
    p = only(kefu.audit.verify())
    assert (p["ticket_no"], p["seq"], p["kind"]) == (ticket, last.seq, "deleted")
    assert f"event #{last.seq} was deleted" in p["problem"]


@on_both_databases
def test_two_swapped_events_are_named(two, kefu):
    _sc, (iid, ticket), _second = two
    drop_guards(kefu)
    sql(kefu, "UPDATE audit_events SET seq=-1 WHERE instance_id=:i AND seq=5", i=iid)
    sql(kefu, "UPDATE audit_events SET seq=5 WHERE instance_id=:i AND seq=6", i=iid)
    sql(kefu, "UPDATE audit_events SET seq=6 WHERE instance_id=:i AND seq=-1", i=iid)
    p = only(kefu.audit.verify())
    assert (p["ticket_no"], p["seq"], p["kind"]) == (ticket, 5, "reordered")
    assert "event #5" in p["problem"] and "written as event #6" in p["problem"]


@on_both_databases
def test_a_deleted_whole_instance_is_named(two, kefu):
    _sc, first, (iid, ticket) = two
    drop_guards(kefu)
    for table in ("audit_events", "human_tasks", "timers"):
        sql(kefu, f"DELETE FROM {table} WHERE instance_id=:i", i=iid)
    sql(kefu, "DELETE FROM ticket_links WHERE instance_id=:i OR earlier_id=:i", i=iid)  # X3: a repeat complaint
    sql(kefu, "DELETE FROM instances WHERE id=:i", i=iid)
    p = only(kefu.audit.verify())
    assert (p["instance_id"], p["ticket_no"], p["kind"]) == (iid, ticket, "instance_deleted")
    assert f"instance {iid} ({ticket}) was deleted" in p["problem"]


def test_a_consistently_rebuilt_chain_is_caught_by_the_ledger(two, kefu):
    """The attacker recomputes every hash after changing an event: the chain is whole, the ledger is not."""
    _sc, (iid, ticket), _second = two
    evs = events(kefu, iid)
    drop_guards(kefu)
    head = ""
    for e in evs:
        if e.seq == 3:
            e.actor = "mallory"
        digest = chain_hash(head, canonical(iid, e.seq, e))
        sql(kefu, "UPDATE audit_events SET actor=:a, prev_hash=:p, hash=:h WHERE id=:id",
            a=e.actor, p=head, h=digest, id=e.id)
        head = digest
    sql(kefu, "UPDATE instances SET audit_head=:h WHERE id=:i", h=head, i=iid)
    p = only(kefu.audit.verify())
    assert p["ticket_no"] == ticket and p["kind"] == "altered" and "ledger recorded" in p["problem"]


def test_deleted_or_changed_ledger_entries_are_named(two, kefu):
    drop_guards(kefu)
    sql(kefu, "DELETE FROM audit_ledger WHERE id=2")
    p = kefu.audit.verify()[0]
    assert p["kind"] == "ledger" and "ledger entry 2 was deleted" in p["problem"]


def test_a_recorded_anchor_proves_the_ledger_up_to_it(two, kefu):
    with kefu.db.reading() as s:
        head = audit.ledger_head(s)
    assert kefu.audit.verify(anchor=(head["entry"], head["hash"])) == []
    p = only(kefu.audit.verify(anchor=(head["entry"], "0" * 64)))
    assert p["kind"] == "anchor" and f"entry {head['entry']}" in p["problem"]


def test_verify_one_instance(two, kefu):
    _sc, (iid, _t), (other, other_ticket) = two
    drop_guards(kefu)
    sql(kefu, "DELETE FROM audit_events WHERE instance_id=:i AND seq=2", i=other)
    assert kefu.audit.verify(iid) == []
    assert only(kefu.audit.verify(other_ticket))["seq"] == 2


def test_timer_storm_batches_write_one_ledger_entry_per_instance(scenario, kefu):
    for _ in range(3):
        register(scenario)
        transfer(scenario, hours=1)
    with kefu.db.reading() as s:
        before = s.scalar(text("SELECT count(*) FROM audit_ledger"))
    fired = scenario.advance(hours=30)
    assert fired
    with kefu.db.reading() as s:
        after = s.scalar(text("SELECT count(*) FROM audit_ledger"))
    assert after - before == len({f["instance_id"] for f in fired})
    assert kefu.audit.verify() == []
