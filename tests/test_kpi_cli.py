"""``kefu kpi``, ``kefu kpi report``, ``kefu qa sample`` and ``kefu qa sample-size`` (K1–K8, K-cycle, QA) as an
operator runs them: the real diagrams, JSON out, clear errors with their exit codes."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

NOVEMBER = "2026-11-23T09:00:00+08:00"
DECEMBER = "2026-12-01T09:00:00+08:00"


def runner(path):
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{path}", "KEFU_ENV": "test"}

    def run(*args, clock=DECEMBER, expect=0):
        p = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                           env={**env, "KEFU_CLOCK": clock}, cwd=ROOT, timeout=120)
        assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p
    return run


@pytest.fixture(scope="module")
def deployed_db(tmp_path_factory):
    """The real diagrams deployed and the demo users added from the command line, once; copied per test."""
    path = tmp_path_factory.mktemp("kpi-cli") / "seed.db"
    run = runner(path)
    run("deploy", str(ROOT / "processes"), clock=NOVEMBER)
    run("demo", clock=NOVEMBER)
    return path


@pytest.fixture
def kefu_cli(deployed_db, tmp_path):
    shutil.copyfile(deployed_db, tmp_path / "kpi.db")
    return runner(tmp_path / "kpi.db")


def consultation(run, actor, on_spot):
    data = {"customer_name": "李先生", "contact_phone": "13800138000", "channel": "phone",
            "question": "服务费包含哪些项目？", "answered_on_spot": on_spot, **({"answer": "含巡检"} if on_spot else {})}
    r = json.loads(run("start", "consultation", "--as", actor, "--data", json.dumps(data, ensure_ascii=False),
                       "--json", clock=NOVEMBER).stdout)
    if on_spot:  # the customer confirms: the ticket closes
        task = next(t for t in r["tasks"] if t["bpmn_id"] == "confirm_on_spot")
        run("complete", task["id"], "--as", actor, "--data", '{"satisfied": true}', clock=NOVEMBER)
    return r["ticket_no"]


def test_kpi_report_sample_size_and_qa_sample_from_the_command_line(kefu_cli):
    run = kefu_cli
    spot = consultation(run, "agent", True)
    consultation(run, "agent2", False)  # promised reply time not yet given: still open, excluded from K1
    # November is running on the 23rd: figures, but nothing to store yet
    live = json.loads(run("kpi", "--as", "supervisor", "--json", clock=NOVEMBER).stdout)
    assert (live["month"], live["final"], live["tickets"]) == ("2026-11", False, 2)
    assert "not over" in run("kpi", "report", "--month", "2026-11", "--as", "supervisor", clock=NOVEMBER,
                             expect=2).stderr
    # on 1 December: the previous month by default
    stored = json.loads(run("kpi", "report", "--as", "supervisor", "--json").stdout)
    assert stored["month"] == "2026-11" and stored["computed_by"] == "supervisor"
    k1 = stored["department"]["K1"]
    assert (k1["numerator"], k1["denominator"], k1["value"], k1["score"]) == (1, 1, 100.0, 100.0)  # 1/1
    text = run("kpi", "--month", "2026-11", "--agent", "agent2", "--as", "qa").stdout
    assert "KPIs 2026-11 — agent agent2 (stored" in text and "Consultation response timeliness" in text
    one = json.loads(run("kpi", "--month", "2026-11", "--agent", "agent", "--as", "auditor", "--json").stdout)
    assert one["figures"]["K1"]["counted"][0]["ticket_no"] == spot
    # the process owner's sample size, then QA draws the sample of November
    assert "sample size 10" in run("qa", "sample-size").stdout
    run("qa", "sample-size", "1", "--as", "supervisor", expect=3)
    run("qa", "sample-size", "many", "--as", "owner", expect=2)
    assert "sample size set to 1" in run("qa", "sample-size", "1", "--as", "owner").stdout
    drawn = json.loads(run("qa", "sample", "--as", "qa", "--seed", "5", "--json").stdout)
    assert (drawn["month"], drawn["size"], drawn["seed"], drawn["sample"]) == ("2026-11", 1, 5, [spot])
    assert drawn["ticket_no"].startswith("QA20261201-")
    assert "drawn already" in run("qa", "sample", "--month", "2026-11", "--as", "qa", expect=5).stderr


@pytest.mark.parametrize("args, code, message", [
    (("kpi", "--month", "2026-13", "--as", "supervisor"), 2, "month must look like 2026-11"),
    (("kpi", "--month", "x" * 500, "--as", "supervisor"), 2, "month must look like 2026-11"),
    (("kpi", "--month", "2026-11", "--agent", "nobody", "--as", "supervisor"), 2, "no tickets opened by agent"),
    (("kpi", "--as", "agent"), 3, "may not"),
    (("kpi", "report", "--month", "2026-10", "--as", "qa"), 3, "may not"),
    (("qa", "sample", "--month", "2026-10", "--as", "agent"), 3, "may not"),
    (("qa", "sample", "--month", "2026-10", "--size", "0", "--as", "qa"), 2, "between 1 and 500"),
])
def test_bad_input_and_wrong_roles_get_clear_errors(kefu_cli, args, code, message):
    p = kefu_cli(*args, expect=code)
    assert message in p.stderr and "Traceback" not in p.stderr
