"""The desk in Chromium (issue 20): a note, a call and a photo on the ticket page; an agent finds the ticket by
the customer's phone; the whole case on one page with its step cards, the two timelines and the diagram that
fits, zooms and marks the waiting revisit. Screenshots at 1366 px go to test-artifacts/screenshots/."""
from __future__ import annotations

import re

from tests.test_browser import SHOTS, Desk, browser, server  # noqa: F401 - fixtures
from tests.test_casefile import PNG
from tests.test_complaint import handle_by_department, register, transfer


def test_note_call_and_photo_on_the_ticket_then_found_by_phone(browser, server, kefu, scenario, tmp_path):  # noqa: F811
    register(scenario, severity="urgent")
    transfer(scenario)
    ticket = scenario.ticket_no
    photo = tmp_path / "监控截图.png"
    photo.write_bytes(PNG)
    bad = tmp_path / "脚本.png"
    bad.write_bytes(b"#!/bin/sh\x00\x01rm -rf /")

    agent = Desk(browser, server, "agent")
    page = agent.page
    # find the ticket by the customer's phone, masked in the result
    page.click("header nav >> text=查找工单")
    page.wait_for_url("**/search")
    page.fill("#search-q", "6321 0000")
    page.click("#search-form button")
    row = page.locator("#search-results tbody tr", has_text=ticket)
    row.wait_for()
    assert "021*****0000" in row.inner_text() and "021-63210000" not in page.content()
    agent.shot("20-search-by-phone")
    row.locator("a", has_text=ticket).click()
    page.wait_for_url(re.compile(rf".*/instances/{ticket}$"))

    page.fill("#note-text", "客户要求书面答复，已告知将在两日内回复")
    page.click("#note-form button")
    page.wait_for_selector(".flash.success")
    page.select_option("#contact-channel", "phone")
    page.fill("#contact-outcome", "已致电客户，说明处理进度")
    page.click("#contact-form button")
    page.wait_for_selector(".notes li .note-text")
    page.set_input_files("#attach-file", str(photo))
    page.click("#attach-form button")
    link = page.locator(".attachments a", has_text="监控截图.png")
    link.wait_for()
    assert page.locator(".contacts li", has_text="已致电客户").count() == 1
    assert page.locator(".notes li", has_text="书面答复").count() == 1
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "监控截图.png"
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == PNG
    page.set_input_files("#attach-file", str(bad))
    page.click("#attach-form button")
    assert page.locator("#casefile .flash.error").inner_text().startswith("未保存")
    page.locator("#casefile").screenshot(path=str(SHOTS / "23-ticket-casefile.png"))
    # the case timeline holds what people did; the audit trail all of it
    timeline = page.locator("#timeline").inner_text()
    assert "内部备注" in timeline and "联系客户" in timeline and "添加附件" in timeline and "流程分支" not in timeline
    page.click("#timeline >> text=完整审计记录")
    page.wait_for_url("**trail=audit*")
    assert "流程分支" in page.locator("#timeline").inner_text()
    shown = kefu.instances.show(ticket)
    assert [n["text"] for n in shown["notes"]] == ["客户要求书面答复，已告知将在两日内回复"]
    assert [a["filename"] for a in shown["attachments"]] == ["监控截图.png"]
    agent.close()


def test_the_whole_case_on_one_page_with_the_waiting_revisit(browser, server, kefu, scenario):  # noqa: F811
    register(scenario, severity="urgent")
    transfer(scenario)
    handle_by_department(scenario)
    scenario.complete("feedback", "agent", {"satisfied": True})
    ticket = scenario.ticket_no
    agent = Desk(browser, server, "agent")
    page = agent.page
    agent.goto(f"/instances/{ticket}")
    page.wait_for_selector('#diagram[data-rendered="true"]')
    badge = page.locator(".wait-badge")
    assert re.fullmatch(r"等待投诉回访，至 11月\d+日", badge.inner_text()), badge.inner_text()
    assert page.locator('.djs-element.waiting[data-element-id="wait_revisit"]').count() == 1
    # readable: the diagram is drawn at more than half its size, and the zoom buttons change it
    scale = page.evaluate("() => document.querySelector('#diagram .viewport').transform.baseVal.consolidate().matrix.a")
    assert scale >= 0.5
    page.click('[data-zoom="in"]')
    bigger = page.evaluate("() => document.querySelector('#diagram .viewport').transform.baseVal.consolidate().matrix.a")
    assert bigger > scale
    cards = page.locator("#steps .step-card")
    assert cards.count() == 6  # register, transfer, accept, handle, the supervisor's approval (P13), feedback
    handle = page.locator('#steps .step-card[data-step="department_handle"]')
    assert "已批评教育当班保安并调整岗位" in handle.inner_text() and "责任部门 刘强" in handle.inner_text()
    register_card = page.locator('#steps .step-card[data-step="register"]').inner_text()
    assert "服务态度" in register_card and "service_attitude" not in register_card
    assert page.locator("#steps .clock-outcome.met").count() >= 1
    page.click('[data-zoom="fit"]')
    assert page.locator(".wait-badge").is_visible()
    page.locator(".diagram-card").screenshot(path=str(SHOTS / "22-ticket-diagram.png"))
    agent.shot("21-ticket-whole-case")
    agent.close()
