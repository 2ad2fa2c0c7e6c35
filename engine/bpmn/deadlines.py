"""Moving the deadline of a waiting task (a supervisor's extension, T-cap): its waiting boundary timers fire at the
new time, and the deadline keys a script set (``finish_due``, ``response_due``) say the same."""
from __future__ import annotations

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.util.task import TaskState

DEADLINE_KEYS = ("finish_due", "response_due")


def move_deadline(task, new_due: str) -> list[tuple[str, str | None]]:
    """Point the waiting boundary timers of ``task`` at ``new_due`` (ISO); returns (timer id, old due) pairs."""
    moved = []
    siblings = task.parent.children if task.parent is not None else []
    for t in siblings:
        spec = t.task_spec
        if (isinstance(spec, BoundaryEvent) and isinstance(spec.event_definition, TimerEventDefinition)
                and t.state == TaskState.WAITING):
            moved.append((spec.bpmn_id, t.internal_data.get("event_value")))
            t.internal_data["event_value"] = new_due
    for key in DEADLINE_KEYS:
        if task.data.get(key):
            task.data[key] = new_due
    return moved
