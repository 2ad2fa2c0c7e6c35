"""The check before deploy, timed per shipped diagram: the lint and the test run against the baseline of
parsing the diagram (safe XML + XSD + SpiffWorkflow's parser, what any deploy does), measured in the same
run; and what the sandbox costs (screening cache, guarded operations, step/time/memory bounds, checked
results): a gateway condition and a script with a comprehension, each through ``RestrictedEnvironment``
against plain ``eval``/``exec`` of the same source.

Rounds alternate the measured steps so machine noise hits all alike; medians over rounds are reported,
never asserted.

    python bench/designer.py [--rounds 7] [--json]
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

from engine.bpmn import sandbox as scripting, screen  # noqa: E402
from engine.bpmn.diagram import parse_diagram  # noqa: E402
from engine.bpmn.lint import lint_diagram  # noqa: E402
from engine.bpmn.testrun import test_run  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {}
    for path in sorted((ROOT / "processes").glob("*.bpmn")):
        data = path.read_bytes()
        report = lint_diagram(data, path.name)
        times = {"parse": [], "lint": [], "testrun": []}
        for _ in range(args.rounds):
            times["parse"].append(timed(lambda: parse_diagram(data, path.name)))
            times["lint"].append(timed(lambda: lint_diagram(data, path.name)))
            times["testrun"].append(timed(lambda: test_run(report)))
        med = {k: statistics.median(v) for k, v in times.items()}
        out[path.name] = {"parse_ms": round(med["parse"] * 1000, 1), "lint_ms": round(med["lint"] * 1000, 1),
                          "testrun_ms": round(med["testrun"] * 1000, 1),
                          "lint_vs_parse": round(med["lint"] / med["parse"], 2),
                          "testrun_vs_parse": round(med["testrun"] / med["parse"], 2)}
    env = scripting.RestrictedEnvironment()
    n = 5000
    for label, source, mode in (("condition", "severity == 'major' and round < 3", "eval"),
                                ("script", "total = sum([i * 2 for i in range(20)])", "exec")):
        ctx = {"severity": "major", "round": 2}
        screen.compile_checked(source, mode)  # it passes the sandbox's screening
        code = compile(source, "<bench>", mode)  # the baseline: plain Python, no screening, guards or bounds
        run = env.evaluate if mode == "eval" else env.execute
        plain, guarded = [], []
        for _ in range(args.rounds):
            plain.append(timed(lambda: [(eval if mode == "eval" else exec)(code, dict(ctx))  # noqa: S307
                                        for _ in range(n)]) / n)
            guarded.append(timed(lambda: [run(source, dict(ctx)) for _ in range(n)]) / n)
        out[label] = {"plain_us": round(statistics.median(plain) * 1e6, 2),
                      "sandbox_us": round(statistics.median(guarded) * 1e6, 2),
                      "ratio": round(statistics.median(guarded) / statistics.median(plain), 2)}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for name, r in out.items():
        if name in ("condition", "script"):
            print(f"one {name}: {r['plain_us']} µs plain, {r['sandbox_us']} µs in the sandbox ({r['ratio']}x)")
        else:
            print(f"{name:18} parse {r['parse_ms']:7.1f} ms   lint {r['lint_ms']:7.1f} ms ({r['lint_vs_parse']}x)"
                  f"   test run {r['testrun_ms']:7.1f} ms ({r['testrun_vs_parse']}x)")


if __name__ == "__main__":
    main()
