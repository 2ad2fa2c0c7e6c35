"""Changing a procedure, engine half: the lint before deploy (each finding names the element and says what is
wrong in Chinese and English), the test run, deploy with a change summary, and moving instances."""
from pathlib import Path

import pytest

from engine.lint import lint_diagram
from tests.conftest import PROCESSES
from tests.factories import diagram

MINI = Path(diagram("mini.bpmn")).read_text(encoding="utf-8")
GATEWAY = ('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="gw"/>'
           '<bpmn:exclusiveGateway id="gw"/>'
           '<bpmn:sequenceFlow id="g1" sourceRef="gw" targetRef="handle">'
           "<bpmn:conditionExpression>severity == 'major'</bpmn:conditionExpression></bpmn:sequenceFlow>"
           '<bpmn:sequenceFlow id="g2" sourceRef="gw" targetRef="end">'
           "<bpmn:conditionExpression>severity != 'major'</bpmn:conditionExpression></bpmn:sequenceFlow>")


def with_gateway(text: str = MINI) -> str:
    text = text.replace('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle"/>', GATEWAY)
    return text.replace("<bpmn:flowNodeRef>compute</bpmn:flowNodeRef>",
                        "<bpmn:flowNodeRef>compute</bpmn:flowNodeRef><bpmn:flowNodeRef>gw</bpmn:flowNodeRef>")


def only(report, code):
    found = [f for f in report.findings if f.code == code]
    assert found, [str(f) for f in report.findings]
    return found[0]


# ---------------------------------------------------------------- lint


@pytest.mark.parametrize("path", sorted(PROCESSES.glob("*.bpmn")), ids=lambda p: p.name)
def test_the_shipped_diagrams_pass_the_lint(path):
    report = lint_diagram(path.read_bytes(), path.name)
    assert report.ok and not report.errors, [str(f) for f in report.findings]
    assert report.process_ids


@pytest.mark.parametrize("change, code, element, en, zh", [
    (('name="department"', 'name="warehouse"'), "lane_without_role", "Lane_department",
     "names no single role", "未对应唯一的角色"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDuration>PT2H</bpmn:timeDuration>"),
     "unquoted_duration", "timer_handle", "quote the duration", "请给时长加引号"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDate>${deadline}</bpmn:timeDate>"),
     "camunda_syntax", "timer_handle", "Camunda/JUEL", "Camunda/JUEL 语法"),
    (('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle"/>',
      '<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle">'
      '<bpmn:conditionExpression>${severity == "major"}</bpmn:conditionExpression></bpmn:sequenceFlow>'),
     "camunda_syntax", "f3", "Camunda/JUEL", "Camunda/JUEL 语法"),
    (("ratio = 100 // divisor", "ratio = 100 //"), "script_rejected", "compute", "syntax error", "脚本无法在沙箱中编译"),
    (("ratio = 100 // divisor", "import os"), "script_rejected", "compute", "imports are not allowed",
     "脚本无法在沙箱中编译"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDate>due_at(deadline.__class__)</bpmn:timeDate>"),
     "expression_rejected", "timer_handle", "does not compile in the sandbox", "无法在沙箱中编译"),
    (('<camunda:formField id="contact_phone"', '<camunda:formField id="customer_name"'), "field_duplicate",
     "register", "duplicate field id", "字段 id 重复"),
    (('<camunda:formField id="contact_phone"', '<camunda:formField id="1phone"'), "field_bad_id",
     "register", "must start with a letter", "必须以字母开头"),
    (('type="datetime"', 'type="money"'), "field_unknown_type", "register", "unknown field type 'money'",
     "未知的字段类型 'money'"),
    (('<camunda:formField id="result"', '<camunda:formField id="compute"'), "field_shadows_element", "handle",
     "same id as an element", "与图中元素的 id 相同"),
    (('<camunda:formField id="contact_phone" label="联系电话" type="string"/>',
      '<camunda:formField id="contact_phone" label="联系电话" type="string">'
      '<camunda:validation><camunda:constraint name="maxlength" config="many"/></camunda:validation>'
      '</camunda:formField>'), "field_bad_constraint", "register", "needs a number", "需要数字"),
    (('<camunda:value id="major" name="重大"/>', '<camunda:value id="general" name="重大"/>'),
     "field_enum_options", "register", "distinct, non-empty ids", "不重复"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDate>due_at(customer_name)</bpmn:timeDate>"),
     "timer_fails", "timer_handle", "fails on sample data", "在样例数据上出错"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDate>divisor + 1</bpmn:timeDate>"),
     "timer_fails", "timer_handle", "not an ISO 8601 text", "在样例数据上出错"),
    (('<bpmn:endEvent id="end"/>', '<bpmn:endEvent id="end"/><bpmn:teleport id="beam"/>'), "schema", "beam",
     "not valid BPMN 2.0", "不是有效的 BPMN 2.0"),
    (('<bpmn:endEvent id="end"/>', '<bpmn:endEvent id="end"><bpmn:teleport/></bpmn:endEvent>'), "schema", "end",
     "bpmn:teleport", "未知或位置错误的元素"),
    (("<bpmn:flowNodeRef>handle</bpmn:flowNodeRef>", ""), "task_without_lane", "handle", "in no lane",
     "不在任何泳道中"),
])
def test_each_lint_case_names_the_element_in_both_languages(change, code, element, en, zh):
    assert change[0] in MINI
    report = lint_diagram(MINI.replace(*change), "broken.bpmn")
    assert not report.ok
    f = only(report, code)
    assert f.severity == "error" and f.element_id == element, str(f)
    assert en in f.message("en") and zh in f.message("zh_CN"), str(f)
    d = f.to_dict()
    assert d["element_id"] == element and d["code"] == code and d["message"] == {"en": f.en, "zh": f.zh}
    assert report.to_dict()["ok"] is False and report.to_dict()["errors"] == len(report.errors) >= 1


def test_gateway_without_default_and_flow_without_condition():
    report = lint_diagram(with_gateway(), "gw.bpmn")
    f = only(report, "gateway_without_default")
    assert f.element_id == "gw" and "default flow" in f.message("en") and "默认连线" in f.message("zh_CN")
    with_default = with_gateway().replace('<bpmn:exclusiveGateway id="gw"/>',
                                          '<bpmn:exclusiveGateway id="gw" default="g2"/>')
    assert lint_diagram(with_default).ok
    no_cond = with_default.replace("<bpmn:conditionExpression>severity == 'major'</bpmn:conditionExpression>", "")
    f = only(lint_diagram(no_cond), "flow_without_condition")
    assert f.element_id == "gw" and "'g1'" in f.message("en") and "没有条件" in f.message("zh_CN")


@pytest.mark.parametrize("text, code, en", [
    ("", "empty", "empty"),
    ("   \n", "empty", "empty"),
    ("<nope", "invalid_xml", "invalid XML"),
    (MINI.replace("</bpmn:process>", "</bpmn:proces>"), "invalid_xml", "invalid XML"),
    ('<?xml version="1.0"?><html/>', "not_bpmn", "root element"),
    (MINI.replace('isExecutable="true"', 'isExecutable="false"'), "no_executable_process", "no executable"),
    (MINI.replace('id="mini"', 'id="mini-x"'), "bad_process_id", "process id"),
])
def test_files_that_are_not_diagrams_are_findings_not_exceptions(text, code, en):
    report = lint_diagram(text, "x.bpmn")
    f = only(report, code)
    assert not report.ok and en in f.message("en") and f.message("zh_CN") != ""
    if code == "invalid_xml" and text.strip() != "<nope":
        assert f.line


def test_camunda_modeler_extras_are_warnings_naming_the_element():
    text = MINI.replace('<bpmn:userTask id="handle"', '<bpmn:userTask id="handle" camunda:formKey="embedded:x"')
    text = text.replace('label="联系电话" type="string"/>', 'label="联系电话" type="string" camunda:readonly="1"/>')
    text = text.replace("<camunda:formData>", '<camunda:inputOutput><camunda:inputParameter name="a">1'
                                              "</camunda:inputParameter></camunda:inputOutput><camunda:formData>", 1)
    report = lint_diagram(text, "modeler.bpmn")
    assert report.ok, [str(f) for f in report.errors]
    warned = {(f.element_id, f.en.split(" ")[0]) for f in report.warnings}
    assert ("handle", "camunda:formKey") in warned
    assert ("register", "camunda:readonly") in warned
    assert ("register", "camunda:inputOutput") in warned
    assert all(f.code == "camunda_unsupported" and "Kefu 不支持" in f.message("zh_CN") for f in report.warnings)


def test_timer_on_sample_data_uses_the_given_sample():
    text = MINI.replace("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>",
                        "<bpmn:timeDate>add_hours(deadline, 2)</bpmn:timeDate>")
    assert lint_diagram(text).ok
    f = only(lint_diagram(text, sample={"deadline": "tomorrow"}), "timer_fails")
    assert f.element_id == "timer_handle"
