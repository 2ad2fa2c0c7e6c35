"""KPI computation over a month of complaint lifecycles: K1–K8 with lineage vs reading the same rows.

Seeds N complete complaint lifecycles in November 2026 through the service (bench/lifecycle.py's path:
register → transfer → accept → handle → feedback → revisit → customer care), then measures, alternating in
rounds so machine noise hits all alike:

* read: loading the month's instances and their audit events (the rows the computation reads), the baseline;
* compute: ``kpi.compute`` — the same read plus the eight rules, per agent and department, with lineage;
* dashboard (live): ``GET /kpi?month=2026-11`` — six months of trend, charts, tiles (nothing stored);
* dashboard (stored): the same page after the K-cycle stored November (read from ``kpi_reports``).

Medians over rounds are reported with ratios to the read baseline; nothing is asserted.

    python bench/kpi.py [--tickets 300] [--rounds 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0:1] = [str(ROOT)]
sys.path.append(str(ROOT / "bench"))  # last: bench/http.py must not shadow the standard library

from sqlalchemy import select  # noqa: E402

from engine import kpi  # noqa: E402
from engine.clock import SHANGHAI  # noqa: E402
from engine.store.tables import AuditEvent, Instance  # noqa: E402
from lifecycle import CLOCK, ServiceRunner  # noqa: E402
from webapp import create_app  # noqa: E402

MONTH = "2026-11"


def read_rows(k) -> int:
    start, end = kpi.month_bounds(MONTH)
    with k.db.reading() as s:
        insts = list(s.scalars(select(Instance).where(Instance.created_at >= start, Instance.created_at < end)))
        ids = [i.id for i in insts]
        n = 0
        for chunk in range(0, len(ids), 500):
            n += len(list(s.scalars(select(AuditEvent).where(AuditEvent.instance_id.in_(ids[chunk:chunk + 500]))
                                    .order_by(AuditEvent.instance_id, AuditEvent.seq))))
    return n


def compute(k) -> dict:
    with k.db.reading() as s:
        return kpi.compute(s, MONTH, now=k.now())


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        runner = ServiceRunner(Path(tmp))
        t0 = time.perf_counter()
        for _ in range(args.tickets):
            runner.lifecycle()
        seed_s = time.perf_counter() - t0
        k = runner.k
        CLOCK.set(datetime(2026, 12, 2, 9, 0, tzinfo=SHANGHAI))
        app = create_app({"TESTING": True, "SECRET_KEY": "bench"}, kefu=k)
        client = app.test_client()
        with client.session_transaction() as sess:
            sess["_user_id"], sess["_fresh"] = "supervisor", True
            sess["kefu_sv"] = k.users.get("supervisor")["session_version"]  # what a real sign-in records

        def page():
            r = client.get(f"/kpi?month={MONTH}")
            if r.status_code != 200:
                raise SystemExit(f"dashboard answered {r.status_code}")

        events = read_rows(k)
        report = compute(k)
        if report["tickets"] != args.tickets or report["department"]["K2"]["numerator"] != args.tickets:
            raise SystemExit("unexpected figures: " + json.dumps(kpi.summary(report)["K2"]))
        for fn in (lambda: read_rows(k), lambda: compute(k), page):  # warm up
            fn()
        reads, computes, pages = [], [], []
        for _ in range(args.rounds):
            reads.append(timed(lambda: read_rows(k)))
            computes.append(timed(lambda: compute(k)))
            pages.append(timed(page))
        k.kpi.store(MONTH, "supervisor")
        stored_pages = [timed(page) for _ in range(args.rounds)]
        ms = {name: statistics.median(v) * 1e3 for name, v in
              (("read", reads), ("compute", computes), ("dashboard_live", pages), ("dashboard_stored", stored_pages))}
        result = {
            "tickets": args.tickets, "audit_events": events, "rounds": args.rounds,
            "seed_s": round(seed_s, 1),
            "median_ms": {n: round(v, 1) for n, v in ms.items()},
            "compute_over_read": round(ms["compute"] / ms["read"], 2),
            "dashboard_live_over_read": round(ms["dashboard_live"] / ms["read"], 2),
            "dashboard_stored_over_read": round(ms["dashboard_stored"] / ms["read"], 2),
        }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['tickets']} complaint lifecycles, {events} audit events in {MONTH} "
              f"(seeded in {result['seed_s']} s); medians of {args.rounds} rounds:")
        for name, v in result["median_ms"].items():
            print(f"  {name:<17} {v:9.1f} ms   {v / ms['read']:6.2f}x read")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
