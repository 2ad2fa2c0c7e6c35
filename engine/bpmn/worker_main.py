"""The sandbox's worker process: evaluates diagram code sent by ``engine.bpmn.workers`` under hard limits.

Started by ``engine.bpmn.workers`` (``BOOT``: the sandbox's modules without the ``engine`` package's
``__init__``) with the two ends of its pipes; it imports the sandbox once, says it is ready, then answers one
request at a time until its parent closes the pipe. Before each evaluation it sets ``RLIMIT_AS`` to the
address space it uses now plus the memory bound (so the code itself can take at most that much: an
allocation past it fails with MemoryError) and a CPU-time limit a little past the time bound (should the
parent be gone and not kill it, the kernel does). Its parent kills it when the time bound passes.

A request is the pickled ``(body, calendar)``: the body pickled ``(mode, source, context, external_context,
now, limits)`` and the working calendar's ``(revision, overrides)`` when this worker has not had it yet. The
answer is b"1" (this worker retires after it: after a MemoryError, or once its memory grew) or b"0", then the
pickled ``("ok", value, None)``, ``("raise", exception, line)`` or ``("raise-text", (type name, message),
line)`` for an exception that does not pickle; ``line`` is the line of the diagram's code it was raised at.
"""
from __future__ import annotations

import io
import os
import pickle
import sys
import traceback
from multiprocessing.connection import Connection
from zoneinfo import ZoneInfo

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None

from engine import calendar, clock
from engine.bpmn import sandbox
from engine.bpmn.guards import ScriptRejected

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # what a script leaves behind, pickled: the server takes it into its memory
RETIRE_GROWTH = 128 * 1024 * 1024  # a worker whose address space grew this much since it started is replaced


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[0]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _capped(soft: int, hard: int) -> int:
    return soft if hard == resource.RLIM_INFINITY else min(soft, hard)


def _limit(memory: int, seconds: float) -> None:
    if resource is None:
        return
    size = _address_space()
    if size is not None:
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (_capped(size + memory, hard), hard))
    used = resource.getrusage(resource.RUSAGE_SELF)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    cpu = int(used.ru_utime + used.ru_stime + seconds * 2) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (_capped(cpu, hard), hard))


def _unlimit() -> None:
    if resource is None:
        return
    for which in (resource.RLIMIT_AS, resource.RLIMIT_CPU):
        hard = resource.getrlimit(which)[1]
        resource.setrlimit(which, (hard, hard))


def _line(exc: BaseException) -> int | None:
    """The line of the diagram's code where ``exc`` was raised (SpiffWorkflow names it in the incident)."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == "<string>":
            found = frame.lineno
    return found


def _evaluate(env, request):
    mode, source, context, external, now, limits, cal = request
    for name, value in limits.items():
        setattr(sandbox, name, value)
    clock.use(clock.Clock(pinned=now))
    if cal is not None:
        calendar.use(calendar.WorkingCalendar(dict(cal[1]), cal[0]))
    if mode == "eval":
        return env.evaluate(source, context, external)
    env.execute(source, context, external)
    return context


def _answer(env, request, started: int | None) -> tuple:
    """``(kind, payload, line, retire)`` for one request."""
    limits = request[5]
    memory = limits.get("MAX_MEMORY", sandbox.MAX_MEMORY)
    try:
        _limit(memory, limits.get("MAX_SECONDS", sandbox.MAX_SECONDS))
        try:
            reply = ("ok", _evaluate(env, request), None)
        finally:
            _unlimit()
    except MemoryError:
        too_much = ScriptRejected(f"the code uses too much memory (more than {memory // 2 ** 20:,} MB)")
        return ("raise", too_much, None, True)
    except Exception as exc:  # noqa: BLE001 - every failure of the diagram's code goes back to the caller
        reply = ("raise", exc, _line(exc))
    size = _address_space()
    return (*reply, started is not None and size is not None and size - started > RETIRE_GROWTH)


class _Pickler(pickle.Pickler):
    """Pickles a time zone by its name (``ZoneInfo(key)``): the server's unpickler takes no ``getattr``."""

    def reducer_override(self, obj):
        if isinstance(obj, ZoneInfo):
            return ZoneInfo, (obj.key,)
        return NotImplemented


def _pickled(value) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()


def _dump(reply: tuple) -> bytes:
    """The answer's bytes: b"1" (retire) or b"0", then the pickled ``(kind, payload, line)``."""
    kind, payload, line, retire = reply
    try:
        data = _pickled((kind, payload, line))
        if len(data) > MAX_ANSWER_BYTES:
            too_large = ScriptRejected(f"the values to store are too large: more than {MAX_ANSWER_BYTES // 2 ** 20} "
                                       "MB")
            data = pickle.dumps(("raise", too_large, None))
        return (b"1" if retire else b"0") + data
    except MemoryError:
        return b"1" + pickle.dumps(("raise", ScriptRejected("the code uses too much memory"), None))
    except Exception:  # noqa: BLE001 - e.g. an exception class the code defined itself
        if kind == "raise":
            text = (type(payload).__name__, str(payload)[:2000])
            return (b"1" if retire else b"0") + pickle.dumps(("raise-text", text, line))
        error = TypeError(f"the value of the expression is a {type(payload).__name__}, which cannot be passed on")
        return (b"1" if retire else b"0") + pickle.dumps(("raise", error, None))


def main(argv: list[str]) -> int:
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    if resource is not None:  # a worker the kernel stops (CPU time, memory) leaves no core file behind
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    env = sandbox.RestrictedEnvironment()
    started = _address_space()
    outbox.send_bytes(b"ready")
    while True:
        try:
            data = inbox.recv_bytes()
        except (EOFError, OSError):
            return 0  # the parent is gone or let go of this worker
        body, cal = pickle.loads(data)  # noqa: S301 - from the parent process only
        reply = _answer(env, (*pickle.loads(body), cal), started)  # noqa: S301
        outbox.send_bytes(_dump(reply))
        if reply[-1]:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
