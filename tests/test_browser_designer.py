"""The process owner changes a form field's label in the modeler's properties panel and deploys; new tickets
show the new label, a ticket started before keeps the old one (issue point 6). Real Chromium, the vendored
modeler bundle, nothing fetched from outside the service. Screenshots go to test-artifacts/screenshots/."""
from __future__ import annotations

from tests.test_browser import PASSWORD, Desk, browser, server  # noqa: F401 - fixtures
from tests.test_complaint import register

OLD, NEW = "事发地点", "事发地点（详细地址）"
PLACE = "register-formField-3"  # the fourth field of the register form: place


def watch(page, base: str) -> tuple[list, list]:
    """Console errors and requests to anywhere but the service."""
    errors, outside = [], []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: r.url.startswith(("http:", "https:", "ws:")) and not r.url.startswith(base)
            and outside.append(r.url))
    return errors, outside


def versions_of(kefu) -> list[int]:
    return [v["version"] for p in kefu.designer.overview() if p["process_id"] == "complaint" for v in p["versions"]]


def earlier_labels(page) -> str:
    return page.locator("main").inner_text()


def test_owner_relabels_a_form_field_and_deploys_while_older_tickets_keep_theirs(browser, server, kefu, scenario):
    register(scenario)  # a complaint started on version 1, waiting at the transfer step
    old_ticket, old_id = scenario.ticket_no, scenario.instance_id
    kefu.users.add("owner", ["process_owner"], display_name="流程负责人 何平", password=PASSWORD)

    owner = Desk(browser, server, "owner")
    page = owner.page
    errors, outside = watch(page, server)
    owner.goto("/definitions")
    assert page.locator('#p-complaint tr[data-version="1"] .running').inner_text() == "1"
    owner.shot("designer-01-definitions")
    page.click("#p-complaint a.edit")
    page.wait_for_selector("#designer.ready")

    page.click('#canvas [data-element-id="register"]')
    fields = page.locator('#properties [data-group-id="group-CamundaPlatform__FormData"]')
    fields.locator(".bio-properties-panel-group-header").click()
    page.click(f'[data-entry-id="{PLACE}"] > .bio-properties-panel-collapsible-entry-header')
    assert page.input_value(f'[data-entry-id="{PLACE}-formFieldID"] input') == "place"
    # the type menu offers every Kefu field type, and the panel says nothing in untranslated English
    types = page.locator(f'[data-entry-id="{PLACE}-formFieldType"] select option').all_inner_texts()
    assert {"日期时间 (datetime)", "用户 (user)", "多个用户 (users)", "文本 (string)"} <= set(types), types
    panel_text = page.inner_text("#properties")
    assert "Create" not in panel_text and "<empty>" not in panel_text, panel_text
    label = page.locator(f'[data-entry-id="{PLACE}-formFieldLabel"] input')
    assert label.input_value() == OLD
    label.fill(NEW)
    label.press("Tab")
    page.wait_for_function("n => window.kefuModeler.saveXML().then(r => r.xml.includes(n))", arg=f'label="{NEW}"')
    owner.shot("designer-02-properties-panel")

    page.click("#btn-check")
    page.wait_for_selector("#testrun-results .run.ok", timeout=60_000)
    assert "检查通过" in page.inner_text("#lint-results")
    assert "登记投诉 → " in page.inner_text("#testrun-results")  # the steps by their names
    owner.shot("designer-03-checked")

    page.click("#btn-deploy")  # asks first
    assert "确定部署吗" in page.inner_text("#deploy-confirm") and "v1" in page.inner_text("#deploy-confirm")
    page.click("#btn-deploy-cancel")
    assert page.locator("#deploy-confirm").is_hidden() and versions_of(kefu) == [1]
    page.click("#btn-deploy")
    page.click("#btn-deploy-confirm")
    page.wait_for_selector("#designer-status.good", timeout=60_000)
    assert "已部署第 2 版" in page.inner_text("#designer-status")
    assert page.inner_text("#designer-version") == "v2" and "v2" in page.inner_text("#designer-based-on")
    owner.shot("designer-04-deployed")
    page.click("#btn-deploy")  # sent again: the same diagram makes no second version
    page.click("#btn-deploy-confirm")
    page.wait_for_function("() => document.querySelector('#designer-status').textContent.includes('未创建新版本')")
    assert "与第 2 版相同" in page.inner_text("#designer-status")
    assert not errors, errors
    assert not outside, outside

    page.click("#designer-status a.deployed-link")
    page.wait_for_url("**/definitions#p-complaint")
    newest = page.locator('#p-complaint tr[data-version="2"]')
    assert "owner" in newest.inner_text() and NEW in newest.inner_text()
    changed = newest.locator("li.elements_changed").inner_text()
    assert "(1)" in changed and "register" in changed  # the modeler's round trip changed nothing else
    assert page.locator('#p-complaint tr[data-version="1"] .running').inner_text() == "1"
    owner.shot("designer-05-new-version")
    owner.close()

    agent = Desk(browser, server, "agent")
    agent.goto("/new/complaint")
    assert agent.page.locator('[data-field="place"] label').inner_text().startswith(NEW)
    agent.shot("designer-06-intake-new-label")
    register(scenario)  # the agent's next complaint
    new_ticket, new_id = scenario.ticket_no, scenario.instance_id
    assert kefu.instances.show(new_ticket)["definition"]["version"] == 2
    assert kefu.instances.show(old_ticket)["definition"]["version"] == 1
    for ticket, iid, shown, hidden in ((new_ticket, new_id, NEW, None), (old_ticket, old_id, OLD, NEW)):
        task = next(t for t in kefu.tasks.ready(instance=iid) if t["bpmn_id"] == "transfer")
        agent.goto(f"/tasks/{task['id']}")
        text = earlier_labels(agent.page)
        assert shown in text and (hidden is None or hidden not in text), ticket
        agent.shot(f"designer-07-transfer-{'new' if ticket == new_ticket else 'old'}")
    agent.close()
