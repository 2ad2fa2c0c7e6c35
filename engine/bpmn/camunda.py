"""Camunda 7 diagrams as Kefu runs them: the diagram tree is rewritten in place before it is checked and parsed
(JUEL into Python, service tasks into external tasks with a topic, the routing of lanes-less user tasks into
Python), and what Kefu cannot run is named with the element, its line and what to write instead.

A process is *laned* when one of its lanes names a Kefu role: its user tasks are worked by that lane's role
and ``camunda:assignee`` / ``camunda:candidateGroups`` are Python expressions, as Kefu's own diagrams have
always had them. In any other process (no lanes, or lanes that are only drawn) a user task is offered to its
``camunda:candidateGroups`` (Kefu roles or user groups) and ``camunda:candidateUsers``, or assigned to its
``camunda:assignee`` (a literal user name, or ``${...}``); with none of these it goes to the role of the user
who started the instance.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.bpmn import juel

B = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
C = "{http://camunda.org/schema/1.0/bpmn}"
KEFU = "{urn:kefu}"

# camunda: attributes Kefu reads (some of them only to name what it does not run)
READ_ATTRS = {"assignee", "candidateGroups", "candidateUsers", "initiator", "type", "topic", "class",
              "delegateExpression", "expression", "formKey", "formRef", "formRefBinding", "formRefVersion",
              "resource", "decisionRef", "collection", "elementVariable"}
# camunda: attributes about Camunda's own job executor, history or tasklist: nothing to do in Kefu, no warning
HARMLESS_ATTRS = {"historyTimeToLive", "versionTag", "isStartableInTasklist", "candidateStarterGroups",
                  "candidateStarterUsers", "asyncBefore", "asyncAfter", "exclusive", "jobPriority", "taskPriority",
                  "priority", "modelerTemplate", "modelerTemplateVersion", "calledElementBinding",
                  "calledElementTenantId", "caseTenantId", "variableName", "variableEvents", "errorCodeVariable",
                  "errorMessageVariable"}
READ_ELEMENTS = {"formData", "formField", "value", "validation", "constraint", "properties", "property",
                 "connector", "connectorId", "in", "out"}
HARMLESS_ELEMENTS = {"failedJobRetryTimeCycle"}
PYTHON = {"", "python", "py", "python3", "jython", "text/x-python"}
LANGUAGES = {"javascript": "JavaScript", "js": "JavaScript", "ecmascript": "JavaScript", "nashorn": "JavaScript",
             "graal.js": "JavaScript", "groovy": "Groovy", "juel": "JUEL", "xslt": "XSLT", "ruby": "Ruby",
             "jruby": "Ruby", "feel": "FEEL", "kotlin": "Kotlin"}
TICKET_PREFIX = re.compile(r"[A-Z][A-Z0-9]{0,7}")
_CRON = re.compile(r"^[0-9*?/,\-LW#A-Za-z]+(\s+[0-9*?/,\-LW#A-Za-z]+){4,6}$")
_ROUTING_ZH = {"assignee": "camunda:assignee", "candidateUsers": "camunda:candidateUsers",
               "candidateGroups": "camunda:candidateGroups"}


@dataclass
class Note:
    """What the translation found: an error (refused) or a warning, naming the element and its line."""
    severity: str
    code: str
    en: str
    zh: str
    element: str | None = None
    line: int | None = None


def _owner(node):
    while node is not None and not (node.get("id") and str(node.tag).startswith(B)
                                    and not str(node.tag).endswith("EventDefinition")):
        node = node.getparent()
    return node


class _Notes(list):
    def add(self, severity, code, en, zh, node):
        owner = _owner(node)
        self.append(Note(severity, code, en, zh, owner.get("id") if owner is not None else None,
                         node.sourceline))


def translate(root, lane_role) -> list[Note]:
    """Rewrite the Camunda 7 dialect of ``root`` in place; ``lane_role(name)`` gives the role a lane names."""
    notes = _Notes()
    for proc in root.iter(B + "process"):
        laned = any(lane_role(lane.get("name")) for lane in proc.iter(B + "lane"))
        declared = {s.get(C + "initiator") for s in proc.iter(B + "startEvent") if s.get(C + "initiator")}
        aliases = {} if "initiator" in declared else {"initiator": "started_by"}
        _expressions(proc, aliases, notes)
        _multi_instance(proc, notes)
        _user_tasks(proc, laned, aliases, notes)
        _service_tasks(proc, notes)
        _scripts(proc, notes)
        _call_activities(proc, notes)
        prefix = process_property(proc, "ticketPrefix")
        if prefix is not None and not TICKET_PREFIX.fullmatch(prefix):
            notes.add("error", "bad_ticket_prefix",
                      f"the ticket prefix {prefix!r} must be 1 to 8 capital letters or digits, starting with a letter",
                      f"工单号前缀 {prefix!r} 必须是 1 到 8 个大写字母或数字，并以字母开头", proc)
    return list(notes)


def process_property(proc, name: str) -> str | None:
    """A process-level ``camunda:property`` named ``kefu:<name>`` or ``<name>``."""
    for prop in proc.iterfind(f"./{B}extensionElements/{C}properties/{C}property"):
        if prop.get("name") in (f"kefu:{name}", name):
            return (prop.get("value") or "").strip()
    return None


def settings(root) -> dict[str, dict]:
    """Per process id: its ticket prefix (or None) and the variable ``camunda:initiator`` names (or None)."""
    out = {}
    for proc in root.iter(B + "process"):
        initiator = next((s.get(C + "initiator") for s in proc.iterfind(B + "startEvent")
                          if s.get(C + "initiator")), None)
        out[proc.get("id")] = {"ticket_prefix": process_property(proc, "ticketPrefix"), "initiator": initiator}
    return out


def derived_prefix(process_id: str) -> str:
    """A ticket prefix from a process id: its first two letters or digits, in capitals ("invoice-x" → "IN")."""
    chars = re.sub(r"[^A-Za-z0-9]", "", process_id or "").upper()
    return chars[:2] or "T"


# ---------------------------------------------------------------- expressions
def _juel(text: str, aliases, what: str, what_zh: str, node, notes) -> str | None:
    """The Python of a JUEL text, or None after noting the refusal."""
    try:
        return juel.translate(text, aliases)
    except juel.JuelError as exc:
        hint = (f"; write it in Python, e.g. {exc.suggestion}" if exc.suggestion
                else "; write it as a Python expression over the process data")
        hint_zh = f"；请改写为 Python，例如 {exc.suggestion}" if exc.suggestion else "；请改写为基于流程数据的 Python 表达式"
        notes.add("error", "juel_unsupported", f"{what} {text.strip()!r} is JUEL that Kefu does not translate "
                  f"({exc.reason}){hint}", f"{what_zh} {text.strip()!r} 是 Kefu 无法转换的 JUEL 表达式"
                  f"（{exc.reason}）{hint_zh}", node)
        return None


def _language(node, owner, notes) -> bool:
    """Whether an expression or script is Python (else the refusal is noted)."""
    ok = True
    lang = (node.get("language") or node.get("scriptFormat") or "").strip()
    if lang.lower() not in PYTHON:
        name = LANGUAGES.get(lang.lower(), lang)
        notes.add("error", "script_language", f"{name} is not supported: rewrite the "
                  f"{'script' if node.get('scriptFormat') is not None else 'expression'} in Python",
                  f"不支持 {name}：请用 Python 重写该{'脚本' if node.get('scriptFormat') is not None else '表达式'}",
                  owner)
        ok = False
    resource = node.get(C + "resource")
    if resource:
        notes.add("error", "script_resource", f"camunda:resource {resource!r} (code kept outside the diagram) is not "
                  "supported: write the code into the diagram, in Python",
                  f"不支持 camunda:resource {resource!r}（图外的代码）：请把代码用 Python 写在图中", owner)
        ok = False
    return ok


def _expressions(proc, aliases, notes) -> None:
    for flow in proc.iter(B + "sequenceFlow"):
        cond = flow.find(B + "conditionExpression")
        if cond is not None:
            _expression(cond, flow, "condition", "条件", aliases, notes)
    for cond in proc.iter(B + "condition"):  # conditional events
        _expression(cond, cond, "condition", "条件", aliases, notes)
    for tag in ("loopCardinality", "completionCondition"):
        for node in proc.iter(B + tag):
            _expression(node, node, tag, tag, aliases, notes)
    for timer in proc.iter(B + "timerEventDefinition"):
        for kind in ("timeDate", "timeDuration", "timeCycle"):
            node = timer.find(B + kind)
            if node is None:
                continue
            text = (node.text or "").strip()
            if kind == "timeCycle" and not juel.is_juel(text) and _CRON.match(text.strip("\"'")):
                notes.add("error", "cron_timer", f"timer timeCycle {text!r} is a cron expression, which Kefu does not "
                          'support: use an ISO 8601 repeating interval in quotes, e.g. "R/PT24H" (every 24 hours) or '
                          '"R3/PT1H" (three times, hourly)', f"定时器 timeCycle {text!r} 是 cron 表达式，Kefu 不支持：请改用"
                          '带引号的 ISO 8601 重复间隔，例如 "R/PT24H"（每 24 小时）或 "R3/PT1H"（每小时一次，共三次）', node)
                node.set(KEFU + "refused", "1")
                continue
            _expression(node, node, f"timer {kind}", f"定时器 {kind}", aliases, notes)


def _expression(node, owner, what, what_zh, aliases, notes) -> None:
    if not _language(node, owner, notes):
        node.text, node.attrib["language"] = "None", "python"
        node.set(KEFU + "refused", "1")
        return
    text = node.text or ""
    if juel.is_juel(text):
        python = _juel(text, aliases, what, what_zh, node, notes)
        if python is None:
            node.set(KEFU + "refused", "1")
        node.text = python if python is not None else "None"


def _multi_instance(proc, notes) -> None:
    """Camunda's ``camunda:collection`` / ``camunda:elementVariable`` as BPMN's ``loopDataInputRef`` and
    ``inputDataItem``: one instance per item of the collection, the item in the element variable."""
    from lxml import etree
    for loop in proc.iter(B + "multiInstanceLoopCharacteristics"):
        collection = (loop.get(C + "collection") or "").strip()
        if not collection or loop.find(B + "loopDataInputRef") is not None:
            continue
        m = re.fullmatch(r"[$#]\{\s*([A-Za-z_]\w*)\s*\}|([A-Za-z_]\w*)", collection)
        if m is None:
            notes.add("error", "juel_unsupported", f"camunda:collection {collection!r} must name a variable that "
                      "holds the list (e.g. ${reviewers}): compute the list in a script task before",
                      f"camunda:collection "
                      f"{collection!r} 必须是保存列表的变量名（例如 ${{reviewers}}）：请先在脚本任务中算出列表", loop)
            continue
        ref = etree.Element(B + "loopDataInputRef")
        ref.text = m.group(1) or m.group(2)
        position = 1 if loop.find(B + "loopCardinality") is not None else 0
        loop.insert(position, ref)
        item = loop.get(C + "elementVariable")
        if item:
            data_item = etree.Element(B + "inputDataItem", id=item, name=item)
            loop.insert(position + 1, data_item)


# ---------------------------------------------------------------- user tasks
def _user_tasks(proc, laned: bool, aliases, notes) -> None:
    for task in proc.iter(B + "userTask"):
        form = task.get(C + "formKey") or task.get(C + "formRef")
        if form:
            fields = task.find(f"./{B}extensionElements/{C}formData/{C}formField") is not None
            what = "camunda:formKey" if task.get(C + "formKey") else "camunda:formRef"
            if fields:
                en, zh = (f"{what} {form!r} is not read by Kefu: the task shows its form fields (camunda:formData)",
                          f"Kefu 不读取 {what} {form!r}：任务显示其表单字段（camunda:formData）")
            else:
                en, zh = (f"{what} {form!r} is not read by Kefu, so the task has no fields: add them as form fields "
                          "(camunda:formData) in the properties panel", f"Kefu 不读取 {what} {form!r}，因此这个任务"
                          "没有表单字段：请在属性面板中以表单字段（camunda:formData）添加")
            notes.add("warning", "form_not_read", en, zh, task)
        for attr in ("assignee", "candidateUsers", "candidateGroups"):
            value = task.get(C + attr)
            if value is None or not value.strip():
                continue
            if laned:
                if attr == "candidateUsers":
                    notes.add("warning", "camunda_unsupported", "camunda:candidateUsers is ignored in a lane: the "
                              "lane's role works the task", "泳道中的 camunda:candidateUsers 会被忽略：由泳道的角色处理"
                              "该任务", task)
                elif juel.is_juel(value):
                    python = _juel(value, aliases, f"camunda:{attr}", _ROUTING_ZH[attr], task, notes)
                    task.set(C + attr, python if python is not None else "None")
                continue
            python = _routing(value, attr, aliases, task, notes)
            task.set(C + attr, python if python is not None else "None")


def _routing(value: str, attr: str, aliases, task, notes) -> str | None:
    """Python for the routing of a lanes-less user task: a literal name becomes a string, ``${...}`` is
    translated; candidate lists (comma-separated) become a list."""
    if attr == "assignee":
        items = [value.strip()]
    else:
        items = [p.strip() for p in re.split(r",(?![^{]*\})", value) if p.strip()]
    out = []
    for item in items:
        if juel.is_juel(item):
            python = _juel(item, aliases, f"camunda:{attr}", _ROUTING_ZH[attr], task, notes)
            if python is None:
                return None
            out.append(python)
        else:
            out.append(repr(item))
    return out[0] if attr == "assignee" else "[" + ", ".join(out) + "]"


# ---------------------------------------------------------------- service tasks → external tasks
def _topic(node) -> str | None:
    if node.get(C + "type") == "external":
        return (node.get(C + "topic") or "").strip() or None
    for attr in ("class", "delegateExpression", "expression"):
        text = (node.get(C + attr) or "").strip()
        if text:
            m = re.fullmatch(r"[$#]\{\s*(.*?)\s*\}", text, re.S)
            return (m.group(1) if m else text)[:255]
    connector = node.find(f"./{B}extensionElements/{C}connector/{C}connectorId")
    if connector is not None and (connector.text or "").strip():
        return connector.text.strip()[:255]
    return None


def _service_tasks(proc, notes) -> None:
    for kind in ("serviceTask", "sendTask", "businessRuleTask"):
        for node in list(proc.iter(B + kind)):
            if kind == "businessRuleTask" and node.get(C + "decisionRef"):
                notes.add("error", "decision_ref", f"a business rule task calling the DMN decision "
                          f"{node.get(C + 'decisionRef')!r} is not supported: decide with a gateway and conditions, "
                          "or a script task in Python", f"不支持调用 DMN 决策 {node.get(C + 'decisionRef')!r} 的业务规则"
                          "任务：请改用网关和条件，或用 Python 脚本任务", node)
                node.tag = B + "task"  # named once: the engine's parse goes on past it
                node.set(KEFU + "refused", "1")
                continue
            topic = _topic(node)
            if node.get(C + "type") == "external" and topic is None:
                notes.add("error", "external_without_topic", "an external task needs a topic (camunda:topic)",
                          "外部任务需要主题（camunda:topic）", node)
                topic = node.get("id")
            if topic is None:
                if kind != "serviceTask":
                    continue
                topic = node.get("id")
                notes.add("warning", "service_without_implementation", f"the service task has no implementation: "
                          f"it waits as an external task with the topic {topic!r} until a worker completes it",
                          f"服务任务没有实现：它将作为主题为 {topic!r} 的外部任务等待工作者完成", node)
            node.tag = B + "serviceTask"
            node.set(C + "topic", topic)


# ---------------------------------------------------------------- scripts and call activities
def _scripts(proc, notes) -> None:
    for node in proc.iter(B + "scriptTask"):
        node.set("scriptFormat", node.get("scriptFormat") or "python")
        if not _language(node, node, notes):
            script = node.find(B + "script")
            if script is None:
                from lxml import etree
                script = etree.SubElement(node, B + "script")
            script.text = "pass"
            node.set("scriptFormat", "python")
            node.set(KEFU + "refused", "1")


def _call_activities(proc, notes) -> None:
    for node in proc.iter(B + "callActivity"):
        mappings = [io for tag in ("in", "out") for io in node.iterfind(f"./{B}extensionElements/{C}{tag}")
                    if io.get("variables") != "all" and not io.get("businessKey")]
        if mappings:
            notes.add("warning", "variable_mapping", "camunda:in/camunda:out mappings are not applied: the called "
                      "process gets all variables and returns all of them", "不应用 camunda:in/camunda:out 映射："
                      "被调用的流程获得全部变量并返回全部变量", node)
