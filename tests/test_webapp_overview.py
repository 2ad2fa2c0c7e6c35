"""The overview pages render the engine's state in Chinese and never expose engine errors as crashes."""
from webapp import create_app


def test_overview_and_instance_pages(scenario):
    scenario.start("repair", {"customer_name": "李先生", "contact_phone": "13800138000", "fault_symptom": "报警器误报",
                              "location": "北京市朝阳区建国路 88 号", "emergency": False})
    client = create_app({"TESTING": True}, kefu=scenario.base).test_client()
    page = client.get("/").get_data(as_text=True)
    assert "待办任务" in page and scenario.ticket_no in page and "填写报修派工单" in page
    page = client.get(f"/instances/{scenario.ticket_no}").get_data(as_text=True)
    assert "审计轨迹" in page and "task_completed" in page and "R1" in page


def test_unknown_instance_is_a_404_with_a_stable_code(kefu):
    client = create_app({"TESTING": True}, kefu=kefu).test_client()
    r = client.get("/instances/XX-404")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    assert client.get("/healthz").get_json()["definitions"] == len(kefu.definitions()) == 5
