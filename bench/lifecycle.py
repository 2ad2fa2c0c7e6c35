"""Complaint lifecycles per second: Kefu's engine with SQLite persistence vs raw SpiffWorkflow.

All drive processes/complaint.bpmn along the same path with the same data:
register → transfer → department_accept → department_handle → approve_solution → feedback (satisfied) → revisit
timer → revisit → customer_care → care check timer → care_check.

* service: every step is a Kefu unit of work (find the task, check the actor, validate the form, run,
  write state + human tasks + timers + audit events, commit) on a SQLite file, with the warm instances on
  (the default: the next step takes the workflow the last one saved) - "service (warm)";
* service (cold): the same with the warm instances off (``instance_cache_mb=0``): every step restores the
  workflow from its JSON, as before issue 23;
* raw: SpiffWorkflow alone, with a JSON round trip (serialize + deserialize, spec embedded, the stock
  serializer) after every step, as a minimal durable baseline;
* ceiling: SpiffWorkflow alone in memory, no persistence at all (what no durable engine can beat).

Rounds alternate the four so machine noise hits all alike; medians over rounds are reported, ratios are
taken within each round. Speed is reported, not asserted: the stated target (issue 23) is service (warm)
>= 1.5x raw.

    python bench/lifecycle.py [--rounds 7] [--per-round 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0:1] = [str(ROOT)]  # the repository, not bench/ (bench/http.py would shadow the standard library)

from SpiffWorkflow.bpmn import BpmnWorkflow  # noqa: E402
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer  # noqa: E402
from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG  # noqa: E402
from SpiffWorkflow.util.task import TaskState  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from engine import Clock, Config, Kefu  # noqa: E402
from engine.bpmn import sandbox as scripting  # noqa: E402
from engine.services.demo import seed_demo  # noqa: E402
from engine.clock import SHANGHAI  # noqa: E402
from engine.store.tables import Instance  # noqa: E402
from engine.bpmn.diagram import parse_diagram  # noqa: E402
from engine.bpmn.sla import parse_sla  # noqa: E402

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)


def steps(now: datetime, n: int = 0):
    """The user tasks of one lifecycle with their form data; a timedelta is a wait for a timer (the revisit, then
    the care follow-up, Q2). ``n`` numbers the lifecycle: each is another customer's complaint (one customer
    complaining of the same thing hundreds of times would make every new ticket a repeat of all the earlier
    ones, X3, and link them all: a different workload, growing with the run)."""
    return [
        ("register", "agent", {"customer_name": "李先生", "contact_phone": f"138{n:08d}",
                               "complaint_time": now.isoformat(), "place": "营业部", "content": "保安态度恶劣",
                               "customer_demand": "道歉", "nature": "service_attitude", "severity": "general"}),
        ("transfer", "agent", {"department": "security_ops", "handling_requirement": "调查整改",
                               "handling_deadline": (now + timedelta(days=1)).isoformat()}),
        ("department_accept", "department", {"accept_note": "已接单"}),
        ("department_handle", "department", {"acceptance": "accepted", "acceptance_reason": None,
                                             "cause": "未按规范接待", "responsible_department": "security_ops",
                                             "responsible_person": "department", "handling_result": "已整改",
                                             "corrective_action": "服务规范培训"}),
        ("approve_solution", "supervisor", {"solution_approved": True, "approval_note": None}),
        ("feedback", "agent", {"satisfied": True, "customer_opinion": None}),
        REVISIT_WAIT,
        ("revisit", "agent", {"satisfaction_score": 95, "other_opinions": None}),
        ("customer_care", "agent", {"care_action": "回访慰问", "care_date": "2026-12-01"}),
        CARE_CHECK_WAIT,
        ("care_check", "agent", {"care_satisfied": True, "care_opinion": None}),
    ]


REVISIT_WAIT = timedelta(days=3, seconds=1)  # Monday 09:00 → past Thursday 09:00, the third working day
CARE_CHECK_WAIT = timedelta(days=5)  # Thursday → past Tuesday 09:00, the third working day after the care (Q2)


CLOCK = Clock(MONDAY)  # one engine-wide clock, as in the service


class ServiceRunner:
    def __init__(self, tmp: Path, cache_mb: float | None = None):
        self.clock = CLOCK
        name = "bench.db" if cache_mb is None else f"bench-{cache_mb:g}.db"
        self.k = Kefu(Config(database_url=f"sqlite:///{tmp / name}", env="test", instance_cache_mb=cache_mb),
                      clock=self.clock)
        self.k.init()
        self.k.definitions.deploy([ROOT / "processes"])
        seed_demo(self.k, password=None)
        self.step_times: list[float] = []
        self.count = 0

    def lifecycle(self) -> None:
        k = self.k
        self.clock.set(MONDAY)
        self.count += 1
        plan = steps(k.now(), self.count)
        _, actor, data = plan[0]
        t0 = time.perf_counter()
        r = k.instances.start("complaint", actor, data=data)
        self.step_times.append(time.perf_counter() - t0)
        for step in plan[1:]:
            t0 = time.perf_counter()
            if isinstance(step, timedelta):
                self.clock.advance(step)
                k.timers.fire_due()
                r = {"instance_id": r["instance_id"]}
            else:
                bpmn_id, actor, data = step
                # A completion answers with the next ready tasks; after a timer the inbox is asked.
                ready = r["tasks"] if r.get("tasks") else k.tasks.ready(actor=actor, instance=r["instance_id"])
                task = next(t for t in ready if t["bpmn_id"] == bpmn_id)
                r = k.tasks.complete(task["id"], actor, data)
            self.step_times.append(time.perf_counter() - t0)
        if r["status"] != "completed":
            raise SystemExit("service lifecycle did not complete")

    def state_size(self) -> int:
        with self.k.db.reading() as s:
            return int(s.scalar(select(func.avg(func.length(Instance.state)))) or 0)


class RawRunner:
    def __init__(self, round_trip: bool = True):
        self.clock = CLOCK
        self.round_trip = round_trip
        data = (ROOT / "processes" / "complaint.bpmn").read_bytes()
        self.spec, self.subs = parse_diagram(data, "complaint.bpmn").specs["complaint"]
        self.sla = parse_sla((ROOT / "processes" / "sla.dmn").read_bytes(), "sla.dmn").targets
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))
        self.step_times: list[float] = []
        self.size = 0

    def _round_trip(self, wf):
        if not self.round_trip:  # the ceiling: the workflow stays in memory, nothing is written
            return wf
        text = self.serializer.serialize_json(wf)
        self.size = len(text)
        wf = self.serializer.deserialize_json(text)
        wf.script_engine = scripting.make_script_engine()
        return wf

    def lifecycle(self) -> None:
        self.clock.set(MONDAY)
        plan = steps(self.clock.now())
        t0 = time.perf_counter()
        wf = BpmnWorkflow(self.spec, self.subs, script_engine=scripting.make_script_engine())
        wf.task_tree.data.update(ticket_no="TS-BENCH", kind="complaint", customer_id=1, vip=False,
                                 started_by="agent", sla_targets=self.sla, sla_version=1)
        wf.do_engine_steps()
        wf = self._run(wf, plan[0])
        self.step_times.append(time.perf_counter() - t0)
        for step in plan[1:]:
            t0 = time.perf_counter()
            if isinstance(step, timedelta):
                self.clock.advance(step)
                wf.refresh_timers()
                wf.do_engine_steps()
                wf = self._round_trip(wf)
            else:
                wf = self._run(wf, step)
            self.step_times.append(time.perf_counter() - t0)
        if not wf.is_completed():
            raise SystemExit("raw lifecycle did not complete")

    def _run(self, wf, step):
        bpmn_id, _actor, data = step
        task = next(t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.bpmn_id == bpmn_id)
        task.data.update(data)
        task.run()
        wf.refresh_timers()
        wf.do_engine_steps()
        return self._round_trip(wf)


def rate(runner, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        runner.lifecycle()
    return n / (time.perf_counter() - t0)


def pct(values, q):
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--per-round", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"service": ServiceRunner(Path(tmp)), "cold": ServiceRunner(Path(tmp), cache_mb=0),
                   "raw": RawRunner(), "ceiling": RawRunner(round_trip=False)}
        for runner in runners.values():  # warm up caches and the database files
            for _ in range(3):
                runner.lifecycle()
            runner.step_times.clear()
        rates = {name: [] for name in runners}
        for _ in range(args.rounds):
            for name, runner in runners.items():
                rates[name].append(rate(runner, args.per_round))

        def ratio(a, b):
            values = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
            return {"median": statistics.median(values), "min": min(values), "max": max(values)}
        ms = {name: {"p50": statistics.median(r.step_times) * 1e3, "p95": pct(r.step_times, 95) * 1e3}
              for name, r in runners.items()}
        warm = runners["service"].k.ctx.warm.stats()
        result = {
            "lifecycles": args.rounds * args.per_round,
            "steps_per_lifecycle": len(steps(MONDAY)),
            "service_per_s": statistics.median(rates["service"]),
            "service_cold_per_s": statistics.median(rates["cold"]),
            "raw_per_s": statistics.median(rates["raw"]),
            "ceiling_per_s": statistics.median(rates["ceiling"]),
            "ratio": ratio("service", "raw")["median"],
            "ratio_min": ratio("service", "raw")["min"], "ratio_max": ratio("service", "raw")["max"],
            "ratio_cold": ratio("cold", "raw")["median"],
            "ratio_to_ceiling": ratio("service", "ceiling")["median"],
            "ratio_cold_to_ceiling": ratio("cold", "ceiling")["median"],
            "raw_to_ceiling": ratio("raw", "ceiling")["median"],
            "service_step_ms": ms["service"], "service_cold_step_ms": ms["cold"], "raw_step_ms": ms["raw"],
            "ceiling_step_ms": ms["ceiling"],
            "warm_instances": {"hits": warm["hits"], "misses": warm["misses"], "stale": warm["stale"]},
            "stored_state_bytes": runners["service"].state_size(),
            "raw_json_bytes": runners["raw"].size,
            "target": "service >= 1.5x raw",
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"complaint lifecycles ({result['steps_per_lifecycle']} steps each), {args.rounds} rounds x "
          f"{args.per_round}, medians over rounds")
    for key, label in (("service", "service (Kefu, SQLite, warm instances)    "),
                       ("service_cold", "service (Kefu, SQLite, restore each step)"),
                       ("raw", "raw SpiffWorkflow + JSON round trip/step "),
                       ("ceiling", "ceiling: SpiffWorkflow in memory, no I/O  ")):
        step = result[f"{key}_step_ms"]
        print(f"  {label}: {result[f'{key}_per_s']:7.1f} lifecycles/s   step p50 {step['p50']:.2f} ms  "
              f"p95 {step['p95']:.2f} ms")
    print(f"  ratio service/raw: {result['ratio']:.2f}x (rounds {result['ratio_min']:.2f}–{result['ratio_max']:.2f}); "
          f"target {result['target']}: {'met' if result['ratio'] >= 1.5 else 'NOT met'}")
    print(f"  ratio service (cold)/raw: {result['ratio_cold']:.2f}x")
    print(f"  ratio to the ceiling: service {result['ratio_to_ceiling']:.2f}x, service (cold) "
          f"{result['ratio_cold_to_ceiling']:.2f}x, raw {result['raw_to_ceiling']:.2f}x")
    print(f"  warm instances: {warm['hits']} steps took the kept workflow, {warm['misses']} restored it")
    print(f"  state per instance: service {result['stored_state_bytes']} bytes (spec by reference), "
          f"raw {result['raw_json_bytes']} bytes (spec embedded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
