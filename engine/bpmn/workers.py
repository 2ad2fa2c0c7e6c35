"""The pool of worker processes that evaluate diagram code under hard bounds (the parent's side).

Python cannot stop one built-in call inside a thread (``b.count(x)`` over a long list holds the interpreter
for as long as it runs), nor bound the memory of one thread. So code that could be expensive runs in a worker
process (``engine.bpmn.worker_main``): the worker caps its own address space (``RLIMIT_AS``) before each
evaluation, and the thread that asked waits for the answer on a pipe — without holding the interpreter, so
the service's other threads go on — and kills the worker once the time bound (plus ``GRACE`` to notice) has
passed. A killed or retired worker is replaced by a fresh one on the next request.

Workers are started lazily (the first evaluation that needs one), reused, at most ``KEFU_SANDBOX_WORKERS``
(default 2) per process; each is a fresh interpreter (``sys.executable``), never a fork of a threaded server,
and imports the sandbox's modules only (``BOOT``). A forked process (a gunicorn worker) starts its own pool;
the workers end with their process (killed at exit, and each ends by itself when its pipe closes or its
CPU-time limit passes).
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from engine.bpmn.guards import ScriptRejected

# The worker's interpreter imports only the sandbox's modules: the ``engine`` package stands in empty, without
# its ``__init__`` (the whole service, SQLAlchemy included: eight times the start-up).
BOOT = ("import sys, types\n"
        "engine = types.ModuleType('engine')\n"
        "engine.__path__ = [sys.argv[1]]\n"
        "sys.modules['engine'] = engine\n"
        "from engine.bpmn.worker_main import main\n"
        "sys.exit(main(sys.argv[2:]))\n")
GRACE = 0.5        # seconds past the time bound before the parent kills a worker that has not answered
START_TIMEOUT = 60.0
ROOT = str(Path(__file__).resolve().parents[2])


def _size() -> int:
    try:
        return max(1, int(os.environ.get("KEFU_SANDBOX_WORKERS", "2")))
    except ValueError:
        return 2


class WorkerLost(Exception):
    """The worker ended without answering (killed for its memory, its CPU time, or by a signal)."""


class Worker:
    """One worker process and the two pipes to it."""

    def __init__(self):
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", BOOT, str(Path(ROOT) / "engine"), str(down_r), str(up_w)],
                pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL, cwd=ROOT)
        finally:
            os.close(down_r)
            os.close(up_w)
        self.to = Connection(down_w, readable=False)
        self.back = Connection(up_r, writable=False)
        self.calendar_key = None
        try:
            ready = self.back.poll(START_TIMEOUT) and self.back.recv_bytes() == b"ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.kill()
            raise RuntimeError("the sandbox's worker process did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, request: bytes, seconds: float) -> bytes | None:
        """Send one request; the answer, or None once ``seconds`` passed without one."""
        try:
            self.to.send_bytes(request)
            if not self.back.poll(seconds):
                return None
            return self.back.recv_bytes()
        except (EOFError, OSError) as exc:
            raise WorkerLost(self.ended()) from exc

    def ended(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            import signal
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit code {code}"

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
            pass
        self.forget()

    def forget(self) -> None:
        for conn in (self.to, self.back):
            try:
                conn.close()
            except OSError:
                pass


class Pool:
    """At most ``size`` workers of this process; a thread borrows one for one evaluation."""

    def __init__(self, size: int | None = None):
        self.size = size or _size()
        self.idle: list[Worker] = []
        self.busy = 0
        self.cond = threading.Condition()
        self.closed = False
        self.started = 0  # workers started so far (the tests look)

    def acquire(self) -> Worker:
        with self.cond:
            while not self.idle and self.busy >= self.size:
                self.cond.wait()
            self.busy += 1
            while self.idle:
                worker = self.idle.pop()
                if worker.alive():
                    return worker
                worker.kill()  # ended while idle (killed from outside): never blame the next code for it
        try:
            worker = Worker()
        except BaseException:
            with self.cond:
                self.busy -= 1
                self.cond.notify()
            raise
        self.started += 1
        return worker

    def release(self, worker: Worker, keep: bool) -> None:
        if not keep or self.closed:
            worker.kill()
        with self.cond:
            self.busy -= 1
            if keep and not self.closed:
                self.idle.append(worker)
            self.cond.notify()

    def run(self, request: bytes, seconds: float, prepare=None) -> bytes:
        """The answer to ``request`` from a worker; ScriptRejected when the code ran past ``seconds`` (the worker
        is killed) or ended its worker. ``prepare(worker)`` may add to the request (what this worker lacks)."""
        worker = self.acquire()
        keep = False
        try:
            if prepare is not None:
                request = prepare(worker)
            answer = worker.call(request, seconds + GRACE)
            if answer is None:
                raise ScriptRejected(f"the code runs too long (more than {seconds:g} s)")
            keep = answer[:1] == b"0"  # b"1": the worker retires after this answer
            return answer[1:]
        except WorkerLost as exc:
            raise ScriptRejected(f"the code was stopped: it ended the sandbox's worker process ({exc}); it may "
                                 "need too much memory or time") from None
        finally:
            self.release(worker, keep)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            idle, self.idle = self.idle, []
        for worker in idle:
            worker.kill()


_pool: Pool | None = None
_lock = threading.Lock()


def pool() -> Pool:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = Pool()
    return _pool


def warm() -> None:
    """Start one worker in the background (a server starting up), so that the first evaluation finds it."""
    def start():
        current = pool()
        try:
            worker = current.acquire()
        except Exception:  # noqa: BLE001 - the first evaluation that needs a worker will say what is wrong
            return
        current.release(worker, keep=True)
    threading.Thread(target=start, name="kefu-sandbox-warm", daemon=True).start()


def shutdown() -> None:
    """Kill this process's workers (at exit; tests may call it to start afresh)."""
    global _pool
    with _lock:
        current, _pool = _pool, None
    if current is not None:
        current.close()


def _after_fork() -> None:
    """A forked child (a gunicorn worker) has no workers of its own: it lets go of its parent's pipes."""
    global _pool, _lock
    current, _pool, _lock = _pool, None, threading.Lock()
    if current is not None:
        for worker in current.idle:
            worker.forget()


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
