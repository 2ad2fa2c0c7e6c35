"""The engine's own authorization, called directly (not through the web's role guard): every service method
that changes something, by every role that may not call it, is refused with NotAllowed and changes nothing.
So the rules hold for the CLI, the JSON API and any later caller; a change that lets the engine accept a role
it should refuse (an auditor anywhere, a lane's outsider) fails here."""
from __future__ import annotations

from datetime import timedelta

import pytest

from engine import NotAllowed
from engine.bpmn.diagram import ROLES
from tests.conftest import PROCESSES
from tests.test_consultation import to_department

# The demo user of each role (engine/services/demo.py): each holds that role only.
USER_OF = {"agent": "agent", "supervisor": "supervisor", "department": "department", "technician": "technician",
           "taskforce": "taskforce1", "qa": "qa", "auditor": "auditor", "process_owner": "owner",
           "integration": "telephony"}


@pytest.fixture(autouse=True)
def integration_user(kefu):
    kefu.users.add("telephony", ["integration"])  # the JSON API's integration user (no lane)


def refused_roles(allowed: set[str]) -> list[str]:
    return [r for r in ROLES if r not in allowed]


def test_every_role_is_covered(kefu):
    assert set(USER_OF) == set(ROLES)


def _not_allowed(call, who: str, what: str, failures: list) -> None:
    try:
        call(who)
    except NotAllowed:
        return
    except Exception as exc:  # noqa: BLE001 - refused for another reason: the role check did not decide
        failures.append(f"{what} by {who}: {type(exc).__name__}: {exc}")
        return
    failures.append(f"{what} by {who} was accepted")


def test_task_changes_are_refused_to_every_role_outside_the_lane(scenario):
    """A department task (the consultation's transfer, C4): claim, complete, release, reassign, escalate."""
    to_department(scenario)
    k = scenario.k
    task = scenario.task("department_answer")["id"]
    events = len(scenario.events())
    ops = {
        "claim": ({"department"}, lambda who: k.tasks.claim(task, who)),
        "complete": ({"department"}, lambda who: k.tasks.complete(task, who, {"answer": "已答复"})),
        "reassign": ({"supervisor"}, lambda who: k.tasks.reassign(task, who, "department")),
        "escalate": ({"agent", "supervisor"}, lambda who: k.tasks.escalate(task, who, "部门未回复")),
    }
    failures: list[str] = []
    for what, (allowed, call) in ops.items():
        for role in refused_roles(allowed):
            _not_allowed(call, USER_OF[role], what, failures)
    k.tasks.claim(task, "department")  # now someone holds it: only they or a supervisor may release it
    for role in refused_roles({"department", "supervisor"}):
        _not_allowed(lambda who: k.tasks.unclaim(task, who), USER_OF[role], "unclaim", failures)
    assert not failures, "\n".join(failures)
    assert len(scenario.events()) == events + 1  # the one claim above; nothing refused left a trace
    assert scenario.task("department_answer")["assignee"] == "department"


def test_ticket_procedure_customer_clock_and_kpi_changes_are_refused_to_every_other_role(kefu, scenario):
    scenario.start("consultation")
    ref = scenario.ticket_no
    xml = (PROCESSES / "consultation.bpmn").read_bytes()
    ops = {
        "start a ticket": ({"agent", "supervisor", "integration"}, lambda who: kefu.instances.start("complaint", who)),
        "retry an incident": ({"supervisor", "process_owner"},
                              lambda who: kefu.instances.retry_incident(ref, who)),
        "deploy a diagram": ({"process_owner"},
                             lambda who: kefu.designer.deploy_xml(xml, "consultation.bpmn", who, dry_run=True)),
        "migrate a ticket": ({"process_owner"}, lambda who: kefu.designer.migrate_instance(ref, 1, who)),
        "set a calendar day": ({"process_owner"},
                               lambda who: kefu.time.set_calendar_day("2026-12-01", False, who)),
        "move the clock": ({"supervisor", "process_owner"},
                           lambda who: kefu.time.advance_clock(timedelta(minutes=1), actor=who)),
        "create a customer": ({"agent", "supervisor", "integration"},
                              lambda who: kefu.customers.create({"name": "新客户"}, actor=who)),
        "update a customer": ({"agent", "supervisor", "integration"},
                              lambda who: kefu.customers.update(1, {"vip": False}, actor=who)),
        "store a KPI report": ({"supervisor"}, lambda who: kefu.kpi.store("2026-10", actor=who)),
        "set the QA sample size": ({"process_owner"}, lambda who: kefu.kpi.set_sample_size(5, who)),
        "draw the QA sample": ({"supervisor", "qa", "process_owner"},
                               lambda who: kefu.kpi.start_qa_sampling("2026-10", actor=who)),
        "lift a sign-in lockout": ({"supervisor"}, lambda who: kefu.security.unlock("agent", actor=who)),
    }
    before = (len(kefu.instances.recent()), kefu.customers.get(1), kefu.now(), kefu.kpi.sample_size(),
              kefu.time.calendar_days(2026))
    failures: list[str] = []
    for what, (allowed, call) in ops.items():
        for role in refused_roles(allowed):
            _not_allowed(call, USER_OF[role], what, failures)
    assert not failures, "\n".join(failures)
    assert (len(kefu.instances.recent()), kefu.customers.get(1), kefu.now(), kefu.kpi.sample_size(),
            kefu.time.calendar_days(2026)) == before
    assert kefu.kpi.stored("2026-10") is None and kefu.kpi.qa_sample_of("2026-10") is None


@pytest.mark.parametrize("action", ["claim", "complete"])
def test_an_auditor_token_cannot_work_a_department_task_through_the_api(kefu, scenario, action):
    """The API adds no role guard of its own here: the engine's check is what refuses."""
    from webapp import create_app
    to_department(scenario)
    task = scenario.task("department_answer")["id"]
    token = kefu.users.create_token("auditor")["token"]
    client = create_app({"TESTING": True, "SECRET_KEY": "t"}, kefu=kefu).test_client()
    r = client.post(f"/api/v1/tasks/{task}/{action}", json={"data": {"answer": "x"}} if action == "complete" else {},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    assert scenario.task("department_answer")["assignee"] is None
