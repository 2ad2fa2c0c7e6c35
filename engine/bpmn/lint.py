"""The check before deploy: every problem of a diagram as a finding that names the element and says what is
wrong in Chinese and English.

Errors stop a deploy; warnings (e.g. a ``camunda:`` attribute Kefu ignores) do not. The checks:
invalid XML or a DOCTYPE, the BPMN 2.0 XSD (unknown elements), Kefu's rules from ``definitions.lint``
(expressions that do not compile in the sandbox, Camunda ``${...}`` syntax, unquoted durations, exclusive
gateways without a default flow, lanes that map to no role, malformed or duplicate form fields), Camunda
extensions Kefu does not support, timer expressions evaluated on sample data, and SpiffWorkflow's parser.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.exceptions import SpiffWorkflowException

from engine.bpmn import camunda, sandbox as scripting, screen
from engine.bpmn.diagram import B, C, CallUnresolved, _validator, lint as kefu_lint, parse_specs, safe_xml, translate
from engine.bpmn.gateways import open_gateways
from engine.bpmn.samples import sample_data
from engine.errors import DefinitionError

# Camunda attributes and extension elements that Kefu reads, or that mean nothing in Kefu and are left alone in
# silence; any other camunda: item is ignored at run time, with a warning.
SUPPORTED_CAMUNDA_ATTRS = camunda.READ_ATTRS | camunda.HARMLESS_ATTRS
SUPPORTED_CAMUNDA_ELEMENTS = camunda.READ_ELEMENTS | camunda.HARMLESS_ELEMENTS

# English message (as written by definitions.lint / forms.lint_form) -> (code, Chinese template).
_ZH = [
    ("no_executable_process", r"no executable process.*", "没有可执行的流程（isExecutable=\"true\"）"),
    ("bad_process_id", r"process id must be .*", "流程 id 必须以字母开头，只含字母、数字、'_'、'-' 或 '.'（最多 64 个）"),
    ("lane_without_role", r"lane name (.*) names no single role.*",
     r"泳道名 \1 未对应唯一的角色（agent、supervisor、department、technician、taskforce、qa 之一）"),
    ("task_without_lane", r"user task is in no lane.*", "用户任务不在任何泳道中，没有角色可以处理它"),
    ("field_shadows_element", r"form field (.*) has the same id as an element of the diagram",
     r"表单字段 \1 与图中元素的 id 相同"),
    ("field_bad_id", r"form field (.*): field id must start with a letter.*",
     r"表单字段 \1：字段 id 必须以字母开头，只含字母、数字或 '_'（最多 64 个）"),
    ("field_shadows_builtin", r"form field (.*): field id shadows a helper function or builtin",
     r"表单字段 \1：字段 id 与内置函数重名"),
    ("field_duplicate", r"form field (.*): duplicate field id", r"表单字段 \1：字段 id 重复"),
    ("field_unknown_type", r"form field (.*): unknown field type (.*) \(known.*", r"表单字段 \1：未知的字段类型 \2"),
    ("field_enum_empty", r"form field (.*): enum field without options", r"表单字段 \1：枚举字段没有选项"),
    ("field_enum_options", r"form field (.*): enum options need distinct, non-empty ids",
     r"表单字段 \1：枚举选项的 id 必须非空且不重复"),
    ("field_unknown_constraint", r"form field (.*): unknown constraint (.*)", r"表单字段 \1：未知的校验约束 \2"),
    ("field_bad_constraint", r"form field (.*): constraint (.*) needs a number, got (.*)",
     r"表单字段 \1：约束 \2 需要数字，实际为 \3"),
    ("field_no_label", r"form field (.*): field has no label", r"表单字段 \1：字段没有标签"),
    ("script_rejected", r"script does not compile in the sandbox: (.*)", r"脚本无法在沙箱中编译：\1"),
    ("camunda_syntax", r"(.*) uses Camunda/JUEL syntax.*",
     r"\1 使用了 Camunda/JUEL 语法；Kefu 的表达式是 Python（例如 severity == 'major'）"),
    ("unquoted_duration", r"timer (\w+) (.*) is a Python expression: quote the duration, e\.g\. (.*)",
     r"定时器 \1 \2 会被当作 Python 表达式：请给时长加引号，例如 \3"),
    ("expression_rejected", r"(.*) does not compile in the sandbox: (.*)", r"\1 无法在沙箱中编译：\2"),
    ("gateway_without_default", r"gateway with several outgoing flows has no default flow",
     "有多条出口连线的网关没有默认连线"),
    ("flow_without_condition", r"flow (.*) leaving the gateway has no condition", r"离开网关的连线 \1 没有条件"),
]


def zh_of(en: str) -> str:
    return translate_message(en)[1]


def translate_message(en: str) -> tuple[str, str]:
    """(code, Chinese text) of an English message of ``definitions.lint``."""
    for code, pattern, template in _ZH:
        m = re.fullmatch(pattern, en, re.S)
        if m:
            return code, m.expand(template)
    return "invalid", en


@dataclass
class Finding:
    severity: str          # "error" or "warning"
    en: str
    zh: str
    element: str | None = None
    line: int | None = None
    code: str = "invalid"  # stable machine-readable kind of problem, e.g. "gateway_without_default"

    @property
    def element_id(self) -> str | None:
        return self.element

    def message(self, locale: str = "zh_CN") -> str:
        return self.en if (locale or "").startswith("en") else self.zh

    def to_dict(self) -> dict:
        return {"severity": self.severity, "code": self.code, "element": self.element,
                "element_id": self.element, "line": self.line, "message": {"zh": self.zh, "en": self.en}}

    def __str__(self) -> str:
        where = ", ".join(p for p in (f"element '{self.element}'" if self.element else None,
                                      f"line {self.line}" if self.line else None) if p)
        return f"{self.severity}: {where + ': ' if where else ''}{self.en} / {self.zh}"


@dataclass
class LintReport:
    filename: str
    findings: list[Finding] = field(default_factory=list)
    process_ids: list[str] = field(default_factory=list)
    specs: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)  # processes called from other diagrams: id -> sha256
    root: object = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {"file": self.filename, "ok": self.ok, "process_ids": self.process_ids,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "findings": [f.to_dict() for f in self.findings]}


def lint_diagram(data: bytes | str, filename: str = "diagram.bpmn", sample: dict | None = None,
                 resolver=None) -> LintReport:
    """Every problem of one diagram in one pass; never raises for a bad diagram. ``resolver(process_id)``
    finds a process a call activity names outside the file (see ``diagram.parse_specs``)."""
    report = LintReport(filename)
    add = report.findings.append
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data or not data.strip():
        add(Finding("error", "the file is empty", "文件为空", code="empty"))
        return report
    try:
        root = safe_xml(data, filename)
    except DefinitionError as exc:
        reason = exc.details.get("reason") or exc.message
        code, zh = (("doctype", "图中不允许 DOCTYPE（拒绝外部实体）") if "DOCTYPE" in reason
                    else ("encoding", "图必须以 UTF-8 编码保存" + (f"（文件声明的编码是 {reason.split(chr(39))[1]}）"
                                                              if "declares" in reason else ""))
                    if "UTF-8" in reason
                    else ("too_large", "图太大") if "larger than" in reason
                    else ("not_bpmn", "根元素必须是 bpmn:definitions") if "root element" in reason
                    else ("invalid_xml", f"XML 无效：{reason.removeprefix('invalid XML: ')}"))
        add(Finding("error", reason, zh, line=exc.details.get("line"), code=code))
        return report
    report.root = root
    _schema(root, filename, add)
    _camunda_extensions(root, add)  # before the translation rewrites what it reads
    notes = translate(root)
    for n in notes:
        add(Finding(n.severity, n.en, n.zh, element=n.element, line=n.line, code=n.code))
    refused = {n.element for n in notes if n.severity == "error"}
    for p in kefu_lint(root, filename):
        reason = p.details.get("reason") or p.message
        code, zh = translate_message(reason)
        if p.details.get("element") in refused and code in _ECHOES:
            continue  # the translation already named what is wrong with this element
        add(Finding("error", reason, zh, element=p.details.get("element"), line=p.details.get("line"), code=code))
    for gw in open_gateways(root):
        add(Finding("warning", "the gateway has no default flow and its conditions may all be false: the instance "
                    "then stops there with an incident; add a default flow",
                    "网关没有默认连线，且其条件可能全部为假：此时工单会在这里停止并产生故障；请添加默认连线",
                    element=gw.get("id"), line=gw.sourceline, code="gateway_without_default"))
    _plain_steps(root, add)
    _layout(root, add)
    _test_data(root, add)
    _timers_on_sample(root, add, sample)
    _parse(report, root, filename, resolver)
    return report


# kefu lint findings that only repeat, for an element the translation refused, what it said
_ECHOES = {"camunda_syntax", "expression_rejected", "script_rejected", "timer_fails"}


def _schema(root, filename, add) -> None:
    """Every complaint of the BPMN 2.0 XSD (unknown or misplaced elements), not only the first."""
    validator = _validator()
    validator.preprocess(root)
    if validator.validator.validate(root):
        return
    for err in validator.validator.error_log:
        msg = err.message.replace(B, "bpmn:").replace(C, "camunda:")
        add(Finding("error", f"not valid BPMN 2.0 (unknown or misplaced element): {msg}",
                    f"不是有效的 BPMN 2.0（未知或位置错误的元素）：{msg}", element=_element_at(root, err.line, err.message),
                    line=err.line, code="schema"))


def _parse(report, root, filename, resolver) -> None:
    """SpiffWorkflow's parse: on an error naming an element, that element is set aside (in a copy) and the
    parse tried again, so that each of its complaints is reported, not only the first."""
    import copy
    tree, seen = root, set()
    for _attempt in range(20):
        try:
            pids, specs, calls = parse_specs(tree, filename, resolver)
        except CallUnresolved as exc:
            element = exc.details.get("element")
            add_finding(report, "call_unresolved", exc.details.get("reason") or exc.message, element,
                        exc.details.get("line"), zh=exc.details.get("zh"))
        except (ValidationException, SpiffWorkflowException) as exc:
            element = getattr(exc, "id", None) or getattr(exc, "name", None)
            msg = str(getattr(exc, "message", None) or exc).split("\n")[0].rstrip(". ")
            node = tree.xpath("//*[@id=$i]", i=element) if element else []
            line = getattr(exc, "line_number", None) or (node[0].sourceline if node else None)
            add_finding(report, "engine_parse", f"the engine cannot parse it: {msg}", element, line,
                        zh=f"引擎无法解析：{msg}")
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            add_finding(report, "engine_parse", f"the engine cannot parse it: {exc}", None, None,
                        zh=f"引擎无法解析：{exc}")
            return
        else:
            if not report.errors:
                report.process_ids, report.specs, report.calls = pids, specs, calls
            return
        if not element or element in seen:
            return
        seen.add(element)
        if tree is root:
            tree = copy.deepcopy(root)
        if not _set_aside(tree, element):
            return


def add_finding(report, code, en, element, line, zh=None) -> None:
    report.findings.append(Finding("error", en, zh or en, element=element, line=line, code=code))


def _set_aside(tree, element: str) -> bool:
    """Make the element a plain task (a gateway a parallel one) so the parse can go on past it."""
    found = tree.xpath("//*[@id=$i]", i=element)
    if not found:
        return False
    node = found[0]
    local = str(node.tag)[len(B):] if str(node.tag).startswith(B) else ""
    if local.endswith("Gateway"):
        node.tag = B + "parallelGateway"
        node.attrib.pop("default", None)
    elif local in ("sequenceFlow",):
        for cond in node.findall(B + "conditionExpression"):
            node.remove(cond)
    elif local.endswith(("Task", "Activity")) or local in ("task", "subProcess"):
        keep = {B + "incoming", B + "outgoing"}
        for child in list(node):
            if child.tag not in keep:
                node.remove(child)
        node.tag = B + "task"
    else:
        return False
    return True


# Elements SpiffWorkflow runs without their BPMN meaning in Kefu: no message is sent or received.
_AS_PLAIN = {"sendTask": ("sends nothing", "不会发送任何消息"), "receiveTask": ("waits for nothing", "不会等待任何消息"),
             "manualTask": ("is worked like a user task without a form", "会当作没有表单的用户任务处理")}


def _plain_steps(root, add) -> None:
    for kind, (en, zh) in _AS_PLAIN.items():
        for node in root.iter(B + kind):
            add(Finding("warning", f"a {kind} {en} in Kefu; use a user task, a script task or a plain task",
                        f"在 Kefu 中 {kind} {zh}；请改用用户任务、脚本任务或普通任务", element=node.get("id"),
                        line=node.sourceline, code="plain_step"))


DI = "{http://www.omg.org/spec/BPMN/20100524/DI}"
# Steps a reader follows on the trace page; flows, lanes and data objects may lack a shape without harm.
_DRAWN = ("userTask", "scriptTask", "task", "serviceTask", "manualTask", "sendTask", "receiveTask",
          "businessRuleTask", "callActivity", "subProcess", "startEvent", "endEvent", "intermediateCatchEvent",
          "intermediateThrowEvent", "boundaryEvent", "exclusiveGateway", "parallelGateway", "inclusiveGateway",
          "eventBasedGateway")


def _layout(root, add) -> None:
    """A diagram runs without its layout (BPMN DI), but the modeler and the auditors' trace page draw from it:
    warn when it is missing, or when a step has no shape."""
    if root.find(f".//{DI}BPMNDiagram") is None:
        add(Finding("warning", "the file has no diagram layout (BPMN DI): it runs, but the modeler and the trace "
                               "page cannot draw it", "文件里没有流程图的图形布局（BPMN DI）：可以运行，但编辑器和"
                    "审计轨迹页无法显示它", code="no_layout"))
        return
    drawn = {shape.get("bpmnElement") for shape in root.iter(f"{DI}BPMNShape")}
    for node in root.iter(*(B + kind for kind in _DRAWN)):
        kind, node_id = node.tag[len(B):], node.get("id")
        if node_id and node_id not in drawn:
            add(Finding("warning", f"{kind} {node_id!r} has no shape in the diagram layout: the modeler and the "
                                   "trace page do not show it",
                        f"{kind} {node_id!r} 在图形布局中没有图形：编辑器和审计轨迹页不会显示它",
                        element=node_id, line=node.sourceline, code="no_shape"))


def _test_data(root, add) -> None:
    """A start event's ``test_data`` property (the start data of the test run) must be a JSON object."""
    import json
    for node in root.iter(B + "startEvent"):
        for prop in node.iterfind(f"./{B}extensionElements/{C}properties/{C}property"):
            if prop.get("name") != "test_data":
                continue
            try:
                ok = isinstance(json.loads(prop.get("value") or ""), dict)
            except ValueError:
                ok = False
            if not ok:
                add(Finding("error", "the property test_data must be a JSON object (the test run's start data)",
                            "属性 test_data 必须是 JSON 对象（试运行的启动数据）", element=node.get("id"),
                            line=prop.sourceline, code="test_data"))


def _element_at(root, line, msg) -> str | None:
    """The id of the element the schema complains about: the element of that line whose tag the message
    names, or its nearest ancestor with an id (an unknown element may have none)."""
    if not line:
        return None
    m = re.search(r"Element '([^']+)'", msg)
    at_line = [n for n in root.iter() if isinstance(n.tag, str) and n.sourceline == line]
    named = [n for n in at_line if m and n.tag == m.group(1)]
    for node in named or at_line:
        owner = node if node.get("id") else _owner(node)
        if owner is not None:
            return owner.get("id")
    return None


def _owner(node):
    """The nearest BPMN element with an id at or above ``node`` (a camunda: extension names its task)."""
    while node is not None and not (node.get("id") is not None and str(node.tag).startswith(B)):
        node = node.getparent()
    return node


def _where(node):
    owner = _owner(node)
    return (owner if owner is not None else node).get("id")


def _camunda_extensions(root, add) -> None:
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        for attr in node.attrib:
            if attr.startswith(C) and attr[len(C):] not in SUPPORTED_CAMUNDA_ATTRS:
                name = attr[len(C):]
                add(Finding("warning", f"camunda:{name} is not supported by Kefu and is ignored",
                            f"Kefu 不支持 camunda:{name}，运行时将忽略", element=_where(node),
                            line=node.sourceline, code="camunda_unsupported"))
        if node.tag.startswith(C) and node.tag[len(C):] not in SUPPORTED_CAMUNDA_ELEMENTS:
            name = node.tag[len(C):]
            add(Finding("warning", f"camunda:{name} is not supported by Kefu and is ignored",
                        f"Kefu 不支持 camunda:{name}，运行时将忽略", element=_where(node),
                        line=node.sourceline, code="camunda_unsupported"))


_ISO_DURATION = re.compile(r"^R?\d*/?P")


def _timers_on_sample(root, add, sample) -> None:
    timers = list(root.iter(B + "timerEventDefinition"))
    if not timers:
        return
    data = sample_data(root) if sample is None else sample
    env = scripting.BoundedEnvironment()
    for timer in timers:
        event = timer.getparent()
        for kind in ("timeDate", "timeDuration", "timeCycle"):
            node = timer.find(B + kind)
            text = (node.text or "").strip() if node is not None else ""
            if not text or "${" in text or screen.check(text, "eval") or _ISO_DURATION.match(text):
                continue  # already reported by definitions.lint
            names = set(re.findall(r"\b([A-Za-z_]\w*)\b", re.sub(r"(['\"]).*?\1", "", text)))
            unknown = {n for n in names if n not in data and n not in scripting.RESERVED_NAMES}
            if unknown and not all(n in {"now"} for n in unknown):
                # set by a step we cannot see statically (e.g. a service task): the test run covers it
                continue
            try:
                value = env.evaluate(text, dict(data))
                _check_timer_value(kind, value)
            except Exception as exc:  # noqa: BLE001 - any failure of the diagram's own code is the finding
                add(Finding("error", f"timer {kind} {text!r} fails on sample data: {exc}",
                            f"定时器 {kind} {text!r} 在样例数据上出错：{exc}", element=event.get("id"),
                            line=node.sourceline, code="timer_fails"))


def _check_timer_value(kind: str, value) -> None:
    if not isinstance(value, str):
        raise ValueError(f"the value is a {type(value).__name__}, not an ISO 8601 text")
    if kind == "timeDate":
        TimerEventDefinition.get_datetime(value)
    elif kind == "timeDuration":
        TimerEventDefinition.parse_iso_duration(value)
    else:
        TimerEventDefinition.parse_iso_recurring_interval(value)
