"""QA sampling (RULES.md QA, K4): processes/qa_sampling.bpmn over a seeded random sample; the scores feed K4."""
from datetime import timedelta

import pytest

from engine import kpi
from engine.errors import Conflict, InvalidInput, NotAllowed
from tests.test_kpi import consultation


def close_three_and_reach_december(kefu):
    closed = [consultation(kefu, a, True).ticket_no for a in ("agent", "agent", "agent2")]
    consultation(kefu, "agent", False)  # still open: never sampled
    kefu.clock.advance(timedelta(days=8))  # Tuesday 1 December 09:00
    return closed


def review(kefu, actor, accurate, quality):
    task = next(t for t in kefu.tasks.ready(actor=actor) if t["bpmn_id"] == "qa_review")
    kefu.tasks.complete(task["id"], actor, {"entry_accurate": accurate, "service_quality": quality, "qa_notes": "已核对"})


def test_sample_is_seeded_reproducible_and_scores_feed_k4(kefu):
    closed = close_three_and_reach_december(kefu)
    kefu.kpi.set_sample_size(2, "owner")
    started = kefu.kpi.start_qa_sampling("2026-11", "supervisor", seed=7)
    assert started["size"] == 2 and started["seed"] == 7 and len(started["sample"]) == 2
    assert set(started["sample"]) <= set(closed)
    with kefu.db.reading() as s:  # the same seed over the same tickets draws the same sample
        assert kpi.draw_sample(s, "2026-11", 2, 7) == started["sample"]
    shown = kefu.instances.show(started["instance_id"])
    assert shown["data"]["sample_seed"] == 7 and shown["data"]["sample"] == started["sample"]
    tasks = [t for t in kefu.tasks.ready(actor="qa") if t["bpmn_id"] == "qa_review"]
    assert len(tasks) == 1 and tasks[0]["role"] == "qa" and tasks[0]["assignee"] is None
    with pytest.raises(NotAllowed):
        kefu.tasks.complete(tasks[0]["id"], "agent", {"entry_accurate": True, "service_quality": 90})
    review(kefu, "qa", True, 92)
    review(kefu, "qa", False, 60)
    assert kefu.instances.show(started["instance_id"])["status"] == "completed"
    # K4 of December counts the reviews recorded in December: 1 accurate of 2 = 50 % → 50 / 98 × 100 = 51.02
    k4 = kefu.kpi.live("2026-12")["department"]["K4"]
    assert (k4["numerator"], k4["denominator"], k4["value"], k4["score"]) == (1, 2, 50.0, 51.02)
    assert {r["ticket_no"] for r in k4["counted"]} == set(started["sample"])
    assert all("QA qa" in r["reason"] for r in k4["counted"])


def test_one_sample_per_month_and_clear_errors(kefu):
    with pytest.raises(InvalidInput, match="not over"):
        kefu.kpi.start_qa_sampling("2026-11", "supervisor")
    close_three_and_reach_december(kefu)
    with pytest.raises(NotAllowed):
        kefu.kpi.start_qa_sampling("2026-11", "agent")
    with pytest.raises(InvalidInput):
        kefu.kpi.start_qa_sampling("2026-11", "supervisor", size=0)
    kefu.kpi.start_qa_sampling("2026-11", "qa")
    with pytest.raises(Conflict):
        kefu.kpi.start_qa_sampling("2026-11", "supervisor")
    empty = kefu.kpi.start_qa_sampling("2026-10", None)  # no closed ticket in October: nothing to review
    assert empty["sample"] == [] and empty["status"] == "completed"


def test_sample_size_is_the_process_owners_setting(kefu):
    assert kefu.kpi.sample_size() == kpi.QA_DEFAULT_SIZE
    with pytest.raises(NotAllowed):
        kefu.kpi.set_sample_size(5, "supervisor")
    with pytest.raises(NotAllowed):
        kefu.kpi.set_sample_size(5, None)
    for bad in ("x", "", "0", "100000", "2.5"):
        with pytest.raises(InvalidInput):
            kefu.kpi.set_sample_size(bad, "owner")
    assert kefu.kpi.set_sample_size(" 12 ", "owner") == 12 and kefu.kpi.sample_size() == 12
