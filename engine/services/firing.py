"""A storm of due timers fired on every core: extra processes, each firing one shard of the instances.

The engine work of a firing (restore, ``refresh_timers()`` + engine steps, serialize) is pure Python, so one
process fires on one core however many it has. When a sweep finds at least ``STORM`` instances with due
timers, the scheduler starts ``n - 1`` processes (``kefu timers fire-due --shard i/n``, i = 1 … n-1) and
fires shard 0 itself (instance id modulo n). Each process does its engine work outside the write lock and
applies it in short version-checked transactions (``TimerService.fire_due``), so their writes take turns
while their engine work runs side by side; an instance fired by one is never fired again by another.

Nothing depends on the extra processes finishing: when they have exited (or were killed, or never started),
the scheduler sweeps every shard once more, so a dead process's share fires then.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

log = logging.getLogger("kefu.scheduler")

STORM = 200  # instances with due timers at which extra processes join
MAX_PROCESSES = 4
WAIT_SECONDS = 600  # the longest the scheduler waits for the extra processes before sweeping everything itself


def processes_wanted() -> int:
    """How many processes fire a storm (this one included): ``KEFU_FIRE_PROCESSES``, else the cores this
    process may run on (at most ``MAX_PROCESSES``); 1 turns parallel firing off."""
    text = (os.environ.get("KEFU_FIRE_PROCESSES") or "").strip()
    if text:
        try:
            return max(1, min(int(text), 16))
        except ValueError:
            log.warning("KEFU_FIRE_PROCESSES=%r is not a number; firing in this process only", text)
            return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_PROCESSES))


def can_fan_out(ctx) -> bool:
    """Other processes can share this one's database and time: a file or server database, a clock that runs
    (a pinned test clock lives in this process only)."""
    url = ctx.db.engine.url
    if url.get_backend_name() == "sqlite" and ctx.db.checkpointer is None:
        return False  # in memory: nobody else can open it
    return not ctx.clock.pinned


def start_helpers(ctx, n: int) -> list[subprocess.Popen]:
    """Start the processes for shards 1 … n-1 (shard 0 is the caller's)."""
    env = {**os.environ, "KEFU_DATABASE_URL": ctx.config.database_url, "KEFU_ENV": ctx.config.env,
           "KEFU_FIRE_PROCESSES": "1"}
    env.pop("KEFU_CLOCK", None)  # the clock runs (can_fan_out); its offset is read from the database
    helpers = []
    for i in range(1, n):
        try:
            helpers.append(subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "timers", "fire-due", "--shard", f"{i}/{n}", "--json"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        except OSError as exc:  # no process for this shard: the final sweep fires it
            log.warning("could not start a firing process for shard %d/%d: %s", i, n, exc)
    log.info("%d timer firing process(es) started beside this one", len(helpers))
    return helpers


def wait_for(helpers: list[subprocess.Popen], timeout: float = WAIT_SECONDS) -> list[dict]:
    """Wait until every helper has exited (or the timeout passed: those left are stopped); returns the timers
    they report fired (``kefu timers fire-due --json``), so the caller reports every firing."""
    give_up = time.monotonic() + timeout
    fired = []
    for p in helpers:
        try:
            out, err = p.communicate(timeout=max(0.0, give_up - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        if p.returncode != 0:
            log.warning("a timer firing process ended with exit code %s: %s", p.returncode,
                        " ".join((err or b"").decode("utf-8", "replace").strip().splitlines()[-1:]))
        try:
            fired.extend(json.loads(out or b"{}").get("fired", []))
        except (ValueError, AttributeError):  # killed half-way through its report: its firings are saved anyway
            log.warning("a timer firing process left no readable report")
    return fired


def fire_storm(ctx, timers, n: int) -> list[dict]:
    """Fire what is due with ``n`` processes; returns what they all fired.

    Having fired its own shard, this process helps the others with theirs, from the far end (the latest due
    first) while they work from the near end: a process that started late (its imports take a second) or
    runs slower leaves no tail for the others to wait on. Where the two meet, a batch may be computed by
    both; only one is saved, the other finds the instance changed (its lock version) and moves on."""
    helpers = start_helpers(ctx, n)
    fired = []
    try:
        fired = timers.fire_due(shard=(0, n))
        for i in range(1, n):
            if any(p.poll() is None for p in helpers):
                fired += timers.fire_due(shard=(i, n), reverse=True)
    finally:
        fired += wait_for(helpers)
    return fired + timers.fire_due()  # the shards of processes that died, and what fell due meanwhile
