"""X3 repeat complaints (用户的再次投诉, 002 第四章.3) on the real complaint diagram: the same customer's complaint of
the same nature within the window is linked both ways to the earlier one, recorded on both trails, flagged to
the supervisor and counted in the repeat-complaint rate; the window is editable; an explicit ``repeat_of`` in the
start data (the complaint-care follow-up) links too."""
from __future__ import annotations

from datetime import timedelta

import pytest

from engine import InvalidInput, NotAllowed
from tests.factories import Scenario
from tests.test_complaint import register


def complaint(kefu, **over) -> Scenario:
    sc = Scenario(kefu)
    register(sc, **over)
    return sc


def test_x3_a_second_complaint_about_the_same_thing_is_linked_to_the_first(kefu):
    first = complaint(kefu)
    kefu.clock.advance(timedelta(days=20))
    # the same customer, the phone typed another way, the same nature
    second = complaint(kefu, contact_phone="021 6321 0000", content="保安再次态度恶劣")
    shown = second.show()
    assert shown["repeat_of"] == [first.ticket_no] and shown["repeated_by"] == []
    assert first.show()["repeated_by"] == [second.ticket_no] and first.show()["repeat_of"] == []
    detected = second.events("repeat_complaint_detected")
    assert len(detected) == 1 and detected[0]["rules"] == ["X3"]
    assert detected[0]["data"]["repeat_of"] == [first.ticket_no]
    assert detected[0]["data"]["window_days"] == 90 and detected[0]["data"]["basis"] == "detected"
    linked = first.events("repeat_complaint_linked")
    assert len(linked) == 1 and linked[0]["data"]["repeated_by"] == second.ticket_no
    # flagged to the supervisor
    flagged = kefu.repeats.open_repeats()
    assert [r["ticket_no"] for r in flagged] == [second.ticket_no] and flagged[0]["repeat_of"] == [first.ticket_no]
    # a third one repeats both
    third = complaint(kefu)
    assert third.show()["repeat_of"] == [first.ticket_no, second.ticket_no]
    assert kefu.audit.verify() == []


def test_x3_another_nature_another_customer_or_an_old_complaint_is_no_repeat(kefu):
    first = complaint(kefu)
    assert complaint(kefu, nature="product").show()["repeat_of"] == []
    assert complaint(kefu, customer_name="李先生", contact_phone="13800138000").show()["repeat_of"] == []
    kefu.clock.advance(timedelta(days=91))
    late = complaint(kefu)
    assert late.show()["repeat_of"] == []
    assert first.show()["repeated_by"] == []
    assert kefu.repeats.open_repeats() == []


def test_x3_the_window_is_editable_by_a_supervisor(kefu):
    assert kefu.repeats.window() == {"window_days": 90, "default": 90}
    with pytest.raises(NotAllowed):
        kefu.repeats.set_window(120, "agent")
    with pytest.raises(InvalidInput):
        kefu.repeats.set_window(0, "supervisor")
    first = complaint(kefu)
    kefu.clock.advance(timedelta(days=100))
    assert kefu.repeats.set_window(120, "supervisor") == {"window_days": 120, "previous": 90}
    second = complaint(kefu)
    assert second.show()["repeat_of"] == [first.ticket_no]
    assert second.events("repeat_complaint_detected")[0]["data"]["window_days"] == 120


def test_x3_an_explicit_repeat_of_in_the_start_data_links_the_tickets(kefu):
    first = complaint(kefu)
    out = kefu.instances.start("complaint", "agent", variables={"repeat_of": [first.ticket_no]})
    shown = kefu.instances.show(out["ticket_no"])
    assert shown["repeat_of"] == [first.ticket_no]
    assert [e["data"]["basis"] for e in shown["events"] if e["type"] == "repeat_complaint_detected"] == ["explicit"]
    with pytest.raises(InvalidInput, match="no ticket"):
        kefu.instances.start("complaint", "agent", variables={"repeat_of": "TS19990101-0001"})


def test_x3_the_kpi_report_counts_the_repeat_complaint_rate(kefu):
    first = complaint(kefu)
    complaint(kefu, nature="product")
    kefu.clock.advance(timedelta(days=2))
    second = complaint(kefu)
    rc = kefu.kpi.report("2026-11")["repeat_complaints"]
    assert (rc["complaints"], rc["repeats"], rc["value"]) == (3, 1, 33.33)
    assert rc["tickets"][0]["ticket_no"] == second.ticket_no and rc["tickets"][0]["repeat_of"] == [first.ticket_no]


def test_x3_both_ticket_pages_the_supervisor_inbox_and_the_kpi_page_show_it(kefu, web):
    first = complaint(kefu)
    second = complaint(kefu)
    web.login_as("agent")
    page = web.page(f"/instances/{second.ticket_no}")
    assert "repeat-links" in page and f"/instances/{first.ticket_no}" in page
    page = web.page(f"/instances/{first.ticket_no}")
    assert "此后再次投诉" in page and f"/instances/{second.ticket_no}" in page
    assert "repeat-flag" not in web.page("/inbox")  # flagged to the supervisor, not to every agent
    web.login_as("supervisor")
    inbox = web.page("/inbox")
    assert "repeat-flag" in inbox and second.ticket_no in inbox
    kpi = web.page("/kpi?month=2026-11")
    assert "重复投诉率" in kpi and "50.0%" in kpi
