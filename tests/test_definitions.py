"""Deploying diagrams: immutable versions, safe parsing, and broken diagrams rejected with file and element."""
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import DefinitionError
from engine.store.tables import Definition, Instance
from tests.factories import diagram, make_kefu

MINI = Path(diagram("mini.bpmn")).read_text(encoding="utf-8")


@pytest.fixture
def bare(db_url, clock):
    k = make_kefu(db_url, clock, deploy=(), demo=True)
    yield k
    k.db.dispose()


def write(tmp_path, text, name="broken.bpmn"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def deploy_error(k, path) -> DefinitionError:
    with pytest.raises(DefinitionError) as exc:
        k.definitions.deploy([path])
    return exc.value


def test_deploy_creates_immutable_versions_and_skips_unchanged(bare, tmp_path):
    first = bare.definitions.deploy([diagram("mini.bpmn")])
    assert [(d["process_id"], d["version"], d["status"]) for d in first] == [("mini", 1, "deployed")]
    assert len(first[0]["sha256"]) == 64
    again = bare.definitions.deploy([diagram("mini.bpmn")])
    assert again[0]["status"] == "unchanged" and again[0]["version"] == 1
    changed = write(tmp_path, MINI.replace('name="处理"', 'name="部门处理"'), "mini.bpmn")
    assert bare.definitions.deploy([changed])[0]["version"] == 2


def test_running_instance_stays_on_its_version_and_stores_a_reference_not_the_spec(bare, tmp_path):
    bare.definitions.deploy([diagram("mini.bpmn")])
    r = bare.instances.start("mini", "agent")
    bare.definitions.deploy([write(tmp_path, MINI.replace('name="处理"', 'name="部门处理"'), "mini.bpmn")])
    assert bare.instances.show(r["instance_id"])["definition"]["version"] == 1
    assert bare.instances.start("mini", "agent")["instance_id"] != r["instance_id"]
    with bare.db.reading() as s:
        state = json.loads(s.get(Instance, r["instance_id"]).state)
    assert "spec_ref" in state and "spec" not in state
    assert state["spec_ref"].startswith("mini@")


def test_malformed_xml_names_file_and_line(bare, tmp_path):
    err = deploy_error(bare, write(tmp_path, MINI.replace("</bpmn:process>", "</bpmn:proces>")))
    assert "broken.bpmn" in str(err) and "invalid XML" in str(err) and err.details["line"]


def test_external_entity_is_refused(bare, tmp_path):
    xxe = MINI.replace('<?xml version="1.0" encoding="UTF-8"?>',
                       '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')
    xxe = xxe.replace("Rules: C1. Register.", "&xxe;")
    err = deploy_error(bare, write(tmp_path, xxe))
    assert "DOCTYPE" in str(err)


def test_billion_laughs_is_refused(bare, tmp_path):
    lol = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{"&lol%s;" % (i - 1 if i > 1 else "") * 10}">' for i in range(1, 9))
           + "]>\n")
    err = deploy_error(bare, write(tmp_path, lol + MINI.split("?>", 1)[1].replace("Rules: C1.", "&lol8;")))
    assert "DOCTYPE" in str(err) or "invalid XML" in str(err)


def test_script_that_imports_is_rejected_at_deploy_naming_the_element(bare, tmp_path):
    evil = MINI.replace("ratio = 100 // divisor", "ratio = __import__('os').system('true')")
    err = deploy_error(bare, write(tmp_path, evil))
    assert err.details["element"] == "compute" and "not allowed" in str(err)


@pytest.mark.parametrize("change, element, words", [
    (('name="department"', 'name="warehouse"'), "Lane_department", "names no single role"),
    (('name="department"', 'name="department agent"'), "Lane_department", "names no single role"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDuration>PT2H</bpmn:timeDuration>"),
     "timer_handle", "quote the duration"),
    (("<bpmn:timeDate>due_at(deadline)</bpmn:timeDate>", "<bpmn:timeDate>${deadline.plusHours(2)}</bpmn:timeDate>"),
     "timer_handle", "JUEL"),
    (('<camunda:formField id="contact_phone"', '<camunda:formField id="customer_name"'), "register",
     "duplicate field"),
    (('type="datetime"', 'type="money"'), "register", "unknown field type"),
    (('<camunda:formField id="result"', '<camunda:formField id="compute"'), "handle", "same id as an element"),
    (('targetRef="handle"/>', 'targetRef="nowhere"/>'), None, ""),
    (('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle"/>',
      '<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle">'
      '<bpmn:conditionExpression>${severity.length() > 2}</bpmn:conditionExpression></bpmn:sequenceFlow>'),
     "f3", "JUEL"),
])
def test_broken_diagrams_are_rejected_with_element(bare, tmp_path, change, element, words):
    err = deploy_error(bare, write(tmp_path, MINI.replace(*change)))
    assert "broken.bpmn" in str(err)
    if element:
        assert err.details["element"] == element, str(err)
    assert words in str(err)


def test_gateway_without_default_deploys_when_its_conditions_cover_every_case(bare, tmp_path):
    gw = MINI.replace('<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="handle"/>',
                      '<bpmn:sequenceFlow id="f3" sourceRef="compute" targetRef="gw"/>'
                      '<bpmn:exclusiveGateway id="gw"/>'
                      '<bpmn:sequenceFlow id="g1" sourceRef="gw" targetRef="handle">'
                      "<bpmn:conditionExpression>severity == 'major'</bpmn:conditionExpression></bpmn:sequenceFlow>"
                      '<bpmn:sequenceFlow id="g2" sourceRef="gw" targetRef="end">'
                      "<bpmn:conditionExpression>severity != 'major'</bpmn:conditionExpression></bpmn:sequenceFlow>")
    gw = gw.replace("<bpmn:flowNodeRef>compute</bpmn:flowNodeRef>",
                    "<bpmn:flowNodeRef>compute</bpmn:flowNodeRef><bpmn:flowNodeRef>gw</bpmn:flowNodeRef>")
    (deployed,) = bare.definitions.deploy([write(tmp_path, gw)])
    assert deployed["status"] == "deployed"


def test_unknown_element_fails_schema_validation(bare, tmp_path):
    err = deploy_error(bare, write(tmp_path, MINI.replace('<bpmn:endEvent id="end"/>',
                                                          '<bpmn:endEvent id="end"/><bpmn:teleport id="t"/>')))
    assert "not valid BPMN" in str(err)


def test_a_failing_file_deploys_nothing(bare, tmp_path):
    good = write(tmp_path, MINI, "mini.bpmn")
    bad = write(tmp_path, "<nope", "zzz.bpmn")
    with pytest.raises(DefinitionError):
        bare.definitions.deploy([good, bad])
    with bare.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Definition)) == 0


def test_missing_path_is_a_clear_error(bare):
    with pytest.raises(DefinitionError, match="no such file"):
        bare.definitions.deploy(["/nonexistent/x.bpmn"])
