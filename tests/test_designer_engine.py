"""Changing a procedure, engine half: the lint before deploy (each finding names the element and says what is
wrong in Chinese and English), the test run, deploy with a change summary, and moving instances."""
import re
from datetime import timedelta
from pathlib import Path

import pytest

from engine.bpmn.lint import lint_diagram
from tests.conftest import PROCESSES
from tests.factories import diagram, p13_record

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
    from engine.bpmn.testrun import test_run
    for run in test_run(report):
        assert run.ok and run.paths and all(p.completed for p in run.paths), run.to_dict()
        assert run.unreached == [], run.unreached


@pytest.mark.parametrize("change, code, element, en, zh", [
    (('name="department"', 'name="warehouse"'), "lane_without_role", "Lane_department",
     "names no single role", "未对应唯一的角色"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDuration>PT2H</bpmn:timeDuration>"),
     "unquoted_duration", "timer_handle", "quote the duration", "请给时长加引号"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDate>${deadline.plusHours(2)}</bpmn:timeDate>"),
     "juel_unsupported", "timer_handle", "is JUEL that Kefu does not translate", "无法转换的 JUEL 表达式"),
    (('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle"/>',
      '<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle">'
      '<bpmn:conditionExpression>${severity.length() > 2}</bpmn:conditionExpression></bpmn:sequenceFlow>'),
     "juel_unsupported", "f3", "method calls are not translated", "无法转换的 JUEL 表达式"),
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
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", '<bpmn:timeDuration>"PT2X"</bpmn:timeDuration>'),
     "timer_fails", "timer_handle", "fails on sample data", "在样例数据上出错"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDate>'tomorrow'</bpmn:timeDate>"),
     "timer_fails", "timer_handle", "fails on sample data", "在样例数据上出错"),
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
    # complementary conditions cannot all be false: no default flow needed
    assert [f.code for f in lint_diagram(with_gateway(), "gw.bpmn").findings if f.element_id == "gw"] == ["no_shape"]
    open_ended = with_gateway().replace("severity != 'major'", "severity == 'general'")  # severity may be empty
    report = lint_diagram(open_ended, "gw.bpmn")
    f = only(report, "gateway_without_default")
    assert report.ok and f.severity == "warning", [str(x) for x in report.findings]
    assert f.element_id == "gw" and "default flow" in f.message("en") and "默认连线" in f.message("zh_CN")
    assert "incident" in f.message("en") and "故障" in f.message("zh_CN")
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
    (MINI.replace('id="mini"', 'id="1mini"'), "bad_process_id", "process id"),
])
def test_files_that_are_not_diagrams_are_findings_not_exceptions(text, code, en):
    report = lint_diagram(text, "x.bpmn")
    f = only(report, code)
    assert not report.ok and en in f.message("en") and f.message("zh_CN") != ""
    if code == "invalid_xml" and text.strip() != "<nope":
        assert f.line


def test_a_diagram_without_its_layout_or_with_a_step_left_undrawn_is_a_warning_not_an_error():
    """It runs, but the modeler and the trace page draw from the layout (BPMN DI)."""
    bare = re.sub(r"\s*<bpmndi:BPMNDiagram.*</bpmndi:BPMNDiagram>", "", MINI, flags=re.S)
    report = lint_diagram(bare, "bare.bpmn")
    assert report.ok and [f.code for f in report.warnings] == ["no_layout"]
    assert "BPMN DI" in report.warnings[0].en and "图形布局" in report.warnings[0].message("zh_CN")
    gap = re.sub(r'<bpmndi:BPMNShape id="compute_di".*?</bpmndi:BPMNShape>', "", MINI)
    report = lint_diagram(gap, "gap.bpmn")
    assert report.ok and [(f.code, f.element_id) for f in report.warnings] == [("no_shape", "compute")]
    assert [f.code for f in lint_diagram(MINI, "mini.bpmn").warnings] == []
    for real in sorted(PROCESSES.glob("*.bpmn")):  # the shipped diagrams are drawn completely
        assert lint_diagram(real.read_bytes(), real.name).warnings == [], real.name


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
    assert all(f.code == "camunda_unsupported" and "Kefu 不支持" in f.message("zh_CN") for f in report.warnings
               if f.element_id != "handle")
    form_key = only(report, "form_not_read")
    assert form_key.element_id == "handle" and "is not read by Kefu" in form_key.en and "不读取" in form_key.zh


@pytest.mark.parametrize("tag, ok, code", [("complexGateway", False, "engine_parse"),
                                            ("serviceTask", True, "service_without_implementation"),
                                            ("callActivity", False, "engine_parse"),
                                            ("sendTask", True, "plain_step"), ("receiveTask", True, "plain_step"),
                                            ("manualTask", True, "plain_step")])
def test_elements_kefu_does_not_run_are_named(tag, ok, code):
    text = MINI.replace('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle"/>',
                        f'<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="x"/><bpmn:{tag} id="x"/>'
                        '<bpmn:sequenceFlow id="fx" sourceRef="x" targetRef="handle"/>')
    text = text.replace("<bpmn:flowNodeRef>compute</bpmn:flowNodeRef>",
                        "<bpmn:flowNodeRef>compute</bpmn:flowNodeRef><bpmn:flowNodeRef>x</bpmn:flowNodeRef>")
    report = lint_diagram(text)
    f = only(report, code)
    assert report.ok is ok and f.element_id == "x" and f.severity == ("warning" if ok else "error")
    assert not f.message("en").endswith("..")


def test_timer_on_sample_data_uses_the_given_sample():
    text = MINI.replace("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>",
                        "<bpmn:timeDate>add_hours(deadline, 2)</bpmn:timeDate>")
    assert lint_diagram(text).ok
    f = only(lint_diagram(text, sample={"deadline": "tomorrow"}), "timer_fails")
    assert f.element_id == "timer_handle"


# ---------------------------------------------------------------- test run

from engine.bpmn.testrun import test_run_xml as run_xml  # noqa: E402


def test_test_run_walks_each_path_of_the_complaint_diagram_without_the_database():
    (report,) = run_xml((PROCESSES / "complaint.bpmn").read_bytes(), "complaint.bpmn")
    assert report.ok and report.process_id == "complaint", report.to_dict()
    choices = [p.choice for p in report.paths]
    assert {} in choices and {"severity": "major"} in choices and {"satisfied": True} in choices
    by_choice = {tuple(p.choice.items()): p for p in report.paths if p.boundary is None}
    major = by_choice[(("severity", "major"),)]
    assert "taskforce_investigate" in major.steps and "department_handle" not in major.steps
    plain = by_choice[()]
    # The run's default answers: the customer is still unhappy after the care (Q2), so the plain path ends there
    assert plain.steps[0] == "start" and plain.steps[-1] == "end_care_unsatisfied" and plain.completed
    assert by_choice[(("care_satisfied", True),)].steps[-1] == "end_closed"
    assert plain.steps.count("feedback") == 2  # not satisfied once: the loop is taken, then left
    assert "wait_revisit" in plain.timers_fired  # the revisit timer fired on the run's own clock
    assert report.to_dict()["paths"][0]["steps"] == report.paths[0].steps


def test_test_run_reports_a_failing_step_by_element():
    broken = MINI.replace("ratio = 100 // divisor", "ratio = 100 // (divisor - 1)")
    assert lint_diagram(broken).ok
    (report,) = run_xml(broken, "mini.bpmn")
    assert not report.ok
    (path,) = report.paths
    assert path.failed_at == "compute" and "division" in path.failure and not path.completed
    assert path.steps[:2] == ["start", "register"]


def test_test_run_does_not_run_a_diagram_that_fails_the_lint():
    (report,) = run_xml(MINI.replace('name="department"', 'name="warehouse"'), "mini.bpmn")
    assert not report.ok and not report.paths and report.lint_errors[0]["element"] == "Lane_department"
    assert "lint" in report.to_dict()["message"]["en"]


def test_test_run_stops_a_loop_that_never_ends_and_names_it(monkeypatch):
    text = with_gateway().replace('<bpmn:exclusiveGateway id="gw"/>', '<bpmn:exclusiveGateway id="gw" default="g1"/>')
    text = text.replace('targetRef="end">', 'targetRef="register">').replace("severity != 'major'", "True")
    (report,) = run_xml(text, "loop.bpmn")
    (path,) = report.paths
    assert not report.ok and "does not end" in path.failure and path.failed_at == "register"
    from engine.bpmn import testrun
    monkeypatch.setattr(testrun, "TIME_BUDGET", 0.0)
    (report,) = run_xml(MINI, "mini.bpmn")
    assert "takes longer than" in report.paths[0].failure


def test_test_run_names_branches_no_sample_reached():
    text = with_gateway().replace('<bpmn:exclusiveGateway id="gw"/>', '<bpmn:exclusiveGateway id="gw" default="g2"/>')
    text = text.replace("severity == 'major'", "severity == 'never'")
    (report,) = run_xml(text, "gw.bpmn")
    assert report.ok
    assert report.unreached == [{"gateway": "gw", "flow": "g1", "target": "handle"},
                                {"boundary": "timer_handle", "attached_to": "handle", "event": "timer"}]


# ---------------------------------------------------------------- deploy, versions, change summary

from sqlalchemy import select  # noqa: E402

from engine import DefinitionError, NotAllowed, NotFound  # noqa: E402
from engine.store.tables import DefinitionChange  # noqa: E402
from tests.factories import make_kefu  # noqa: E402
from tests.pg import on_both_databases  # noqa: E402


@pytest.fixture
def owner_kefu(db_url, clock):
    k = make_kefu(db_url, clock, deploy=(), demo=True)
    yield k
    k.db.dispose()


def test_deploy_xml_creates_versions_with_a_change_summary(owner_kefu):
    k = owner_kefu
    first = k.designer.deploy_xml(MINI.encode(), "mini.bpmn", "owner")
    assert (first["process_id"], first["version"], first["created"]) == ("mini", 1, True)
    assert len(first["sha"]) == 64 and first["summary"]["first_version"] and first["warnings"] == []
    again = k.designer.deploy_xml(MINI.encode(), "mini.bpmn", "owner")
    assert (again["version"], again["created"]) == (1, False)
    changed = MINI.replace('label="客户姓名"', 'label="客户全名"').replace(
        '<camunda:formField id="contact_phone" label="联系电话" type="string"/>',
        '<camunda:formField id="email" label="电子邮箱" type="string"/>')
    changed = changed.replace("due_at(deadline)", "add_hours(deadline, 2)")
    second = k.designer.deploy_xml(changed, "mini.bpmn", "owner")
    assert (second["version"], second["created"]) == (2, True)
    s = second["summary"]
    assert s["fields_relabelled"] == [{"element": "register", "field": "customer_name", "label_before": "客户姓名",
                                       "label": "客户全名"}]
    assert s["fields_added"] == [{"element": "register", "field": "email", "label": "电子邮箱"}]
    assert s["fields_removed"] == [{"element": "register", "field": "contact_phone", "label": "联系电话"}]
    assert [t["id"] for t in s["timers_changed"]] == ["timer_handle"]
    assert s["timers_changed"][0]["after"] == {"timeDate": "add_hours(deadline, 2)"}
    assert {c["id"] for c in s["elements_changed"]} == {"register", "timer_handle"}
    assert s["elements_added"] == s["elements_removed"] == []
    with k.db.reading() as session:
        stored = {c.previous_version: c.summary for c in session.scalars(select(DefinitionChange))}
    assert stored[1] == s and stored[None]["first_version"]
    assert k.designer.xml("mini", 1) == MINI.encode() and k.designer.xml("mini", "2") == changed.encode()
    # a new instance runs on the new version; the version numbers never move
    assert k.instances.show(k.instances.start("mini", "agent")["instance_id"])["definition"]["version"] == 2


def test_change_summary_of_elements_added_and_removed(owner_kefu):
    text = with_gateway().replace('<bpmn:exclusiveGateway id="gw"/>', '<bpmn:exclusiveGateway id="gw" default="g2"/>')
    s = owner_kefu.designer.change_summary(MINI.encode(), text.encode())
    assert {(e["id"], e["type"]) for e in s["elements_added"]} == {("gw", "exclusiveGateway"),
                                                                    ("g1", "sequenceFlow"), ("g2", "sequenceFlow")}
    assert s["elements_removed"] == [] and {c["id"] for c in s["elements_changed"]} == {"f3"}
    back = owner_kefu.designer.change_summary(text, MINI)
    assert {e["id"] for e in back["elements_removed"]} == {"gw", "g1", "g2"}
    assert owner_kefu.designer.change_summary(MINI, MINI)["count"] == 0


@pytest.mark.parametrize("actor", ["agent", "supervisor", "auditor", "nobody"])
def test_only_a_process_owner_deploys(owner_kefu, actor):
    with pytest.raises(NotAllowed):
        owner_kefu.designer.deploy_xml(MINI.encode(), "mini.bpmn", actor)
    assert owner_kefu.designer.overview() == []


def test_deploy_xml_refuses_lint_errors_and_failing_test_runs_and_keeps_nothing(owner_kefu):
    k = owner_kefu
    with pytest.raises(DefinitionError) as exc:
        k.designer.deploy_xml(MINI.replace('name="department"', 'name="warehouse"'), "mini.bpmn", "owner")
    d = exc.value.to_dict()
    assert d["code"] == "diagram_rejected" and "Lane_department" in exc.value.message
    assert d["findings"][0]["element"] == "Lane_department" and "泳道名" in d["message_zh"]
    with pytest.raises(DefinitionError) as exc:
        k.designer.deploy_xml(MINI.replace("ratio = 100 // divisor", "ratio = 100 // (divisor - 1)"), "mini.bpmn", "owner")
    assert "test run" in exc.value.message and "'compute'" in exc.value.message
    assert exc.value.details["test_runs"][0]["paths"][0]["failed_at"] == "compute"
    for bad in (b"", b"<nope", "日本".encode("utf-16"), None, 42):
        with pytest.raises((DefinitionError, InvalidInput)):
            k.designer.deploy_xml(bad, "x.bpmn", "owner")
    assert k.designer.overview() == []


def test_deploy_xml_warns_about_camunda_extras_and_dry_run_writes_nothing(owner_kefu):
    k = owner_kefu
    text = MINI.replace('<bpmn:userTask id="handle"', '<bpmn:userTask id="handle" camunda:formKey="embedded:x"')
    dry = k.designer.deploy_xml(text, "../../etc/mini.bpmn", "owner", dry_run=True)
    assert dry["version"] == 1 and not dry["created"] and dry["filename"] == "mini.bpmn"
    assert [w["element"] for w in dry["warnings"]] == ["handle"]
    assert k.designer.overview() == []
    assert k.designer.deploy_xml(text, "mini.bpmn", "owner")["created"]


@on_both_databases
def test_definition_overview_counts_running_instances_per_version(owner_kefu):
    k = owner_kefu
    k.designer.deploy_xml(MINI, "mini.bpmn", "owner")
    a = k.instances.start("mini", "agent")["instance_id"]
    k.instances.start("mini", "agent")
    k.designer.deploy_xml(MINI.replace('name="处理"', 'name="部门处理"'), "mini.bpmn", "owner")
    k.instances.start("mini", "agent")
    (mini,) = k.designer.overview()
    assert mini["process_id"] == "mini" and mini["name"] == "迷你流程" and mini["running"] == 3
    v2, v1 = mini["versions"]
    assert (v2["version"], v2["running"], v2["total"], v2["deployed_by"]) == (2, 1, 1, "owner")
    assert (v1["version"], v1["running"], v1["total"]) == (1, 2, 2)
    assert v2["summary"]["elements_changed"][0]["name_before"] == "处理" and len(v1["sha"]) == 64
    assert k.instances.show(a)["definition"]["version"] == 1
    for pid, version in (("mini", 3), ("nosuch", 1), ("mini", "x"), ("mini", None)):
        with pytest.raises(NotFound):
            k.designer.xml(pid, version)


def test_bootstrap_deploy_records_change_summaries_too(owner_kefu, tmp_path):
    k = owner_kefu
    k.definitions.deploy([diagram("mini.bpmn")])
    path = tmp_path / "mini.bpmn"
    path.write_text(MINI.replace('label="结果"', 'label="处理结果"'), encoding="utf-8")
    k.definitions.deploy([path])
    (mini,) = k.designer.overview()
    assert mini["versions"][0]["summary"]["fields_relabelled"][0]["field"] == "result"


# ---------------------------------------------------------------- CLI

from engine.cli import main as kefu_main  # noqa: E402
from engine.errors import InvalidInput  # noqa: E402


@pytest.fixture
def cli(owner_kefu, monkeypatch, capsys):
    monkeypatch.setenv("KEFU_DATABASE_URL", owner_kefu.config.database_url)
    monkeypatch.setenv("KEFU_ENV", "test")
    monkeypatch.setenv("KEFU_CLOCK", "2026-11-23T09:00:00+08:00")

    def run(*args, expect=0):
        rc = kefu_main(list(args))
        out = capsys.readouterr()
        assert rc == expect, (args, rc, out.out, out.err)
        return out
    return run


def test_cli_lint_testrun_deploy_definitions(cli, tmp_path):
    good, bad = tmp_path / "mini.bpmn", tmp_path / "bad.bpmn"
    good.write_text(MINI, encoding="utf-8")
    bad.write_text(MINI.replace('name="department"', 'name="warehouse"'), encoding="utf-8")
    out = cli("lint", str(good), str(bad), expect=2).out
    assert "mini.bpmn: ok" in out and "bad.bpmn: FAILED" in out and "element 'Lane_department'" in out
    assert "泳道名" in out
    import json
    assert json.loads(cli("lint", str(good), "--json").out)[0]["ok"] is True
    out = cli("testrun", str(good)).out
    assert "mini: ok (2 path(s))" in out and "start → register → compute → handle → end" in out
    assert "timer_handle fires" in out and "compute → timer_handle → end_late" in out
    assert "not run" in cli("testrun", str(bad), expect=2).out
    assert "may not change procedures" in cli("deploy", str(good), "--as", "agent", expect=3).err
    assert "Lane_department" in cli("deploy", str(bad), "--as", "owner", expect=2).err
    out = cli("deploy", str(good), "--as", "owner").out
    assert "deployed   mini v1" in out
    out = cli("definitions").out
    assert "mini (迷你流程): 0 running" in out and "owner" in out and "first version" in out
    assert cli("lint", str(tmp_path / "missing.bpmn"), expect=2).err.startswith("kefu: error: cannot read")


# ---------------------------------------------------------------- moving instances to a newer version

from engine.errors import Conflict  # noqa: E402

REGISTER = {"customer_name": "王先生", "divisor": 4, "deadline": "2026-11-25T18:00:00+08:00", "severity": "general"}


@on_both_databases
def test_an_instance_moves_when_no_step_that_ran_changed_and_keeps_claims_and_timers(owner_kefu, clock):
    k = owner_kefu
    k.designer.deploy_xml(MINI, "mini.bpmn", "owner")
    a = k.instances.start("mini", "agent", data=REGISTER)["instance_id"]
    (handle,) = k.tasks.ready(instance=a)
    k.tasks.claim(handle["id"], "department")
    (timer,) = k.timers.waiting(a)
    clock.advance(timedelta(hours=1))
    # version 2 changes only what is still ahead: the late end's name
    k.designer.deploy_xml(MINI.replace('<bpmn:endEvent id="end_late"/>', '<bpmn:endEvent id="end_late" name="超时结束"/>'),
                 "mini.bpmn", "owner")
    assert k.designer.migration_check(a, 2) == []
    r = k.designer.migrate_instance(a, 2, "owner")
    assert (r["migrated"], r["from_version"], r["to_version"]) == (True, 1, 2)
    shown = k.instances.show(a)
    assert shown["definition"]["version"] == 2
    moved = [e for e in shown["events"] if e["type"] == "instance_migrated"]
    assert len(moved) == 1 and moved[0]["actor"] == "owner"
    assert moved[0]["data"]["from_version"] == 1 and moved[0]["data"]["to_version"] == 2
    (again,) = k.tasks.ready(instance=a)
    assert again["id"] == handle["id"] and again["assignee"] == "department"  # the claim stays
    assert k.timers.waiting(a)[0]["due_at"] == timer["due_at"]  # the timer did not restart
    assert k.audit.verify(a) == []
    k.tasks.complete(handle["id"], "department", {"result": "已处理"})
    assert k.instances.show(a)["status"] == "completed"
    assert k.designer.migration_check(a, 2)  # ended, and already there


def test_a_move_is_refused_with_reasons_when_a_step_that_ran_changed(owner_kefu):
    k = owner_kefu
    k.designer.deploy_xml(MINI, "mini.bpmn", "owner")
    a = k.instances.start("mini", "agent", data=REGISTER)["instance_id"]
    k.designer.deploy_xml(MINI.replace('label="客户姓名"', 'label="客户全名"').replace('label="结果"', 'label="处理结果"'),
                 "mini.bpmn", "owner")
    reasons = k.designer.migration_check(a, 2)
    assert any("completed step 'register'" in r and "form" in r for r in reasons), reasons
    assert any("ready step 'handle'" in r for r in reasons), reasons
    with pytest.raises(Conflict) as exc:
        k.designer.migrate_instance(a, 2, "owner")
    assert exc.value.code == "migration_refused" and exc.value.details["reasons"] == reasons
    zh = k.designer.migration_check(a, 2, locale="zh_CN")
    assert exc.value.details["reasons_zh"] == zh and any("已完成的步骤 'register'" in r and "表单" in r for r in zh)
    shown = k.instances.show(a)
    assert shown["definition"]["version"] == 1 and not [e for e in shown["events"] if e["type"] == "instance_migrated"]
    # a removed step, an older version, unknown versions and instances, the wrong role
    k.designer.deploy_xml(MINI.replace("handle", "handle2").replace("Handle.", "Handle"), "mini.bpmn", "owner")
    assert any("does not exist in version 3" in r for r in k.designer.migration_check(a, 3))
    b = k.instances.start("mini", "agent")["instance_id"]
    assert "only move to a newer version" in k.designer.migration_check(b, 1)[0]
    for bad in (9, "x"):
        with pytest.raises(NotFound):
            k.designer.migration_check(a, bad)
    with pytest.raises(NotFound):
        k.designer.migrate_instance(999, 2, "owner")
    for actor in ("agent", "supervisor", "auditor", "ghost"):
        with pytest.raises(NotAllowed):
            k.designer.migrate_instance(a, 2, actor)


def test_cli_migrate(cli, owner_kefu):
    k = owner_kefu
    k.designer.deploy_xml(MINI, "mini.bpmn", "owner")
    a = k.instances.start("mini", "agent", data=REGISTER)
    k.designer.deploy_xml(MINI.replace('<bpmn:endEvent id="end_late"/>', '<bpmn:endEvent id="end_late" name="超时"/>'),
                 "mini.bpmn", "owner")
    k.designer.deploy_xml(MINI.replace('label="结果"', 'label="处理结果"'), "mini.bpmn", "owner")
    assert "ready step 'handle'" in cli("migrate", a["ticket_no"], "--to", "3", "--check", expect=5).out
    assert "cannot move to version 3" in cli("migrate", a["ticket_no"], "--to", "3", "--as", "owner", expect=5).err
    assert "--as" in cli("migrate", a["ticket_no"], "--to", "2", expect=2).err
    assert "may not change procedures" in cli("migrate", a["ticket_no"], "--to", "2", "--as", "agent", expect=3).err
    assert "safe to move" in cli("migrate", a["ticket_no"], "--to", "2", "--check").out
    assert "moved from v1 to v2" in cli("migrate", a["ticket_no"], "--to", "2", "--as", "owner").out
    assert "1 running / 1 total" in cli("definitions").out


def test_moving_elements_down_the_file_is_no_change(owner_kefu):
    """A modeler saves the same diagram with other line numbers and layout: nothing changed, a move is safe."""
    k = owner_kefu
    shifted = MINI.replace("<bpmn:laneSet", "<!-- saved by a modeler -->\n\n\n<bpmn:laneSet").replace(
        'label="结果" type="string">', 'label="结果"\n            type="string">')
    assert k.designer.change_summary(MINI, shifted)["count"] == 0
    k.designer.deploy_xml(MINI, "mini.bpmn", "owner")
    a = k.instances.start("mini", "agent", data=REGISTER)["instance_id"]
    assert k.designer.deploy_xml(shifted, "mini.bpmn", "owner")["version"] == 2
    assert k.designer.migration_check(a, 2) == []


def test_a_complaint_in_the_middle_of_its_task_force_moves_and_finishes_on_the_new_version(scenario):
    from tests.test_complaint import register
    k = scenario.k
    register(scenario, severity="major")
    scenario.complete("form_taskforce", "supervisor", {
        "task_force_members": ["taskforce1", "taskforce2"], "handling_requirement": "成立专项小组彻查",
        "handling_deadline": scenario.later(days=2)})
    scenario.complete("taskforce_investigate", "taskforce2", {"finding": "监控显示保安言语不当"}, assignee="taskforce2")
    timers = {t["bpmn_id"]: t["due_at"] for t in k.timers.waiting(scenario.instance_id)}
    complaint = (PROCESSES / "complaint.bpmn").read_text(encoding="utf-8")
    assert 'name="投诉客户关怀"' in complaint
    k.designer.deploy_xml(complaint.replace('name="投诉客户关怀"', 'name="投诉客户关怀回访"'), "complaint.bpmn", "owner")
    assert k.designer.migration_check(scenario.instance_id, 2) == []
    k.designer.migrate_instance(scenario.instance_id, 2, "owner")
    assert {t["bpmn_id"]: t["due_at"] for t in k.timers.waiting(scenario.instance_id)} == timers
    assert [(t["bpmn_id"], t["assignee"]) for t in scenario.ready()] == [("taskforce_investigate", "taskforce1")]
    scenario.complete("taskforce_investigate", "taskforce1", {"finding": "排班过长导致情绪失控"}, assignee="taskforce1")
    assert sorted(scenario.show()["data"]["findings"]) == sorted(["监控显示保安言语不当", "排班过长导致情绪失控"])
    scenario.complete("consolidate", "supervisor", p13_record("调整排班并当面致歉"))
    assert scenario.ready_ids() == ["feedback"] and scenario.show()["definition"]["version"] == 2
    assert k.audit.verify(scenario.instance_id) == []


def test_a_relabelled_field_shows_on_new_complaints_while_older_ones_keep_the_old_label(kefu):
    """The issue's point 6 at the engine: the owner relabels a form field and deploys."""
    old = kefu.instances.start("complaint", "agent")["instance_id"]
    complaint = (PROCESSES / "complaint.bpmn").read_text(encoding="utf-8")
    assert 'label="投诉内容"' in complaint
    r = kefu.designer.deploy_xml(complaint.replace('label="投诉内容"', 'label="投诉具体内容"'), "complaint.bpmn", "owner")
    assert r["created"] and r["summary"]["fields_relabelled"] == [
        {"element": "register", "field": "content", "label_before": "投诉内容", "label": "投诉具体内容"}]
    new = kefu.instances.start("complaint", "agent")["instance_id"]

    def label(instance):
        return {f["id"]: f["label"] for f in kefu.instances.steps(instance)["register"]["form"]}["content"]
    assert (label(old), label(new)) == ("投诉内容", "投诉具体内容")
    assert {f["id"]: f["label"] for f in kefu.instances.start_form("complaint")["form"]}["content"] == "投诉具体内容"
    assert "ready step 'register'" in kefu.designer.migration_check(old, r["version"])[0]


def test_a_process_cannot_take_the_id_of_the_sla_table_nor_the_table_that_of_a_process(kefu):
    with pytest.raises(DefinitionError, match="already the id of a decision table"):
        kefu.designer.deploy_xml(MINI.replace('id="mini"', 'id="sla"'), "sla.bpmn", "owner")
    table = (PROCESSES / "sla.dmn").read_text(encoding="utf-8")
    decision = re.search(r'<decision id="(\w+)"', table).group(1)
    with pytest.raises(DefinitionError, match="must be .sla."):
        kefu.designer.deploy_xml(table.replace(f'id="{decision}"', 'id="complaint"'), "t.dmn", "owner")
    changed = kefu.designer.deploy_xml(table.replace("<text>", "<text> ", 1), "sla.dmn", "owner")
    assert changed["created"] and changed["version"] == 2
    assert kefu.instances.start("complaint", "agent")["instance_id"]


def test_the_start_up_deploy_also_refuses_what_only_the_stricter_lint_finds(owner_kefu, tmp_path):
    path = tmp_path / "mini.bpmn"
    path.write_text(MINI.replace("due_at(deadline)", "due_at(customer_name)"), encoding="utf-8")
    with pytest.raises(DefinitionError) as exc:
        owner_kefu.definitions.deploy([path])
    assert exc.value.details["element"] == "timer_handle" and "fails on sample data" in exc.value.message
    assert owner_kefu.designer.overview() == []


def _with_start_data(text: str, value: str) -> str:
    return text.replace('<bpmn:startEvent id="start"/>',
                        '<bpmn:startEvent id="start"><bpmn:extensionElements><camunda:properties>'
                        f'<camunda:property name="test_data" value="{value}"/>'
                        '</camunda:properties></bpmn:extensionElements></bpmn:startEvent>')


def test_a_start_event_declares_the_start_data_of_the_test_run():
    """Data a process is started with (like the QA sample's tickets) comes from the start event's
    ``test_data`` property; without it the step needing it fails, naming the step."""
    needs = MINI.replace("ratio = 100 // divisor", "ratio = 100 // starter_divisor")
    (without,) = run_xml(needs, "mini.bpmn")
    assert not without.ok and without.paths[0].failed_at == "compute"
    (given,) = run_xml(_with_start_data(needs, "{&quot;starter_divisor&quot;: 4}"), "mini.bpmn")
    assert given.ok and all(p.completed for p in given.paths), given.to_dict()


@pytest.mark.parametrize("value", ["[1, 2]", "not json", ""])
def test_start_data_that_is_not_a_json_object_is_a_lint_error_on_the_start_event(value):
    report = lint_diagram(_with_start_data(MINI, value), "mini.bpmn")
    found = only(report, "test_data")
    assert found.element == "start" and "JSON" in found.message("en") and "JSON" in found.message("zh_CN")


def test_an_older_version_is_not_deployed_again_and_a_restart_keeps_the_newest(owner_kefu, tmp_path):
    """The owner deploys v2 in the browser; the service restarts and deploys processes/ (still v1's file):
    v2 stays in force and the restart does not fail. Deploying v1's content again is refused, saying why."""
    k = owner_kefu
    v1 = MINI.replace("</bpmn:definitions>", "</bpmn:definitions>\n")
    (tmp_path / "mini.bpmn").write_text(v1, encoding="utf-8")
    assert [r["status"] for r in k.definitions.deploy([tmp_path / "mini.bpmn"])] == ["deployed"]
    v2 = v1.replace('name="处理"', 'name="部门处理"', 1)
    assert v2 != v1
    assert k.designer.deploy_xml(v2, "mini.bpmn", "owner")["version"] == 2
    again = k.definitions.deploy([tmp_path / "mini.bpmn"])  # what kefu serve does at start
    assert [(r["status"], r["version"], r["same_as"]) for r in again] == [("kept", 2, 1)]
    with pytest.raises(Conflict) as refused:
        k.designer.deploy_xml(v1, "mini.bpmn", "owner")
    assert refused.value.code == "version_exists" and refused.value.details["same_as"] == 1
    assert "第 1 版完全相同" in refused.value.details["message_zh"]
    assert [v["version"] for v in k.designer.overview()[0]["versions"]] == [2, 1]
    assert k.designer.deploy_xml(v2, "mini.bpmn", "owner")["created"] is False  # the newest again: unchanged
