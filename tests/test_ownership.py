"""X1 (002 第四章): the agent who registers a ticket is its first responsible person (owner) until it closes;
its follow-up agent tasks are offered to the owner, back to the queue when not claimed in time; K-who."""
from datetime import datetime, timedelta

import pytest

from engine import InvalidInput, NotAllowed
from engine.errors import Conflict
from tests.test_complaint import register, transfer
from tests.webclient import Web


def test_x1_the_registering_agent_owns_the_case_and_may_hand_it_over(scenario, kefu):
    register(scenario)
    ticket = scenario.show()["ticket_no"]
    assert kefu.instances.show(ticket)["owner"] == "agent"
    assert kefu.instances.recent()[0]["owner"] == "agent"
    with pytest.raises(InvalidInput):
        kefu.instances.set_owner(ticket, "agent2", "agent", "  ")
    with pytest.raises(NotAllowed):  # another agent may not take it
        kefu.instances.set_owner(ticket, "agent2", "agent2", "mine now")
    with pytest.raises(InvalidInput):  # only an agent may own a case
        kefu.instances.set_owner(ticket, "technician", "agent", "hand over")
    with pytest.raises(Conflict):
        kefu.instances.set_owner(ticket, "agent", "agent", "hand over")
    out = kefu.instances.set_owner(ticket, "agent2", "agent", "交班")
    assert out == {"ticket_no": ticket, "owner": "agent2", "previous_owner": "agent"}
    event = [e for e in kefu.instances.show(ticket)["events"] if e["type"] == "owner_changed"][-1]
    assert event["actor"] == "agent" and event["rules"] == ["X1"]
    assert event["data"] == {"from": "agent", "to": "agent2", "reason": "交班"}
    # a supervisor reassigns it
    kefu.instances.set_owner(ticket, "agent", "supervisor", "agent2 is off sick")
    assert kefu.instances.show(ticket)["owner"] == "agent"
    assert kefu.audit.verify(ticket) == []


def test_x1_a_ticket_opened_by_a_supervisor_has_no_owner(kefu):
    out = kefu.instances.start("consultation", "supervisor")
    assert kefu.instances.show(out["ticket_no"])["owner"] is None


# ---- X1 at work: the owner's follow-up tasks, the claim deadline, hand-over, an inactive owner, K-who

def to_feedback(scenario):
    register(scenario)
    transfer(scenario)
    scenario.handle()
    return scenario.task("feedback")


def test_x1_the_agent_who_registered_a_complaint_finds_its_feedback_task_in_my_cases(scenario, kefu):
    t = to_feedback(scenario)
    now = kefu.now()
    assert t["assignee"] == "agent" and t["owner"] == "agent"
    assert datetime.fromisoformat(t["offer_due"]) == now + timedelta(minutes=30)  # SLA case owner_claim
    assert scenario.show()["sla"]["targets"]["owner_claim"]["respond_minutes"] == 30
    created = [e for e in scenario.events("task_created") if e["bpmn_id"] == "feedback"][-1]
    assert "X1" in created["rules"] and created["data"]["owner_offer"]["offered"] is True
    [case] = kefu.instances.owned("agent")
    assert case["ticket_no"] == scenario.ticket_no and [x["bpmn_id"] for x in case["tasks"]] == ["feedback"]
    assert kefu.instances.owned("agent2") == []
    # not a BPMN timer: the claim deadline shows on the task, not among the diagram's timers
    assert all(x["bpmn_id"] != "feedback" for x in kefu.timers.waiting(scenario.instance_id))
    page = Web(kefu).login_as("agent").page("/inbox")
    section = page.split('id="q-cases"')[1].split("</section>")[0]
    assert scenario.ticket_no in section and 'data-bpmn="feedback"' in section and "待认领" in section
    assert 'data-bpmn="feedback"' not in Web(kefu).login_as("agent2").page("/inbox").split('id="q-all"')[0]
    # another agent may not take it while it is offered to the owner
    with pytest.raises(NotAllowed):
        kefu.tasks.claim(t["id"], "agent2")
    claimed = kefu.tasks.claim(t["id"], "agent")
    assert claimed["assignee"] == "agent" and claimed["offer_due"] is None
    event = scenario.events("task_claimed")[-1]
    assert event["rules"] == ["X1"] and event["data"] == {"offer": True}
    scenario.advance(hours=1)  # claimed: nothing lapses
    assert scenario.task("feedback")["assignee"] == "agent" and scenario.events("owner_claim_lapsed") == []
    scenario.complete("feedback", "agent", {"satisfied": True})
    assert kefu.audit.verify(scenario.instance_id) == []


def test_x1_an_offer_the_owner_does_not_claim_in_30_minutes_returns_to_the_agent_queue(scenario, kefu):
    t = to_feedback(scenario)
    assert scenario.advance(minutes=29) == [] and scenario.task("feedback")["assignee"] == "agent"
    scenario.advance(minutes=1, seconds=1)  # kefu timers fire-due, the scheduler and kefu clock advance alike
    back = scenario.task("feedback")
    assert back["assignee"] is None and back["offer_due"] is None
    [lapse] = scenario.events("owner_claim_lapsed")
    assert lapse["rules"] == ["X1"] and lapse["task_id"] == t["id"] and lapse["actor"] == "system"
    assert lapse["data"]["owner"] == "agent" and lapse["data"]["previous_assignee"] == "agent"
    assert t["id"] in {x["id"] for x in kefu.tasks.ready(actor="agent2")}  # in the queue for every agent
    scenario.complete("feedback", "agent2", {"satisfied": True})
    assert kefu.audit.verify(scenario.instance_id) == []


def test_x1_handing_the_case_over_moves_the_owners_ready_tasks_to_the_new_owner(scenario, kefu):
    t = to_feedback(scenario)
    scenario.advance(minutes=20)
    kefu.instances.set_owner(scenario.ticket_no, "agent2", "agent", "交班")
    moved = scenario.task("feedback")
    assert moved["id"] == t["id"] and moved["assignee"] == "agent2"
    assert datetime.fromisoformat(moved["offer_due"]) == kefu.now() + timedelta(minutes=30)  # a fresh offer
    event = scenario.events("task_reassigned")[-1]
    assert event["rules"] == ["X1"] and event["data"]["reason"] == "owner_changed"
    assert [c["ticket_no"] for c in kefu.instances.owned("agent2")] == [scenario.ticket_no]
    assert kefu.instances.owned("agent") == []
    scenario.advance(minutes=15)  # the old deadline passed: nothing lapses
    assert scenario.task("feedback")["assignee"] == "agent2"
    scenario.advance(minutes=16)
    assert scenario.task("feedback")["assignee"] is None
    assert kefu.audit.verify(scenario.instance_id) == []


def test_x1_an_inactive_owner_gets_no_offers_and_deactivating_returns_their_tasks(scenario, kefu):
    to_feedback(scenario)
    out = kefu.users.set_active("agent", False)
    assert out["active"] is False and out["tasks_returned"] == 1
    assert scenario.task("feedback")["assignee"] is None
    [back] = scenario.events("task_returned_to_queue")
    assert back["rules"] == ["X1"] and back["data"]["reason"] == "assignee_inactive"
    scenario.complete("feedback", "agent2", {"satisfied": False, "customer_opinion": "不接受"})
    again = scenario.task("transfer")  # the next round's agent task: the owner is inactive, so the queue
    assert again["assignee"] is None
    last = scenario.events("task_returned_to_queue")[-1]
    assert last["task_id"] == again["id"] and last["data"]["reason"] == "owner_inactive"
    kefu.users.set_active("agent", True)
    assert kefu.users.get("agent")["active"] is True
    assert kefu.audit.verify(scenario.instance_id) == []


def test_k_who_x1_kpis_charge_the_case_owner_not_the_agent_who_opened_it(scenario, kefu):
    register(scenario)
    kefu.instances.set_owner(scenario.ticket_no, "agent2", "agent", "交班")
    report = kefu.kpi.live("2026-11", "supervisor")
    rows = [r for r in report["department"]["K2"]["counted"] + report["department"]["K2"]["excluded"]
            if r["ticket_no"] == scenario.ticket_no]
    assert rows and all(r["agent"] == "agent2" for r in rows)
    assert "agent2" in report["agents"] and "agent" not in report["agents"]
