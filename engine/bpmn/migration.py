"""Moving a running instance to a newer version of its diagram.

Safe only when no step that has run or is running changed: every completed, started, ready or waiting
task's spec must exist in the new version with the same type, form, expressions, lane and flows
(SpiffWorkflow's ``SpecDiff`` compares the serialized specs). Steps still ahead may change freely. A move
keeps task ids (a claim stays), task data and timers' due times, and is an audit event ``instance_migrated``.
"""
from __future__ import annotations

import copy

from SpiffWorkflow.bpmn.util.diff import SpecDiff, WorkflowDiff, migrate_workflow
from SpiffWorkflow.util.task import TaskState
from engine.bpmn.changes import without_lines
from engine.errors import Conflict

RAN = TaskState.COMPLETED | TaskState.STARTED | TaskState.READY | TaskState.WAITING | TaskState.ERROR
KEEP = TaskState.READY | TaskState.WAITING


def _label(task, zh: bool = False) -> str:
    spec = task.task_spec
    name = getattr(spec, "bpmn_name", None)
    if not name:
        return f"'{spec.bpmn_id}'"
    return f"'{spec.bpmn_id}'（{name}）" if zh else f"'{spec.bpmn_id}' ({name})"


_ATTR_WORDS = {"extensions": "form or properties", "outputs": "outgoing flows", "inputs": "incoming flows",
               "cond_task_specs": "conditions", "default_task_spec": "default flow", "script": "script",
               "event_definition": "event or timer", "bpmn_name": "name", "documentation": "documentation",
               "typename": "type", "lane": "lane", "cancel_activity": "interrupting"}
_ATTR_ZH = {"extensions": "表单或属性", "outputs": "出口连线", "inputs": "入口连线", "cond_task_specs": "条件",
            "default_task_spec": "默认连线", "script": "脚本", "event_definition": "事件或定时器", "bpmn_name": "名称",
            "documentation": "说明", "typename": "类型", "lane": "泳道", "cancel_activity": "是否中断"}
_STATE_ZH = {"completed": "已完成", "running": "进行中", "ready": "待办", "waiting": "等待中", "failed": "失败"}


class Reason(str):
    """An English reason (the string itself) that also carries its Chinese text in ``zh``."""
    zh: str

    def __new__(cls, en: str, zh: str):
        obj = super().__new__(cls, en)
        obj.zh = zh
        return obj

    def message(self, locale: str = "en") -> str:
        return self.zh if (locale or "").startswith("zh") else str(self)


_STATE_WORDS = {TaskState.COMPLETED: "completed", TaskState.STARTED: "running", TaskState.READY: "ready",
                TaskState.WAITING: "waiting", TaskState.ERROR: "failed"}


def _reasons_in(diff, wf, version: int) -> list[str]:
    reasons = []
    removed, changed = set(diff.removed), set(diff.changed)
    for task in wf.get_tasks(state=RAN, skip_subprocesses=True):
        if not getattr(task.task_spec, "bpmn_id", None):
            continue
        state = _STATE_WORDS.get(task.state, "failed")
        if task in removed:
            reasons.append(Reason(f"{state} step {_label(task)} does not exist in version {version}",
                                  f"{_STATE_ZH[state]}的步骤 {_label(task, zh=True)} 在版本 {version} 中不存在"))
        elif task in changed:
            spec_diff = diff.spec_diff.changed.get(task.task_spec, [])
            what = ", ".join(sorted({_ATTR_WORDS.get(a, a) for a in spec_diff})) or "its definition"
            what_zh = "、".join(sorted({_ATTR_ZH.get(a, a) for a in spec_diff})) or "定义"
            reasons.append(Reason(f"{state} step {_label(task)} changed in version {version} ({what})",
                                  f"{_STATE_ZH[state]}的步骤 {_label(task, zh=True)} 在版本 {version} 中有改动（{what_zh}）"))
    return list(dict.fromkeys(reasons))


class _SpecDiff(SpecDiff):
    """SpiffWorkflow's spec comparison, blind to where a form field sits in the file (its line)."""

    def _compare_task_specs(self, spec, candidate):
        s1, s2 = self._registry.convert(spec), self._registry.convert(candidate)
        if s1.get("typename") != s2.get("typename"):
            return ["typename"]
        for s in (s1, s2):
            ext = s.get("extensions")
            if isinstance(ext, dict) and ext.get("form"):
                s["extensions"] = {**ext, "form": without_lines(ext["form"])}
        return [key for key, value in s1.items() if s2.get(key) != value]


def _diff(registry, wf, spec) -> WorkflowDiff:
    spec_diff = _SpecDiff(registry, wf.spec, spec)
    diff = WorkflowDiff(wf, spec_diff)
    diff.spec_diff = spec_diff  # the reasons name the changed attributes
    return diff


def _diffs(ctx, wf, target):
    spec, subs = ctx.specs.get(target)
    registry = ctx.serializer.registry
    top = _diff(registry, wf, spec)
    sub_diffs = {sp_id: _diff(registry, sp, subs[sp.spec.name]) if sp.spec.name in subs else None
                 for sp_id, sp in wf.subprocesses.items()}
    return spec, subs, top, sub_diffs


def reasons(ctx, inst, target, wf) -> list[str]:
    """Why moving ``inst`` (its workflow ``wf``) to the definition ``target`` is unsafe (empty: safe).
    ``ctx``: where the parsed specs and the serializer's registry are found."""
    current = inst.definition
    out = []
    if target.version <= current.version:
        out.append(Reason(f"the instance runs on version {current.version}; it can only move to a newer version",
                          f"工单运行在版本 {current.version} 上，只能迁移到更新的版本"))
    if inst.status == "completed":
        out.append(Reason("the instance has ended", "工单已结束"))
    elif inst.status == "incident":
        out.append(Reason("the instance has an incident; retry the failed step first", "工单有故障，请先重试失败的步骤"))
    if out:
        return out
    spec, subs, top, sub_diffs = _diffs(ctx, wf, target)
    out.extend(_reasons_in(top, wf, target.version))
    for sp_id, d in sub_diffs.items():
        sp = wf.subprocesses[sp_id]
        if d is None:
            out.append(Reason(f"sub-process {sp.spec.name!r} does not exist in version {target.version}",
                              f"子流程 {sp.spec.name!r} 在版本 {target.version} 中不存在"))
        else:
            out.extend(_reasons_in(d, sp, target.version))
    return out


def _migrate(diff, wf, spec) -> None:
    kept = {t.id: (t.state, copy.deepcopy(t.internal_data), copy.deepcopy(t.data))
            for t in wf.get_tasks(state=KEEP, skip_subprocesses=True)}
    migrate_workflow(diff, wf, spec)
    for task in wf.get_tasks(skip_subprocesses=True):
        if task.id in kept:
            state, internal, data = kept[task.id]
            # re-predicting a ready/waiting task must not restart its timer or touch its data
            task.internal_data, task.data = internal, data
            if task.state != state:
                task._set_state(state)


def apply_migration(ctx, wf, target) -> None:
    """Move the workflow ``wf`` onto ``target``'s specs in place (the caller has checked it is safe); also used
    by the audit replay to re-apply a recorded ``instance_migrated``."""
    spec, subs, top, sub_diffs = _diffs(ctx, wf, target)
    _migrate(top, wf, spec)
    for sp_id, d in sub_diffs.items():
        sp = wf.subprocesses[sp_id]
        _migrate(d, sp, subs[sp.spec.name])
    wf.subprocess_specs = subs
    stale = [t for t in wf.get_tasks() if t.task_spec not in _all_specs(spec, subs)]
    if stale:
        step = stale[0].task_spec.name
        raise Conflict(f"the instance cannot be moved: step {step!r} has no place in version {target.version}",
                       message_zh=f"工单不能迁移：步骤 {step!r} 在版本 {target.version} 中没有对应的位置")


def _all_specs(spec, subs) -> set:
    out = set(spec.task_specs.values())
    for sub in subs.values():
        out.update(sub.task_specs.values())
    return out
