"""The price of the sandbox's hard bounds: one gateway condition and one script evaluated through
``BoundedEnvironment`` (what the engine uses: code the screen proves cheap runs in the calling thread, the rest
in a worker process with ``RLIMIT_AS`` and a kill after 5 s), beside the in-process sandbox without the worker
(``RestrictedEnvironment``: screening cache, guards, step/time/memory watch) and plain ``eval``/``exec`` of the
same source, all in the same run. Also timed once: starting a worker, and replacing one killed at the time
bound (what the next evaluation waits for).

Rounds alternate the measured ways so machine noise hits all alike; medians over rounds are reported, never
asserted.

    python bench/sandbox.py [--rounds 5] [--n 500] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0:1] = [str(ROOT)]  # the repository, not bench/ (bench/http.py would shadow the standard library)

from engine.bpmn import sandbox as scripting, screen, workers  # noqa: E402

CASES = [  # label, source, mode: two the screen proves cheap, two that go to a worker
    ("condition (cheap)", "severity == 'major' and round < 3", "eval"),
    ("condition (worker)", "len([n for n in names if n]) > 1 and severity == 'major'", "eval"),
    ("script (cheap)", "handling_round = round + 1", "exec"),
    ("script (worker)", "total = sum([i * 2 for i in range(20)])\nlabel = ', '.join(sorted(names))", "exec"),
]
DATA = {"severity": "major", "round": 2, "names": ["b", "a", "c"], "customer_name": "张三", "phone": "13800000000"}


def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=500, help="evaluations per round and way")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict = {}

    workers.shutdown()
    started = time.perf_counter()
    bounded = scripting.BoundedEnvironment()
    bounded.execute("x = [i for i in range(3)]", {})  # the first evaluation that needs a worker starts one
    out["worker_start_ms"] = round((time.perf_counter() - started) * 1000, 1)

    restricted = scripting.RestrictedEnvironment()
    for label, source, mode in CASES:
        assert screen.cheap(source, mode) is label.endswith("(cheap)")
        code = compile(source, "<bench>", mode)  # the baseline: plain Python, no screening, guards or bounds
        plain_run = eval if mode == "eval" else exec
        times = {"plain": [], "in_process": [], "bounded": []}
        for _ in range(args.rounds):
            times["plain"].append(per_call(lambda: plain_run(code, dict(DATA)), args.n))  # noqa: S307
            in_process = restricted.evaluate if mode == "eval" else restricted.execute
            times["in_process"].append(per_call(lambda: in_process(source, dict(DATA)), args.n))
            run = bounded.evaluate if mode == "eval" else bounded.execute
            times["bounded"].append(per_call(lambda: run(source, dict(DATA)), args.n))
        med = {k: statistics.median(v) for k, v in times.items()}
        out[label] = {"plain_us": round(med["plain"] * 1e6, 2), "in_process_us": round(med["in_process"] * 1e6, 2),
                      "bounded_us": round(med["bounded"] * 1e6, 2),
                      "bounded_vs_plain": round(med["bounded"] / med["plain"], 1),
                      "bounded_vs_in_process": round(med["bounded"] / med["in_process"], 1)}

    previous = scripting.MAX_SECONDS
    scripting.MAX_SECONDS = 0.5
    pool = workers.pool()
    before = pool.started
    try:  # one built-in call of about ten seconds: the worker is killed at the bound
        bounded.execute("b = [a for i in range(5000)]\nn = b.count(c)",
                        {"a": list(range(1, 100_001)), "c": [i + 1 for i in range(100_000)]})
    except scripting.ScriptRejected as exc:
        assert "runs too long" in str(exc), exc
    finally:
        scripting.MAX_SECONDS = previous
    started = time.perf_counter()
    bounded.execute("x = [i for i in range(3)]", {})
    out["worker_replaced_ms"] = round((time.perf_counter() - started) * 1000, 1)
    assert pool.started == before + 1  # the killed worker was replaced
    workers.shutdown()

    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    print(f"starting a worker: {out['worker_start_ms']} ms; replacing one killed at the time bound: "
          f"{out['worker_replaced_ms']} ms")
    for label, _, _ in CASES:
        r = out[label]
        print(f"{label:20} plain {r['plain_us']:8.2f} µs   in-process sandbox {r['in_process_us']:8.2f} µs   "
              f"bounded {r['bounded_us']:8.2f} µs ({r['bounded_vs_plain']}x plain, "
              f"{r['bounded_vs_in_process']}x in-process)")


if __name__ == "__main__":
    main()
