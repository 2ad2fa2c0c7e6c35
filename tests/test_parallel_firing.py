"""T-timers at scale: the engine work of a firing runs outside the write lock, on several processes at once, and
every result is applied only to the version of the instance it was computed from (engine.services.timers,
engine.services.firing). Correctness only: stale versions, a killed firing process, two schedulers."""
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from engine import Clock
from engine.services import firing
from engine.services.scheduler import TimerScheduler
from tests.factories import diagram, make_kefu
from tests.test_engine import handle_task, register
from tests.test_timers import fired_counts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def storm(db_url, monkeypatch):
    """A running clock (other processes share it, offset included) and ``make(n)``: n tickets whose deadline has
    just passed. Every sweep here reads ahead, however few are due (a small sweep otherwise fires up to
    ``SMALL_SWEEP`` instances in one unit of work): these tests are about the batches."""
    from engine.services import timers
    monkeypatch.setattr(timers, "SMALL_SWEEP", 0)
    k = make_kefu(db_url, Clock(), deploy=(diagram("mini.bpmn"),), demo=True)

    def make(n: int) -> list[dict]:
        due = k.now() + timedelta(hours=1)  # one moment for all; then the shared clock moves past it
        made = [register(k, deadline=due.isoformat()) for _ in range(n)]
        k.time.advance_clock(timedelta(hours=1, seconds=1))  # every process reads the offset (KEFU_ENV=test)
        assert k.timers.next_due() < k.now()
        return made

    k.make = make
    yield k
    k.db.dispose()


def assert_each_fired_once(k, made):
    assert sorted(fired_counts(k).values()) == [1] * len(made)
    assert k.timers.waiting() == [] and k.timers.fire_due() == []
    assert k.audit.verify() == []


def test_a_storm_is_fired_by_several_processes_each_timer_once(storm):
    made = storm.make(24)
    real_fire_due, here = storm.timers.fire_due, []

    def fire_due_here(**kw):
        if kw.get("reverse"):  # no help with the others' shards here: they fire their own
            return []
        out = real_fire_due(**kw)
        here.extend(out)
        return out

    storm.timers.fire_due = fire_due_here
    fired = firing.fire_storm(storm.ctx, storm.timers, 3)
    assert_each_fired_once(storm, made)
    assert 0 < len(here) < len(made)  # the two other processes fired their shares …
    assert sorted(f["instance_id"] for f in fired) == sorted(r["instance_id"] for r in made)  # … and said so


def test_the_scheduler_fires_a_slow_processs_shard_from_its_far_end(storm, monkeypatch):
    """A firing process that has not started firing (still importing, or stuck) holds nobody up: having fired
    its own shard, the scheduler fires the others' from the latest due back, and every timer fires once."""
    made = storm.make(12)
    slow = []

    def start_slow(ctx, n):
        slow.extend(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"]) for _ in range(1, n))
        return slow

    monkeypatch.setattr(firing, "start_helpers", start_slow)
    from engine.services import timers
    monkeypatch.setattr(timers, "FIRE_BATCH", 2)  # batches of two: the order of the batches shows
    real_fire_due, reversed_calls = storm.timers.fire_due, []

    def fire_due(**kw):
        out = real_fire_due(**kw)
        if kw.get("reverse"):
            reversed_calls.append((kw["shard"], [f["instance_id"] for f in out]))
        return out

    storm.timers.fire_due = fire_due
    fired = firing.fire_storm(storm.ctx, storm.timers, 3)
    assert [shard for shard, _ids in reversed_calls] == [(1, 3), (2, 3)]
    for (i, n), ids in reversed_calls:
        shard = sorted((r["instance_id"] for r in made if r["instance_id"] % n == i), reverse=True)
        assert sorted(ids, reverse=True) == shard  # all of it …
        assert set(ids[:2]) == set(shard[:2])  # … the latest due (here: the highest ids) first
    assert sorted(f["instance_id"] for f in fired) == sorted(r["instance_id"] for r in made)
    assert_each_fired_once(storm, made)


def test_a_killed_firing_process_loses_nothing(storm):
    made = storm.make(16)
    helpers = firing.start_helpers(storm.ctx, 3)
    helpers[0].send_signal(signal.SIGKILL)  # dies before (or while) firing its shard
    try:
        fired_here = storm.timers.fire_due(shard=(0, 3))
    finally:
        fired_here += firing.wait_for(helpers)
    fired_here += storm.timers.fire_due()  # the scheduler's sweep after its helpers: the dead one's shard
    assert helpers[0].returncode == -signal.SIGKILL
    assert_each_fired_once(storm, made)
    shard1 = [r for r in made if r["instance_id"] % 3 == 1]
    assert {f["instance_id"] for f in fired_here} >= {r["instance_id"] for r in shard1}


def test_two_scheduler_processes_on_one_storm_fire_each_timer_once(storm):
    made = storm.make(30)
    env = {**os.environ, "KEFU_DATABASE_URL": storm.config.database_url, "KEFU_ENV": "test",
           "KEFU_FIRE_PROCESSES": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "engine.cli", "timers", "fire-due", "--json"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert_each_fired_once(storm, made)


def test_a_firing_computed_on_a_version_changed_meanwhile_is_redone_never_saved_over_it(storm):
    """Between the engine work (no lock) and its apply, the department completes one ticket's task: the firing
    computed on the older version is thrown away, never saved over the completion; the instance is read again
    and has nothing due any more. The other tickets' timers fire once."""
    made = storm.make(3)
    target = made[1]
    task = handle_task(storm, target)
    real_prepare, calls = storm.timers._prepare, []

    def prepare_then_someone_completes(*args):
        out = real_prepare(*args)
        calls.append(sorted(p.id for p in out[1]))
        if len(calls) == 1:
            storm.tasks.claim(task["id"], "department")
            storm.tasks.complete(task["id"], "department", {"result": "已处理"})
        return out

    storm.timers._prepare = prepare_then_someone_completes
    fired = storm.timers.fire_due()
    assert len(calls) == 2 and calls[1] == []  # read again: nothing due on it any more
    assert calls[0] == sorted(r["instance_id"] for r in made)
    assert sorted(f["instance_id"] for f in fired) == sorted(r["instance_id"] for r in made if r is not target)
    assert sorted(fired_counts(storm).values()) == [1, 1]
    assert storm.timers.waiting() == [] and storm.audit.verify() == []
    shown = storm.instances.show(target["ticket_no"])
    assert shown["status"] == "completed"
    with storm.db.reading() as s:
        from sqlalchemy import select

        from engine.store.tables import AuditEvent
        types = list(s.scalars(select(AuditEvent.type).where(AuditEvent.instance_id == target["instance_id"])))
    assert "task_completed" in types and "timer_fired" not in types


def test_a_firing_is_applied_only_to_the_workflow_version_it_was_computed_from(storm):
    """Another writer changes the workflow itself (its data) and keeps the timer waiting, between the engine
    work and the apply: the firing is computed again on the new version, and the change survives."""
    from engine.services.context import SYSTEM
    made = storm.make(2)
    target = made[0]
    real_prepare, calls = storm.timers._prepare, []

    def prepare_then_another_writer(*args):
        out = real_prepare(*args)
        calls.append(sorted(p.id for p in out[1]))
        if len(calls) == 1:
            runner = storm.tasks.runner
            with storm.db.unit_of_work() as s:
                inst = storm.ctx.instance(s, target["ticket_no"], with_state=True)
                wf = runner.load(s, inst, change=True)
                for t in wf.get_tasks():
                    t.data["changed_meanwhile"] = "yes"
                runner.save(s, inst, wf, [], SYSTEM, None, None)
        return out

    storm.timers._prepare = prepare_then_another_writer
    fired = storm.timers.fire_due()
    assert calls == [sorted(r["instance_id"] for r in made), [target["instance_id"]]]
    assert sorted(f["instance_id"] for f in fired) == sorted(r["instance_id"] for r in made)
    assert_each_fired_once(storm, made)
    assert storm.instances.show(target["ticket_no"])["data"].get("changed_meanwhile") == "yes"


def test_the_scheduler_fans_out_only_for_a_storm_on_a_shared_database(storm, monkeypatch):
    from engine import Config, Kefu
    monkeypatch.setenv("KEFU_FIRE_PROCESSES", "2")
    assert firing.processes_wanted() == 2 and firing.can_fan_out(storm.ctx)
    monkeypatch.setenv("KEFU_FIRE_PROCESSES", "zwei")
    assert firing.processes_wanted() == 1
    monkeypatch.setenv("KEFU_FIRE_PROCESSES", "2")
    monkeypatch.setattr(firing, "STORM", 10)
    started = []
    real_start = firing.start_helpers
    monkeypatch.setattr(firing, "start_helpers", lambda ctx, n: started.append(n) or real_start(ctx, n))
    made = storm.make(12)
    sched = TimerScheduler(storm, sweep_seconds=60)
    sched.scheduler.start()  # the jobs are not needed: one sweep by hand
    try:
        assert sched.tick() > 0
    finally:
        sched.shutdown()
    assert started == [2]
    assert_each_fired_once(storm, made)
    # (each Kefu below makes its clock the process's clock: after the storm's checks)
    pinned = Kefu(Config(database_url=storm.config.database_url, env="test"),
                  clock=Clock(pinned=storm.now()))
    assert not firing.can_fan_out(pinned.ctx)  # a pinned clock lives in this process only
    pinned.db.dispose()
    memory = Kefu(Config(database_url="sqlite://", env="test"), clock=Clock())
    assert not firing.can_fan_out(memory.ctx)


def test_fire_due_shard_is_checked_in_the_cli(storm):
    env = {**os.environ, "KEFU_DATABASE_URL": storm.config.database_url, "KEFU_ENV": "test"}
    for bad in ("3/3", "x/2", "1", "-1/2"):
        p = subprocess.run([sys.executable, "-m", "engine.cli", "timers", "fire-due", "--shard", bad], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "--shard" in p.stderr + p.stdout and "Traceback" not in p.stderr


@pytest.mark.postgresql_only
def test_a_scheduler_claims_one_batch_on_postgresql_and_no_more(pg_url):
    """The claims (session advisory locks) cover the batch being computed, never the other candidates it read:
    another scheduler takes those meanwhile; a claim ends with the batch."""
    from sqlalchemy import text

    from engine.services.timers import FIRE_BATCH
    k = make_kefu(pg_url, Clock(), deploy=(diagram("mini.bpmn"),), demo=False)
    try:
        def held(conn):
            return conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")).scalar()

        with k.db.read_engine.connect() as probe:
            with k.timers._claims() as claim_a, k.timers._claims() as claim_b:
                ids = list(range(1, 4 * FIRE_BATCH + 1))
                first = claim_a(ids, FIRE_BATCH)
                assert first == ids[:FIRE_BATCH] and held(probe) == FIRE_BATCH
                second = claim_b(ids, FIRE_BATCH)  # another scheduler: the next batch, not the first again
                assert second == ids[FIRE_BATCH:2 * FIRE_BATCH] and held(probe) == 2 * FIRE_BATCH
            assert held(probe) == 0
    finally:
        k.db.dispose()


def _fired_story(k, monkeypatch, how: str) -> list[str]:
    """Three tickets whose deadline passed, fired by one sweep (``how``: computed "ahead" and applied, computed
    "in the lock" after a read ahead, or a "small" sweep's one unit of work): their trails, rows and workflow
    data as text (ids, ticket numbers and times left out)."""
    import re

    from sqlalchemy import select

    from engine.services import timers
    from engine.store.tables import HumanTask, Timer
    in_lock, prepared = [], []
    real_fire_in, real_prepare = k.timers._fire_in, k.timers._prepare
    monkeypatch.setattr(k.timers, "_fire_in", lambda s, i, now, **kw: in_lock.append(i) or real_fire_in(s, i, now, **kw))
    monkeypatch.setattr(k.timers, "_prepare", lambda *a, **kw: prepared.append(1) or real_prepare(*a, **kw))
    if how == "in the lock":
        monkeypatch.setattr(k.timers, "_project", lambda s, p, now: None)
    if how == "small":
        monkeypatch.setattr(timers, "SMALL_SWEEP", 3)
    made = k.make(3)
    fired = k.timers.fire_due()
    assert sorted(f["instance_id"] for f in fired) == sorted(r["instance_id"] for r in made)
    assert (in_lock == []) is (how == "ahead")  # computed ahead: nothing is left to do in the lock
    assert (prepared == []) is (how == "small")  # a small sweep reads nothing ahead
    assert k.timers.fire_due() == [] and k.audit.verify() == []
    out = []
    for r in made:
        shown = k.instances.show(r["ticket_no"])
        with k.db.reading() as s:
            rows = [(t.bpmn_id, t.state, t.role, t.assignee, t.end_reason) for t in s.scalars(
                select(HumanTask).where(HumanTask.instance_id == r["instance_id"]).order_by(HumanTask.created_at))]
            rows += [(t.bpmn_id, t.kind) for t in s.scalars(select(Timer).where(
                Timer.instance_id == r["instance_id"]))]
        events = [(e["type"], e.get("bpmn_id"), e.get("actor")) for e in shown["events"]]
        text = repr((shown["status"], shown["data"], shown.get("clocks"), events, rows))
        out.append(re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d{4}-\d\d-\d\dT[0-9:.+]+|[A-Z]+\d{8}-\d{4}|\d+", "#", text))
    return out


def test_a_firing_saved_from_its_computation_ahead_writes_what_a_save_in_the_lock_writes(storm, monkeypatch):
    """The save of a firing (rows, audit events, clocks, the instance's columns) is computed on the reading
    side and only written in the lock; the result is the one a save computed inside the lock gives."""
    ahead = _fired_story(storm, monkeypatch, "ahead")
    monkeypatch.undo()
    monkeypatch.setattr("engine.services.timers.SMALL_SWEEP", 0)
    in_lock = _fired_story(storm, monkeypatch, "in the lock")
    assert ahead == in_lock
    monkeypatch.undo()
    assert _fired_story(storm, monkeypatch, "small") == ahead  # a small sweep's one unit of work: the same


def test_a_few_due_instances_fire_in_one_unit_of_work_and_more_in_batches_read_ahead(storm, monkeypatch):
    from engine.services import timers
    monkeypatch.setattr(timers, "SMALL_SWEEP", 3)
    real_prepare, prepared = storm.timers._prepare, []
    monkeypatch.setattr(storm.timers, "_prepare", lambda *a, **kw: prepared.append(1) or real_prepare(*a, **kw))
    few = storm.make(3)
    assert sorted(f["instance_id"] for f in storm.timers.fire_due()) == sorted(r["instance_id"] for r in few)
    assert prepared == []
    more = storm.make(4)  # one more than a small sweep fires: its unit of work rolls back, the batches fire all
    assert sorted(f["instance_id"] for f in storm.timers.fire_due()) == sorted(r["instance_id"] for r in more)
    assert prepared and storm.timers.fire_due() == [] and storm.audit.verify() == []


def test_a_small_sweep_that_fails_writes_nothing_and_the_batches_fire_the_rest(storm, monkeypatch, caplog):
    """One instance whose state cannot be restored: the small sweep's unit of work rolls back as a whole, the
    batch path fires the other two and logs the broken one, which stays due."""
    from sqlalchemy import text

    from engine.services import timers
    monkeypatch.setattr(timers, "SMALL_SWEEP", 3)
    made = storm.make(3)
    broken = made[1]["instance_id"]
    with storm.db.unit_of_work() as s:  # a state nobody can load; the version moves on, as any writer's does
        s.execute(text("UPDATE instances SET state = '{not json', lock_version = lock_version + 1 "
                       "WHERE id = :i"), {"i": broken})
    fired = storm.timers.fire_due()
    assert sorted(f["instance_id"] for f in fired) == sorted(r["instance_id"] for r in made if r["instance_id"] != broken)
    assert [w["instance_id"] for w in storm.timers.waiting()] == [broken] and storm.audit.verify() == []
    assert f"instance {broken}" in caplog.text


def test_the_engine_steps_and_the_save_of_a_firing_share_one_instant(storm, monkeypatch):
    """Computed outside any unit of work, a firing still reads the clock once: what its engine steps read (the
    diagrams' ``now()``, SpiffWorkflow's timer code) is the instant of its rows and of all its audit events, as
    in a unit of work, so a replay pinned to the events' times computes what the firing did."""
    from sqlalchemy import select

    from engine import clock
    from engine.store.tables import AuditEvent
    made = storm.make(3)
    with storm.db.reading() as s:
        before = {r["instance_id"]: s.scalar(select(AuditEvent.seq).where(
            AuditEvent.instance_id == r["instance_id"]).order_by(AuditEvent.seq.desc()).limit(1)) for r in made}
    runner, seen = storm.timers.runner, []
    real_run = runner.run

    def run(wf):
        seen.append(clock.now())  # what a script or SpiffWorkflow's timer code reads during the engine steps
        time.sleep(0.002)  # the save is computed a moment later
        return real_run(wf)

    monkeypatch.setattr(runner, "run", run)
    assert len(storm.timers.fire_due()) == 3
    with storm.db.reading() as s:
        ats = [set(s.scalars(select(AuditEvent.at).where(AuditEvent.instance_id == r["instance_id"],
                                                         AuditEvent.seq > before[r["instance_id"]])))
               for r in made]
    assert all(len(a) == 1 for a in ats), ats
    assert sorted(a.pop() for a in ats) == sorted(seen)
