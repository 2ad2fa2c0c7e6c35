"""The known sandbox escapes, tried through an uploaded diagram: each is refused by the check before deploy
(or by the test run), names the element, and leaves nothing behind."""
import time
from pathlib import Path

import pytest

from engine import DefinitionError
from engine.bpmn.lint import lint_diagram
from engine.bpmn.testrun import test_run_xml as run_xml
from tests.factories import diagram, make_kefu

MINI = Path(diagram("mini.bpmn")).read_text(encoding="utf-8")
GATEWAY = ('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="gw"/>'
           '<bpmn:exclusiveGateway id="gw" default="g2"/>'
           '<bpmn:sequenceFlow id="g1" sourceRef="gw" targetRef="handle">'
           "<bpmn:conditionExpression>{cond}</bpmn:conditionExpression></bpmn:sequenceFlow>"
           '<bpmn:sequenceFlow id="g2" sourceRef="gw" targetRef="handle"/>')


@pytest.fixture
def k(db_url, clock):
    kefu = make_kefu(db_url, clock, deploy=(), demo=True)
    yield kefu
    kefu.db.dispose()


def script(code: str) -> str:
    return MINI.replace("ratio = 100 // divisor", code)


def condition(cond: str) -> str:
    text = MINI.replace('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle"/>',
                        GATEWAY.format(cond=cond))
    return text.replace("<bpmn:flowNodeRef>compute</bpmn:flowNodeRef>",
                        "<bpmn:flowNodeRef>compute</bpmn:flowNodeRef><bpmn:flowNodeRef>gw</bpmn:flowNodeRef>")


def timer(expr: str) -> str:
    return MINI.replace("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", f"<bpmn:timeDate>{expr}</bpmn:timeDate>")


def refused(k, text, name="evil.bpmn") -> DefinitionError:
    with pytest.raises(DefinitionError) as exc:
        k.designer.deploy_xml(text, name, "owner")
    assert k.designer.overview() == []
    return exc.value


@pytest.mark.parametrize("text, element", [
    (script("x = __import__('os').system('touch {marker}')"), "compute"),
    (script("x = ().__class__.__base__.__subclasses__()"), "compute"),
    (script("x = [c for c in ().__class__.__bases__[0].__subclasses__() if 'Popen' in str(c)]"), "compute"),
    (script("import socket\nx = socket.create_connection(('127.0.0.1', 9))"), "compute"),
    (script("x = '{{0.__class__}}'.format(1)"), "compute"),
    (script("x = (g for g in [1]).gi_frame.f_globals"), "compute"),
    (condition("__import__('os').system('touch {marker}') == 0"), "g1"),
    (condition("().__class__.__base__.__subclasses__()"), "g1"),
    (timer("__import__('os').system('touch {marker}')"), "timer_handle"),
    (timer("().__class__.__base__.__subclasses__()"), "timer_handle"),
])
def test_code_escapes_in_a_diagram_are_refused_naming_the_element(k, tmp_path, text, element):
    marker = tmp_path / "escaped"
    text = text.replace("{marker}", str(marker))
    report = lint_diagram(text, "evil.bpmn")
    assert not report.ok
    assert element in {f.element_id for f in report.errors}, [str(f) for f in report.findings]
    assert all(f.code in {"script_rejected", "expression_rejected"} for f in report.errors)
    assert "not allowed" in " ".join(f.message("en") for f in report.errors)
    (tr,) = run_xml(text, "evil.bpmn")
    assert not tr.ok and not tr.paths  # nothing of it ran
    err = refused(k, text)
    assert element in err.message and err.details["findings"]
    assert not marker.exists()


def test_names_that_exist_only_outside_the_sandbox_fail_in_the_test_run(k, tmp_path):
    marker = tmp_path / "escaped"
    text = script(f"x = open('{marker}', 'w')")
    assert lint_diagram(text).ok  # it compiles: 'open' is just a name ...
    (tr,) = run_xml(text, "evil.bpmn")
    path = tr.paths[0]
    assert path.failed_at == "compute" and "open" in path.failure  # ... that the sandbox does not have
    err = refused(k, text)
    assert "test run" in err.message and "'compute'" in err.message
    assert not marker.exists()


@pytest.mark.parametrize("field_id", ["__builtins__", "__import__", "_x"])
def test_a_form_field_named_like_a_dunder_is_refused(k, field_id):
    text = MINI.replace('<camunda:formField id="contact_phone"', f'<camunda:formField id="{field_id}"')
    report = lint_diagram(text, "evil.bpmn")
    (f,) = report.errors
    assert f.element_id == "register" and f.code == "field_bad_id" and field_id in f.message("en")
    err = refused(k, text)
    assert "register" in err.message


def test_data_named_builtins_is_refused_by_the_form_and_never_reaches_the_diagram_code(k):
    from engine.errors import FormValidationError
    k.designer.deploy_xml(condition("severity == 'major'"), "mini.bpmn", "owner")
    data = {"customer_name": "x", "divisor": 2, "deadline": "2026-11-25T18:00:00+08:00", "severity": "major"}
    with pytest.raises(FormValidationError) as exc:
        k.instances.start("mini", "agent", data={**data, "__builtins__": {"open": "boom"}})
    assert exc.value.errors == {"__builtins__": "unknown field"}
    assert k.instances.recent() == []
    r = k.instances.start("mini", "agent", data=data)
    assert k.instances.show(r["instance_id"])["status"] == "active"


def test_an_external_xml_entity_is_refused_and_nothing_is_read(k):
    xxe = MINI.replace('<?xml version="1.0" encoding="UTF-8"?>',
                       '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')
    xxe = xxe.replace('name="迷你流程"', 'name="&xxe;"')
    report = lint_diagram(xxe, "xxe.bpmn")
    (f,) = report.findings
    assert f.code == "doctype" and "DOCTYPE" in f.message("en") and "外部实体" in f.message("zh_CN")
    err = refused(k, xxe, "xxe.bpmn")
    assert "root:" not in str(err.to_dict())


def test_a_network_entity_is_refused(k):
    text = MINI.replace('<?xml version="1.0" encoding="UTF-8"?>',
                        '<?xml version="1.0"?>\n<!DOCTYPE d SYSTEM "http://127.0.0.1:9/evil.dtd">')
    assert lint_diagram(text).findings[0].code == "doctype"
    refused(k, text)


def test_billion_laughs_is_refused(k):
    lol = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{"&lol%s;" % (i - 1 if i > 1 else "") * 10}">' for i in range(1, 10))
           + "]>\n")
    text = lol + MINI.split("?>", 1)[1].replace('name="迷你流程"', 'name="&lol9;"')
    report = lint_diagram(text, "lol.bpmn")
    assert not report.ok and report.errors[0].code in {"doctype", "invalid_xml"}
    err = refused(k, text, "lol.bpmn")
    assert len(err.message) < 2000


def test_a_huge_diagram_is_refused_before_parsing(k):
    text = MINI.replace("Rules: C1. Register.", "x" * (6 * 1024 * 1024))
    (f,) = lint_diagram(text).findings
    assert f.code == "too_large"
    refused(k, text)


@pytest.mark.parametrize("code", ["x = [i for i in range(100000) for j in range(100000)]",
                                  "x = 0\nfor i in range(100000):\n    for j in range(100000):\n        x = x + 1"])
def test_code_that_would_run_for_hours_is_stopped(k, code):
    text = script(code)
    assert lint_diagram(text).ok  # each range is small enough; together they are not
    (tr,) = run_xml(text, "slow.bpmn")
    assert tr.paths[0].failed_at == "compute" and "runs too long" in tr.paths[0].failure
    assert "runs too long" in refused(k, text).message


def test_the_step_bound_leaves_ordinary_code_and_the_tracer_alone():
    import sys

    from engine.bpmn.sandbox import RestrictedEnvironment
    before = sys.gettrace()
    ctx = {}
    RestrictedEnvironment().execute("total = sum([i * j for i in range(300) for j in range(300)])", ctx)
    assert ctx["total"] == sum(range(300)) ** 2 and sys.gettrace() is before


@pytest.mark.parametrize("text, element", [
    (script("x = 'x' * 10 ** 9"), "compute"),
    (script("x = [0] * 10 ** 9"), "compute"),
    (script("x = 10 ** 10 ** 8"), "compute"),
    (script("x = (9 ** 9999) ** 9999"), "compute"),
    (condition("len('x' * 10 ** 9) &gt; 0"), "g1"),
    (condition("[0] * 10 ** 9 == []"), "g1"),
    (timer("due_at(deadline) + 'x' * 10 ** 9"), "timer_handle"),
])
def test_huge_values_in_a_diagram_are_refused_naming_the_element(k, text, element):
    report = lint_diagram(text, "huge.bpmn")
    assert element in {f.element_id for f in report.errors}, [str(f) for f in report.findings]
    assert any(w in " ".join(f.message("en") for f in report.errors) for w in ("too large", "exponent"))
    err = refused(k, text, "huge.bpmn")
    assert element in err.message


def test_a_huge_value_made_from_data_is_an_incident_naming_the_element_and_nothing_is_lost(k):
    k.designer.deploy_xml(script("ratio = 100 // divisor\nfiller = 'x' * divisor"), "mini.bpmn", "owner")
    data = {"customer_name": "x", "divisor": 10 ** 9, "deadline": "2026-11-25T18:00:00+08:00"}
    started = time.perf_counter()
    r = k.instances.start("mini", "agent", data=data)
    assert time.perf_counter() - started < 10
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "incident" and shown["incident"]["bpmn_id"] == "compute"
    assert "too large" in shown["incident"]["message"] and shown["incident"]["line_number"] == 2
    assert shown["data"]["divisor"] == 10 ** 9 and shown["data"]["customer_name"] == "x"  # the form is kept
    assert [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"] == []
    k.instances.retry_incident(r["instance_id"], "supervisor", {"divisor": 5})
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "active" and shown["data"]["filler"] == "xxxxx"
    assert [t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"] == ["handle"]


def test_a_condition_too_large_for_the_data_stops_before_the_next_step(k):
    k.designer.deploy_xml(condition("len(customer_name * divisor) &gt; 3"), "mini.bpmn", "owner")
    data = {"customer_name": "张三", "divisor": 10 ** 9, "deadline": "2026-11-25T18:00:00+08:00"}
    r = k.instances.start("mini", "agent", data=data)
    shown = k.instances.show(r["instance_id"])
    assert shown["status"] == "incident" and shown["incident"]["bpmn_id"] == "gw"
    assert "too large" in shown["incident"]["message"]
    k.instances.retry_incident(r["instance_id"], "supervisor", {"divisor": 2})
    assert [t["bpmn_id"] for t in k.instances.show(r["instance_id"])["tasks"] if t["state"] == "ready"] == ["handle"]
