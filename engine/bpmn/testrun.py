"""The test run before deploy: a new version executes on sample data along each path, in memory only.

For every process of a diagram, a baseline run completes each user task with sample data generated from
its form (validated as a real submission is). Further runs change one choice at a time: each option of an
enum field, ``true`` for a boolean field; and one run per boundary timer or message event, which fires the
first time it waits. External tasks are completed as a worker would, with the JSON object of their
``test_data`` property (else nothing); a message event that waits gets its message. Runs that take the same
steps are merged into one path. When a run waits on timers only, the run's own clock moves to the earliest
due time and the timers fire. Nothing is written to the database. The report says, per path, which steps ran
and any failure, which branches of exclusive gateways no sample reached, and which boundary events never fired.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import timedelta

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.util.task import TaskState

from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent

from engine import clock
from engine.bpmn import sandbox as scripting
from engine.bpmn.forms import FormValidator, build_fields
from engine.bpmn.lint import lint_diagram
from engine.bpmn.samples import START, declared_test_data, sample_data, sample_value, start_sample, start_variants
from engine.bpmn.tasktypes import ExternalTask

MAX_STEPS = 100  # user tasks and timers of one run
MAX_RUNS = 40
TIME_BUDGET = 30.0  # seconds for all paths of one diagram


@dataclass
class PathResult:
    choice: dict
    steps: list[str] = field(default_factory=list)
    timers_fired: list[str] = field(default_factory=list)
    completed: bool = False
    failure: str | None = None
    failed_at: str | None = None
    boundary: str | None = None  # the boundary event this run fires the first time it waits
    names: dict = field(default_factory=dict)  # step id -> its name in the diagram

    def to_dict(self) -> dict:
        return {"choice": self.choice, "boundary": self.boundary, "steps": self.steps,
                "step_names": [self.names.get(s) or s for s in self.steps], "timers_fired": self.timers_fired,
                "completed": self.completed, "failure": self.failure, "failed_at": self.failed_at}


@dataclass
class TestRunReport:
    process_id: str | None
    paths: list[PathResult] = field(default_factory=list)
    unreached: list[dict] = field(default_factory=list)  # gateway branches and boundary events never taken
    lint_errors: list[dict] = field(default_factory=list)  # the diagram failed the lint: nothing ran

    @property
    def ok(self) -> bool:
        return not self.lint_errors and all(p.failure is None for p in self.paths)

    def to_dict(self) -> dict:
        out = {"process_id": self.process_id, "ok": self.ok, "paths": [p.to_dict() for p in self.paths],
               "unreached": self.unreached}
        if self.lint_errors:
            out.update(lint_errors=self.lint_errors, message={
                "en": f"not run: the diagram has {len(self.lint_errors)} lint error(s)",
                "zh": f"未运行：图有 {len(self.lint_errors)} 个检查错误"})
        return out


def _forms(spec_and_subs) -> list[dict]:
    spec, subs = spec_and_subs
    fields = []
    for proc in (spec, *subs.values()):
        for ts in proc.task_specs.values():
            form = (getattr(ts, "extensions", None) or {}).get("form")
            fields.extend((form or {}).get("fields", []))
    return fields


def _variants(fields: list[dict]) -> list[dict]:
    """The baseline (no choice) and one choice per enum option and boolean field, at most ``MAX_RUNS``."""
    variants, seen = [{}], set()
    for f in fields:
        fid = f.get("id")
        if not fid or fid in seen or (f.get("validation") or {}).get("readonly") is not None:
            continue
        seen.add(fid)
        if f.get("type") == "enum":
            variants.extend({fid: o["id"]} for o in (f.get("options") or [])[1:] if o.get("id"))
        elif f.get("type") == "boolean":
            variants.append({fid: True})
    return variants[:MAX_RUNS]


def _submission(task, choice: dict, visit: int = 1) -> dict:
    """Sample data for a user task. A task met again (a loop back) answers differently each time: a
    boolean the other way, an enum its next option, so that a loop is taken and then left."""
    form = task.task_spec.extensions.get("form") or {}
    data = {}
    for f in form.get("fields", []):
        if "readonly" in (f.get("validation") or {}):
            continue
        value = choice.get(f["id"], sample_value(f, clock.now()))
        if visit > 1 and f.get("type") == "boolean":
            value = (not value) if visit % 2 == 0 else value
        elif visit > 1 and f.get("type") == "enum":
            ids = [o["id"] for o in (f.get("options") or []) if o.get("id")]
            if value in ids:
                value = ids[(ids.index(value) + visit - 1) % len(ids)]
        data[f["id"]] = value
    return FormValidator(build_fields(form)).validate(data, task.task_spec.bpmn_name)


def _waiting_timers(wf):
    for t in wf.get_tasks(state=TaskState.WAITING):
        if isinstance(getattr(t.task_spec, "event_definition", None), TimerEventDefinition):
            value = t.internal_data.get("event_value")
            if isinstance(value, dict):
                value = value.get("next")
            if isinstance(value, str):
                try:
                    yield t, clock.parse_instant(value)
                except Exception:  # noqa: BLE001 - an unreadable due time is not waited for
                    continue


def run_path(spec_and_subs, process_id: str, choice: dict, initial: dict | None = None,
             deadline: float | None = None, boundary: str | None = None, declared: dict | None = None) -> PathResult:
    """One run; ``declared``: element id → the test data its ``test_data`` property declares (an external
    task's worker variables, a message's payload)."""
    declared = declared or {}
    result = PathResult(choice=dict(choice), boundary=boundary)
    spec, subs = spec_and_subs
    previous = clock.active()
    clock.use(clock.Clock(pinned=START))
    current = None
    visits: dict[str, int] = {}
    seen: set = set()
    wf = None
    try:
        wf = BpmnWorkflow(spec, subs, script_engine=scripting.make_script_engine())
        wf.task_tree.data.update({"ticket_no": "TEST-0001", "kind": process_id, "started_by": "sample_user",
                                  "customer_id": None, "vip": False, **(initial or {})})
        for _ in range(MAX_STEPS):
            if deadline is not None and time.monotonic() > deadline:
                result.failure = f"the test run takes longer than {TIME_BUDGET:.0f} s: stopped"
                break
            wf.refresh_timers()
            wf.do_engine_steps()
            _collect(wf, seen, result.steps)
            if wf.is_completed():
                result.completed = True
                break
            if boundary is not None and _fire_boundary(wf, boundary):
                boundary = None  # once: a loop back to the task works it the next time
                result.timers_fired.extend(_fired_timers(wf, seen))
                continue
            ready = wf.get_tasks(state=TaskState.READY, manual=True)
            if ready:
                current = ready[0]
                visits[current.task_spec.bpmn_id] = visits.get(current.task_spec.bpmn_id, 0) + 1
                current.data.update(_submission(current, choice, visits[current.task_spec.bpmn_id]))
                current.run()
                _collect(wf, seen, result.steps)
                current = None
                continue
            worked = [t for t in wf.get_tasks(state=TaskState.STARTED) if isinstance(t.task_spec, ExternalTask)]
            if worked:  # a worker completes the external task
                current = worked[0]
                current.data.update(copy.deepcopy(declared.get(current.task_spec.bpmn_id, {})))
                current.complete()
                current = None
                continue
            timers = sorted(_waiting_timers(wf), key=lambda x: x[1])
            if not timers:
                message = next(_waiting_messages(wf, boundaries=False), None)
                if message is not None:
                    wf.catch(BpmnEvent(message.task_spec.event_definition,
                                       payload=copy.deepcopy(declared.get(message.task_spec.bpmn_id, {}))))
                    continue
                waiting = [t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.WAITING)]
                result.failure = f"the run stops: nothing is ready and no timer waits (waiting: {waiting})"
                break
            task, due = timers[0]
            clock.active().set(max(due, clock.now()) + timedelta(seconds=1))
            result.timers_fired.append(task.task_spec.bpmn_id)
        else:
            result.failure = f"more than {MAX_STEPS} steps: the run does not end (a loop?)"
            result.failed_at = max(visits, key=visits.get) if visits else None
    except Exception as exc:  # noqa: BLE001 - any failure of the diagram is the result
        result.failure = str(getattr(exc, "message", None) or exc).split("\n")[0] or type(exc).__name__
        task = getattr(exc, "task", None) or current
        if task is not None:
            result.failed_at = task.task_spec.bpmn_id
        if wf is not None:
            _collect(wf, seen, result.steps)
    finally:
        clock.use(previous)
    return result


def _waiting_messages(wf, boundaries: bool):
    for t in wf.get_tasks(state=TaskState.WAITING):
        if isinstance(getattr(t.task_spec, "event_definition", None), MessageEventDefinition) and \
                isinstance(t.task_spec, BoundaryEvent) == boundaries:
            yield t


def _fire_boundary(wf, bpmn_id: str) -> bool:
    """Fire the boundary event ``bpmn_id`` if it waits now: a timer as if its due time came, a message as if
    it arrived."""
    for t in wf.get_tasks(state=TaskState.WAITING):
        if t.task_spec.bpmn_id != bpmn_id or not isinstance(t.task_spec, BoundaryEvent):
            continue
        if isinstance(t.task_spec.event_definition, TimerEventDefinition):
            due = next((when for timer, when in _waiting_timers(wf) if timer is t), None)
            if due is None:
                return False
            clock.active().set(max(due, clock.now()) + timedelta(seconds=1))
            wf.refresh_timers()
        elif isinstance(t.task_spec.event_definition, MessageEventDefinition):
            wf.catch(BpmnEvent(t.task_spec.event_definition, payload={}))
        else:
            return False
        wf.do_engine_steps()
        return True
    return False


def _fired_timers(wf, seen: set) -> list[str]:
    return [t.task_spec.bpmn_id for t in wf.get_tasks(state=TaskState.COMPLETED)
            if isinstance(getattr(t.task_spec, "event_definition", None), TimerEventDefinition)
            and isinstance(t.task_spec, BoundaryEvent) and t.id not in seen]


def _collect(wf, seen: set, steps: list[str]) -> None:
    """Append the tasks completed since the last look (events, gateways, scripts, user tasks), in order."""
    new = [t for t in wf.get_tasks(state=TaskState.COMPLETED) if t.id not in seen and t.task_spec.bpmn_id]
    for t in sorted(new, key=lambda t: t.last_state_change):
        seen.add(t.id)
        steps.append(t.task_spec.bpmn_id)


def test_run(report) -> list[TestRunReport]:
    """Run every process of a linted diagram (``lint.LintReport`` without errors) along each path."""
    base = sample_data(report.root) if report.root is not None else {}
    initial = {"sla_targets": base.get("sla_targets", {})}
    out = []
    deadline = time.monotonic() + TIME_BUDGET
    for pid, spec_and_subs in report.specs.items():
        tr = TestRunReport(pid)
        seen = set()
        start_data = {**initial, **start_sample(report.root, pid)}
        names = _names(spec_and_subs)
        declared = declared_test_data(report.root)
        runs = [(choice, None) for choice in _variants(_forms(spec_and_subs))]
        boundaries = _boundaries(spec_and_subs)
        for i, (choice, boundary) in enumerate(runs):
            path = run_path(spec_and_subs, pid, choice, start_data, deadline, boundary, declared)
            path.names = names
            if i == len(runs) - 1:  # then one run per boundary event, on a path that reaches its task
                for b, attached in boundaries:
                    via = next((p.choice for p in tr.paths + [path] if attached in p.steps), None)
                    if via is not None:
                        runs.append((via, b))
                boundaries = []
            key = (tuple(path.steps), path.failure)
            if key in seen:
                continue
            seen.add(key)
            tr.paths.append(path)
        for variant in start_variants(report.root, pid):  # one more run per declared start variant
            path = run_path(spec_and_subs, pid, {}, {**start_data, **variant}, deadline, None, declared)
            path.names = names
            if (tuple(path.steps), path.failure) not in seen:
                seen.add((tuple(path.steps), path.failure))
                tr.paths.append(path)
        tr.unreached = _unreached(report.root, pid, tr.paths) + _boundaries_not_fired(spec_and_subs, tr.paths)
        out.append(tr)
    return out


def _names(spec_and_subs) -> dict:
    spec, subs = spec_and_subs
    return {ts.bpmn_id: ts.bpmn_name for proc in (spec, *subs.values()) for ts in proc.task_specs.values()
            if getattr(ts, "bpmn_id", None) and getattr(ts, "bpmn_name", None)}


def _boundaries(spec_and_subs) -> list[tuple[str, str | None]]:
    """Boundary timer and message events with the task each is attached to: each gets a run that fires it."""
    spec, subs = spec_and_subs
    return sorted({(ts.bpmn_id, _attached(proc, ts)) for proc in (spec, *subs.values())
                   for ts in proc.task_specs.values() if isinstance(ts, BoundaryEvent) and isinstance(
                       ts.event_definition, (TimerEventDefinition, MessageEventDefinition))}, key=str)


def _boundaries_not_fired(spec_and_subs, paths) -> list[dict]:
    """Boundary events no run fired: the path behind each is not tested."""
    spec, subs = spec_and_subs
    reached = {s for p in paths for s in p.steps}
    out = []
    for proc in (spec, *subs.values()):
        for ts in proc.task_specs.values():
            if isinstance(ts, BoundaryEvent) and ts.bpmn_id not in reached:
                out.append({"boundary": ts.bpmn_id, "attached_to": _attached(proc, ts),
                            "event": _kind(ts.event_definition)})
    return sorted(out, key=lambda u: u["boundary"])


def _kind(definition) -> str:
    if isinstance(definition, TimerEventDefinition):
        return "timer"
    if isinstance(definition, MessageEventDefinition):
        return "message"
    return type(definition).__name__.replace("EventDefinition", "").lower() or "none"


def _attached(proc, boundary) -> str | None:
    for ts in proc.task_specs.values():
        if boundary in getattr(ts, "outputs", ()):
            main = next((o for o in ts.outputs if not isinstance(o, BoundaryEvent)), None)
            return getattr(main, "bpmn_id", None)
    return None


def _unreached(root, process_id: str, paths: list[PathResult]) -> list[dict]:
    from engine.bpmn.diagram import B
    if root is None:
        return []
    reached = {s for p in paths for s in p.steps}
    out = []
    for proc in root.iter(B + "process"):
        if proc.get("id") != process_id:
            continue
        flows = list(proc.iter(B + "sequenceFlow"))
        for gw in proc.iter(B + "exclusiveGateway"):
            if gw.get("id") not in reached:
                continue
            for flow in flows:
                if flow.get("sourceRef") == gw.get("id") and flow.get("targetRef") not in reached:
                    out.append({"gateway": gw.get("id"), "flow": flow.get("id"), "target": flow.get("targetRef")})
    return out


def test_run_xml(data, filename: str = "diagram.bpmn", resolver=None) -> list[TestRunReport]:
    """Lint a diagram, then run each of its processes along each path. With lint errors nothing runs and
    the one report returned says so (``lint_errors``). ``resolver``: see ``diagram.parse_specs``."""
    report = lint_diagram(data, filename, resolver=resolver)
    if report.errors:
        return [TestRunReport(None, lint_errors=[f.to_dict() for f in report.errors])]
    return test_run(report)


# pytest must not collect the function above as a test
test_run.__test__ = False
test_run_xml.__test__ = False
TestRunReport.__test__ = False
