"""One scheduler process, as tests/test_scheduler_pg.py runs two of them: ``python -m tests.scheduler_worker``.

Configured like the service (``KEFU_DATABASE_URL``, ``KEFU_ENV=test``, ``KEFU_CLOCK`` pins "now"), it calls
``Kefu.fire_due_timers()`` over and over until no timer is due any more, then exits 0. Every timer it fired
is printed to stdout as one JSON line: the dict ``fire_due_timers`` returns (instance_id, ticket_no, timer,
name, due_at). Exit 3 if it is still finding due timers after ``KEFU_TEST_DEADLINE_S`` seconds (default 60).

``KEFU_TEST_BARRIER`` (a directory) and ``KEFU_TEST_PARTIES`` (a number) line several workers up: each
one, once its engine is loaded, writes a file there and waits until all of them have, so that they start
firing together rather than one after the other's Python start-up.
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path


def wait_at_barrier(folder: str, parties: int, timeout: float = 30.0) -> None:
    here = Path(folder)
    (here / f"{os.getpid()}.ready").write_text("ready")
    give_up = time.monotonic() + timeout
    while len(list(here.glob("*.ready"))) < parties:
        if time.monotonic() > give_up:
            raise SystemExit(f"scheduler_worker: the other workers did not arrive within {timeout:.0f} s")
        time.sleep(0.001)


def due_count(k) -> int:
    now = k.now()
    return sum(1 for t in k.timers() if datetime.fromisoformat(t["due_at"]) < now)


def main() -> int:
    from engine import Kefu
    k = Kefu()
    k.definitions()  # connect and load everything before the barrier
    if os.environ.get("KEFU_TEST_BARRIER"):
        wait_at_barrier(os.environ["KEFU_TEST_BARRIER"], int(os.environ.get("KEFU_TEST_PARTIES", "1")))
    deadline = time.monotonic() + float(os.environ.get("KEFU_TEST_DEADLINE_S", "60"))
    rounds = fired_total = 0
    while True:
        rounds += 1
        for fired in k.fire_due_timers():
            fired_total += 1
            print(json.dumps(fired, ensure_ascii=False), flush=True)
        if due_count(k) == 0:
            break
        if time.monotonic() > deadline:
            print(f"scheduler_worker: timers still due after {rounds} rounds", file=sys.stderr)
            return 3
    print(f"scheduler_worker {os.getpid()}: fired {fired_total} timer(s) in {rounds} round(s)", file=sys.stderr)
    k.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
