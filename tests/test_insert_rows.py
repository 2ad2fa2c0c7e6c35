"""``writes.insert_rows``: several rows in one statement (on PostgreSQL as one JSON document, ``json_to_recordset``)
store exactly what SQLAlchemy's own INSERT stores: times, JSON (SQL NULL and JSON null kept apart), text, NULLs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.types import JSON

from engine.store import writes
from engine.store.tables import AuditEvent
from engine.store.types import UTCDateTime
from tests.pg import on_both_databases
from tests.test_complaint import register

pytestmark = pytest.mark.no_replay  # the events written here are not the instance's own


def _rows(instance_id: int, first_seq: int) -> list[dict]:
    at = datetime(2026, 11, 23, 1, 2, 3, 456789, tzinfo=timezone.utc)
    return [{"instance_id": instance_id, "seq": first_seq + i, "type": "probe", "actor": "agent",
             "at": at + timedelta(seconds=i), "task_id": None if i % 2 else f"t{i}", "bpmn_id": None,
             "task_name": "登记 'quoted' \"x\" \\ back\nline\t" if i else None, "rules": "C1,T2" if i == 2 else None,
             "data": [None, {"k": [1, "二", None], "n": 1.5, "s": "a\"b\\c"}, {}, None][i], "prev_hash": "",
             "hash": f"h{first_seq + i}"} for i in range(4)]


def _read(s, instance_id: int, seqs: range) -> list[tuple]:
    return [tuple(r) for r in s.execute(
        select(AuditEvent.seq - seqs.start, AuditEvent.at, AuditEvent.task_id, AuditEvent.task_name, AuditEvent.rules,
               AuditEvent.data).where(AuditEvent.instance_id == instance_id, AuditEvent.seq.in_(list(seqs)))
        .order_by(AuditEvent.seq))]


@on_both_databases
def test_rows_inserted_together_read_back_as_one_by_one_inserts(scenario, kefu):
    register(scenario)
    iid = scenario.instance_id
    with kefu.db.unit_of_work() as s:
        conn = s.connection()
        writes.insert_rows(conn, AuditEvent.__table__, _rows(iid, 1001))
        conn.execute(insert(AuditEvent.__table__), _rows(iid, 2001)[:1])
        for row in _rows(iid, 2001)[1:]:
            conn.execute(insert(AuditEvent.__table__), row)
        together, alone = _read(s, iid, range(1001, 1005)), _read(s, iid, range(2001, 2005))
        assert len(together) == 4 and together == alone
        assert together[1][5] == {"k": [1, "二", None], "n": 1.5, "s": 'a"b\\c'} and together[1][1].tzinfo is not None
        assert together[1][3] == "登记 'quoted' \"x\" \\ back\nline\t"
        s.rollback()


@on_both_databases
def test_json_null_and_sql_null_are_kept_apart(kefu):
    """A JSON column without ``none_as_null`` stores None as JSON null, as SQLAlchemy does; with it, SQL NULL."""
    meta = MetaData()
    table = Table("probe_insert_rows", meta, Column("id", Integer, primary_key=True),
                  Column("doc", JSON), Column("maybe", JSON(none_as_null=True)), Column("at", UTCDateTime))
    meta.create_all(kefu.db.engine)
    try:
        rows = [{"id": i, "doc": None if i % 2 else {"i": i}, "maybe": None if i % 2 else [i],
                 "at": None if i == 3 else datetime(2026, 1, 1, tzinfo=timezone.utc)} for i in range(1, 5)]
        with kefu.db.engine.begin() as conn:
            writes.insert_rows(conn, table, rows)
            conn.execute(insert(table), [{**r, "id": r["id"] + 10} for r in rows])
            got = conn.execute(text("SELECT id, doc IS NULL, maybe IS NULL, at IS NULL FROM probe_insert_rows "
                                    "ORDER BY id")).all()
        assert [tuple(g)[1:] for g in got[:4]] == [tuple(g)[1:] for g in got[4:]]
        assert [tuple(g)[1:] for g in got[:4]] == [(False, True, False), (False, False, False),
                                                   (False, True, True), (False, False, False)]
    finally:
        meta.drop_all(kefu.db.engine)
