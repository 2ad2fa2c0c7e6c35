"""The restricted environment in which diagram expressions and scripts run.

SpiffWorkflow evaluates gateway conditions, timer expressions and script tasks with plain ``eval``/``exec``
and no sandbox. Kefu screens every piece of code before it runs:

* no ``import``, no ``global``/``nonlocal``;
* no name and no attribute that starts with ``_`` (closes ``().__class__.__base__.__subclasses__()``);
* attributes only from an allow-list built from the public methods of the plain data types
  (``str``, ``list``, ``dict``, ``datetime``...), minus ``format``/``format_map`` whose format strings reach
  attributes by name; this also closes frame and code objects (``gi_frame.f_globals``...);
* builtins are a small safe set: no ``open``, ``eval``, ``exec``, ``getattr``, ``type``, ``__import__``;
* code must finish quickly: no ``while``, no generators or ``async``, ``range`` of at most 100,000 items,
  ``**`` only with a small constant exponent;
* values stay small: ``*``, ``+``, ``**``, ``<<`` and ``%``, their augmented forms (``*=``...), ``str()``,
  f-strings, ``sum`` and the methods that make long text or lists (``join``, ``replace``, ``ljust``,
  ``extend``...) are checked before they run: no value of more than a million characters or items (counted
  through nesting, so a list repeated inside a list counts each time) and no number of more than 100,000
  bits. What is visible in the code itself (``'x' * 10 ** 9``, ``[0] * 10 ** 9``) is refused by the check
  before deploy; what depends on data stops the step at run time (an incident naming the element, retried
  once the data is fixed);
* code that repeats (loops, comprehensions, functions, lambdas) or is long runs watched: at most a million
  executed lines, five seconds, and (on Linux) 256 MB of memory taken by the code itself;
* a stored value (what a script leaves behind) and an error message hold at most a million characters and
  items;
* task data whose key starts with ``_`` is never put into the evaluation namespace (a form field named
  ``__builtins__`` cannot restore the real builtins);
* values a script leaves behind must be plain data (str, numbers, bool, None, lists, dicts); ``datetime``
  and ``date`` become ISO strings.

Helper functions offered to diagrams: ``now``, ``add_hours``, ``add_minutes``, ``add_seconds``,
``seconds_until``, ``add_working_days``, ``due_at``, ``is_working_day``.

Hard bounds (``BoundedEnvironment``, what the engine uses): code the screen proves cheap (``screen.cheap``)
runs in the calling thread; any other code runs in a worker process (``engine.bpmn.workers``) that caps its
address space at ``MAX_MEMORY`` more than it uses (``RLIMIT_AS``) and is killed once ``MAX_SECONDS`` passed,
so also one built-in operation Python cannot interrupt (comparing or counting lists that share parts) or a
display that copies a long list many times is stopped, while the service's other threads go on.

Inside the worker (and for watched code in ``RestrictedEnvironment``), the memory bound counts what the
watched thread takes itself: Linux counts page faults per thread, so fresh
pages the code touches count and those web threads beside it touch do not, whereas ``tracemalloc`` and
``sys.getallocatedblocks()`` see the whole process (tracemalloc slowing every allocation) and the sizes the
guards see miss what built-ins copy in C (``sorted(l)``, ``l[:]``). The count is capped by the process's
growth (memory given back and taken again faults again) and, where transparent huge pages are "always" on,
takes each fault as a huge page, so that it never counts too little. It costs two system calls every
``MEMORY_EVERY`` (5 ms), the first look being the baseline, so code that ends sooner (nearly every
condition) pays none.

The screen before code runs is ``engine.bpmn.screen``, the size guards it runs with ``engine.bpmn.guards``,
the helper functions ``engine.bpmn.helpers``; this module builds the namespace code runs in, watches code
that repeats, and turns what a script leaves behind into storable data.
"""
from __future__ import annotations

import builtins
import io
import os
import pickle
import sys
import time
from datetime import date, datetime
from itertools import chain, count, repeat

try:
    import resource
except ImportError:  # not on Windows
    resource = None

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from engine import calendar, clock
from engine.bpmn import workers
from engine.bpmn.guards import MAX_ITEMS, NAMESPACE_BUILTINS, SAFE_BUILTINS, ScriptRejected, check_weight, weight
from engine.bpmn.helpers import HELPERS, iso
from engine.bpmn.screen import cheap, compiled

MAX_LINES = 1_000_000
MAX_SECONDS = 5.0                # wall time of watched code
MAX_MEMORY = 256 * 1024 * 1024   # memory watched code takes itself (Linux): see _taken
CHECK_EVERY = 16                 # steps between two looks at the clock
MEMORY_EVERY = 0.005             # seconds between two looks at the memory

RESERVED_NAMES = frozenset(HELPERS) | frozenset(SAFE_BUILTINS)
# Python turns integers into text up to this many digits (JSON at save does): a larger one cannot be stored.
_MAX_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
_TOO_MANY_DIGITS = 10 ** _MAX_DIGITS if _MAX_DIGITS else 0


def _plain(value, path: str, _left: list[int] | None = None):
    """``value`` as storable data; all values of one script share ``_left``, the characters and items they may
    hold together (a list held many times would be copied each time)."""
    left = [MAX_ITEMS] if _left is None else _left
    left[0] -= len(value) if isinstance(value, str) else 1
    if left[0] < 0:
        raise ScriptRejected(f"the values to store are too large (at {path!r}): more than {MAX_ITEMS:,} "
                             "characters and items")
    if isinstance(value, int) and not isinstance(value, bool) and _MAX_DIGITS and abs(value) >= _TOO_MANY_DIGITS:
        raise ScriptRejected(f"the value of {path!r} is a number too large to store: more than {_MAX_DIGITS:,} "
                             "digits")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date)):
        return iso(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]", left) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{k}", left) for k, v in value.items()}
    raise TypeError(f"the value of {path!r} is a {type(value).__name__}, which cannot be stored; "
                    "use str, numbers, bool, lists or dicts")


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None) if resource else None  # Linux
_statm = None  # an open /proc/self/statm of this process; -1 where there is none


def _fault_size() -> int:
    """The most one page fault may bring in: a page, or a huge page where the kernel backs any memory with
    them (transparent huge pages "always"), so that counting faults never counts too little."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as f:
            if "[always]" not in f.read():
                return _PAGE
    except OSError:
        return _PAGE
    try:
        with open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", encoding="ascii") as f:
            return max(_PAGE, int(f.read()))
    except (OSError, ValueError):
        return 2 * 1024 * 1024


FAULT_BYTES = _fault_size()


def _resident() -> int | None:
    """This process's resident memory in bytes (Linux), else None."""
    global _statm
    if _statm is None:
        try:
            _statm = os.open("/proc/self/statm", os.O_RDONLY)
        except (OSError, AttributeError):
            _statm = -1
    if _statm < 0:
        return None
    try:
        return int(os.pread(_statm, 100, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _forget_statm() -> None:
    global _statm
    if _statm is not None and _statm >= 0:
        os.close(_statm)  # a forked worker must read its own /proc/self, not its parent's
    _statm = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_statm)


def _usage() -> tuple[int, int] | None:
    """``(resident bytes of the process, page faults the calling thread took)`` (Linux), else None."""
    resident = _resident()
    if resident is None or _RUSAGE_THREAD is None:
        return None
    return resident, resource.getrusage(_RUSAGE_THREAD).ru_minflt


def _taken(since: tuple[int, int]) -> int:
    """The memory the calling thread took since ``since`` (a ``_usage()``): what it faulted in, at most what
    the process grew by."""
    now = _usage() or since
    return min(now[0] - since[0], (now[1] - since[1]) * FAULT_BYTES)


def ticker():
    """The ``_tick`` of one evaluation: stops the code after ``MAX_LINES`` steps (nested loops within the
    allowed ranges could otherwise run for hours), after ``MAX_SECONDS``, or once it took more than
    ``MAX_MEMORY`` (``_taken``). A tick is the C-level ``next`` of an iterator that yields ``True``; every
    ``CHECK_EVERY`` ticks Python looks at the count and the clock, and at the memory when ``MEMORY_EVERY``
    seconds passed since it last did (two syscalls: a quick loop pays them rarely, a loop that allocates much
    is slow enough to be looked at often). The first look at the memory is its baseline."""
    limit, seconds, memory, every = MAX_LINES, MAX_SECONDS, MAX_MEMORY, max(1, CHECK_EVERY)
    deadline, look, base = time.monotonic() + seconds, 0.0, None

    def rounds(k: int):
        nonlocal look, base
        now = time.monotonic()
        if k == 0:
            look = now + MEMORY_EVERY
        elif now > deadline:
            raise ScriptRejected(f"the code runs too long (more than {seconds:g} s)")
        elif now >= look and base is not False:
            look = now + MEMORY_EVERY
            if base is None:
                base = _usage() or False  # False: not measurable here
            elif _taken(base) > memory:
                raise ScriptRejected(f"the code uses too much memory (more than {memory // 2 ** 20:,} MB)")
        left = limit - k * every
        if left <= 0:
            raise ScriptRejected(f"the code runs too long (more than {limit:,} steps)")
        return repeat(True, min(every, left))

    return chain.from_iterable(map(rounds, count())).__next__


def _small_error(exc: Exception) -> Exception:
    """``exc``, or a ScriptRejected in its place when it carries a value too large for an incident's message."""
    if not isinstance(exc, ScriptRejected) and any(weight(a) > MAX_ITEMS for a in exc.args):
        return ScriptRejected(f"the code raised {type(exc).__name__} with a value too large to show")
    return exc


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    """Evaluates and executes screened code over task data, with helpers taking precedence over data."""

    def __init__(self, helpers=None):
        super().__init__(dict(HELPERS if helpers is None else helpers))

    def _namespace(self, context, external_context, ticks: bool):
        ns = {k: v for k, v in context.items() if not k.startswith("_")}
        ns.update(external_context or {})
        ns.update(self.globals)
        ns["__builtins__"] = NAMESPACE_BUILTINS
        if ticks:
            ns["_tick"] = ticker()
        return ns

    def evaluate(self, expression, context, external_context=None):
        code, ticks = compiled(expression.strip(), "eval")
        try:
            value = eval(code, self._namespace(context, external_context, ticks))  # noqa: S307 - screened
        except Exception as exc:
            small = _small_error(exc)
            if small is exc:
                raise
            raise small from None
        check_weight("the value of the expression", value)
        return value

    def execute(self, script, context, external_context=None):
        code, ticks = compiled(script, "exec")
        ns = self._namespace(context, external_context, ticks)
        before = set(ns)
        try:
            exec(code, ns)  # noqa: S102 - screened
        except Exception as exc:
            small = _small_error(exc)
            if small is exc:
                raise
            raise small from None
        skip = set(self.globals) | {"__builtins__"} | set(external_context or {})
        left = [MAX_ITEMS]
        for key, value in ns.items():
            if key in skip or key.startswith("_") or callable(value):
                continue
            context[key] = _plain(value, key, left)
        for key in before - set(ns):
            context.pop(key, None)
        return True

    def call_service(self, context, **kwargs):
        raise ScriptRejected("service tasks are not supported")


_ANSWER_MODULES = frozenset({"datetime", "zoneinfo", "engine.bpmn.guards", "engine.errors"})
_PLAIN_TYPES = frozenset({set, frozenset, range, slice, complex, bytearray, bytes})


class _Answer(pickle.Unpickler):
    """Unpickles a worker's answer: plain data, dates and times, and exceptions; nothing else."""

    def find_class(self, module, name):
        if module == "builtins":
            found = getattr(builtins, name, None)
            if isinstance(found, type) and (issubclass(found, BaseException) or found in _PLAIN_TYPES):
                return found
        elif module in _ANSWER_MODULES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a sandbox answer")


def _answer(data: bytes) -> tuple:
    return _Answer(io.BytesIO(data)).load()


_RAISE_AT: dict[int, object] = {}


def _reraise(exc: BaseException, line: int | None):
    """Raise ``exc`` from a frame of ``<string>`` at ``line``: the traceback then names the diagram code's line
    as it does when the code runs in this process (SpiffWorkflow reads it from there for the incident)."""
    if line and line > 0:
        code = _RAISE_AT.get(line)
        if code is None:
            code = _RAISE_AT[line] = compile("\n" * (line - 1) + "raise exc", "<string>", "exec")
        exec(code, {"exc": exc})  # noqa: S102 - our own one line
    raise exc


LIMIT_NAMES = ("MAX_LINES", "MAX_SECONDS", "MAX_MEMORY", "CHECK_EVERY", "MEMORY_EVERY")


class BoundedEnvironment(RestrictedEnvironment):
    """What the engine evaluates diagram code with: code the screen proves cheap (``screen.cheap``) runs here,
    in the calling thread, as ``RestrictedEnvironment`` does; any other code runs the same way in a worker
    process (``engine.bpmn.workers``), stopped after ``MAX_SECONDS`` and refused past ``MAX_MEMORY`` whatever
    it does, while this process goes on serving. The worker sees what the code would see here: the task
    data (without keys starting with ``_``), the data objects, the engine clock's instant and the working
    calendar; what a script leaves behind comes back as storable data, an error as the same exception at the
    same line of the code."""

    def evaluate(self, expression, context, external_context=None):
        if cheap(expression.strip(), "eval"):
            return super().evaluate(expression, context, external_context)
        visible = {k: v for k, v in context.items() if not k.startswith("_")}
        return self._elsewhere("eval", expression.strip(), visible, external_context)

    def execute(self, script, context, external_context=None):
        if cheap(script, "exec"):
            return super().execute(script, context, external_context)
        visible = {k: v for k, v in context.items() if not k.startswith("_")}
        left = self._elsewhere("exec", script, visible, external_context)
        for key in visible.keys() - left.keys():
            context.pop(key, None)
        context.update(left)
        return True

    def _elsewhere(self, mode: str, source: str, context: dict, external_context):
        module = sys.modules[__name__]
        limits = {name: getattr(module, name) for name in LIMIT_NAMES}
        body = pickle.dumps((mode, source, context, external_context or None, clock.now(), limits),
                            protocol=pickle.HIGHEST_PROTOCOL)
        cal = calendar.active()
        key = (cal.revision, frozenset(cal.overrides.items()))

        def prepare(worker) -> bytes:
            days = None if worker.calendar_key == key else (cal.revision, dict(cal.overrides))
            worker.calendar_key = key
            return pickle.dumps((body, days), protocol=pickle.HIGHEST_PROTOCOL)

        kind, payload, line = _answer(workers.pool().run(b"", limits["MAX_SECONDS"], prepare))
        if kind == "ok":
            return payload
        if kind == "raise-text":
            name, message = payload
            payload = type(name, (Exception,), {})(message)
        _reraise(payload, line)


def make_script_engine() -> PythonScriptEngine:
    return PythonScriptEngine(environment=BoundedEnvironment())
