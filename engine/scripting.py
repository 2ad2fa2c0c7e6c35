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
  ``**`` only with a small constant exponent, and at most a million executed lines (nested loops);
* task data whose key starts with ``_`` is never put into the evaluation namespace (a form field named
  ``__builtins__`` cannot restore the real builtins);
* values a script leaves behind must be plain data (str, numbers, bool, None, lists, dicts); ``datetime``
  and ``date`` become ISO strings.

Helper functions offered to diagrams: ``now``, ``add_hours``, ``add_minutes``, ``add_seconds``,
``seconds_until``, ``add_working_days``, ``due_at``, ``is_working_day``.
"""
from __future__ import annotations

import ast
import builtins
import sys
from contextlib import contextmanager, nullcontext
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from . import calendar, clock


class ScriptRejected(Exception):
    """Code in a diagram uses something the sandbox does not allow."""


_SAFE_BUILTIN_NAMES = [
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "isinstance",
    "len", "list", "map", "max", "min", "reversed", "round", "set", "sorted", "str", "sum",
    "tuple", "zip", "True", "False", "None", "ValueError", "Exception",
]
MAX_RANGE = 100_000
MAX_POWER = 10_000
MAX_LINES = 1_000_000


def _range(*args):
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise ValueError(f"range of {len(r)} items is larger than the allowed {MAX_RANGE}")
    return r


SAFE_BUILTINS = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
SAFE_BUILTINS["range"] = _range

_ATTR_SOURCES = (str, list, dict, set, tuple, int, float, bool, datetime, date, timedelta)
_ATTR_DENY = {"format", "format_map", "mro", "maketrans"}
ALLOWED_ATTRIBUTES = frozenset(
    name for typ in _ATTR_SOURCES for name in dir(typ) if not name.startswith("_")) - _ATTR_DENY


def _iso(value) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=clock.SHANGHAI)
        return value.astimezone(timezone.utc).isoformat()
    return value.isoformat()


def _now() -> str:
    return clock.now().isoformat()


def _due_at(value) -> str:
    """A date or time (ISO string) as an aware ISO time; a bare date means the end of that day locally."""
    if isinstance(value, (datetime, date)) and not isinstance(value, datetime):
        value = value.isoformat()
    if isinstance(value, str) and len(value.strip()) == 10:
        day = date.fromisoformat(value.strip())
        return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=clock.SHANGHAI).astimezone(
            timezone.utc).isoformat()
    if isinstance(value, datetime):
        return _iso(value)
    return clock.parse_instant(value).isoformat()


def _add_hours(start, hours) -> str:
    return (clock.parse_instant(_due_at(start)) + timedelta(hours=float(hours))).isoformat()


def _add_minutes(start, minutes) -> str:
    return (clock.parse_instant(_due_at(start)) + timedelta(minutes=float(minutes))).isoformat()


def _add_seconds(start, seconds) -> str:
    return (clock.parse_instant(_due_at(start)) + timedelta(seconds=float(seconds))).isoformat()


def _seconds_until(when) -> int:
    """Whole seconds from now until ``when`` (negative once it has passed): what is left of a deadline."""
    return int((clock.parse_instant(_due_at(when)) - clock.now()).total_seconds())


def _add_working_days(start, days) -> str:
    return calendar.add_working_days(start, int(days)).isoformat()


def _is_working_day(day) -> bool:
    if isinstance(day, str):
        day = clock.parse_instant(day).astimezone(clock.SHANGHAI).date()
    return calendar.is_working_day(day)


HELPERS = {
    "now": _now,
    "due_at": _due_at,
    "add_hours": _add_hours,
    "add_minutes": _add_minutes,
    "add_seconds": _add_seconds,
    "seconds_until": _seconds_until,
    "add_working_days": _add_working_days,
    "is_working_day": _is_working_day,
}
RESERVED_NAMES = frozenset(HELPERS) | frozenset(SAFE_BUILTINS)


@lru_cache(maxsize=4096)
@lru_cache(maxsize=2048)
def compile_checked(source: str, mode: str):
    """Parse, screen and compile ``source``; raises ScriptRejected or SyntaxError. Results are cached: the
    same diagram's expressions run again and again, and a code object is immutable."""
    tree = ast.parse(source, mode=mode)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise ScriptRejected("imports are not allowed")
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            raise ScriptRejected("global/nonlocal are not allowed")
        if isinstance(node, (ast.While, ast.AsyncFor, ast.AsyncWith, ast.Await, ast.Yield, ast.YieldFrom)):
            raise ScriptRejected(f"'{type(node).__name__.lower()}' is not allowed (scripts must finish quickly)")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not (
                isinstance(node.right, ast.Constant) and isinstance(node.right.value, (int, float))
                and abs(node.right.value) <= MAX_POWER):
            raise ScriptRejected(f"'**' needs a constant exponent of at most {MAX_POWER}")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise ScriptRejected(f"the name {node.id!r} is not allowed (names may not start with '_')")
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise ScriptRejected(f"the attribute {node.attr!r} is not allowed")
            if node.attr not in ALLOWED_ATTRIBUTES:
                raise ScriptRejected(f"the attribute {node.attr!r} is not allowed")
        if isinstance(node, (ast.FunctionDef, ast.Lambda, ast.AsyncFunctionDef, ast.ClassDef)):
            args = getattr(node, "args", None)
            names = [a.arg for a in (args.args + args.kwonlyargs + args.posonlyargs)] if args else []
            if any(n.startswith("_") for n in names) or getattr(node, "name", "x").startswith("_"):
                raise ScriptRejected("names may not start with '_'")
        if isinstance(node, ast.arg) and node.arg.startswith("_"):
            raise ScriptRejected("names may not start with '_'")
    return compile(tree, "<string>", mode)


def check(source: str, mode: str = "eval") -> str | None:
    """None if ``source`` compiles in the sandbox, else the reason it does not."""
    try:
        compile_checked(source, mode)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    except ScriptRejected as exc:
        return str(exc)
    return None


def _plain(value, path: str):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date)):
        return _iso(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{k}") for k, v in value.items()}
    raise TypeError(f"the value of {path!r} is a {type(value).__name__}, which cannot be stored; "
                    "use str, numbers, bool, lists or dicts")


@lru_cache(maxsize=4096)
def loops(source: str, mode: str) -> bool:
    """Whether screened code has a loop (``for`` or a comprehension): only such code can run long."""
    return any(isinstance(node, (ast.For, ast.comprehension)) for node in ast.walk(ast.parse(source, mode=mode)))


@contextmanager
def bounded(limit: int | None = None):
    """Stop diagram code after ``MAX_LINES`` executed lines (nested loops within the allowed ranges could
    otherwise run for hours). Only frames of diagram code (compiled as ``<string>``) are counted."""
    limit = MAX_LINES if limit is None else limit
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
            if count > limit:
                raise ScriptRejected(f"the code runs too long (more than {limit:,} steps)")
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == "<string>" else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    """Evaluates and executes screened code over task data, with helpers taking precedence over data."""

    def __init__(self, helpers=None):
        super().__init__(dict(HELPERS if helpers is None else helpers))

    def _namespace(self, context, external_context):
        ns = {k: v for k, v in context.items() if not k.startswith("_")}
        ns.update(external_context or {})
        ns.update(self.globals)
        ns["__builtins__"] = SAFE_BUILTINS
        return ns

    def evaluate(self, expression, context, external_context=None):
        source = expression.strip()
        code = compile_checked(source, "eval")
        with bounded() if loops(source, "eval") else nullcontext():
            return eval(code, self._namespace(context, external_context))  # noqa: S307 - screened

    def execute(self, script, context, external_context=None):
        code = compile_checked(script, "exec")
        ns = self._namespace(context, external_context)
        before = set(ns)
        with bounded() if loops(script, "exec") else nullcontext():
            exec(code, ns)  # noqa: S102 - screened
        skip = set(self.globals) | {"__builtins__"} | set(external_context or {})
        for key, value in ns.items():
            if key in skip or key.startswith("_") or callable(value):
                continue
            context[key] = _plain(value, key)
        for key in before - set(ns):
            context.pop(key, None)
        return True

    def call_service(self, context, **kwargs):
        raise ScriptRejected("service tasks are not supported")


def make_script_engine() -> PythonScriptEngine:
    return PythonScriptEngine(environment=RestrictedEnvironment())
