"""The overview pages render the engine's state in Chinese and never expose engine errors as crashes."""
from webapp import create_app

from tests.webclient import Web


def test_overview_and_instance_pages(scenario):
    scenario.start("repair", {"customer_name": "李先生", "contact_phone": "13800138000", "fault_symptom": "报警器误报",
                              "location": "北京市朝阳区建国路 88 号", "emergency": False})
    web = Web(scenario.base).login_as("supervisor")
    page = web.page("/overview")
    assert "待办任务" in page and scenario.ticket_no in page and "填写报修派工单" in page
    page = web.page(f"/instances/{scenario.ticket_no}")
    assert "时间线" in page and "完成任务" in page and "R1" in page


def test_unknown_instance_is_a_404_with_a_stable_code(kefu):
    web = Web(kefu).login_as("agent")
    r = web.get("/instances/XX-404", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    assert web.get("/instances/XX-404").status_code == 404
    assert create_app({"TESTING": True, "SECRET_KEY": "x"}, kefu=kefu).test_client().get(
        "/healthz").get_json()["definitions"] == len(kefu.definitions.all())
