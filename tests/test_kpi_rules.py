"""K-score and K-who (RULES.md "Supervision and KPIs"; 002 第九条, 第二十一条): each scoring formula at its
boundaries, the KPI table the process owner edits (processes/kpi.dmn, parsed strictly, deployed and versioned),
a new version rescoring a live month but not a stored one, and each miss charged to the holder of the clock
that ran out, rolled up to their department.

The K-who tests simulate the ``clock_stopped`` events the clock engine records when a clock stops: they are
appended to the seeded month's tickets with the audit chain's own append function (the tests say so by name).
"""
import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime

import pytest

from engine import DefinitionError, kpi
from engine.bpmn.kpi_table import DEFAULT_RULES, parse_kpi_table, parse_table
from engine.services.context import SYSTEM
from engine.store import chain
from engine.store.tables import Instance
from tests.conftest import PROCESSES, ROOT, from_snapshot
from tests.test_kpi import advance, repair, seed_month
from tests.webclient import Web

KPI_DMN = (PROCESSES / "kpi.dmn").read_text(encoding="utf-8")


def cell(kpi_id: str, output: str, value: str, text: str = KPI_DMN) -> str:
    """The table with one cell changed."""
    new, n = re.subn(rf'(<outputEntry id="Out_{kpi_id}_{output}"><text>)[^<]*(</text>)', rf"\g<1>{value}\g<2>", text)
    assert n == 1
    return new


@pytest.fixture
def month(request, kefu):
    return kefu, from_snapshot(request, kefu, "kpi-month", seed_month)  # November 2026; the clock on 1 December


# ---------------------------------------------------------------------------- K-score: the formulas
def test_k_score_k3_no_score_below_90_then_actual_over_98():
    assert [kpi.score("K3", v) for v in (0, 85, 89.99)] == [0.0, 0.0, 0.0]
    assert kpi.score("K3", 90) == 91.84 and kpi.score("K3", 94) == 95.92
    assert kpi.score("K3", 98) == 100.0 and kpi.score("K3", 99.5) == 100.0


def test_k_score_k6_no_score_below_70_then_actual_over_90():
    assert kpi.score("K6", 69) == 0.0 and kpi.score("K6", 69.99) == 0.0
    assert kpi.score("K6", 70) == 77.78 and kpi.score("K6", 80) == 88.89
    assert kpi.score("K6", 90) == 100.0 and kpi.score("K6", 100) == 100.0


def test_k_score_k8_half_a_point_off_per_percentage_point_below_70():
    assert kpi.score("K8", 70) == 100.0 and kpi.score("K8", 95) == 100.0
    assert kpi.score("K8", 69) == 99.5 and kpi.score("K8", 60) == 95.0 and kpi.score("K8", 0) == 65.0


def test_k_score_k5_above_99_the_department_assesses_itself_at_99_two_points_off_per_point():
    rule = DEFAULT_RULES["K5"]
    assert kpi.score("K5", 99.5) == 100.0 and rule.self_assessed(99.5) is True
    assert kpi.score("K5", 99) == 100.0 and rule.self_assessed(99) is False  # at 99: charged to persons
    assert kpi.score("K5", 98) == 98.0 and kpi.score("K5", 90) == 82.0 and kpi.score("K5", 40) == 0.0


def test_k_score_other_kpis_linear_actual_over_target_capped():
    assert kpi.score("K1", 47.5) == 50.0 and kpi.score("K1", 95) == 100.0 and kpi.score("K1", 0) == 0.0
    assert kpi.score("K2", 80) == 80.0 and kpi.score("K4", 49) == 50.0 and kpi.score("K7", 100) == 100.0
    assert kpi.score("K2", None) is None
    assert {k for k, r in DEFAULT_RULES.items() if r.charged == "owner"} == {"K3", "K4", "K7"}


def test_k_score_the_shipped_table_holds_the_rules_defaults():
    table = parse_table(KPI_DMN.encode(), "kpi.dmn")
    assert table.decision_id == "kpi" and table.rules == DEFAULT_RULES
    assert table.labels["K3"]["zh"].startswith("客户满意度") and "002 art. 9.3" in table.labels["K3"]["en"]


@pytest.mark.parametrize("change, element, message", [
    (lambda t: re.sub(r'\s*<rule id="Rule_K8">.*?</rule>', "", t, flags=re.S), "DecisionTable_kpi",
     "lacks the KPI(s) K8"),
    (lambda t: cell("K5", "charged", '"boss"', t), "Out_K5_charged", 'must be "owner" or "responsible"'),
    (lambda t: cell("K6", "floor", "150", t), "Out_K6_floor", "between 0 and 100"),
    (lambda t: cell("K3", "points_per_point", "1", t), "Rule_K3", "both a denominator"),
    (lambda t: cell("K1", "target", "", t), "Rule_K1", "target of K1 is required"),
    (lambda t: t.replace("<text>kpi</text>", "<text>case</text>"), "Input_kpi", "must be 'kpi'"),
    (lambda t: t.replace('<text>"K2"</text>', '<text>"K1"</text>'), "Rule_K2", "K1 appears twice"),
])
def test_k_score_a_broken_kpi_table_is_refused_naming_element_and_line(change, element, message):
    with pytest.raises(DefinitionError) as exc:
        parse_kpi_table(change(KPI_DMN).encode(), "kpi.dmn")
    details = exc.value.details
    assert message in details["reason"] and details["element"] == element and details["line"] > 1
    assert details["file"] == "kpi.dmn"


def test_k_score_a_new_kpi_table_rescores_a_live_month_not_a_stored_one(month, tmp_path):
    kefu, _t = month
    stored = kefu.kpi.store("2026-11", "supervisor")
    assert stored["kpi_table"]["version"] == 1 and stored["department"]["K3"]["score"] == 0.0  # 83.75 < 90
    # the process owner lowers K3's floor to 80 and deploys the table (kefu deploy / kefu.definitions.deploy)
    path = tmp_path / "kpi.dmn"
    path.write_text(cell("K3", "floor", "80"), encoding="utf-8")
    assert [(d["process_id"], d["version"]) for d in kefu.definitions.deploy([path], actor="owner")] == [("kpi", 2)]
    live = kefu.kpi.live("2026-11")
    assert live["kpi_table"]["version"] == 2 and live["department"]["K3"]["score"] == 85.46  # 83.75 / 98
    kept = kefu.kpi.report("2026-11")  # the stored month keeps the scores it was stored with
    assert kept["kpi_table"]["version"] == 1 and kept["department"]["K3"]["score"] == 0.0
    # and through the designer's .dmn deploy: K5 1 point off per percentage point instead of 2
    with pytest.raises(DefinitionError, match="Out_K5_charged"):
        kefu.designer.deploy_xml(cell("K5", "charged", '"nobody"'), "kpi.dmn", "owner")
    r = kefu.designer.deploy_xml(cell("K5", "points_per_point", "1", path.read_text(encoding="utf-8")),
                                 "kpi.dmn", "owner")
    assert r["version"] == 3 and r["summary"]["elements_changed"] == [
        {"id": "Rule_K5", "name": "K5", "changed": ["points_per_point: 2 → 1"]}]
    assert kefu.kpi.live("2026-11")["department"]["K5"]["score"] == 72.43  # 100 − (99 − 71.43)
    assert kefu.kpi.report("2026-11")["department"]["K5"]["score"] == 44.86
    html = Web(kefu).login_as("owner").page("/kpi/2026-11/report")
    assert "考核标准 v1" in html and "当前生效的是 考核标准 v3" in html
    assert "低于 90% 不得分；实际 ÷ 98%，封顶 100" in html  # K3 as it was scored


def test_k_score_a_month_with_mean_satisfaction_85_gives_k3_no_score_in_the_cli_and_the_report(kefu):
    sc = repair(kefu, "agent")
    sc.complete("accept_order", "technician", {"expected_arrival_time": sc.later(hours=1)})
    sc.complete("repair_work", "technician", {"repair_result": "已更换", "customer_cooperation_needed": False})
    sc.complete("confirm_repair", "agent", {"satisfied": True})
    advance(kefu, days=2, minutes=10)  # Wednesday 25th: the revisit window opened (2 working days)
    sc.complete("revisit", "agent", {"satisfaction_score": 85, "case_summary": "读卡器老化"})
    advance(kefu, days=6)  # 1 December
    p = subprocess.run([sys.executable, "-m", "engine.cli", "kpi", "report", "--month", "2026-11", "--as",
                        "supervisor", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env={**os.environ, "KEFU_DATABASE_URL": kefu.config.database_url, "KEFU_ENV": "test",
                            "KEFU_CLOCK": kefu.clock.now().isoformat()})
    assert p.returncode == 0, p.stderr
    k3 = json.loads(p.stdout)["department"]["K3"]
    assert (k3["value"], k3["score"], k3["floor"], k3["met"]) == (85.0, 0.0, 90, False)
    assert k3["counted"][0]["charges"][0]["person"] == "agent"  # the first responsible agent (X1)
    html = Web(kefu).login_as("supervisor").page("/kpi/2026-11/report")
    row = re.search(r'<tr class="zero"><td>K3 客户满意度</td>(.*?)</tr>', html, re.S).group(1)
    assert "85.00" in row and "0.00" in row and "不得分" in row


# ---------------------------------------------------------------------------- K-who
def stop(clock, task, task_name, role, group, responsible, due, stopped, state):
    return {"clock": clock, "task": task, "role": role, "group": group, "responsible": responsible,
            "due_at": f"2026-11-{due}:00+08:00", "stopped_at": f"2026-11-{stopped}:00+08:00", "state": state,
            "_name": task_name}


def simulate_clock_stopped(kefu, sc, *stops):
    """Append ``clock_stopped`` events to a ticket as the clock engine records them (simulated here)."""
    with kefu.db.unit_of_work() as s:
        inst = s.get(Instance, sc.instance_id)
        chain.append(s, inst, [chain.PendingEvent(
            "clock_stopped", SYSTEM, datetime.fromisoformat(x["stopped_at"]), bpmn_id=x["task"],
            task_name=x.pop("_name"), rules=["T1", "K-who"], data=x) for x in stops])


@pytest.fixture
def charged_month(month):
    """The seeded month as the real diagrams recorded its clocks (``clock_stopped`` events)."""
    return month


def test_k_who_miss_charged_to_the_holder_of_the_clock_that_ran_out(charged_month):
    kefu, t = charged_month
    r = kefu.kpi.live("2026-11")
    d, people, depts = r["department"], r["agents"], r["departments"]
    assert (d["K5"]["numerator"], d["K5"]["denominator"]) == (5, 7)  # the department figure is unchanged
    row = next(x for x in d["K5"]["counted"] if x["ticket_no"] == t["r_late"].ticket_no)
    assert row["charged"] == "technician (technician)"
    assert [(c["person"], c["department"], c["outcome"]) for c in row["charges"]] == [
        ("technician", "technician", False), ("technician2", "technician", True)]
    assert row["charges"][0]["why"] == ("finish clock of 上门维修 ran out 1h late; holder technician (department "
                                        "technician); response clock of 接单 met; holder technician (department "
                                        "technician)")  # both of his clocks, one charge
    # per person: the late order is the technician's, no longer agent2's (who only opened it)
    assert (people["technician"]["K5"]["numerator"], people["technician"]["K5"]["denominator"]) == (1, 2)  # r_pause ✓
    assert (people["technician2"]["K5"]["numerator"], people["technician2"]["K5"]["denominator"]) == (1, 1)
    # the work orders' clocks are the handlers': the agents who opened them hold none of K5
    assert (people["agent2"]["K5"]["numerator"], people["agent2"]["K5"]["denominator"]) == (0, 0)
    assert (people["agent"]["K5"]["numerator"], people["agent"]["K5"]["denominator"]) == (0, 0)
    assert (people["department"]["K5"]["numerator"], people["department"]["K5"]["denominator"]) == (4, 4)
    assert people["agent2"]["K3"]["denominator"] == 2  # K3 is charged to the owner (the KPI table)


def test_k_who_no_holder_on_record_rolls_the_miss_up_to_the_department(charged_month):
    kefu, t = charged_month
    r = kefu.kpi.live("2026-11")
    depts, people = r["departments"], r["agents"]
    row = next(x for x in r["department"]["K8"]["counted"] if x["ticket_no"] == t["c_late"].ticket_no)
    assert [(c["person"], c["department"], c["outcome"]) for c in row["charges"]] == [
        (None, "finance", False), ("department", "sales", True)]
    assert row["charges"][0]["why"] == ("response clock of 部门接单 ran out 1min late; "
                                        "no holder on record: department finance")
    assert (depts["finance"]["K8"]["numerator"], depts["finance"]["K8"]["denominator"]) == (1, 2)  # c_ok in time
    assert (depts["sales"]["K5"]["numerator"], depts["sales"]["K5"]["denominator"]) == (1, 1)
    assert (depts["technician"]["K5"]["numerator"], depts["technician"]["K5"]["denominator"]) == (1, 2)
    # K1: the agent's own clock (the promised reply, agent lane) was met: credited, not charged
    k1 = next(x for x in r["department"]["K1"]["counted"] if x["ticket_no"] == t["c_late"].ticket_no)
    assert [(c["person"], c["outcome"]) for c in k1["charges"]] == [(None, False), ("agent", True),
                                                                   ("department", True)]
    assert (people["agent"]["K1"]["numerator"], people["agent"]["K1"]["denominator"]) == (2, 2)
    # tickets without clock records stay with the agent who opened them
    spot = next(x for x in r["department"]["K1"]["counted"] if x["ticket_no"] == t["c_spot"].ticket_no)
    assert spot["charges"][0]["basis"] == "owner" and spot["charges"][0]["why"].startswith("no clock records")


def test_k_who_the_lineage_page_and_csv_say_who_was_charged_and_why(charged_month):
    kefu, t = charged_month
    web = Web(kefu).login_as("supervisor")
    html = web.page("/kpi/2026-11/K5")
    assert "✗ 完成时限（上门维修）超时 1 小时；责任人 technician（维修人员）" in html
    assert "✓ 响应时限（接单）按时；责任人 technician2（维修人员）" in html
    assert "✗ 响应时限（部门接单）超时 1 分钟；无责任人记录，计入部门 财务部" in html
    html = web.page("/kpi/2026-11/K5?agent=technician")
    assert "1 ÷ 分母 2" in html and t["r_late"].ticket_no in html  # r_pause in time, r_late not
    html = web.page("/kpi/2026-11/report")
    assert "部门 财务部" in html and "责任人 technician2" in html
    rows = list(csv.DictReader(io.StringIO(web.get("/kpi/2026-11/lineage.csv?columns=names").get_data(as_text=True)
                                           .lstrip("\ufeff"))))
    late = next(x for x in rows if x["kpi"] == "K5" and x["ticket_no"] == t["r_late"].ticket_no)
    assert late["charged"] == "technician (technician)"
    assert late["charged_why"].startswith("finish clock of 上门维修 ran out 1h late; holder technician")


def test_k_who_one_holder_of_clocks_in_two_departments_counts_a_ticket_once():
    """Pure: the demo user ``department`` may hold the finance clock that ran out and the sales clock that was met
    on one ticket; the ticket is one miss for that person and one figure for each department."""
    from engine.bpmn.kpi_table import default_table
    from engine.kpi_who import ClockStop, charges
    stops = [ClockStop("response", "department_accept", "部门接单", "department", "finance", "department",
                       "2026-11-23T09:30:00+08:00", "2026-11-23T09:45:00+08:00", "missed"),
             ClockStop("response", "department_accept", "部门接单", "department", "sales", "department",
                       "2026-11-23T10:15:00+08:00", "2026-11-23T09:50:00+08:00", "met")]
    shares = charges("K8", "responsible", "agent", stops, False)
    assert [(c["person"], c["department"], c["outcome"]) for c in shares] == [
        ("department", "finance", False), ("department", "sales", True)]
    assert "ran out 15min late" in shares[0]["why"]
    row = {"instance_id": 1, "ticket_no": "ZX1", "kind": "consultation", "agent": "agent", "outcome": False,
           "reason": "not accepted within 30 min", "charges": shares}
    rows = {k: ([row] if k == "K8" else [], []) for k in kpi.KPI_IDS}
    people, depts = kpi._scopes(rows, default_table())
    assert (people["department"]["K8"]["numerator"], people["department"]["K8"]["denominator"]) == (0, 1)
    assert (depts["finance"]["K8"]["denominator"], depts["sales"]["K8"]["numerator"]) == (1, 1)
    assert "agent" not in people  # the agent who opened it held no clock of K8


