"""Scale-out under load: ``kefu web`` (gunicorn, several workers) and ``kefu scheduler`` processes on one
PostgreSQL database, concurrent API clients, a timer storm, and SIGKILL in the middle. Nothing is lost or
applied twice.

Set-up (bounded: ~``STORM`` seeded tickets, ``CLIENT_SECONDS`` of client load, loopback only):

- ``STORM`` repair work orders are dispatched at one moment (in-process, real diagrams): their response
  timers (``timer_response_overdue``, 30 min) all fall due together. The service clock (shared through the
  database, as ``kefu clock advance`` does) then runs live, first two minutes before that moment while the
  processes start, then three seconds before it when the clients begin: the storm breaks under load.
- ``kefu web --workers WORKERS --threads 2`` and two ``kefu scheduler`` processes, as the README describes.
- Agent clients (API tokens of ``agent``/``agent2``) open consultations with their intake form, promise a
  reply and relay the answer; every fourth promise is deliberately submitted twice at the same moment.
- Technician clients accept storm work orders while their timers fire: for each one either the acceptance
  or the timer wins, never both.
- Mid-storm, one scheduler and one gunicorn worker get SIGKILL; gunicorn replaces the worker, a third
  scheduler is started. Clients retry requests the killed worker dropped (a completion's retry that finds the
  task done checks who completed it; a dropped ticket start is not retried and is reconciled afterwards).

Afterwards: every acknowledged completion is in the audit trail exactly once and no task was completed twice,
no 5xx answer, every storm timer fired exactly once unless its work order was accepted first (never both),
nothing due is left, every instance's stored workflow agrees with its ``human_tasks`` and ``timers`` rows, and
``kefu audit verify`` passes. The figures are printed (``pytest -s``) and written to test-artifacts/load.json.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select, text
from sqlalchemy.orm import undefer

from engine.services import projections
from engine.store.tables import AuditEvent, HumanTask, Instance, Setting, Timer
from engine.services.context import CLOCK_OFFSET
from tests.conftest import ROOT
from tests.factories import make_kefu
from tests.pg import free_port
from tests.test_scheduler_pg import open_repair_tickets

pytestmark = pytest.mark.postgresql_only

STORM = int(os.environ.get("KEFU_LOAD_STORM", "300"))
CLIENT_SECONDS = float(os.environ.get("KEFU_LOAD_SECONDS", "25"))
WORKERS = 3
AGENT_CLIENTS = 6
TECH_CLIENTS = 2
ARTIFACTS = ROOT / "test-artifacts"
DROPPED = (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead, BrokenPipeError,
           TimeoutError, OSError)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return sorted(found)


class Api:
    """A loopback HTTP client that records every answer; ``call`` retries what a killed worker dropped."""

    def __init__(self, port: int):
        self.port = port
        self.lock = threading.Lock()
        self.statuses = Counter()
        self.server_errors = []
        self.dropped = []          # (method, path) of requests that lost their connection
        self.latencies = []

    def once(self, method, path, token, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        t0 = time.perf_counter()
        try:
            headers = {"Authorization": f"Bearer {token}"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        with self.lock:
            self.statuses[resp.status] += 1
            self.latencies.append(time.perf_counter() - t0)
            if resp.status >= 500:
                self.server_errors.append((method, path, resp.status, raw[:500]))
        return resp.status, (json.loads(raw) if raw else None)

    def call(self, method, path, token, body=None, retry=True):
        """(status, body, attempts); status None: dropped and not retried."""
        for attempt in range(1, 8):
            try:
                status, data = self.once(method, path, token, body)
                return status, data, attempt
            except DROPPED:
                with self.lock:
                    self.dropped.append((method, path))
                if not retry:
                    return None, None, attempt
                time.sleep(0.2 * attempt)
        raise AssertionError(f"{method} {path}: the server stayed unreachable")


class Load:
    """The clients and what they were told."""

    def __init__(self, api: Api, tokens: dict, offset: timedelta, stop_at: float):
        self.api, self.tokens, self.offset, self.stop_at = api, tokens, offset, stop_at
        self.lock = threading.Lock()
        self.acked = {}               # task id -> user whose completion the server acknowledged
        self.started = []             # instance ids of acknowledged ticket starts
        self.start_dropped = 0
        self.duplicates = []          # status pairs of completions submitted twice at once
        self.accepted, self.timer_won = [], []
        self.unexpected = []

    def now(self):
        return datetime.now(timezone.utc) + self.offset

    def complete(self, user, task_id, data):
        """Complete ``task_id`` as ``user``; True when the server acknowledged it (on any attempt)."""
        status, body, attempts = self.api.call("POST", f"/api/v1/tasks/{task_id}/complete", self.tokens[user],
                                               {"data": data})
        if status == 200:
            return self.ack(task_id, user, body)
        if status == 409 and attempts > 1:
            # The dropped attempt may have been applied before the worker died: the task says by whom.
            s, t, _ = self.api.call("GET", f"/api/v1/tasks/{task_id}", self.tokens[user])
            if s == 200 and t.get("state") == "completed" and t.get("completed_by") == user:
                return self.ack(task_id, user, None)
        return status, body

    def ack(self, task_id, user, body):
        with self.lock:
            self.acked[task_id] = user
        return 200, body

    def guard(self, target, *args):
        """A client thread: whatever it raises is recorded, not lost with the thread."""
        def run():
            try:
                target(*args)
            except Exception as exc:  # noqa: BLE001 - asserted empty by the test
                with self.lock:
                    self.unexpected.append(("client crashed", repr(exc)))
        return threading.Thread(target=run, daemon=True)

    def agent(self, user, n):
        i = 0
        while time.monotonic() < self.stop_at:
            i += 1
            data = {"customer_name": f"负载客户{n}-{i}", "contact_phone": f"139{n:02d}{i:06d}", "region": "上海",
                    "channel": "phone", "question": "报警器每月服务费包含哪些项目？", "answered_on_spot": False}
            status, r, _ = self.api.call("POST", "/api/v1/tickets", self.tokens[user],
                                         {"kind": "consultation", "data": data}, retry=False)
            if status is None:
                with self.lock:
                    self.start_dropped += 1
                continue
            if status != 201:
                self.unexpected.append(("start", status, r))
                continue
            with self.lock:
                self.started.append(r["instance_id"])
            promise = next(t for t in r["tasks"] if t["bpmn_id"] == "promise_reply")
            form = {"promised_reply_time": (self.now() + timedelta(days=1)).isoformat(), "needs_department": False}
            if i % 4 == 0:  # the same submission twice at the same moment: exactly one may apply
                with ThreadPoolExecutor(2) as pool:
                    both = list(pool.map(lambda _: self.complete(user, promise["id"], form), range(2)))
                with self.lock:
                    self.duplicates.append(sorted(s for s, _ in both))
                done = next((b for s, b in both if s == 200 and b), None)
            else:
                status, done = self.complete(user, promise["id"], form)
                if status != 200:
                    self.unexpected.append(("promise_reply", status, done))
                    continue
            if done is None:  # acknowledged on a retry: read the next task from the instance
                s, shown, _ = self.api.call("GET", f"/api/v1/instances/{r['instance_id']}", self.tokens[user])
                ready = [t for t in shown["tasks"] if t["state"] == "ready"]
            else:
                ready = done["tasks"]
            relay = next((t for t in ready if t["bpmn_id"] == "relay_answer"), None)
            if relay is None:
                self.unexpected.append(("no relay_answer", ready))
                continue
            status, body = self.complete(user, relay["id"], {"answer": "月费含监控、巡检与一次免费维修。",
                                                             "satisfied": True})
            if status != 200:
                self.unexpected.append(("relay_answer", status, body))

    def technician(self, queue):
        while time.monotonic() < self.stop_at:
            with self.lock:
                if not queue:
                    return
                instance_id, task_id = queue.pop()
            status, body = self.complete("technician", task_id,
                                         {"expected_arrival_time": (self.now() + timedelta(hours=1)).isoformat()})
            with self.lock:
                if status == 200:
                    self.accepted.append(instance_id)
                elif status == 409 and body["error"]["code"] == "conflict":
                    self.timer_won.append(instance_id)  # the timer cancelled the work order first
                else:
                    self.unexpected.append(("accept_order", status, body))


def set_clock(k, live_now: datetime) -> timedelta:
    """Make the shared service clock show ``live_now`` now and run on in real time."""
    offset = live_now - datetime.now(timezone.utc)
    with k.db.unit_of_work() as s:
        s.merge(Setting(key=CLOCK_OFFSET, value=repr(offset.total_seconds())))
    return offset


def consistency_problems(k) -> list[str]:
    """Every instance reloaded: ready user tasks = its ready human_tasks rows, waiting timers = its timers rows
    (same due times), status completed exactly when the workflow is."""
    problems = []
    with k.db.reading() as s:
        ready_rows = defaultdict(set)
        for iid, tid in s.execute(select(HumanTask.instance_id, HumanTask.id).where(HumanTask.state == "ready")):
            ready_rows[iid].add(tid)
        timer_rows, claim_rows = defaultdict(dict), {}
        for iid, tid, due, kind, task in s.execute(select(Timer.instance_id, Timer.id, Timer.due_at, Timer.kind,
                                                          Timer.attached_task_id)):
            if kind == "claim":  # X1: an owner's claim deadline, not a BPMN timer
                claim_rows[task] = due
            else:
                timer_rows[iid][tid] = due
        offers = dict(s.execute(select(HumanTask.id, HumanTask.offer_due).where(
            HumanTask.state == "ready", HumanTask.offer_due.is_not(None))).all())
        if offers != claim_rows:
            problems.append(f"offered tasks {offers} but claim rows {claim_rows}")
        for inst in s.scalars(select(Instance).options(undefer(Instance.state)).order_by(Instance.id)):
            wf = k.runner.load(s, inst)
            ready = {str(t.id) for t in wf.get_tasks(state=TaskState.READY, manual=True)}
            if ready != ready_rows.get(inst.id, set()):
                problems.append(f"{inst.ticket_no}: ready tasks {sorted(ready)} but rows "
                                f"{sorted(ready_rows.get(inst.id, set()))}")
            waiting = {str(t.id): due for t, due, _ in projections.waiting_timers(wf)}
            if waiting != timer_rows.get(inst.id, {}):
                problems.append(f"{inst.ticket_no}: waiting timers {waiting} but rows {timer_rows.get(inst.id)}")
            if (inst.status == "completed") != wf.is_completed():
                problems.append(f"{inst.ticket_no}: status {inst.status}, workflow completed {wf.is_completed()}")
    return problems


def test_web_workers_and_schedulers_lose_nothing_under_load_and_sigkill(pg_url, clock, tmp_path):
    began = time.monotonic()
    k = make_kefu(pg_url, clock)
    procs = []
    try:
        storm_ids = open_repair_tickets(k, STORM)
        with k.db.reading() as s:
            accept = dict(s.execute(select(HumanTask.instance_id, HumanTask.id)
                                    .where(HumanTask.bpmn_id == "accept_order", HumanTask.state == "ready")).all())
        (due,) = {t["due_at"] for t in k.timers.waiting()}
        due = datetime.fromisoformat(due)
        tokens = {u: k.users.create_token(u, "load test")["token"] for u in ("agent", "agent2", "technician")}
        seeded_s = time.monotonic() - began

        # The processes, as the README's scale-out section runs them.
        set_clock(k, due - timedelta(minutes=2))
        port = free_port()
        env = {**os.environ, "KEFU_DATABASE_URL": pg_url, "KEFU_ENV": "test", "KEFU_SECRET_KEY": "load-test",
               "PYTHONUNBUFFERED": "1"}
        env.pop("KEFU_CLOCK", None)

        def spawn(name, *argv):
            # Each process names its connections (application_name), so the test can see what it is doing.
            named = {**env, "KEFU_DATABASE_URL": f"{pg_url}?application_name=kefu-{name}"}
            with open(tmp_path / f"{name}.log", "w") as log:  # the child keeps its own descriptor
                p = subprocess.Popen([sys.executable, "-m", "engine.cli", *argv], cwd=ROOT, env=named,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            procs.append((name, p))
            return p

        web = spawn("web", "web", "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS), "--threads", "2")
        schedulers = [spawn(f"scheduler{i}", "scheduler", "--json") for i in (1, 2)]
        api = Api(port)
        give_up = time.monotonic() + 60
        while True:
            assert web.poll() is None, (tmp_path / "web.log").read_text()[-3000:]
            try:
                if api.once("GET", "/api/v1/tasks", tokens["agent"])[0] == 200 and len(children(web.pid)) == WORKERS:
                    break
            except DROPPED:
                pass
            assert time.monotonic() < give_up, "kefu web did not come up in 60 s"
            time.sleep(0.3)
        api.statuses.clear()
        api.latencies.clear()

        # The storm breaks three seconds after the clients start.
        offset = set_clock(k, due - timedelta(seconds=3))
        storm_start = time.monotonic() + 3
        load = Load(api, tokens, offset, stop_at=time.monotonic() + CLIENT_SECONDS)
        queue = [(i, accept[i]) for i in storm_ids[: STORM // 2]]
        random.Random(8).shuffle(queue)
        threads = [load.guard(load.agent, ("agent", "agent2")[n % 2], n) for n in range(AGENT_CLIENTS)]
        threads += [load.guard(load.technician, queue) for _ in range(TECH_CLIENTS)]
        client_start = time.monotonic()
        for t in threads:
            t.start()

        def fired():
            with k.db.reading() as s:
                return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.type == "timer_fired"))

        def writing(name):
            """Whether process ``name`` is inside a writing transaction (it holds a transaction id lock)."""
            with k.db.reading() as s:
                return bool(s.scalar(text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE a.application_name = :n AND l.locktype = 'transactionid'"), {"n": f"kefu-{name}"}))

        # SIGKILL one scheduler and one web worker in the middle of the storm and the client load: the
        # scheduler while it holds a claimed batch of due timers (a batch commits only when whole).
        while time.monotonic() < storm_start + 0.5 or (not writing("scheduler1")
                                                       and time.monotonic() < storm_start + 15):
            time.sleep(0.02)
        killed_mid_batch = writing("scheduler1")
        fired_at_kill = fired()
        victim = children(web.pid)[0]
        os.kill(schedulers[0].pid, signal.SIGKILL)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic() - client_start
        schedulers.append(spawn("scheduler3", "scheduler", "--json"))

        for t in threads:
            t.join(CLIENT_SECONDS + 90)
        assert not any(t.is_alive() for t in threads), "a client did not finish"
        client_seconds = time.monotonic() - client_start

        # Let the surviving and the new scheduler finish what is due.
        give_up = time.monotonic() + 90
        while True:
            with k.db.reading() as s:
                left = s.scalar(select(func.count()).select_from(Timer).where(Timer.due_at <= load.now()))
            if left == 0:
                break
            assert time.monotonic() < give_up, f"{left} due timers never fired"
            time.sleep(0.2)
        storm_seconds = time.monotonic() - storm_start
        workers_after = children(web.pid)
        assert victim not in workers_after and len(workers_after) == WORKERS, "gunicorn did not replace the worker"
        for name, p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        # The survivor stops cleanly on SIGTERM; the late one may still be starting up when it comes.
        assert schedulers[1].returncode == 0, (tmp_path / "scheduler2.log").read_text()[-2000:]
        assert schedulers[2].returncode in (0, -signal.SIGTERM), (tmp_path / "scheduler3.log").read_text()[-2000:]

        # ---- nothing lost, nothing applied twice
        assert api.server_errors == [], api.server_errors[:5]
        assert load.unexpected == [], load.unexpected[:5]
        with k.db.reading() as s:
            completions = Counter(s.scalars(select(AuditEvent.task_id).where(AuditEvent.type == "task_completed")))
            completed_by = dict(s.execute(select(AuditEvent.task_id, AuditEvent.actor)
                                          .where(AuditEvent.type == "task_completed")).all())
            timer_fired = Counter(s.scalars(select(AuditEvent.task_id).where(AuditEvent.type == "timer_fired")))
            fired_in = Counter(s.scalars(select(AuditEvent.instance_id).where(AuditEvent.type == "timer_fired")))
            accepted_in = Counter(s.scalars(select(HumanTask.instance_id).where(
                HumanTask.bpmn_id == "accept_order", HumanTask.state == "completed")))
            consultations = s.scalar(select(func.count()).select_from(Instance).where(Instance.kind == "consultation"))
        twice = [t for t, n in completions.items() if n > 1]
        assert twice == [], f"tasks completed more than once: {twice[:5]}"
        missing = [t for t in load.acked if completions.get(t) != 1 or completed_by[t] != load.acked[t]]
        assert missing == [], f"acknowledged completions not applied exactly once: {missing[:5]}"
        # Submitted twice at once: one applies, the other is refused (a pair hit by the kill may see its
        # dropped first attempt acknowledged on the retry; the audit counts above still say "once").
        assert load.duplicates and all(200 in pair for pair in load.duplicates), load.duplicates
        assert sum(pair == [200, 409] for pair in load.duplicates) >= len(load.duplicates) - len(api.dropped)
        assert set(timer_fired.values()) == {1}, "a timer fired twice"
        for i in storm_ids:  # the timer or the acceptance, exactly one of them
            assert fired_in[i] + accepted_in[i] == 1, (i, fired_in[i], accepted_in[i])
        assert sorted(load.accepted) == sorted(i for i in storm_ids if accepted_in[i])
        assert sum(fired_in[i] for i in storm_ids) >= STORM // 2, "the storm was too small to prove anything"
        assert killed_mid_batch, "scheduler1 was never seen holding a batch; the kill would prove little"
        assert fired_at_kill < sum(fired_in.values()), "the kill came after the storm"
        assert killed_at < client_seconds - 5, "the kill came after the clients"
        assert len(load.started) <= consultations <= len(load.started) + load.start_dropped
        assert consistency_problems(k) == []
        verify = subprocess.run([sys.executable, "-m", "engine.cli", "audit", "verify"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]

        lat = sorted(api.latencies)
        figures = {
            "storm_timers": STORM, "web_workers": WORKERS, "schedulers": "2 (+1 after the kill)",
            "clients": AGENT_CLIENTS + TECH_CLIENTS, "client_seconds": round(client_seconds, 1),
            "tickets_started": len(load.started), "completions_acknowledged": len(load.acked),
            "completions_per_second": round(len(load.acked) / client_seconds, 1),
            "duplicate_submissions": len(load.duplicates), "work_orders_accepted_before_their_timer":
                len(load.accepted), "timers_fired": sum(fired_in.values()),
            "storm_done_seconds": round(storm_seconds, 1), "killed_at_seconds": round(killed_at, 1),
            "timers_fired_before_kill": fired_at_kill, "scheduler_killed_mid_batch": killed_mid_batch,
            "fired_per_scheduler": {n: (tmp_path / f"{n}.log").read_text().count('"fired_at"')
                                    for n in ("scheduler1", "scheduler2", "scheduler3")}, "requests": sum(api.statuses.values()),
            "requests_dropped_by_the_kill": len(api.dropped), "statuses": dict(sorted(api.statuses.items())),
            "latency_p50_ms": round(lat[len(lat) // 2] * 1000, 1),
            "latency_p95_ms": round(lat[int(len(lat) * 0.95)] * 1000, 1),
            "seeding_seconds": round(seeded_s, 1), "total_seconds": round(time.monotonic() - began, 1)}
        print("\nload test:", json.dumps(figures, ensure_ascii=False))
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "load.json").write_text(json.dumps(figures, ensure_ascii=False, indent=2))
    finally:
        for _name, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        k.db.dispose()
