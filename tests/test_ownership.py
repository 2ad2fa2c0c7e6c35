"""X1 (002 第四章): the agent who registers a ticket is its first responsible person (owner) until it closes."""
import pytest

from engine import InvalidInput, NotAllowed
from engine.errors import Conflict
from tests.test_complaint import register


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
