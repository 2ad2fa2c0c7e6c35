"""Two scheduler processes on one PostgreSQL database fire every timer exactly once (T1 at scale).

~200 repair tickets are dispatched at the same moment, so their response timers (``timer_response_overdue``,
the work order not accepted 30 min after dispatch) all fall due together. Two separate OS processes then fire due timers on the same
database at the same time until none is due. Every timer must have fired once — one ``timer_fired`` audit
event per timer task, one re-dispatch and one supervisor warning per ticket — with both processes having
done part of the work and every audit chain whole.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.store.tables import AuditEvent, HumanTask, Timer
from tests.conftest import ROOT
from tests.factories import make_kefu

# The scheduler under test: the service's own scheduler process, configured by KEFU_* variables; with
# --json it prints each timer it fires as a JSON line, and --until-idle makes it exit once nothing is due.
SCHEDULER = [sys.executable, "-m", "engine.cli", "scheduler", "--until-idle", "--json"]
TICKETS = 200
pytestmark = pytest.mark.postgresql_only
PROCESSES = 2


def open_repair_tickets(k, n, threads=4):
    """``n`` repair tickets dispatched at the clock's moment (a few threads: the database waits overlap)."""
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda share: _open_repair_tickets(k, share),
                              [n // threads + (i < n % threads) for i in range(threads)]))
    return sorted(i for part in parts for i in part)


def _open_repair_tickets(k, n):
    data = {"customer_name": "星河物业管理有限公司", "contact_phone": "0755-88886666", "fault_symptom": "东门门禁无法刷卡",
            "location": "深圳市福田区福华路 1 号东门", "impact_scope": "东门全部住户", "emergency": False}
    arrival = (k.now() + timedelta(hours=2)).isoformat()
    ids = []
    for _ in range(n):
        r = k.instances.start("repair", "agent", data=data)
        dispatch = next(t for t in r["tasks"] if t["bpmn_id"] == "dispatch")
        k.tasks.complete(dispatch["id"], "agent", {"technician": "technician", "repair_requirement": "更换读卡器",
                                             "required_arrival_time": arrival})
        ids.append(r["instance_id"])
    return ids


def run_schedulers(db_url, now, logs, parties=PROCESSES, timeout=90):
    """Run ``parties`` scheduler processes at once until each exits; their JSON lines, one list per process.

    Their output goes to files in ``logs``, not pipes: a pipe drained one process at a time fills up while a
    busy process still writes, and that process then stalls holding the locks of its batch."""
    env = {**os.environ, "KEFU_DATABASE_URL": db_url, "KEFU_ENV": "test", "KEFU_CLOCK": now.isoformat(),
           "PYTHONUNBUFFERED": "1"}
    procs = []
    try:
        for n in range(parties):
            with open(logs / f"scheduler{n}.out", "w") as out, open(logs / f"scheduler{n}.err", "w") as err:
                procs.append(subprocess.Popen(SCHEDULER, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=err))
        give_up = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(timeout=max(1.0, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a scheduler process did not finish in {timeout} s:\n"
                                     + stderr_tails(logs, parties)) from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = []
    for n, p in enumerate(procs):
        assert p.returncode == 0, f"scheduler{n} exited {p.returncode}:\n" + stderr_tails(logs, parties)
        out = (logs / f"scheduler{n}.out").read_text()
        outputs.append([json.loads(line) for line in out.splitlines() if line.strip()])
        err = (logs / f"scheduler{n}.err").read_text()
        chatter = [line for line in err.splitlines() if " INFO " in line and " kefu." not in line]
        assert not chatter, f"scheduler{n} logs libraries' INFO to stderr: {chatter[:5]}"
    return outputs


def stderr_tails(logs, parties, chars=2000):
    return "\n".join(f"--- scheduler{n} stderr ---\n" + (logs / f"scheduler{n}.err").read_text()[-chars:]
                      for n in range(parties))


def test_two_scheduler_processes_fire_every_timer_exactly_once(pg_url, clock, tmp_path):
    k = make_kefu(pg_url, clock)
    try:
        instance_ids = open_repair_tickets(k, TICKETS)
        timers = k.timers.waiting()
        assert len(timers) == TICKETS and {t["bpmn_id"] for t in timers} == {"timer_response_overdue"}
        assert len({t["due_at"] for t in timers}) == 1, "all timers should fall due at the same moment"
        assert k.timers.fire_due() == []  # nothing is due yet

        now = clock.now() + timedelta(hours=24, seconds=1)
        outputs = run_schedulers(pg_url, now, tmp_path)

        # What each process says it fired: every ticket's timer, by one process only, both took part.
        claimed = [(f["instance_id"], f["timer"]) for out in outputs for f in out]
        assert Counter(claimed).most_common(1)[0][1] == 1, "a timer was reported fired twice"
        assert sorted(claimed) == sorted((i, "timer_response_overdue") for i in instance_ids)
        shares = [len(out) for out in outputs]
        assert all(shares), f"one scheduler did all the work {shares}; the test would prove nothing"

        # What the database says: one timer_fired event per timer task, nothing left due.
        with k.db.reading() as s:
            fired_per_task = dict(s.execute(
                select(AuditEvent.task_id, func.count()).where(AuditEvent.type == "timer_fired")
                .group_by(AuditEvent.task_id)).all())
            fired_per_instance = Counter(s.scalars(select(AuditEvent.instance_id)
                                                   .where(AuditEvent.type == "timer_fired")))
            left_due = s.scalar(select(func.count()).select_from(Timer).where(Timer.due_at < now,
                                                                              Timer.kind != "claim"))
            # (the owner's claim deadlines of the re-dispatch tasks, X1, are not BPMN timers: not counted)
            left = s.scalar(select(func.count()).select_from(Timer).where(Timer.kind != "claim"))
            created = Counter(s.execute(
                select(AuditEvent.instance_id, AuditEvent.bpmn_id).where(AuditEvent.type == "task_created",
                                                                         AuditEvent.bpmn_id.in_(
                                                                             ["redispatch", "overdue_warning"]))).all())
            tasks = Counter(s.execute(select(HumanTask.instance_id, HumanTask.bpmn_id, HumanTask.state,
                                             HumanTask.end_reason)
                                      .where(HumanTask.bpmn_id.in_(["redispatch", "overdue_warning",
                                                                    "accept_order"]))).all())
        assert len(fired_per_task) == TICKETS and set(fired_per_task.values()) == {1}, \
            f"timers fired more than once: {[t for t, n in fired_per_task.items() if n != 1][:5]}"
        assert fired_per_instance == Counter({i: 1 for i in instance_ids})
        assert left_due == 0 and left == 0

        # Each firing had its follow-up exactly once: re-dispatch (agent) and warning (supervisor) created,
        # the overdue work order cancelled by the timer.
        assert created == Counter({(i, b): 1 for i in instance_ids for b in ("redispatch", "overdue_warning")})
        assert tasks == Counter({(i, b, "ready", None): 1 for i in instance_ids
                                 for b in ("redispatch", "overdue_warning")}
                                | {(i, "accept_order", "cancelled", "timer"): 1 for i in instance_ids})
        assert k.audit.verify() == []
        assert k.timers.fire_due(now) == []
    finally:
        k.db.dispose()
