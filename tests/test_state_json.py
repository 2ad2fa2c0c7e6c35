"""The workflow state is written and read with orjson (engine.bpmn.diagram.FastJsonSerializer, issue 23): the
text must mean exactly what SpiffWorkflow's own JSON encoder writes, typed values included, and whatever orjson
cannot write or read must still be written and read (by the standard library)."""
import json
from datetime import datetime, timedelta, timezone

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.util.task import TaskState

from engine.bpmn.diagram import FastJsonSerializer


def _standard(kefu, wf) -> str:
    """What SpiffWorkflow's serializer writes for ``wf`` with the same registry (the standard json module)."""
    fast = kefu.ctx.serializer
    return BpmnWorkflowSerializer.serialize_json(fast, wf)


def _workflow(kefu, scenario):
    r = scenario.start("complaint")
    with kefu.db.reading() as s:
        inst = kefu.ctx.instance(s, r["instance_id"], with_state=True)
        kefu.ctx.spec_of(inst)
        return kefu.ctx.serializer.deserialize_json(inst.state)


def test_the_state_text_means_what_the_standard_encoder_writes(kefu, scenario):
    assert isinstance(kefu.ctx.serializer, FastJsonSerializer)
    wf = _workflow(kefu, scenario)
    task = next(iter(wf.get_tasks(state=TaskState.READY, manual=True)))
    task.data.update({"when": datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc), "wait": timedelta(hours=3),
                      "tags": {"a"}, "nested": {"at": [datetime(2026, 1, 2, tzinfo=timezone.utc)]},
                      "text": "中文", "n": 2 ** 40, "f": 0.1, "none": None})
    fast = kefu.ctx.serializer.serialize_json(wf)
    assert json.loads(fast) == json.loads(_standard(kefu, wf))
    back = kefu.ctx.serializer.deserialize_json(fast)
    data = back.get_task_from_id(task.id).data
    assert data["when"] == datetime(2026, 12, 7, 9, 30, tzinfo=timezone.utc)
    assert data["wait"] == timedelta(hours=3) and data["nested"]["at"][0].year == 2026
    assert data["tags"] == ["a"] and data["text"] == "中文" and data["n"] == 2 ** 40


def test_what_orjson_refuses_is_written_and_read_by_the_standard_library(kefu, scenario):
    wf = _workflow(kefu, scenario)
    task = next(iter(wf.get_tasks(state=TaskState.READY, manual=True)))
    task.data.update({"huge": 2 ** 80, "nan": float("nan")})
    text = kefu.ctx.serializer.serialize_json(wf)
    assert "NaN" in text and str(2 ** 80) in text
    back = kefu.ctx.serializer.deserialize_json(text)
    data = back.get_task_from_id(task.id).data
    assert data["huge"] == 2 ** 80 and data["nan"] != data["nan"]


def test_a_value_no_encoder_writes_is_refused_as_before(kefu, scenario):
    wf = _workflow(kefu, scenario)
    task = next(iter(wf.get_tasks(state=TaskState.READY, manual=True)))
    task.data["odd"] = object()
    for write in (kefu.ctx.serializer.serialize_json, lambda w: _standard(kefu, w)):
        try:
            write(wf)
        except TypeError:
            continue
        raise AssertionError("an object no JSON encoder knows was written")
