"""Units of work on a real SQLite database (the ones marked @on_both_databases on PostgreSQL too): validation,
authorization, conflicts, timers, incidents, audit."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from engine.services import projections
from engine import Clock, Config, Conflict, FormValidationError, Kefu, NotAllowed, NotFound
from engine.store.tables import AuditEvent, Customer, Instance
from tests.factories import diagram, make_kefu
from tests.pg import on_both_databases


@pytest.fixture
def k(db_url, clock):
    k = make_kefu(db_url, clock, deploy=(diagram("mini.bpmn"),))
    yield k
    k.db.dispose()


def register(k, **over):
    data = {"customer_name": "张三", "contact_phone": "13900000000", "divisor": 4,
            "deadline": (k.now() + timedelta(days=1)).isoformat()}
    data.update(over)
    return k.instances.start("mini", "agent", data=data)


def handle_task(k, r):
    return next(t for t in k.tasks.ready(instance=r["instance_id"]) if t["bpmn_id"] == "handle")


def count(k, model):
    with k.db.reading() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_start_with_invalid_data_stores_nothing(k):
    customers = count(k, Customer)
    with pytest.raises(FormValidationError) as exc:
        register(k, divisor="four", bogus=1)
    assert set(exc.value.errors) == {"divisor", "bogus"}
    assert count(k, Instance) == 0 and count(k, Customer) == customers and count(k, AuditEvent) == 0


def test_invalid_completion_changes_nothing(k):
    r = register(k)
    t = handle_task(k, r)
    before = k.instances.show(r["instance_id"])
    with pytest.raises(FormValidationError):
        k.tasks.complete(t["id"], "department", {"result": "", "unknown": 1})
    after = k.instances.show(r["instance_id"])
    assert after["events"] == before["events"] and after["tasks"] == before["tasks"]


def test_wrong_role_and_unknown_user_are_refused(k):
    t = handle_task(k, register(k))
    with pytest.raises(NotAllowed, match="department lane"):
        k.tasks.complete(t["id"], "agent", {"result": "x"})
    with pytest.raises(NotAllowed):
        k.tasks.claim(t["id"], "nobody")
    with pytest.raises(NotAllowed):
        k.instances.start("mini", "technician")


def test_claimed_task_belongs_to_its_claimer(k):
    k.users.add("department2", ["department"])
    t = handle_task(k, register(k))
    k.tasks.claim(t["id"], "department")
    assert [x["id"] for x in k.tasks.ready(actor="department2")] == []
    with pytest.raises(NotAllowed, match="assigned to department"):
        k.tasks.complete(t["id"], "department2", {"result": "x"})
    k.tasks.unclaim(t["id"], "department")
    k.tasks.complete(t["id"], "department2", {"result": "done"})


@on_both_databases
def test_double_completion_is_a_conflict(k):
    r = register(k)
    t = handle_task(k, r)
    k.tasks.complete(t["id"], "department", {"result": "ok"})
    with pytest.raises(Conflict, match="already completed"):
        k.tasks.complete(t["id"], "department", {"result": "again"})
    assert k.instances.show(r["instance_id"])["status"] == "completed"
    assert len([e for e in k.instances.show(r["instance_id"])["events"] if e["type"] == "task_completed"]) == 2


def test_unknown_task_is_not_found(k):
    with pytest.raises(NotFound):
        k.tasks.complete("00000000-0000-0000-0000-000000000000", "agent", {})
    with pytest.raises(NotFound):
        k.tasks.complete("not-a-uuid", "agent", {})


def test_a_task_the_workflow_has_not_reached_cannot_be_completed(k):
    r = register(k)
    t = handle_task(k, r)
    k.tasks.complete(t["id"], "department", {"result": "ok"})
    with k.db.unit_of_work() as s:  # a row claiming readiness the workflow does not share
        s.execute(text("UPDATE human_tasks SET state='ready' WHERE id=:i"), {"i": t["id"]})
    with pytest.raises(Conflict, match="not ready in the workflow"):
        k.tasks.complete(t["id"], "department", {"result": "again"})


@on_both_databases
def test_stale_save_is_a_conflict_not_an_overwrite(k):
    r = register(k)
    stale = k.db.sessions()  # a writer that loaded the instance before someone else saved it
    inst = stale.get(Instance, r["instance_id"])
    stale.commit()
    k.tasks.claim(handle_task(k, r)["id"], "department")  # someone else saves the instance meanwhile
    inst.summary = "overwrite"
    with pytest.raises(Conflict, match="changed by someone else"):
        k.runner.touch(stale, inst, [])
    stale.rollback()
    stale.close()
    assert k.instances.show(r["instance_id"])["summary"] != "overwrite"


@on_both_databases
def test_timer_fired_first_then_completion_is_a_conflict(k, clock):
    r = register(k)
    t = handle_task(k, r)
    assert t["due_at"] is not None
    clock.advance(timedelta(days=1, seconds=1))
    fired = k.timers.fire_due()
    assert [f["timer"] for f in fired] == ["timer_handle"]
    with pytest.raises(Conflict, match="already cancelled"):
        k.tasks.complete(t["id"], "department", {"result": "late"})
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "completed"
    assert [x["end_reason"] for x in shown["tasks"] if x["bpmn_id"] == "handle"] == ["timer"]


def test_completion_first_then_the_timer_does_nothing(k, clock):
    r = register(k)
    k.tasks.complete(handle_task(k, r)["id"], "department", {"result": "in time"})
    clock.advance(timedelta(days=2))
    assert k.timers.fire_due() == []
    with k.db.unit_of_work() as s:  # a firing that claimed the instance after the completion committed
        assert k.timers._fire_in(s, r["instance_id"], k.now()) == []
    assert not [e for e in k.instances.show(r["instance_id"])["events"] if e["type"] == "timer_fired"]


def test_timers_fire_only_when_due_and_only_once(k, clock):
    r = register(k)
    assert k.timers.fire_due() == []
    clock.advance(timedelta(hours=23))
    assert k.timers.fire_due() == []
    clock.advance(timedelta(hours=2))
    assert len(k.timers.fire_due()) == 1
    assert k.timers.fire_due() == []
    assert k.timers.waiting(instance=r["instance_id"]) == []


@on_both_databases
def test_script_error_becomes_incident_and_retry_fixes_it(k):
    r = register(k, divisor=0)
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "incident"
    assert shown["incident"]["bpmn_id"] == "compute" and "ZeroDivisionError" in shown["incident"]["message"]
    with pytest.raises(NotAllowed):
        k.instances.retry_incident(r["instance_id"], "agent", {"divisor": 5})
    k.instances.retry_incident(r["instance_id"], "supervisor", {"divisor": 5})
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "active" and shown["incident"] is None and shown["data"]["ratio"] == 20
    assert [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"] == ["handle"]
    types = [e["type"] for e in shown["events"]]
    assert types.index("incident_raised") < types.index("incident_retried")


def test_retry_without_incident_is_a_conflict(k):
    r = register(k)
    with pytest.raises(Conflict):
        k.instances.retry_incident(r["instance_id"], "supervisor", {})


@on_both_databases
def test_customer_is_linked_by_phone_and_vip_flows_into_the_process(k):
    vip = k.customers.create({"name": "华东银行", "phone": "021-1", "vip": True})
    r = k.instances.start("mini", "agent", data={"divisor": 1, "deadline": (k.now() + timedelta(hours=1)).isoformat()},
                customer_id=vip["id"])
    shown = k.instances.show(r["instance_id"])
    assert shown["customer"]["id"] == vip["id"] and shown["vip"] is True and shown["data"]["vip"] is True
    assert shown["data"]["customer_name"] == "华东银行"  # prefilled from the profile
    again = register(k, contact_phone="021 1", customer_name="华东银行 王经理")
    assert k.instances.show(again["instance_id"])["customer"]["id"] == vip["id"]
    assert [c["id"] for c in k.customers.find("0211")] == [vip["id"]]
    assert vip["id"] in [c["id"] for c in k.customers.find("华东")]


@on_both_databases
def test_every_action_is_audited_in_a_verified_chain(k):
    r = register(k)
    t = handle_task(k, r)
    k.tasks.claim(t["id"], "department")
    k.tasks.complete(t["id"], "department", {"result": "ok"})
    events = k.instances.show(r["instance_id"])["events"]
    assert [e["type"] for e in events] == [
        "instance_started", "start_passed", "task_completed", "script_ran", "task_created", "timer_set",
        "task_claimed", "task_completed", "end_reached", "instance_completed"]
    timer_set = events[5]
    assert timer_set["data"]["task"] == "handle" and timer_set["data"]["due_at"]
    assert timer_set["data"]["calendar"]["library"].startswith("chinese-calendar")
    completed = [e for e in events if e["type"] == "task_completed"]
    assert completed[1]["actor"] == "department" and completed[1]["data"] == {"result": "ok"}
    assert completed[1]["rules"] == ["P4", "T1"]
    assert k.audit.verify() == []


@on_both_databases
def test_tampering_with_the_audit_log_is_detected(k):
    r = register(k)
    from tests.tamper import drop_guards  # audit (issue 6): SQL updates are refused unless the guards go first
    drop_guards(k)
    with k.db.unit_of_work() as s:
        s.execute(text("UPDATE audit_events SET actor='mallory' WHERE instance_id=:i AND seq=3"),
                  {"i": r["instance_id"]})
    problems = k.audit.verify()
    assert problems and "event #3" in problems[0]["problem"]


def test_audit_events_cannot_be_changed_through_the_application(k):
    register(k)
    with pytest.raises(NotAllowed):
        with k.db.unit_of_work() as s:
            s.scalars(select(AuditEvent)).first().actor = "mallory"


def test_state_survives_a_restart(k, db_url, clock):
    r = register(k)
    k.db.dispose()
    fresh = Kefu(Config(database_url=db_url, env="test"), clock=clock)
    t = handle_task(fresh, r)
    fresh.tasks.complete(t["id"], "department", {"result": "after restart"})
    assert fresh.instances.show(r["instance_id"])["status"] == "completed"


def test_kefu_clock_is_honoured_only_in_test_or_demo(capsys):
    pinned = "2030-01-01T00:00:00+00:00"
    assert Clock.from_config(Config(env="test", clock=pinned)).pinned
    assert Clock.from_config(Config(env="demo", clock=pinned)).pinned
    assert not Clock.from_config(Config(env="production", clock=pinned)).pinned
    assert "ignored" in capsys.readouterr().err


@on_both_databases
def test_a_crash_mid_request_loses_nothing(k, monkeypatch):
    r = register(k)
    t = handle_task(k, r)
    before = k.instances.show(r["instance_id"])

    def crash(*_args, **_kwargs):
        raise RuntimeError("power cut while saving")
    monkeypatch.setattr(projections, "sync_timers", crash)
    with pytest.raises(RuntimeError):
        k.tasks.complete(t["id"], "department", {"result": "ok"})
    monkeypatch.undo()
    assert k.instances.show(r["instance_id"]) == before
    k.tasks.complete(t["id"], "department", {"result": "ok"})
    assert k.instances.show(r["instance_id"])["status"] == "completed"


def _race(*calls):
    """Run the calls at the same moment in threads; returns each one's result or exception."""
    import threading
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, fn):
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@on_both_databases
def test_two_users_completing_the_same_task_at_once_one_wins_one_conflicts(k):
    r = register(k)
    t = handle_task(k, r)
    outcomes = _race(lambda: k.tasks.complete(t["id"], "department", {"result": "甲"}),
                     lambda: k.tasks.complete(t["id"], "department", {"result": "乙"}))
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "dict"]
    done = [e for e in k.instances.show(r["instance_id"])["events"] if e["type"] == "task_completed"]
    assert len(done) == 2 and k.audit.verify() == []


@on_both_databases
def test_timer_firing_while_the_user_completes_never_applies_both(k, clock):
    r = register(k)
    t = handle_task(k, r)
    clock.advance(timedelta(days=1, seconds=1))
    outcomes = _race(lambda: k.tasks.complete(t["id"], "department", {"result": "踩点完成"}), k.timers.fire_due)
    shown = k.instances.show(r["instance_id"])
    fired = [e for e in shown["events"] if e["type"] == "timer_fired"]
    completed = [e for e in shown["events"] if e["type"] == "task_completed" and e["bpmn_id"] == "handle"]
    assert len(fired) + len(completed) == 1, outcomes
    assert shown["status"] == "completed" and k.audit.verify() == []
    if fired:
        assert isinstance(outcomes[0], Conflict)


def test_start_without_data_leaves_the_intake_form_to_the_starting_agent(k):
    r = k.instances.start("mini", "agent")
    assert [(t["bpmn_id"], t["assignee"]) for t in r["tasks"]] == [("register", "agent")]
    assert k.tasks.ready(actor="agent2", instance=r["instance_id"]) == []
    form = {f["id"]: f for f in k.tasks.ready(actor="agent", instance=r["instance_id"])[0]["form"]}
    assert form["severity"]["options"] == [{"id": "general", "label": "一般"}, {"id": "major", "label": "重大"}]
    assert form["customer_name"]["required"] and not form["contact_phone"]["required"]
    k.tasks.complete(r["tasks"][0]["id"], "agent", {"customer_name": "王五", "contact_phone": "13700000000", "divisor": 3,
                                              "deadline": (k.now() + timedelta(hours=2)).isoformat()})
    shown = k.instances.show(r["instance_id"])
    assert shown["customer"]["name"] == "王五" and shown["data"]["ratio"] == 33


def mirrored_rows(k, instance_id):
    """What the tables say is ready and waiting, beside what the stored workflow says."""
    from SpiffWorkflow.util.task import TaskState
    from engine.store.tables import HumanTask, Timer
    with k.db.reading() as s:
        ready = set(s.scalars(select(HumanTask.id).where(HumanTask.instance_id == instance_id,
                                                         HumanTask.state == "ready")))
        timers = {t.id: t.due_at for t in s.scalars(select(Timer).where(Timer.instance_id == instance_id))}
        wf = k.runner.load(s, s.get(Instance, instance_id))
    in_workflow = {str(t.id) for t in wf.get_tasks(state=TaskState.READY, manual=True)}
    waiting = {str(t.id): due for t, due, _ in projections.waiting_timers(wf)}
    return ready, in_workflow, timers, waiting


@on_both_databases
def test_complete_reads_task_instance_user_and_rows_at_once_and_keeps_the_tables_true(k):
    r = register(k)
    t = handle_task(k, r)
    ready, in_workflow, timers, waiting = mirrored_rows(k, r["instance_id"])
    assert ready == in_workflow == {t["id"]} and timers == waiting and len(timers) == 1
    before = k.instances.show(r["instance_id"])
    # Each refusal is decided on that one fetch and changes nothing.
    with pytest.raises(NotAllowed, match="unknown or inactive user 'nobody'"):
        k.tasks.complete(t["id"], "nobody", {"result": "x"})
    with pytest.raises(NotAllowed):
        k.tasks.complete(t["id"], "", {"result": "x"})
    with pytest.raises(NotFound):
        k.tasks.complete("not-a-task-id", "department", {"result": "x"})
    with pytest.raises(NotFound):
        k.tasks.complete("00000000-0000-4000-8000-000000000000", "department", {"result": "x"})
    assert k.instances.show(r["instance_id"])["events"] == before["events"]
    done = k.tasks.complete(t["id"], "department", {"result": "ok"})
    assert done["status"] == "completed" and done["tasks"] == [] and done["task"]["state"] == "completed"
    ready, in_workflow, timers, waiting = mirrored_rows(k, r["instance_id"])
    assert ready == in_workflow == set() and timers == waiting == {}
    with pytest.raises(Conflict, match="already completed by department"):
        k.tasks.complete(t["id"], "department", {"result": "again"})


@on_both_databases
def test_a_reading_session_never_writes(k):
    """Reads run without a transaction on PostgreSQL, so a change made in one must be refused, not kept."""
    r = register(k)
    with pytest.raises(RuntimeError, match="may not write"):
        with k.db.reading() as s:
            inst = s.get(Instance, r["instance_id"])
            inst.summary = "changed while reading"
            s.flush()
    assert k.instances.show(r["instance_id"])["summary"] != "changed while reading"


@on_both_databases
def test_a_step_writes_each_row_once_and_moves_the_version_by_one(k):
    """The task rows, timer rows and the instance are written with Core statements (engine.store.writes): one UPDATE
    of the instance under its version check, the ended row and the new rows once each, and nothing left for
    the ORM to flush again at commit."""
    from sqlalchemy import event
    r = register(k)
    with k.db.reading() as s:
        version = s.get(Instance, r["instance_id"]).lock_version
    seen = []

    def record(conn, cursor, statement, params, context, executemany):
        verb, _, rest = statement.lstrip().partition(" ")
        if verb in ("INSERT", "UPDATE", "DELETE"):
            table = rest.split()[1] if verb in ("INSERT", "DELETE") else rest.split()[0]
            seen.append((verb, table))
    event.listen(k.db.engine, "before_cursor_execute", record)
    try:
        t = handle_task(k, r)
        k.tasks.complete(t["id"], "department", {"result": "ok"})
    finally:
        event.remove(k.db.engine, "before_cursor_execute", record)
    assert seen.count(("UPDATE", "instances")) == 1
    assert seen.count(("UPDATE", "human_tasks")) == 1  # the completed row; no new task in this diagram
    assert seen.count(("DELETE", "timers")) == 1  # its boundary timer went with it
    with k.db.reading() as s:
        assert s.get(Instance, r["instance_id"]).lock_version == version + 1
    ready, in_workflow, timers, waiting = mirrored_rows(k, r["instance_id"])
    assert ready == in_workflow and timers == waiting
