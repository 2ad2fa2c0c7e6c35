"""The case file and the search in the browser's terms (issue 20): notes, contacts and attachments on the ticket
page, the download with its safe headers and the read rule, the desk's search page, the whole case on one page."""
from __future__ import annotations

import io

from tests.test_casefile import PNG, repair
from tests.test_complaint import register, transfer


def test_note_contact_and_attachment_through_the_ticket_page(web, kefu, scenario):
    r = repair(scenario)
    web.login_as("agent")
    url = f"/instances/{r['ticket_no']}"
    assert web.post(url + "/notes", {"text": "客户要求上午联系"}).status_code == 302
    assert web.post(url + "/contacts", {"channel": "sms", "outcome": "已发送上门时间"}).status_code == 302
    up = web.post(url + "/attachments", {"file": (io.BytesIO(PNG), "现场.png")},
                  content_type="multipart/form-data")
    assert up.status_code == 302
    page = web.page(url)
    assert "客户要求上午联系" in page and "已发送上门时间" in page and "现场.png" in page
    assert "客服专员 王敏" in page  # display names, not user names
    [a] = kefu.instances.show(r["ticket_no"])["attachments"]
    got = web.get(f"{url}/attachments/{a['id']}")
    assert got.status_code == 200 and got.data == PNG
    assert got.headers["Content-Disposition"].startswith("attachment;")
    assert got.headers["X-Content-Type-Options"] == "nosniff" and got.mimetype == "image/png"
    refused = web.post(url + "/attachments", {"file": (io.BytesIO(b"MZ\x90\x00" * 10), "tool.png")},
                       content_type="multipart/form-data")
    assert refused.status_code == 422 and "不是可接受的文件类型" in refused.get_data(as_text=True)
    empty = web.post(url + "/notes", {"text": "  "})
    assert empty.status_code == 422 and "内容不能为空" in empty.get_data(as_text=True)
    web.login_as("department")  # no task on this ticket
    assert web.get(f"{url}/attachments/{a['id']}").status_code == 403
    assert web.post(url + "/notes", {"text": "x"}).status_code == 403
    web.login_as("auditor")
    page = web.page(url)
    assert "现场.png" in page and 'id="note-form"' not in page


def test_the_ticket_page_shows_each_step_with_its_data_and_the_two_timelines(web, kefu, scenario):
    register(scenario, severity="urgent")
    transfer(scenario)
    web.login_as("agent")
    page = web.page(f"/instances/{scenario.ticket_no}")
    assert 'id="steps"' in page and "登记投诉" in page and "填写投诉转办单" in page
    steps = page[page.index('id="steps"'):page.index('id="casefile"')]
    assert "服务态度" in steps and "service_attitude" not in steps  # the choice's label, not its id
    assert "流程分支" not in page  # engine steps stay out of the case timeline
    audit = web.page(f"/instances/{scenario.ticket_no}?trail=audit")
    assert "流程分支" in audit


def test_search_page_finds_by_phone_with_the_phone_masked(web, kefu, scenario):
    r = repair(scenario, phone="13912345678", name="赵女士")
    web.login_as("agent")
    assert "/search" in web.page("/inbox")
    page = web.page("/search?q=1391234")
    assert r["ticket_no"] in page and "139****5678" in page and "13912345678" not in page
    assert r["ticket_no"] in web.page("/search?view=today")
    assert r["ticket_no"] not in web.page("/search?view=vip")
    assert web.get("/search?view=bad").status_code == 400
    web.login_as("technician")
    assert web.get("/search?q=x").status_code == 403
