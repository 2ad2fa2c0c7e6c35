"""X2 handover pages through the Flask test client: the form, the handover with its signatures, acceptance by
the incoming agent only, the day's list, and both languages."""
from __future__ import annotations

import re

from tests.test_handover import two_open_cases


def test_x2_pages_start_show_accept_and_the_day_list(kefu, web):
    a, b = two_open_cases(kefu)
    web.login_as("agent")
    form = web.page("/handovers/new")
    assert "夜班" in form and a.ticket_no in form and b.ticket_no in form and "填写投诉转办单" in form
    assert 'value="agent2"' in form and 'value="agent"' not in form.split('name="incoming"')[1].split("</select>")[0]
    r = web.post("/handovers/new", {"incoming": "agent", "case": [a.ticket_no, b.ticket_no]})
    assert r.status_code == 400 and "oneself" in r.get_data(as_text=True)
    r = web.post("/handovers/new", {"incoming": "agent2", "case": [a.ticket_no, b.ticket_no],
                                    "include": [a.ticket_no], f"note_{a.ticket_no}": "客户很着急",
                                    "note": "夜间留意来电"})
    assert r.status_code == 302
    hid = int(re.search(r"/handovers/(\d+)$", r.headers["Location"])[1])
    page = web.page(f"/handovers/{hid}")
    assert "客户很着急" in page and "夜间留意来电" in page and "尚未接班" in page
    assert "accept-handover" not in page  # not the outgoing agent's to accept
    assert web.post(f"/handovers/{hid}/accept").status_code == 403
    web.login_as("agent2")
    assert "handover-flag" in web.page("/inbox")
    assert "accept-handover" in web.page(f"/handovers/{hid}")
    assert web.post(f"/handovers/{hid}/accept").status_code == 302
    page = web.page(f"/handovers/{hid}")
    assert "已接手" in page and "未列入（漏交）" in page and "accept-handover" not in page
    assert kefu.instances.show(a.ticket_no)["owner"] == "agent2"
    assert kefu.instances.show(b.ticket_no)["owner"] == "agent"  # left out
    assert web.post(f"/handovers/{hid}/accept").status_code == 400  # twice
    web.login_as("department")
    assert web.get(f"/handovers/{hid}").status_code == 403
    web.login_as("supervisor")
    day = web.page("/handovers")
    assert f"/handovers/{hid}" in day and "当日全部交接班" in day
    assert "白班 08:00–20:00" in day and "夜班 20:00–08:00" in day  # the shifts in force
    assert web.get("/handovers?day=yesterday").status_code == 400
    web.client.get("/lang/en")
    english = web.page(f"/handovers/{hid}")
    assert "Handover #" in english and "Taken over" in english and "Left out" in english
    assert "All handovers of the day" in web.page("/handovers")
