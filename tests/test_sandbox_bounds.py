"""Hard bounds on diagram code (issue 19): whatever passes the check, one evaluation takes at most
``MAX_SECONDS`` (5 s) and ``MAX_MEMORY`` (256 MB), in a worker process the service kills and replaces, while
the service itself goes on answering; a bound that trips is an incident on the ticket, retried once the
diagram or the data is fixed, and a clear failure in the designer's check."""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from engine import DefinitionError
from engine import clock as engine_clock
from engine.bpmn import sandbox as scripting
from engine.bpmn import screen, workers
from engine.bpmn.lint import lint_diagram
from engine.bpmn.sandbox import BoundedEnvironment, RestrictedEnvironment, ScriptRejected
from engine.bpmn.testrun import test_run_xml as run_xml
from tests.test_sandbox import ESCAPES, HUGE_AT_RUN_TIME
from tests.test_sandbox_designer import MINI, script
from tests.webclient import Web

# The abuses of the issue, each passing the check before deploy.
MEMORY = "a = list(range(100000))\nx = len([" + ", ".join(["*a"] * 2000) + "])"   # 1.6 GB in one C call
DOUBLING = "l = [1]\nfor i in range(40):\n    l = [*l, *l]"
SLOW_COUNT = ("a = [i + 1 for i in range(100000)]\nc = [i + 1 for i in range(100000)]\n"
              "b = [a for i in range({n})]\nn = b.count(c)\na = b = c = 0")  # one C call: ~2 ms per item of b
HUGE_NUMBER = "x = 9 ** 5000"


def resident() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def started_worker(env: BoundedEnvironment) -> None:
    """Make sure a worker runs already (the first one takes a second or two to start on a busy machine)."""
    ctx = {}
    env.execute("x = [i for i in range(3)]", ctx)
    assert ctx["x"] == [0, 1, 2]


class Healthz:
    """``/healthz`` asked again and again from another thread (Flask's test client), its slowest answer kept."""

    def __init__(self, kefu):
        self.client = Web(kefu).client
        self.slowest, self.answers, self.stop = 0.0, 0, threading.Event()
        self.thread = threading.Thread(target=self._ask, daemon=True)

    def _ask(self):
        while not self.stop.is_set():
            started = time.perf_counter()
            r = self.client.get("/healthz")
            assert r.status_code == 200
            self.slowest = max(self.slowest, time.perf_counter() - started)
            self.answers += 1
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


# ---------------------------------------------------------------- the abuses, each stopped
def test_memory_piled_up_in_one_builtin_call_is_refused_and_the_service_keeps_its_memory():
    assert screen.check(MEMORY, "exec") is None  # the check before deploy lets it through
    env = BoundedEnvironment()
    started_worker(env)
    before, started = resident(), time.perf_counter()
    with pytest.raises(ScriptRejected, match=r"too much memory \(more than 256 MB\)"):
        env.execute(MEMORY, {})
    assert time.perf_counter() - started < 10
    assert resident() - before < 64 * 2 ** 20  # the 1.6 GB were never taken here
    ctx = {}
    env.execute("y = sorted([3, 1, 2])", ctx)  # the next evaluation has a worker again
    assert ctx["y"] == [1, 2, 3]


@pytest.mark.parametrize("env", [RestrictedEnvironment(), BoundedEnvironment()], ids=["in-process", "bounded"])
def test_a_list_doubled_by_star_unpacking_in_a_loop_stops_at_the_size_limit(env):
    assert screen.check(DOUBLING, "exec") is None
    with pytest.raises(ScriptRejected, match=r"'\*' unpacking would be too large"):
        env.execute(DOUBLING, {})
    ctx = {"l": [1, 2]}
    env.execute("m = [*l, *l, 3]\nt = (*l,)\nk = len({*l})", ctx)
    assert ctx["m"] == [1, 2, 1, 2, 3] and ctx["t"] == [1, 2] and ctx["k"] == 2


def test_one_long_builtin_call_is_stopped_at_the_time_limit_while_healthz_answers(kefu, monkeypatch):
    monkeypatch.setattr(scripting, "MAX_SECONDS", 1.0)
    env = BoundedEnvironment()
    started_worker(env)
    with Healthz(kefu) as health:
        started = time.perf_counter()
        with pytest.raises(ScriptRejected, match=r"runs too long \(more than 1 s\)"):
            env.execute(SLOW_COUNT.format(n=20000), {})  # about 40 s in the calling thread
        took = time.perf_counter() - started
        time.sleep(0.2)
    assert 1.0 <= took < 1.0 + workers.GRACE + 2.0, took
    assert health.answers >= 3 and health.slowest < 1.0, (health.answers, health.slowest)


def test_the_default_bound_is_five_seconds_and_healthz_answers_meanwhile(kefu):
    assert scripting.MAX_SECONDS == 5.0 and scripting.MAX_MEMORY == 256 * 2 ** 20
    env = BoundedEnvironment()
    started_worker(env)
    with Healthz(kefu) as health:
        started = time.perf_counter()
        with pytest.raises(ScriptRejected, match=r"runs too long \(more than 5 s\)"):
            env.execute(SLOW_COUNT.format(n=20000), {})
        took = time.perf_counter() - started
    assert 5.0 <= took < 5.0 + workers.GRACE + 2.0, took
    assert health.answers >= 3 and health.slowest < 1.0, (health.answers, health.slowest)


def test_a_number_too_large_to_store_is_refused_at_the_step_not_at_save():
    with pytest.raises(ScriptRejected, match="number too large to store"):
        BoundedEnvironment().execute(HUGE_NUMBER, {})
    ctx = {}
    BoundedEnvironment().execute("x = 9 ** 4000\ny = len(str(9 ** 500))", ctx)  # 3,817 digits: stored
    assert ctx["x"] == 9 ** 4000 and ctx["y"] == 478


# ---------------------------------------------------------------- through the engine: incidents, never a 500
@pytest.fixture
def k(db_url, clock):
    from tests.factories import make_kefu
    kefu = make_kefu(db_url, clock, deploy=(), demo=True)
    yield kefu
    kefu.db.dispose()


DATA = {"customer_name": "x", "divisor": 2, "deadline": "2026-11-25T18:00:00+08:00"}


def incident_then_retry(k, code: str, bad: int, good: int, words: str):
    k.designer.deploy_xml(script(code), "mini.bpmn", "owner")  # the test run's sample data passes
    started = time.perf_counter()
    r = k.instances.start("mini", "agent", data={**DATA, "divisor": bad})
    assert time.perf_counter() - started < 30
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "incident" and shown["incident"]["bpmn_id"] == "compute"
    assert words in shown["incident"]["message"], shown["incident"]
    assert shown["data"]["divisor"] == bad and shown["data"]["customer_name"] == "x"  # nothing lost
    k.instances.retry_incident(r["instance_id"], "supervisor", {"divisor": good})
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "active" and shown["incident"] is None
    types = [e["type"] for e in shown["events"]]
    assert types.index("incident_raised") < types.index("incident_retried")
    assert [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"] == ["handle"]
    return shown


def test_a_number_too_large_to_store_is_an_incident_retried_with_other_data(k):
    shown = incident_then_retry(k, "ratio = 100 // divisor\nx = divisor ** 5000", 9, 2, "number too large to store")
    assert shown["data"]["x"] == 2 ** 5000


def test_a_constant_number_too_large_to_store_is_refused_before_deploy(k):
    with pytest.raises(DefinitionError) as exc:
        k.designer.deploy_xml(script(HUGE_NUMBER), "mini.bpmn", "owner")
    assert "compute" in exc.value.message and "number too large to store" in exc.value.message
    assert k.designer.overview() == []


def test_memory_piled_up_from_the_data_is_an_incident_retried_with_other_data(k):
    code = "ratio = 100 // divisor\na = list(range(divisor))\nx = len([" + ", ".join(["*a"] * 2000) + "])"
    shown = incident_then_retry(k, code, 100_000, 3, "too much memory")
    assert shown["data"]["x"] == 6000


def test_time_run_out_in_one_builtin_call_is_an_incident_retried_with_other_data(k, monkeypatch):
    monkeypatch.setattr(scripting, "MAX_SECONDS", 1.0)
    code = ("ratio = 100 // divisor\na = [i + 1 for i in range(100000)]\nc = [i + 1 for i in range(100000)]\n"
            "b = [a for i in range(divisor)]\nn = b.count(c)\na = b = c = 0")
    shown = incident_then_retry(k, code, 20000, 2, "runs too long")
    assert shown["data"]["n"] == 2


def test_an_error_in_code_run_by_a_worker_names_its_line(k):
    code = "ratio = 100 // divisor\nnames = sorted([c for c in 'ba'])\nboom = 1 // (divisor - 2)"
    k.designer.deploy_xml(script(code), "mini.bpmn", "owner")
    r = k.instances.start("mini", "agent", data={**DATA, "divisor": 2})
    incident = k.instances.show(r["instance_id"])["incident"]
    assert incident["error_type"] == "ZeroDivisionError" and incident["line_number"] == 3
    assert incident["error_line"] == "boom = 1 // (divisor - 2)"


# ---------------------------------------------------------------- the designer's check
@pytest.mark.parametrize("code, words", [(MEMORY, "too much memory"), (DOUBLING, "too large"),
                                         (HUGE_NUMBER, "number too large to store")])
def test_the_check_reports_each_abuse_as_a_failure_of_the_element(code, words):
    text = script(code)
    assert lint_diagram(text).ok
    (tr,) = run_xml(text, "abuse.bpmn")
    assert tr.paths[0].failed_at == "compute" and words in tr.paths[0].failure


def test_designer_check_reports_the_time_abuse_while_healthz_answers(kefu, monkeypatch):
    monkeypatch.setattr(scripting, "MAX_SECONDS", 1.0)
    started_worker(BoundedEnvironment())
    web = Web(kefu).login_as("owner")
    text = script(SLOW_COUNT.format(n=20000))
    with Healthz(kefu) as health:
        res = web.post_json("/designer/check", {"xml": text, "filename": "slow.bpmn"})
    assert res.status_code == 200
    body = res.get_json()
    assert body["lint"]["ok"] is True
    (run,) = body["testrun"]
    assert any(p["failure"] and "runs too long" in p["failure"] for p in run["paths"]), run["paths"]
    assert health.slowest < 1.0, health.slowest


# ---------------------------------------------------------------- the same results as in the calling thread
SAME = [
    ("eval", "severity == 'major' and n > 2", {"severity": "major", "n": 3}),
    ("eval", "sorted(names, key=str.lower)[0]", {"names": ["b", "A"]}),
    ("eval", "[n * i for i in range(4)]", {"n": 3}),
    ("eval", "add_hours('2026-11-23T09:00+08:00', 2)", {}),
    ("eval", "missing + 1", {}),
    ("exec", "total = sum([i for i in range(10)])\nlabel = ', '.join(names).upper()", {"names": ["a", "b"]}),
    ("exec", "del n\nm = [*l, 3]", {"n": 1, "l": [1, 2], "_private": "kept"}),
    ("exec", "x = range(3)", {}),
    ("exec", "raise ValueError('no ' + str(n))", {"n": 7}),
    ("exec", "class Odd(Exception):\n    pass\nraise Odd('strange')", {}),
    ("exec", "x = [l for i in range(10000)]", {"l": list(range(1000))}),
    ("exec", "due = [add_working_days('2026-11-23T09:00+08:00', n) for n in range(3)]\nwhen = now()", {}),
    ("exec", "left = [seconds_until(d) for d in [deadline]]", {"deadline": "2026-11-25T18:00:00+08:00"}),
    ("eval", "sorted([t, u])", {"t": datetime(2026, 11, 23, 9, tzinfo=ZoneInfo("Asia/Shanghai")),
                                "u": datetime(2026, 11, 23, 2, tzinfo=timezone.utc)}),
] + [("eval", code, {}) for code in ESCAPES] + [("eval", code, data) for code, data in HUGE_AT_RUN_TIME]


def outcome(env, mode, code, data):
    ctx = dict(data)
    try:
        value = env.evaluate(code, ctx) if mode == "eval" else env.execute(code, ctx)
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the exception
        return ("raised", type(exc).__name__, str(exc))
    return ("value", value, ctx)


@pytest.mark.parametrize("mode, code, data", SAME, ids=[c[:40] for _, c, _ in SAME])
def test_code_run_in_a_worker_gives_what_it_gives_in_the_calling_thread(monkeypatch, mode, code, data):
    monkeypatch.setattr(scripting, "MAX_SECONDS", 60.0)  # the same results, not the time bound (a busy machine)
    with engine_clock.one_instant():  # as in a unit of work: one instant for every reading of the clock
        assert outcome(BoundedEnvironment(), mode, code, data) == outcome(RestrictedEnvironment(), mode, code, data)


# ---------------------------------------------------------------- the fast path and the pool
@pytest.mark.parametrize("code, expected", [
    ("severity == 'major'", True), ("satisfied == False", True), ("reviewed < len(sample)", True),
    ("max(0, seconds_until(finish_due))", True), ("add_minutes(now(), t[c]['respond_minutes'])", True),
    ("'vip' if vip else 'work_order'", True), ("n + 1 if n > 2 else n * 2", True),
    ("sorted(l)", False), ("[i for i in l]", False), ("l.count(x)", False), ("2 ** 10", False),
    ("[*a, *a]", False), ("l[:]", False), ("len(l) if len else 0", False), ("max(l, key=len)", False),
    ("(lambda: 1)()", False), ("{**d}", False), (" + ".join(["n"] * 10), False), ("int(x) + len(y)", True), ("str(x)", False), ("f'{x}'", False), ("n % 2 == 0", False),
])
def test_only_code_the_screen_proves_cheap_runs_in_the_calling_thread(code, expected):
    assert screen.cheap(code, "eval") is expected
    assert screen.cheap("x = len\ny = x(l)", "exec") is False  # a cheap call passed on is not cheap
    assert screen.cheap("for i in range(3):\n    n = i", "exec") is False


def test_cheap_code_starts_no_worker_and_workers_are_reused_and_shut_down(monkeypatch):
    pool = workers.Pool(size=1)
    monkeypatch.setattr(workers, "_pool", pool)
    env = BoundedEnvironment()
    assert env.evaluate("severity == 'major'", {"severity": "major"}) is True
    assert pool.started == 0
    for n in range(3):
        assert env.evaluate("sorted(l)[0]", {"l": [n + 2, n]}) == n
    assert pool.started == 1 and len(pool.idle) == 1
    proc = pool.idle[0].proc
    workers.shutdown()
    assert proc.wait(timeout=10) is not None and workers._pool is None


PARENT = """
import sys, time
from engine.bpmn import workers
from engine.bpmn.sandbox import BoundedEnvironment
BoundedEnvironment().execute("x = sorted([2, 1])", {})
print(workers.pool().idle[0].proc.pid, flush=True)
if sys.argv[1] == "hang":
    time.sleep(600)
"""


def gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    return True  # ended, waiting for init to reap it
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["exit", "hang"])
def test_workers_end_with_their_process_also_when_it_is_killed(how):
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    proc = subprocess.Popen([sys.executable, "-c", PARENT, how], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        assert how == "exit" or not gone(pid, 0.5)  # alive while its parent lives
        if how == "hang":
            proc.send_signal(signal.SIGKILL)  # no atexit: the worker sees its pipe close
        assert proc.wait(timeout=60) is not None
        assert gone(pid), f"worker {pid} outlived its parent"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_script_cannot_hand_the_server_more_than_the_answer_limit():
    # 30,000 numbers of 3,817 digits: 30,000 items for the item count, but 48 MB to take into the server
    with pytest.raises(ScriptRejected, match=r"values to store are too large: more than 32 MB"):
        BoundedEnvironment().execute("y = 9 ** 4000\nx = [y + i for i in range(30000)]", {})
    ctx = {}
    BoundedEnvironment().execute("x = [9 ** 4000 + i for i in range(3)]", ctx)
    assert ctx["x"][2] == 9 ** 4000 + 2


def test_a_server_starts_its_worker_before_the_first_request(monkeypatch):
    pool = workers.Pool(size=1)
    monkeypatch.setattr(workers, "_pool", pool)
    workers.warm()  # what kefu serve and each gunicorn worker do at start
    deadline = time.monotonic() + 60
    while not pool.idle and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.started == 1 and len(pool.idle) == 1
    assert BoundedEnvironment().evaluate("sorted(l)", {"l": [2, 1]}) == [1, 2] and pool.started == 1
    workers.shutdown()
