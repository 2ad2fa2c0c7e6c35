"""Task completions per second through the JSON API (``kefu web`` under gunicorn, PostgreSQL) beside the
engine's in-process rate on the same database and task kind, measured in the same run.

Setup: a throw-away PostgreSQL (tests/pg.py, Debian's server), ``kefu init``/deploy/demo, then N + M
consultations opened with their intake form (``kefu.instances.start`` with data), so each has the agent's
``promise_reply`` task ready (C3: a datetime that must lie in the future and a boolean).

1. In-process baseline: one thread calls ``kefu.tasks.complete`` on M of those tasks in turn.
2. HTTP: ``kefu web --workers W --threads T`` is started on a free loopback port; C client threads, each
   with its own keep-alive ``http.client`` connection, POST ``/api/v1/tasks/<id>/complete`` for the other N
   tasks, as fast as the server answers.

   The clients connect only once every worker has booted (the process tree's CPU use is quiet): clients that
   connected while some workers were still importing would all keep their connections to the first ones.

Afterwards every task must be completed exactly once (one ``task_completed`` audit event each, every answer
200) and the audit chains must verify. Printed: completions/s and p50/p95 latency of both, and the ratio;
for the HTTP phase also the CPU each party used per completion (gunicorn and its workers, the PostgreSQL
server when the run started it, the client threads), how many cores were busy in all, and each worker's
share of the workers' CPU (how evenly the keep-alive connections spread the work; Linux /proc).

    python bench/http.py [--tasks 1500] [--inprocess 300] [--workers N] [--threads 2] [--clients 8] [--json]
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's ``http`` package: run as a script, its folder comes first
# on sys.path and would shadow it. Drop that entry before anything imports ``http``.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from engine import Config, Kefu  # noqa: E402
from engine.cli.server import default_web_workers  # noqa: E402
from engine.services.demo import seed_demo  # noqa: E402
from engine.store.tables import AuditEvent  # noqa: E402

INTAKE = {"customer_name": "李先生", "contact_phone": "13800138000", "region": "北京", "channel": "phone",
          "question": "家用报警器每月服务费包含哪些项目？", "answered_on_spot": False}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_tickets(k: Kefu, count: int) -> list[str]:
    """``count`` consultations with the intake done; the id of each one's ready ``promise_reply`` task."""
    out = []
    for _ in range(count):
        started = k.instances.start("consultation", "agent", data=INTAKE)
        out.append(next(t["id"] for t in started["tasks"] if t["bpmn_id"] == "promise_reply"))
    return out


def form_data(k: Kefu) -> dict:
    return {"promised_reply_time": (k.now() + timedelta(hours=12)).isoformat(), "needs_department": False}


def in_process(k: Kefu, task_ids: list[str]) -> dict:
    data = form_data(k)
    latencies = []
    began = time.perf_counter()
    for tid in task_ids:
        t0 = time.perf_counter()
        k.tasks.complete(tid, "agent", data)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - began
    return summary(len(task_ids), elapsed, latencies)


def summary(count: int, elapsed: float, latencies: list[float]) -> dict:
    return {"completions": count, "seconds": round(elapsed, 2), "per_second": round(count / elapsed, 1),
            "p50_ms": round(pct(latencies, 50) * 1000, 1), "p95_ms": round(pct(latencies, 95) * 1000, 1)}


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, CPU ticks used so far), for every process this user can read (Linux /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def _tree_ticks(stats: dict, root: int | None) -> int:
    """CPU ticks of ``root`` and all its descendants (exited ones are not counted)."""
    if root is None or root not in stats:
        return 0
    children: dict[int, list[int]] = {}
    for pid, (ppid, _t) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0))[1]
        todo.extend(children.get(pid, ()))
    return total


def cpu_split(web_pid: int, pg_pid: int | None):
    """A probe of CPU used by the web server (gunicorn and its workers), the PostgreSQL server (when this run
    started it) and this process (the clients); the difference of two probes is what happened between them."""
    stats = _proc_stats()
    return {"web": _tree_ticks(stats, web_pid), "postgresql": _tree_ticks(stats, pg_pid),
            "clients": stats.get(os.getpid(), (0, 0))[1], "wall": time.perf_counter()}


def cpu_per_completion(before: dict, after: dict, completions: int) -> dict:
    """Milliseconds of CPU per completion by party, and how many of the machine's cores were busy with them."""
    hz = os.sysconf("SC_CLK_TCK")
    used = {k: (after[k] - before[k]) / hz for k in ("web", "postgresql", "clients")}
    wall = after["wall"] - before["wall"]
    out = {f"{k}_ms": round(v / max(completions, 1) * 1000, 2) for k, v in used.items()}
    out["cores_busy"] = round(sum(used.values()) / wall, 2) if wall > 0 else None
    return out


def postmaster_pid(server) -> int | None:
    try:
        return int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    except (AttributeError, TypeError, OSError, ValueError, IndexError):
        return None


def wait_ready(port: int, proc, deadline_s=60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"kefu web exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("kefu web did not answer /healthz")


def wait_workers(master: int, workers: int, deadline_s=60) -> None:
    """Until gunicorn has forked all its workers and they have finished booting: the process tree's CPU use
    stays quiet for half a second. /healthz answers as soon as one worker is up; clients that connected then
    would all keep their connections to the workers that happened to be up first."""
    deadline = time.monotonic() + deadline_s
    last, quiet = None, 0
    while time.monotonic() < deadline:
        stats = _proc_stats()
        kids = sum(1 for ppid, _t in stats.values() if ppid == master)
        ticks = _tree_ticks(stats, master)
        quiet = quiet + 1 if kids >= workers and last is not None and ticks - last <= 1 else 0
        if quiet >= 2:
            return
        last = ticks
        time.sleep(0.25)
    raise SystemExit("gunicorn's workers did not finish booting")


def worker_ticks(master: int) -> dict[int, int]:
    return {pid: ticks for pid, (ppid, ticks) in _proc_stats().items() if ppid == master}


def over_http(port: int, token: str, task_ids: list[str], clients: int, data: dict) -> dict:
    todo: queue.Queue = queue.Queue()
    for tid in task_ids:
        todo.put(tid)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures: list[str] = []
    lock = threading.Lock()
    body = json.dumps({"data": data}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    start = threading.Barrier(clients + 1)

    # The clients arrive one after another, as real ones do, not in the same microsecond: connections that
    # all arrive at once are all accepted by whichever worker wakes first, and stay with it (keep-alive).
    conns = []
    for _ in range(clients):
        conns.append(http.client.HTTPConnection("127.0.0.1", port, timeout=60))
        conns[-1].connect()
        time.sleep(0.02)

    def client(conn):
        mine, codes = [], {}
        start.wait()
        while True:
            try:
                tid = todo.get_nowait()
            except queue.Empty:
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", f"/api/v1/tasks/{tid}/complete", body=body, headers=headers)
                r = conn.getresponse()
                payload = r.read()
            except (OSError, http.client.HTTPException) as exc:  # reconnect once; never count it as done
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                with lock:
                    failures.append(f"{tid}: {type(exc).__name__}: {exc}")
                continue
            mine.append(time.perf_counter() - t0)
            codes[r.status] = codes.get(r.status, 0) + 1
            if r.status != 200:
                with lock:
                    failures.append(f"{tid}: {r.status} {payload[:200]!r}")
        conn.close()
        with lock:
            latencies.extend(mine)
            for c, n in codes.items():
                statuses[c] = statuses.get(c, 0) + n

    threads = [threading.Thread(target=client, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    out = summary(statuses.get(200, 0), elapsed, latencies)
    out.update({"statuses": statuses, "failures": failures[:5], "failure_count": len(failures)})
    return out


def check(k: Kefu, task_ids: list[str]) -> dict:
    """Every task completed exactly once; the audit chains verify."""
    with k.db.reading() as s:
        rows = s.execute(select(AuditEvent.task_id, func.count()).where(
            AuditEvent.type == "task_completed", AuditEvent.task_id.in_(task_ids)).group_by(AuditEvent.task_id))
        done = dict(rows.all())
    return {"completed_once": sum(1 for t in task_ids if done.get(t) == 1),
            "completed_twice": sum(1 for n in done.values() if n > 1),
            "not_completed": sum(1 for t in task_ids if t not in done),
            "audit_problems": len(k.audit.verify())}


def run(tasks: int, inprocess: int, workers: int, threads: int, clients: int, url: str | None = None) -> dict:
    from tests.pg import start_server
    server = start_server() if url is None else None
    try:
        url = url or server.url_for(server.create_database())
        k = Kefu(Config(database_url=url, env="production"))
        k.init()
        k.definitions.deploy()
        seed_demo(k, password=None)
        t0 = time.perf_counter()
        base_ids = open_tickets(k, inprocess)
        http_ids = open_tickets(k, tasks)
        setup = time.perf_counter() - t0
        baseline = in_process(k, base_ids)
        token = k.users.create_token("agent", label="bench")["token"]
        port = free_port()
        env = {**os.environ, "KEFU_DATABASE_URL": url, "KEFU_ENV": "production", "PYTHONPATH": str(ROOT),
               "KEFU_SECRET_KEY": "bench"}
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "web", "--bind", f"127.0.0.1:{port}",
                                 "--workers", str(workers), "--threads", str(threads)], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        try:
            wait_ready(port, proc)
            wait_workers(proc.pid, workers)
            pg_pid = postmaster_pid(server)
            before, per_worker = cpu_split(proc.pid, pg_pid), worker_ticks(proc.pid)
            api = over_http(port, token, http_ids, clients, form_data(k))
            api["cpu"] = cpu_per_completion(before, cpu_split(proc.pid, pg_pid), api["completions"])
            # How evenly the keep-alive connections spread the work: each worker's share of the workers' CPU.
            used = {pid: t - per_worker.get(pid, 0) for pid, t in worker_ticks(proc.pid).items()}
            api["cpu"]["worker_shares"] = sorted((round(u / max(sum(used.values()), 1), 2)
                                                  for u in used.values()), reverse=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            stderr = proc.communicate(timeout=60)[1]
        outcome = check(k, base_ids + http_ids)
        k.db.dispose()
    finally:
        if server is not None:
            server.stop()
    tracebacks = stderr.count("Traceback")
    return {"setup": {"tickets": tasks + inprocess, "seconds": round(setup, 1), "workers": workers,
                      "threads": threads, "clients": clients, "own_server": server is not None},
            "in_process": baseline, "http": api,
            "ratio_http_to_in_process": round(api["per_second"] / baseline["per_second"], 2),
            "server_tracebacks": tracebacks, **outcome}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1500, help="completions through the API")
    ap.add_argument("--inprocess", type=int, default=300, help="completions in-process (the baseline)")
    ap.add_argument("--workers", type=int, default=default_web_workers(), help="default: as kefu web's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--url", help="an existing, empty PostgreSQL database instead of a throw-away server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.tasks, args.inprocess, args.workers, args.threads, args.clients, args.url)
    if args.json:
        print(json.dumps(r))
    else:
        s, b, h = r["setup"], r["in_process"], r["http"]
        print(f"setup: {s['tickets']} consultations opened in {s['seconds']} s; gunicorn {s['workers']} workers x "
              f"{s['threads']} threads, {s['clients']} keep-alive clients, PostgreSQL")
        print(f"in-process tasks.complete: {b['per_second']:7.1f}/s  p50 {b['p50_ms']:6.1f} ms  "
              f"p95 {b['p95_ms']:6.1f} ms  ({b['completions']} in {b['seconds']} s)")
        print(f"HTTP /api/v1 complete    : {h['per_second']:7.1f}/s  p50 {h['p50_ms']:6.1f} ms  "
              f"p95 {h['p95_ms']:6.1f} ms  ({h['completions']} in {h['seconds']} s)")
        print(f"ratio HTTP / in-process  : {r['ratio_http_to_in_process']}")
        c = h["cpu"]
        pg = f"PostgreSQL {c['postgresql_ms']} ms, " if r["setup"]["own_server"] else ""
        print(f"CPU per HTTP completion  : web {c['web_ms']} ms, {pg}clients {c['clients_ms']} ms; "
              f"cores busy {c['cores_busy']} of {os.cpu_count()}; workers' shares {c['worker_shares']}")
        print(f"statuses {h['statuses']}, failures {h['failure_count']}, completed once {r['completed_once']}, "
              f"twice {r['completed_twice']}, not completed {r['not_completed']}, "
              f"audit problems {r['audit_problems']}, server tracebacks {r['server_tracebacks']}")
        for f in h["failures"]:
            print(f"  failure: {f}")
    bad = r["completed_twice"] or r["not_completed"] or r["audit_problems"] or r["http"]["failure_count"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
