"""What changed between two versions of a diagram: elements added, removed and changed, form fields added,
removed and relabelled, timers changed. Stored with each deployed version and shown on the definitions page;
the migration check reads the same element signatures."""
from __future__ import annotations

from engine.bpmn.diagram import B, BPMN_NS, safe_xml
from engine.bpmn.forms import read_form

# Elements of a process that are compared (diagram layout, lanes' flowNodeRefs and data are not).
_SKIP = {"laneSet", "lane", "flowNodeRef", "documentation", "extensionElements", "incoming", "outgoing",
         "conditionExpression", "script", "timerEventDefinition", "timeDate", "timeDuration", "timeCycle",
         "text", "property", "dataObject", "dataObjectReference", "dataInput", "dataOutput",
         "inputDataItem", "outputDataItem", "multiInstanceLoopCharacteristics", "loopCardinality",
         "completionCondition", "errorEventDefinition", "messageEventDefinition", "signalEventDefinition",
         "terminateEventDefinition", "escalationEventDefinition", "conditionalEventDefinition", "condition"}
EMPTY = {"elements_added": [], "elements_removed": [], "elements_changed": [], "fields_added": [],
         "fields_removed": [], "fields_relabelled": [], "timers_changed": []}


def _local(tag) -> str:
    return tag.split("}", 1)[1] if isinstance(tag, str) and tag.startswith("{") else str(tag)


def _text(node, tag) -> str | None:
    found = node.find(B + tag)
    return (found.text or "").strip() if found is not None else None


def timer_of(node) -> dict | None:
    ted = node.find(B + "timerEventDefinition")
    if ted is None:
        return None
    return {k: v for k in ("timeDate", "timeDuration", "timeCycle") if (v := _text(ted, k)) is not None}


def without_lines(form: dict | None) -> dict | None:
    """A form without the source line of each field (moving a field down a line changes nothing)."""
    if not form:
        return form
    return {**form, "fields": [{k: v for k, v in f.items() if k != "line"} for f in form.get("fields", [])]}


def _lanes(proc) -> dict:
    out = {}
    for lane in proc.iter(B + "lane"):
        for ref in lane.iterfind(B + "flowNodeRef"):
            out[(ref.text or "").strip()] = lane.get("name")
    return out


def signatures(root) -> dict[str, dict]:
    """element id -> everything about an element that decides how it runs (keyed per process element)."""
    out = {}
    for proc in root.iter(B + "process"):
        lanes = _lanes(proc)
        outgoing: dict[str, list[str]] = {}
        for flow in proc.iter(B + "sequenceFlow"):
            outgoing.setdefault(flow.get("sourceRef"), []).append(flow.get("id"))
        for node in proc.iter():
            if not isinstance(node.tag, str) or not node.tag.startswith(B) or not node.get("id"):
                continue
            kind = _local(node.tag)
            if kind in _SKIP:
                continue
            sig = {"type": kind, "name": node.get("name"), "process": proc.get("id")}
            if kind == "sequenceFlow":
                sig.update(source=node.get("sourceRef"), target=node.get("targetRef"),
                           condition=_text(node, "conditionExpression"))
            else:
                sig["outgoing"] = sorted(outgoing.get(node.get("id"), []))
            if node.get("default"):
                sig["default"] = node.get("default")
            if node.get("attachedToRef"):
                sig.update(attached_to=node.get("attachedToRef"), cancel=node.get("cancelActivity", "true") == "true")
            script = _text(node, "script")
            if script is not None:
                sig["script"] = script
            timer = timer_of(node)
            if timer is not None:
                sig["timer"] = timer
            if kind == "userTask":
                sig["form"] = without_lines(read_form(node))
                sig["lane"] = lanes.get(node.get("id"))
                sig.update({a: node.get(f"{{http://camunda.org/schema/1.0/bpmn}}{a}")
                            for a in ("assignee", "candidateGroups")})
            mi = node.find(B + "multiInstanceLoopCharacteristics")
            if mi is not None:
                items = {k: (mi.find(B + k).get("name") if mi.find(B + k) is not None else None)
                         for k in ("inputDataItem", "outputDataItem")}
                sig["multi_instance"] = {"sequential": mi.get("isSequential") == "true",
                                         "cardinality": _text(mi, "loopCardinality"),
                                         "completion": _text(mi, "completionCondition"),
                                         "input": _text(mi, "loopDataInputRef"),
                                         "output": _text(mi, "loopDataOutputRef"), **items}
            if kind == "callActivity":
                sig["called"] = node.get("calledElement")
            out[node.get("id")] = sig
    return out


def _differences(a: dict, b: dict) -> list[str]:
    keys = [k for k in dict.fromkeys([*a, *b]) if k != "process"]
    return [k for k in keys if a.get(k) != b.get(k)]


def _fields(sig: dict) -> dict[str, dict]:
    return {f["id"]: f for f in ((sig.get("form") or {}).get("fields") or []) if f.get("id")}


def _root(xml):
    if xml is None:
        return None
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    return safe_xml(xml, "diagram.bpmn")


def change_summary(old_xml, new_xml) -> dict:
    """The changes from ``old_xml`` (None for a first version) to ``new_xml`` as plain data."""
    new = signatures(_root(new_xml))
    old = signatures(_root(old_xml)) if old_xml is not None else {}
    out = {k: [] for k in EMPTY}
    out["first_version"] = old_xml is None
    for eid, sig in new.items():
        if eid not in old:
            out["elements_added"].append({"id": eid, "type": sig["type"], "name": sig["name"]})
    for eid, sig in old.items():
        if eid not in new:
            out["elements_removed"].append({"id": eid, "type": sig["type"], "name": sig["name"]})
    for eid, after in new.items():
        before = old.get(eid)
        if before is None:
            continue
        changed = _differences(before, after)
        if changed:
            out["elements_changed"].append({"id": eid, "type": after["type"], "name_before": before["name"],
                                            "name": after["name"], "changed": changed})
        if before.get("timer") != after.get("timer") and (before.get("timer") or after.get("timer")):
            out["timers_changed"].append({"id": eid, "name": after["name"], "before": before.get("timer"),
                                          "after": after.get("timer")})
        if "form" in changed:
            bf, af = _fields(before), _fields(after)
            for fid, f in af.items():
                if fid not in bf:
                    out["fields_added"].append({"element": eid, "field": fid, "label": f.get("label")})
                elif bf[fid].get("label") != f.get("label"):
                    out["fields_relabelled"].append({"element": eid, "field": fid,
                                                     "label_before": bf[fid].get("label"),
                                                     "label": f.get("label")})
            for fid, f in bf.items():
                if fid not in af:
                    out["fields_removed"].append({"element": eid, "field": fid, "label": f.get("label")})
    for eid, sig in new.items():
        if eid not in old and sig.get("timer"):
            out["timers_changed"].append({"id": eid, "name": sig["name"], "before": None, "after": sig["timer"]})
    for eid, sig in old.items():
        if eid not in new and sig.get("timer"):
            out["timers_changed"].append({"id": eid, "name": sig["name"], "before": sig["timer"], "after": None})
    out["count"] = sum(len(out[k]) for k in ("elements_added", "elements_removed", "elements_changed"))
    return out


def describe(summary: dict | None) -> dict:
    """A one-line account of a change summary, ``{"en": ..., "zh": ...}``."""
    if not summary:
        return {"en": "", "zh": ""}
    if "targets" in summary:
        same = summary.get("targets_before") == summary.get("targets")
        return ({"en": "first version", "zh": "首个版本"} if summary.get("first_version") else
                {"en": "targets unchanged" if same else "targets changed", "zh": "时限未变" if same else "时限已改"})
    if summary.get("first_version"):
        return {"en": f"first version ({len(summary['elements_added'])} elements)",
                "zh": f"首个版本（{len(summary['elements_added'])} 个元素）"}
    parts = [(k, len(summary.get(k) or [])) for k in EMPTY]
    words = {"elements_added": ("element(s) added", "个元素新增"), "elements_removed": ("element(s) removed", "个元素删除"),
             "elements_changed": ("element(s) changed", "个元素修改"), "fields_added": ("field(s) added", "个字段新增"),
             "fields_removed": ("field(s) removed", "个字段删除"),
             "fields_relabelled": ("field(s) relabelled", "个字段改名"), "timers_changed": ("timer(s) changed", "个定时器修改")}
    parts = [(k, n) for k, n in parts if n]
    if not parts:
        return {"en": "no change to how it runs", "zh": "运行逻辑无变化"}
    return {"en": ", ".join(f"{n} {words[k][0]}" for k, n in parts),
            "zh": "、".join(f"{n} {words[k][1]}" for k, n in parts)}


__all__ = ["change_summary", "describe", "signatures", "timer_of", "BPMN_NS"]
