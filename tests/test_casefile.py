"""The case file (issue 20): notes, contact records and attachments on a real ticket, checked by content, never
deleted, each an audit event; and the desk's search with its saved views, only over tickets the user may read."""
from __future__ import annotations

import hashlib

import pytest

from engine import InvalidInput, NotAllowed, NotFound
from tests.test_cli import kefu_cli, seeded, seeded_db  # noqa: F401 - fixtures

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32


def repair(sc, phone="13800138000", name="李先生"):
    return sc.start("repair", {"customer_name": name, "contact_phone": phone, "fault_symptom": "门禁无法开启",
                               "location": "1 号门", "emergency": False})


def test_notes_contacts_and_attachments_are_audit_events_and_appear_on_the_ticket(kefu, scenario):
    r = repair(scenario)
    note = kefu.casefile.note(r["ticket_no"], "agent", "  客户下午不在家  ")
    assert note["text"] == "客户下午不在家" and note["author"] == "agent"
    call = kefu.casefile.contact(r["ticket_no"], "agent", "phone", "约定明早九点上门")
    first = kefu.casefile.attach(r["ticket_no"], "agent", "C:\\photos\\门禁.png", PNG)
    assert first["content_type"] == "image/png" and first["filename"] == "门禁.png"
    assert first["sha256"] == hashlib.sha256(PNG).hexdigest() and first["size"] == len(PNG)
    second = kefu.casefile.attach(r["ticket_no"], "agent", "门禁2.jpg", JPEG, supersedes=first["id"])
    shown = kefu.instances.show(r["ticket_no"])
    assert [n["text"] for n in shown["notes"]] == ["客户下午不在家"]
    assert shown["contacts"] == [{"id": call["id"], "author": "agent", "at": call["at"], "channel": "phone",
                                  "outcome": "约定明早九点上门"}]
    assert [(a["id"], a["superseded_by"]) for a in shown["attachments"]] == [(first["id"], second["id"]),
                                                                          (second["id"], None)]
    types = [e["type"] for e in shown["events"]][-5:]
    assert types == ["note_added", "contact_logged", "attachment_added", "attachment_added",
                     "attachment_superseded"]
    assert not kefu.audit.verify()
    got = kefu.casefile.download(first["id"], "supervisor", ref=r["ticket_no"])  # superseded, still there
    assert got["content"] == PNG


def test_files_are_checked_by_their_content_and_size(kefu, scenario):
    r = repair(scenario)
    for name, content, kind in (("a.pdf", PDF, "application/pdf"), ("b.webp", WEBP, "image/webp"),
                                ("c.gif", b"GIF89a" + b"\x01" * 10, "image/gif"),
                                ("d.txt", "维修记录\n第二行".encode(), "text/plain")):
        assert kefu.casefile.attach(r["ticket_no"], "agent", name, content)["content_type"] == kind
    with pytest.raises(InvalidInput, match="not an accepted file type"):
        kefu.casefile.attach(r["ticket_no"], "agent", "photo.png", b"MZ\x90\x00\x03" + b"\x00" * 100)  # an .exe
    with pytest.raises(InvalidInput, match="at most 20 MB"):
        kefu.casefile.attach(r["ticket_no"], "agent", "big.png", PNG + b"\x00" * (20 * 1024 * 1024))
    with pytest.raises(InvalidInput, match="empty"):
        kefu.casefile.attach(r["ticket_no"], "agent", "empty.txt", b"")
    assert len(kefu.instances.show(r["ticket_no"])["attachments"]) == 4


def test_who_may_read_and_write_the_case_file(kefu, scenario):
    r = repair(scenario)
    kefu.casefile.note(r["ticket_no"], "agent", "内部备注")
    with pytest.raises(NotAllowed):
        kefu.casefile.note(r["ticket_no"], "auditor", "审计不能写")  # reads, changes nothing
    with pytest.raises(NotAllowed):
        kefu.casefile.note(r["ticket_no"], "taskforce1", "无关人员")  # no task on the ticket
    with pytest.raises(NotAllowed):
        kefu.casefile.of(r["ticket_no"], "department")
    assert kefu.casefile.of(r["ticket_no"], "auditor")["notes"][0]["text"] == "内部备注"
    with pytest.raises(InvalidInput):
        kefu.casefile.contact(r["ticket_no"], "agent", "fax", "x")
    with pytest.raises(InvalidInput):
        kefu.casefile.note(r["ticket_no"], "agent", "   ")
    with pytest.raises(NotFound):
        kefu.casefile.download(999, "agent")


def test_search_by_number_name_phone_and_views(kefu, scenario, clock):
    first = repair(scenario, phone="13912345678", name="赵女士")
    other = repair(scenario, phone="13800138000", name="李先生")
    rows = lambda *a, **kw: [x["ticket_no"] for x in kefu.casefile.search(*a, **kw)["rows"]]  # noqa: E731
    assert rows("agent", "赵女士") == [first["ticket_no"]]
    assert rows("agent", "139-1234") == [first["ticket_no"]]
    found = kefu.casefile.search("agent", "5678")["rows"][0]
    assert found["customer_phone"] == "139****5678"
    assert rows("agent", first["ticket_no"]) == [first["ticket_no"]]
    assert rows("agent", first["ticket_no"][:11]) == [other["ticket_no"], first["ticket_no"]]
    assert rows("agent", "", {"view": "today"}) == [other["ticket_no"], first["ticket_no"]]
    assert rows("agent", "", {"view": "mine"}) == [other["ticket_no"], first["ticket_no"]]
    assert rows("agent2", "", {"view": "mine"}) == []
    assert rows("agent", "", {"view": "vip"}) == []
    assert rows("agent", "", {"view": "overdue"}) == []
    assert rows("agent", "", {"status": "completed"}) == []
    with pytest.raises(InvalidInput):
        kefu.casefile.search("agent", "", {"view": "nope"})
    assert rows("department", "") == []  # no task on either ticket: nothing to read


def test_the_cli_adds_notes_contacts_attachments_and_searches(seeded, kefu_cli, tmp_path):
    import json
    started = json.loads(kefu_cli("start", "mini", "--as", "agent", "--json", "--data", json.dumps(
        {"customer_name": "张三", "contact_phone": "13912345678", "divisor": 2,
         "deadline": "2026-11-24T09:00"})).stdout)
    ticket = started["ticket_no"]
    note = json.loads(kefu_cli("note", ticket, "--as", "agent", "--text", "客户下午在家", "--json").stdout)
    assert note["text"] == "客户下午在家" and note["author"] == "agent"
    kefu_cli("contact", ticket, "--as", "agent", "--channel", "visit", "--outcome", "已上门")
    photo = tmp_path / "现场.jpg"
    photo.write_bytes(JPEG)
    added = json.loads(kefu_cli("attach", ticket, str(photo), "--as", "agent", "--json").stdout)
    assert added["content_type"] == "image/jpeg" and added["sha256"] == hashlib.sha256(JPEG).hexdigest()
    exe = tmp_path / "setup.png"
    exe.write_bytes(b"MZ\x90\x00" + b"\x00" * 60)
    refused = kefu_cli("attach", ticket, str(exe), "--as", "agent", expect=2)
    assert "not an accepted file type" in refused.stderr
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(21 * 1024 * 1024)
    assert "at most 20 MB" in kefu_cli("attach", ticket, str(big), "--as", "agent", expect=2).stderr
    kefu_cli("contact", ticket, "--as", "agent", "--channel", "fax", "--outcome", "x", expect=2)
    kefu_cli("note", ticket, "--as", "auditor", "--text", "x", expect=3)
    shown = json.loads(kefu_cli("show", ticket, "--json").stdout)
    assert [n["text"] for n in shown["notes"]] == ["客户下午在家"]
    assert shown["contacts"][0]["channel"] == "visit"
    assert set(shown["attachments"][0]) >= {"id", "author", "at", "filename", "size", "content_type", "sha256"}
    found = json.loads(kefu_cli("search", "5678", "--as", "agent", "--json").stdout)["rows"]
    assert [r["ticket_no"] for r in found] == [ticket] and found[0]["customer_phone"] == "139****5678"
    assert ticket in kefu_cli("search", "--as", "agent", "--view", "mine").stdout
    kefu_cli("search", "--as", "agent", "--view", "nope", expect=2)


def test_the_search_queries_use_indexes_not_scans_of_the_tickets():
    """SQLite's plan for each kind of search: the instances are reached by an index (ticket number, customer,
    creator, assignee, creation time), never by a full scan."""
    from datetime import datetime, timezone

    from sqlalchemy import create_engine, text

    from engine.records import desk
    from engine.store.tables import Base
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    now = datetime.now(timezone.utc)
    for q, args, index in (("TS20261123-0001", {}, "sqlite_autoindex_instances_1"),
                           ("13800138000", {}, "ix_customers_phone_digits"), ("李先生", {}, "ix_instances_customer"),
                           ("", {"view": "mine"}, "ix_instances_owner"),
                           ("", {"assignee": "agent"}, "ix_human_tasks_assignee"),
                           ("", {"view": "today"}, "ix_instances_created_at")):
        stmt = desk.statement(*desk.parse(q, args), now, "agent")
        sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
        with engine.connect() as c:
            plan = [r[3] for r in c.execute(text("EXPLAIN QUERY PLAN " + sql))]
        assert any(index in step for step in plan), (q, args, plan)
        assert not any(step.startswith("SCAN instances") and "INDEX" not in step for step in plan), (q, args, plan)
