"""The timer scheduler: fires deadline (T1) and revisit timers on time, exactly once.

The ``timers`` table is the truth (one row per waiting timer, written in the same transaction as its
instance). APScheduler 3 runs two jobs over it:

- ``wake``: a date job at the nearest due time (re-armed after every sweep, and at once when this process
  writes an earlier timer), so a timer fires within milliseconds of falling due;
- ``sweep``: an interval job (every ``sweep_seconds``, default 1 s: two small reads when nothing is due)
  that catches timers written by other processes and is the safety net for everything else.

Both call ``kefu.timers.fire_due()``, which claims the instances of due timers atomically (``FOR UPDATE
SKIP LOCKED``; SQLite's write lock), so any number of schedulers can run on one database. Jobs have no
misfire grace limit (APScheduler's default of 1 s would silently drop a job the process was too busy or
asleep to run) and coalesce; at start a sweep runs at once, so timers that fell due while nothing ran fire
then.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

from apscheduler.schedulers.background import BackgroundScheduler

from engine.services import firing

log = logging.getLogger("kefu.scheduler")
# max_instances 2: a wake-up may start while a sweep runs; tick() itself lets only one fire at a time.
JOB_DEFAULTS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 2}
WAKE_SLACK = timedelta(milliseconds=5)
NOTIFY_SECONDS = 5.0  # the outbox is read this often (one small indexed read when nothing waits)  # SpiffWorkflow fires strictly after the due time


class TimerScheduler:
    def __init__(self, kefu, sweep_seconds: float = 1.0, on_fired=None):
        self.kefu = kefu
        self.on_fired = on_fired  # called with the list of timers each sweep fired
        self.sweep_seconds = float(sweep_seconds)
        self.scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults=JOB_DEFAULTS)
        self._lock = threading.Lock()
        self._arm_lock = threading.Lock()
        self._armed: datetime | None = None  # when the pending wake-up runs (real time)
        self.fired_total = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "TimerScheduler":
        self.scheduler.add_job(self.tick, "interval", seconds=self.sweep_seconds, id="sweep",
                               next_run_time=datetime.now(timezone.utc))
        # --- kpi (issue 7): the monthly assessment (K-cycle) and QA sample, with a catch-up at start ---
        from engine.services.kpi import schedule as schedule_k_cycle
        schedule_k_cycle(self.scheduler, self.kefu.kpi)
        # --- end kpi ---
        # --- care (issue 21): plan revisits and greetings daily (Q1, Q3), with a catch-up at start ---
        from engine.services.care import schedule as schedule_care
        schedule_care(self.scheduler, self.kefu.care)
        # --- end care ---
        # notifications (issue 20): clocks about to run out, then the outbox, every few seconds
        # (first run one interval after start, not beside the first timer firings of a starting service)
        self.scheduler.add_job(self.deliver, "interval", seconds=NOTIFY_SECONDS, id="notifications",
                               next_run_time=datetime.now(timezone.utc) + timedelta(seconds=NOTIFY_SECONDS))
        self.scheduler.start()
        self.kefu.timer_listeners.append(self.notify)
        log.info("timer scheduler started (sweep every %.1f s, database %s)", self.sweep_seconds,
                 self.kefu.config.database_url.split("@")[-1])
        return self

    def shutdown(self, wait: bool = True) -> None:
        if self.notify in self.kefu.timer_listeners:
            self.kefu.timer_listeners.remove(self.notify)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)

    # ------------------------------------------------------------------ work
    def tick(self) -> int:
        """Fire what is due, then arm the wake-up for the next due timer. Never raises."""
        if not self._lock.acquire(blocking=False):
            return 0  # a sweep is running in this process; it re-arms the wake-up when done
        try:
            self.kefu.time.sync()
            fired = self._fire()
            if fired:
                self.fired_total += len(fired)
                log.info("fired %d timer(s)", len(fired))
                if self.on_fired is not None:
                    self.on_fired(fired)
            self.last_error = None
            self._arm(self.kefu.timers.next_due())
            return len(fired)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("timer sweep failed")
            return 0
        finally:
            self._lock.release()

    def _fire(self) -> list[dict]:
        """Fire what is due; a storm on every core this process may use (engine.services.firing)."""
        timers, n = self.kefu.timers, firing.processes_wanted()
        nxt = timers.next_due()
        if nxt is None or nxt >= self.kefu.now():
            return []  # an idle sweep: this one small read, no count, no write transaction
        if n > 1 and firing.can_fan_out(self.kefu.ctx) and timers.due_count(cap=firing.STORM) >= firing.STORM:
            return firing.fire_storm(self.kefu.ctx, timers, n)
        return timers.fire_due()

    def deliver(self) -> None:
        """Send the notifications that are due. Never raises: the next run tries again."""
        try:
            result = self.kefu.notifications.tick()
            if result["sent"] or result["failed"] or result["retrying"]:
                log.info("notifications: %s", result)
        except Exception:  # noqa: BLE001
            log.exception("notification delivery failed")

    def notify(self, due: datetime | None) -> None:
        """A unit of work in this process wrote a timer due at ``due``: wake earlier if needed."""
        self._arm(due)

    def _arm(self, due: datetime | None) -> None:
        """Wake up at ``due`` unless a wake-up at or before it is already set. Called from the sweep's end
        and from every writing thread at once: a sweep that read the next due time just before another thread
        wrote an earlier timer never moves that thread's wake-up later (a wake-up too many costs one read)."""
        if due is None or not self.scheduler.running:
            return
        real = self.kefu.clock.real_time_of(due)
        if real is None:  # a pinned test clock never reaches it by itself; sweeps and tests fire
            return
        with self._arm_lock:
            now = datetime.now(timezone.utc)
            run_at = max(real + WAKE_SLACK, now)
            if self._armed is not None and now < self._armed <= run_at:
                return  # a nearer wake-up is set
            if run_at - now > timedelta(seconds=self.sweep_seconds):
                return  # the sweep arms it closer to the time
            self._armed = run_at
            self.scheduler.add_job(self.tick, "date", run_date=run_at, id="wake", replace_existing=True)

    def idle(self) -> bool:
        """Nothing is due now (the next timer, if any, lies in the future)."""
        nxt = self.kefu.timers.next_due()
        return nxt is None or nxt >= self.kefu.now()


def run_forever(kefu, sweep_seconds: float = 1.0, until_idle: bool = False, on_fired=None) -> int:
    """``kefu scheduler``: a scheduler process of its own (scale-out); stops on SIGTERM or Ctrl-C, or with
    ``until_idle`` as soon as nothing is due (catch up, then exit)."""
    import signal

    if until_idle:
        sched = TimerScheduler(kefu, sweep_seconds, on_fired)
        while True:
            sched.tick()
            kefu.time.sync()
            if sched.last_error is None and sched.idle():
                break
            if sched.last_error is not None:
                time.sleep(min(1.0, sweep_seconds))
        log.info("nothing due: fired %d timer(s)", sched.fired_total)
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sched = TimerScheduler(kefu, sweep_seconds, on_fired).start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        sched.shutdown(wait=True)
        log.info("timer scheduler stopped after firing %d timer(s)", sched.fired_total)
    return 0
