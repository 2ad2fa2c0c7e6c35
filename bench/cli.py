"""How fast ``kefu tasks --as agent --json`` answers, beside the floors of the same run (issue 23).

Seeds a throw-away SQLite database (the deployed diagrams, the demo users, a complaint, a repair and a
consultation waiting for the agent, and a transferred complaint waiting for the department), then runs, in
turn and each in a fresh process (``subprocess``, wall clock):

- ``kefu tasks --as agent --json`` (the console script beside this Python);
- with ``--baseline DIR``: the same command of another version of Kefu, a tree holding its ``engine`` package
  (e.g. ``git archive <commit> engine | tar -x -C DIR``), run by the same Python with ``PYTHONPATH=DIR`` as the
  console script runs it, to compare two versions in the same run;
- ``python -c pass`` (the interpreter's start, the floor of any command);
- ``python -c "import sqlalchemy"`` (the floor of a command that reads the database through SQLAlchemy).

The variants are interleaved (one run of each, N times) so the machine's noise falls on all of them alike; it
prints the median and the fastest wall clock of each, the ratios of the medians to the floors', and the median
CPU time (user + system) of a run, which a busy machine disturbs less than the wall clock.
Target: ≤ 0.3 s on a quiet machine.

    python bench/cli.py [--runs 15] [--baseline DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def seed(url: str) -> None:
    """The diagrams, the demo users and customers, and four ready tasks of three kinds (in a child process, so
    this one stays small and its imports cost the measured commands nothing)."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from datetime import timedelta
from engine import Config, Kefu
from engine.services.demo import seed_demo
k = Kefu(Config(database_url={url!r}, env="test"))
k.init()
k.definitions.deploy([{str(ROOT / 'processes')!r}])
seed_demo(k, password=None)
for kind in ("complaint", "repair", "consultation"):
    k.instances.start(kind, "agent", customer_id=1)
now = k.now()
r = k.instances.start("complaint", "agent", customer_id=1, data={{
    "customer_name": "华东银行股份有限公司", "contact_phone": "021-63210000",
    "complaint_time": (now - timedelta(minutes=10)).isoformat(), "place": "徐汇营业部",
    "content": "保安值班时态度恶劣", "customer_demand": "书面道歉", "nature": "service_attitude",
    "severity": "urgent"}})
k.tasks.complete(r["tasks"][0]["id"], "agent", {{"department": "security_ops",
    "handling_requirement": "调查并整改", "handling_deadline": (now + timedelta(hours=6)).isoformat()}})
k.db.dispose()
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict, cwd: str) -> tuple[float, float]:
    """Wall clock and CPU time (user + system) of one run of ``argv``."""
    cpu, t = _children_cpu(), time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    elapsed, cpu = time.perf_counter() - t, _children_cpu() - cpu
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--baseline", help="a tree with another version's engine package, timed beside this one")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="keep PYTHONDONTWRITEBYTECODE if set (by default the commands may write __pycache__, as "
                         "an installed Kefu has it)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    here = Path(sys.executable).with_name("kefu")
    scripts = [str(here)] if here.exists() else []
    variants: dict[str, list[str]] = {}
    command = ["tasks", "--as", "agent", "--json"]
    script_body = "import sys; from engine.cli import main; sys.exit(main())"  # what the console script runs
    if scripts:
        variants["kefu tasks --as agent --json"] = [scripts[0], *command]
    else:
        variants["kefu tasks --as agent --json"] = [sys.executable, "-c", script_body, *command]
    baseline = str(Path(args.baseline).resolve()) if args.baseline else None
    if baseline:
        variants[f"the same, {baseline}"] = [sys.executable, "-c", script_body, *command]
    kefu = list(variants)
    variants["python -c pass"] = [sys.executable, "-c", "pass"]
    variants['python -c "import sqlalchemy"'] = [sys.executable, "-c", "import sqlalchemy"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'kefu.db'}"
        seed(url)
        env = {**os.environ, "KEFU_DATABASE_URL": url, "KEFU_ENV": "test"}
        env.pop("PYTHONPATH", None)
        if not args.no_bytecode_cache:  # compiled once by the warm-up run, as by an install or a first run
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        envs = {name: env for name in variants}
        if baseline:
            envs[f"the same, {baseline}"] = {**env, "PYTHONPATH": baseline}
        outputs = [json.loads(subprocess.run(variants[name], capture_output=True, env=envs[name], cwd=tmp,
                                             check=True).stdout) for name in kefu]
        assert len(outputs[0]) == 3, "expected the three tickets waiting for the agent"
        assert all(out == outputs[0] for out in outputs), "the versions list different tasks"
        for name, argv in variants.items():  # warm the page cache and the bytecode caches
            timed(argv, envs[name], tmp)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, argv in variants.items():
                times[name].append(timed(argv, envs[name], tmp))
    result = {name: {"median_s": round(statistics.median(t[0] for t in ts), 4),
                     "min_s": round(min(t[0] for t in ts), 4),
                     "cpu_median_s": round(statistics.median(t[1] for t in ts), 4)}
              for name, ts in times.items()}
    floor_pass = result["python -c pass"]["median_s"]
    floor_sa = result['python -c "import sqlalchemy"']["median_s"]
    for name, r in result.items():
        r["x_python"] = round(r["median_s"] / floor_pass, 2)
        r["x_sqlalchemy"] = round(r["median_s"] / floor_sa, 2)
        r["above_sqlalchemy_s"] = round(r["median_s"] - floor_sa, 4)
    if args.json:
        print(json.dumps({"runs": args.runs, "cpus": os.cpu_count(), "bytecode_cache": not (
            args.no_bytecode_cache and os.environ.get("PYTHONDONTWRITEBYTECODE")), "results": result}, indent=2))
        return 0
    cache = "PYTHONDONTWRITEBYTECODE kept: only the bytecode already cached is used" \
        if args.no_bytecode_cache and os.environ.get("PYTHONDONTWRITEBYTECODE") else \
        "bytecode cached by the warm-up run"
    print(f"{args.runs} runs each, interleaved, wall clock of a fresh process ({os.cpu_count()} CPUs, {cache})")
    width = max(len(n) for n in result)
    print(f"{'':{width}}  {'median':>8} {'fastest':>8} {'×pass':>6} {'×sqla':>6} {'−sqla':>8} {'CPU':>8}")
    for name, r in result.items():
        print(f"{name:{width}}  {r['median_s']:7.3f}s {r['min_s']:7.3f}s {r['x_python']:6.2f} "
              f"{r['x_sqlalchemy']:6.2f} {r['above_sqlalchemy_s']:+7.3f}s {r['cpu_median_s']:7.3f}s")
    print("median: wall clock of a run; ×pass, ×sqla: its ratio to the floors' medians; −sqla: the time above "
          "the SQLAlchemy floor; CPU: the median user + system time of a run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
