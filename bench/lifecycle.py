"""Complaint lifecycles per second: Kefu's engine with SQLite persistence vs raw SpiffWorkflow.

Both drive processes/complaint.bpmn along the same path with the same data:
register → transfer → department_accept → department_handle → approve_solution → feedback (satisfied) → revisit timer → revisit → customer_care.

* service: every step is a Kefu unit of work (find the task, check the actor, validate the form, run,
  write state + human tasks + timers + audit events, commit) on a SQLite file;
* raw: SpiffWorkflow alone, with a JSON round trip (serialize + deserialize, spec embedded, the stock
  serializer) after every step, as a minimal durable baseline.

Rounds alternate service and raw so machine noise hits both alike; medians over rounds are reported.
Speed is reported, not asserted: the stated target is service >= 0.5x raw.

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
sys.path.insert(0, str(ROOT))

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


def steps(now: datetime):
    """The user tasks of one lifecycle with their form data; None marks the wait for the revisit timer."""
    return [
        ("register", "agent", {"customer_name": "李先生", "contact_phone": "13800138000",
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
        None,
        ("revisit", "agent", {"satisfaction_score": 95, "other_opinions": None}),
        ("customer_care", "agent", {"care_action": "回访慰问", "care_date": "2026-12-01"}),
    ]


REVISIT_WAIT = timedelta(days=3, seconds=1)  # Monday 09:00 → past Thursday 09:00, the third working day


CLOCK = Clock(MONDAY)  # one engine-wide clock, as in the service


class ServiceRunner:
    def __init__(self, tmp: Path):
        self.clock = CLOCK
        self.k = Kefu(Config(database_url=f"sqlite:///{tmp / 'bench.db'}", env="test"), clock=self.clock)
        self.k.init()
        self.k.definitions.deploy([ROOT / "processes"])
        seed_demo(self.k, password=None)
        self.step_times: list[float] = []

    def lifecycle(self) -> None:
        k = self.k
        self.clock.set(MONDAY)
        plan = steps(k.now())
        _, actor, data = plan[0]
        t0 = time.perf_counter()
        r = k.instances.start("complaint", actor, data=data)
        self.step_times.append(time.perf_counter() - t0)
        for step in plan[1:]:
            t0 = time.perf_counter()
            if step is None:
                self.clock.advance(REVISIT_WAIT)
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
    def __init__(self):
        self.clock = CLOCK
        data = (ROOT / "processes" / "complaint.bpmn").read_bytes()
        self.spec, self.subs = parse_diagram(data, "complaint.bpmn").specs["complaint"]
        self.sla = parse_sla((ROOT / "processes" / "sla.dmn").read_bytes(), "sla.dmn").targets
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))
        self.step_times: list[float] = []
        self.size = 0

    def _round_trip(self, wf):
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
            if step is None:
                self.clock.advance(REVISIT_WAIT)
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
        service, raw = ServiceRunner(Path(tmp)), RawRunner()
        for runner in (service, raw):  # warm up caches and the database file
            for _ in range(3):
                runner.lifecycle()
            runner.step_times.clear()
        service_rates, raw_rates = [], []
        for _ in range(args.rounds):
            service_rates.append(rate(service, args.per_round))
            raw_rates.append(rate(raw, args.per_round))
        ratios = [s / r for s, r in zip(service_rates, raw_rates, strict=True)]
        result = {
            "lifecycles": args.rounds * args.per_round,
            "steps_per_lifecycle": len(steps(MONDAY)),
            "service_per_s": statistics.median(service_rates),
            "raw_per_s": statistics.median(raw_rates),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "service_step_ms": {"p50": statistics.median(service.step_times) * 1e3,
                                "p95": pct(service.step_times, 95) * 1e3},
            "raw_step_ms": {"p50": statistics.median(raw.step_times) * 1e3, "p95": pct(raw.step_times, 95) * 1e3},
            "stored_state_bytes": service.state_size(),
            "raw_json_bytes": raw.size,
            "target": "service >= 0.5x raw",
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"complaint lifecycles ({result['steps_per_lifecycle']} steps each), {args.rounds} rounds x "
          f"{args.per_round}, medians over rounds")
    print(f"  service (Kefu, SQLite, one unit of work per step): {result['service_per_s']:7.1f} lifecycles/s   "
          f"step p50 {result['service_step_ms']['p50']:.2f} ms  p95 {result['service_step_ms']['p95']:.2f} ms")
    print(f"  raw SpiffWorkflow + JSON round trip per step:      {result['raw_per_s']:7.1f} lifecycles/s   "
          f"step p50 {result['raw_step_ms']['p50']:.2f} ms  p95 {result['raw_step_ms']['p95']:.2f} ms")
    print(f"  ratio service/raw: {result['ratio']:.2f}x (rounds {result['ratio_min']:.2f}–{result['ratio_max']:.2f}); "
          f"target {result['target']}: {'met' if result['ratio'] >= 0.5 else 'NOT met'}")
    print(f"  state per instance: service {result['stored_state_bytes']} bytes (spec by reference), "
          f"raw {result['raw_json_bytes']} bytes (spec embedded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
