"""Audit search over 100,000 instances on SQLite: p50/p95 per query, with and without the search indexes.

Seeds a realistic database straight into the tables (bulk inserts, not through the engine): 100,000
instances over 180 days across kinds, statuses, severities, 5,000 customers and 41 users (one a new hire
with few tickets), two human tasks per instance (one completed by a user, one ready on open tickets), finish
deadlines of which some have passed. Then times a mix of searches through ``kefu.audit.search`` (parsing, query, formatting) — each
filter alone, combinations, and the 20th page of a result followed by its cursor — first with the indexes
``engine/store/tables.py`` declares for the search, then with those indexes dropped (the baseline, same run, same
data), next to a bare ``SELECT … ORDER BY id DESC LIMIT 50`` on the same table. Target: p95 < 50 ms.

    python bench/search.py [--instances 100000] [--repeat 25] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0:1] = [str(ROOT)]  # the repository, not bench/ (bench/http.py would shadow the standard library)

from sqlalchemy import insert, select, text  # noqa: E402

from engine import Clock, Config, Kefu  # noqa: E402
from engine.clock import SHANGHAI  # noqa: E402
from engine.store.tables import Customer, Definition, HumanTask, Instance  # noqa: E402

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
KINDS = [("complaint", "TS"), ("repair", "BX"), ("consultation", "ZX")]
SEARCH_INDEXES = ["ix_instances_kind_status_created", "ix_instances_status_created",
                  "ix_instances_severity_created", "ix_instances_customer_created", "ix_instances_creator_created",
                  "ix_instances_finish_due", "ix_human_tasks_completed_by",
                  "ix_human_tasks_assignee_instance", "ix_human_tasks_state_due"]


def seed(k: Kefu, n: int) -> dict:
    rnd = random.Random(6)
    users = [f"agent{i:02d}" for i in range(25)] + [f"dept{i:02d}" for i in range(10)] + \
        [f"tech{i:02d}" for i in range(5)]
    with k.db.unit_of_work() as s:
        defs = {kind: s.scalar(select(Definition.id).where(Definition.process_id == kind)) for kind, _ in KINDS}
    with k.db.engine.begin() as conn:
        conn.execute(insert(Customer), [
            {"id": i, "name": f"客户{i:05d}{'有限公司' if i % 3 == 0 else ''}", "phone": f"138{i:08d}",
             "phone_digits": f"138{i:08d}", "vip": i % 50 == 0, "created_at": NOW, "updated_at": NOW}
            for i in range(1, 5001)])
    start = NOW - timedelta(days=180)
    counters: dict[str, int] = {}
    rows, tasks = [], []
    for i in range(1, n + 1):
        created = start + timedelta(seconds=int(180 * 86400 * i / n) + rnd.randint(0, 59))
        kind, prefix = KINDS[rnd.randrange(3)] if rnd.random() > 0.2 else KINDS[0]
        day = created.astimezone(SHANGHAI).strftime("%Y%m%d")
        counters[prefix + day] = counters.get(prefix + day, 0) + 1
        age_days = (NOW - created).days
        status = "completed" if rnd.random() < min(0.97, age_days / 10) else ("incident" if rnd.random() < 0.01
                                                                             else "active")
        finish_due = created + timedelta(hours=rnd.choice([6, 8, 24, 72]))
        agent = users[rnd.randrange(25)] if i % 200 else "trainee"  # a new hire with few tickets
        rows.append({"id": i, "ticket_no": f"{prefix}{day}-{counters[prefix + day]:04d}", "kind": kind,
                     "definition_id": defs[kind], "customer_id": rnd.randint(1, 5000), "status": status,
                     "severity": rnd.choice(["general", "general", "general", "urgent", "major"]),
                     "nature": None, "vip": False, "summary": "保安态度恶劣" if kind == "complaint" else "门禁故障",
                     "created_by": agent, "created_at": created, "updated_at": created,
                     "completed_at": created + timedelta(hours=5) if status == "completed" else None,
                     "response_due": created + timedelta(minutes=30), "finish_due": finish_due,
                     "clock_paused_at": None, "state": "", "audit_count": 0, "audit_head": "", "lock_version": 1})
        worker = users[25 + rnd.randrange(15)]
        tasks.append({"id": f"{i:08d}-0000-4000-8000-000000000001", "instance_id": i, "bpmn_id": "register",
                      "spec_name": "register", "name": "登记", "role": "agent", "assignee": agent, "state": "completed",
                      "created_at": created, "ended_at": created, "completed_by": agent})
        tasks.append({"id": f"{i:08d}-0000-4000-8000-000000000002", "instance_id": i, "bpmn_id": "handle",
                      "spec_name": "handle", "name": "处理", "role": "department", "assignee": worker,
                      "state": "completed" if status == "completed" else "ready", "created_at": created,
                      "due_at": finish_due, "ended_at": created + timedelta(hours=5) if status == "completed" else None,
                      "completed_by": worker if status == "completed" else None})
    with k.db.engine.begin() as conn:
        for j in range(0, n, 20000):
            conn.execute(insert(Instance), rows[j:j + 20000])
        for j in range(0, len(tasks), 40000):
            conn.execute(insert(HumanTask), tasks[j:j + 40000])
        conn.exec_driver_sql("ANALYZE")
    sample = rows[n // 2]
    return {"ticket": sample["ticket_no"], "customer_id": sample["customer_id"], "agent": sample["created_by"],
            "worker": tasks[n + 1]["assignee"]}


def queries(sample: dict) -> list[tuple[str, dict]]:
    return [
        ("newest (no filter)", {}),
        ("ticket number", {"ticket": sample["ticket"]}),
        ("ticket prefix (a day)", {"ticket": sample["ticket"][:10]}),
        ("customer id", {"customer": str(sample["customer_id"])}),
        ("customer name", {"customer": "客户0421"}),
        ("kind", {"kind": "repair"}),
        ("severity", {"severity": "major"}),
        ("status active", {"status": "active"}),
        ("agent", {"agent": sample["agent"]}),
        ("agent (worked tasks)", {"agent": sample["worker"]}),
        ("agent (few tickets)", {"agent": "trainee"}),
        ("date range (a week)", {"date_from": "2026-08-01", "date_to": "2026-08-07"}),
        ("overdue", {"overdue": "1"}),
        ("kind+status+severity", {"kind": "complaint", "status": "completed", "severity": "urgent"}),
        ("kind+date range", {"kind": "complaint", "date_from": "2026-07-01", "date_to": "2026-07-31"}),
        ("agent+kind+date", {"agent": sample["agent"], "kind": "repair", "date_from": "2026-06-01",
                             "date_to": "2026-09-30"}),
        ("agent+status incident", {"agent": sample["worker"], "status": "incident"}),  # few rows of many
        ("overdue+severity", {"overdue": "1", "severity": "major"}),
        ("customer+status", {"customer": str(sample["customer_id"]), "status": "completed"}),
    ]


def timed(fn, repeat: int) -> dict:
    fn()  # warm
    ms = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 2)}


def deep_page(k: Kefu, args: dict, pages: int = 20):
    def run():
        cursor = None
        for _ in range(pages):
            page = k.audit.search({**args, **({"after": cursor} if cursor else {})})
            cursor = page["next"]
            if cursor is None:
                break
    return run


def measure(k: Kefu, sample: dict, repeat: int) -> dict:
    out = {}
    for name, args in queries(sample):
        out[name] = timed(lambda a=args: k.audit.search(a), repeat)
    # The 20th page: 19 cursor pages walked first, then the 20th timed alone
    for name, args in (("20th page (no filter)", {}), ("20th page (kind+status)", {"kind": "complaint",
                                                                                 "status": "completed"})):
        cursor = None
        for _ in range(19):
            cursor = k.audit.search({**args, **({"after": cursor} if cursor else {})})["next"]
        out[name] = timed(lambda a=args, c=cursor: k.audit.search({**a, "after": c}), repeat)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=25)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kefu-search-")
    k = Kefu(Config(database_url=f"sqlite:///{tmp}/search.db", env="test"), clock=Clock(NOW))
    k.init()
    k.definitions.deploy()
    t0 = time.perf_counter()
    sample = seed(k, a.instances)
    seed_s = time.perf_counter() - t0
    indexed = measure(k, sample, a.repeat)
    def bare_select():
        with k.db.read_engine.connect() as conn:
            conn.execute(text("SELECT * FROM instances ORDER BY id DESC LIMIT 51")).all()
    bare = timed(bare_select, a.repeat)
    with k.db.engine.begin() as conn:
        for name in SEARCH_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql("ANALYZE")
    baseline = measure(k, sample, max(3, a.repeat // 5))
    result = {"instances": a.instances, "seed_seconds": round(seed_s, 1), "bare_select_limit": bare,
              "queries": {n: {"indexed": indexed[n], "without_search_indexes": baseline[n],
                              "speedup_p95": round(baseline[n]["p95_ms"] / max(indexed[n]["p95_ms"], 0.01), 1)}
                          for n in indexed}}
    worst = max(v["indexed"]["p95_ms"] for v in result["queries"].values())
    result["worst_p95_ms"] = worst
    if a.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"{a.instances} instances seeded in {seed_s:.1f} s; bare SELECT … LIMIT 50: "
              f"p50 {bare['p50_ms']} ms, p95 {bare['p95_ms']} ms")
        print(f"{'query':28} {'p50 ms':>8} {'p95 ms':>8}   {'no-index p50':>12} {'p95':>8}  {'p95 ratio':>9}")
        for n, v in result["queries"].items():
            i, b = v["indexed"], v["without_search_indexes"]
            print(f"{n:28} {i['p50_ms']:8.2f} {i['p95_ms']:8.2f}   {b['p50_ms']:12.2f} {b['p95_ms']:8.2f}  "
                  f"{v['speedup_p95']:8.1f}x")
        print(f"worst p95 with the indexes: {worst:.2f} ms (target < 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
