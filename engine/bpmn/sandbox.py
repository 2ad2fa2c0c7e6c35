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
  executed lines, five seconds, and (on Linux) 256 MB more resident memory than when it started;
* a stored value (what a script leaves behind) and an error message hold at most a million characters and
  items;
* task data whose key starts with ``_`` is never put into the evaluation namespace (a form field named
  ``__builtins__`` cannot restore the real builtins);
* values a script leaves behind must be plain data (str, numbers, bool, None, lists, dicts); ``datetime``
  and ``date`` become ISO strings.

Helper functions offered to diagrams: ``now``, ``add_hours``, ``add_minutes``, ``add_seconds``,
``seconds_until``, ``add_working_days``, ``due_at``, ``is_working_day``.

What this does not bound: a single built-in operation over large values that share parts (comparing,
hashing or sorting a list that holds the same 100,000-item list many times) runs to its end, since Python
cannot interrupt C code from inside the thread; each such value was itself built within the limits above.
A hard bound would need a separate process per evaluation.
"""
from __future__ import annotations

import ast
import builtins
import copy
import math
import os
import re
import time
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from itertools import chain, count, repeat

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from engine import calendar, clock


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
MAX_ITEMS = 1_000_000            # characters, bytes or items of one value, counted through nesting
MAX_INT_BITS = 100_000           # about 30,000 decimal digits
MAX_SECONDS = 5.0                # wall time of watched code
MAX_MEMORY = 256 * 1024 * 1024   # growth of resident memory while watched code runs (Linux)
MAX_DEPTH = 100                  # levels of nesting in the syntax tree of one piece of code
WATCH_OPERATIONS = 16            # loop-free code with more operations and calls than this is watched too
CHECK_EVERY = 16                 # steps between two looks at the clock
MEMORY_EVERY = 0.005             # seconds between two looks at the memory


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


# ---------------------------------------------------------------- size limits
# Every operation that can make a value much larger than its operands is routed through a guard (the code is
# rewritten after it has been screened, so diagram code cannot name or replace the guards: their names
# start with '_'). A guard measures what the operation would make and refuses before anything is allocated.

_TEXT = (str, bytes, bytearray)
_SEQUENCES = (str, bytes, bytearray, list, tuple)
_CONTAINERS = (list, tuple, set, frozenset, dict)
_SCALARS = (str, int, float, bool, type(None))


def _too_large(what: str, size: int | None, limit: int, unit: str = "characters or items"):
    amount = f"{size:,} {unit}, at most {limit:,} allowed" if size is not None else f"more than {limit:,} {unit}"
    raise ScriptRejected(f"{what} would be too large: {amount}")


_LEAVES = frozenset({int, float, bool, type(None)})


def weight(value, limit: int = MAX_ITEMS) -> int:
    """The characters and items in ``value`` counted through every nesting (a list held twice counts twice:
    that is what turning it into text or storing it costs); stops counting once past ``limit``."""
    if isinstance(value, _TEXT):
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return 1
    total, stack = 0, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, _TEXT):
            total += len(v) or 1
        elif isinstance(v, _CONTAINERS):
            items = [*v.keys(), *v.values()] if isinstance(v, dict) else v
            nested = [x for x in items if x.__class__ not in _LEAVES]
            total += (len(items) - len(nested)) or (0 if nested else 1)
            stack.extend(nested)
        else:
            total += 1
        if total + len(stack) > limit:  # each entry left counts at least one
            return limit + 1
    return total


def _check_weight(what: str, value) -> None:
    if not isinstance(value, _SCALARS) and weight(value) > MAX_ITEMS:
        _too_large(what, None, MAX_ITEMS)


def _check_count(what: str, n) -> None:
    if isinstance(n, int) and n > MAX_ITEMS:
        _too_large(what, n, MAX_ITEMS)


def _check_repeat(seq, n) -> None:
    if n <= 1 or not seq:
        return
    if isinstance(seq, _TEXT):
        if len(seq) * n > MAX_ITEMS:
            _too_large("the result of '*'", len(seq) * n, MAX_ITEMS)
        return
    most = MAX_ITEMS // n
    if weight(seq, most) > most:
        _too_large("the result of '*'", None, MAX_ITEMS)


def _check_bits(what: str, bits) -> None:
    if bits > MAX_INT_BITS:
        _too_large(what, math.ceil(bits), MAX_INT_BITS, "bits")


def _mul(a, b):
    if isinstance(a, int):
        if isinstance(b, int):
            if a.bit_length() + b.bit_length() > MAX_INT_BITS:
                _check_bits("the result of '*'", a.bit_length() + b.bit_length())
        elif isinstance(b, _SEQUENCES):
            _check_repeat(b, a)
    elif isinstance(b, int) and isinstance(a, _SEQUENCES):
        _check_repeat(a, b)
    return a * b


def _imul(a, b):
    if isinstance(a, list):  # list *= n changes the list itself
        if isinstance(b, int):
            _check_repeat(a, b)
        a *= b
        return a
    return _mul(a, b)


def _add(a, b):
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES) and len(a) + len(b) > MAX_ITEMS:
        _too_large("the result of '+'", len(a) + len(b), MAX_ITEMS)
    return a + b


def _iadd(a, b):
    if isinstance(a, list):  # list += changes the list itself and takes any iterable: measure what it yields
        if not hasattr(b, "__len__"):
            b = list(b)
        if len(a) + len(b) > MAX_ITEMS:
            _too_large("the result of '+='", len(a) + len(b), MAX_ITEMS)
        a += b
        return a
    return _add(a, b)


def _pow(a, b):
    if isinstance(a, int) and isinstance(b, int) and b > 1 and abs(a) > 1:
        _check_bits("the result of '**'", b * math.log2(abs(a)))
    return a ** b


def _lshift(a, b):
    if isinstance(a, int) and isinstance(b, int) and a and b > 0:
        _check_bits("the result of '<<'", a.bit_length() + b)
    return a << b


_PRINTF = re.compile(r"%%|%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt) -> None:
    text = fmt if isinstance(fmt, str) else bytes(fmt).decode("latin-1")
    for m in _PRINTF.finditer(text):
        for n in m.groups():
            if n == "*":
                raise ScriptRejected("'*' widths in '%' formatting are not allowed")
            if n and (len(n) > 9 or int(n) > MAX_ITEMS):
                _too_large("a width in '%' formatting", int(n[:12]), MAX_ITEMS)


def _mod(a, b):
    if isinstance(a, _TEXT):
        _check_printf(a)
        _check_weight("the values formatted with '%'", b)
    return a % b


def _text(value):
    """A value an f-string is about to turn into text."""
    _check_weight("a value in an f-string", value)
    return value


class _StrType(type):
    """What diagram code calls ``str``: the real type for ``isinstance`` and its methods, but calling it
    first checks that the text would not be too large (also when passed on, as in ``map(str, ...)``)."""

    def __instancecheck__(cls, obj):
        return isinstance(obj, str)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, str)

    def __getattr__(cls, name):
        return getattr(str, name)

    def __call__(cls, *args, **kwargs):
        if args:
            _check_weight("the text made by str()", args[0])
        return str(*args, **kwargs)


class SafeStr(metaclass=_StrType):
    pass


def _sum(iterable, /, start=0):
    """``sum``; adding up lists or tuples (``sum(lists, [])``) is measured first and done in one pass."""
    if not isinstance(start, (list, tuple)):
        return sum(iterable, start)
    kind = list if isinstance(start, list) else tuple
    items = list(iterable)
    for x in items:
        if not isinstance(x, kind):
            raise TypeError(f"can only concatenate {kind.__name__} (not \"{type(x).__name__}\") to {kind.__name__}")
    size = len(start) + sum(len(x) for x in items)
    if size > MAX_ITEMS:
        _too_large("the result of sum()", size, MAX_ITEMS)
    out = list(start)
    for x in items:
        out.extend(x)
    return out if kind is list else tuple(out)


def _sized_method(obj, name: str, bound):
    """The method ``name`` of ``obj`` wrapped so that it measures its result before making it."""
    what = f"the result of '{name}'"
    if name in ("ljust", "rjust", "center", "zfill"):
        def pad(width, *rest):
            _check_count(what, width)
            return bound(width, *rest)
        return pad
    if name == "expandtabs":
        def expandtabs(tabsize=8):
            if isinstance(tabsize, int):
                tab = "\t" if isinstance(obj, str) else b"\t"
                size = len(obj) + obj.count(tab) * max(tabsize, 0)
                if size > MAX_ITEMS:
                    _too_large(what, size, MAX_ITEMS)
            return bound(tabsize)
        return expandtabs
    if name == "replace":
        def replace(old, new, count=-1):
            if isinstance(old, _TEXT) and isinstance(new, _TEXT) and isinstance(count, int):
                found = obj.count(old) if old else len(obj) + 1
                found = found if count < 0 else min(found, count)
                size = len(obj) + found * (len(new) - len(old))
                if size > MAX_ITEMS:
                    _too_large(what, size, MAX_ITEMS)
            return bound(old, new, count)
        return replace
    if name == "join":
        def join(iterable):
            items = list(iterable)
            size = sum(len(x) for x in items if isinstance(x, _TEXT)) + len(obj) * max(len(items) - 1, 0)
            if size > MAX_ITEMS:
                _too_large(what, size, MAX_ITEMS)
            return bound(items)
        return join
    if name == "translate":
        def translate(table):
            values = table.values() if isinstance(table, dict) else table if isinstance(table, (list, tuple)) else ()
            longest = max((len(v) for v in values if isinstance(v, _TEXT)), default=1)
            if len(obj) * max(longest, 1) > MAX_ITEMS:
                _too_large(what, len(obj) * longest, MAX_ITEMS)
            return bound(table)
        return translate
    return bound


def _method(obj, name: str):
    """``obj.name`` for the methods that can make long text or lists (``SIZED_METHODS``)."""
    bound = getattr(obj, name)
    if isinstance(obj, type):  # str.join(sep, items), list.extend(a, b): measured as the instance's method
        def unbound(self, *args, **kwargs):
            return _method(self, name)(*args, **kwargs) if isinstance(self, obj) else bound(self, *args, **kwargs)
        return unbound
    if isinstance(obj, _TEXT):
        return _sized_method(obj, name, bound)
    if isinstance(obj, int) and name == "to_bytes":
        def to_bytes(*args, **kwargs):
            _check_count("the result of 'to_bytes'", args[0] if args else kwargs.get("length", 1))
            return bound(*args, **kwargs)
        return to_bytes
    if isinstance(obj, list) and name == "extend":
        def extend(iterable):
            items = iterable if hasattr(iterable, "__len__") else list(iterable)
            if len(obj) + len(items) > MAX_ITEMS:
                _too_large("the result of 'extend'", len(obj) + len(items), MAX_ITEMS)
            return bound(items)
        return extend
    return bound


SIZED_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "translate",
                           "to_bytes", "extend"})
_BINARY = {ast.Add: "_add", ast.Mult: "_mul", ast.Pow: "_pow", ast.LShift: "_lshift", ast.Mod: "_mod"}
_INPLACE = {ast.Add: "_iadd", ast.Mult: "_imul", ast.Pow: "_pow", ast.LShift: "_lshift", ast.Mod: "_mod"}
GUARDS = {"_add": _add, "_iadd": _iadd, "_mul": _mul, "_imul": _imul, "_pow": _pow, "_lshift": _lshift,
          "_mod": _mod, "_text": _text, "_method": _method}
# What the evaluation namespace's __builtins__ holds: the safe builtins with str and sum measured, and the guards.
NAMESPACE_BUILTINS = {**SAFE_BUILTINS, "str": SafeStr, "sum": _sum, **GUARDS}


def _call(name: str, *args) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


class _Guard(ast.NodeTransformer):
    """Routes the operations that can make large values through the guards, and counts the steps of code
    that repeats: a ``_tick()`` opens every loop round, comprehension round, function and lambda call, and,
    in long code (``every_statement``), every statement."""

    def __init__(self, every_statement: bool):
        self.every_statement = every_statement
        self.ticks = False

    def _tick(self, at) -> ast.Call:
        self.ticks = True
        return ast.copy_location(_call("_tick"), at)

    def _ticked(self, body: list) -> list:
        out = []
        for statement in body:
            out += [ast.copy_location(ast.Expr(self._tick(statement)), statement), statement]
        return out

    def generic_visit(self, node):
        super().generic_visit(node)
        if self.every_statement:
            for field in ("body", "orelse", "finalbody"):
                statements = getattr(node, field, None)
                if isinstance(statements, list) and statements and isinstance(statements[0], ast.stmt):
                    setattr(node, field, self._ticked(statements))
        return node

    def _tick_first(self, node):
        if not self.every_statement:  # else generic_visit ticked every statement already
            node.body.insert(0, ast.copy_location(ast.Expr(self._tick(node.body[0])), node.body[0]))
        return node

    def visit_For(self, node):
        return self._tick_first(self.generic_visit(node))

    def visit_FunctionDef(self, node):
        return self._tick_first(self.generic_visit(node))

    def visit_Lambda(self, node):
        self.generic_visit(node)
        node.body = ast.copy_location(ast.BoolOp(op=ast.And(), values=[self._tick(node.body), node.body]),
                                      node.body)
        return node

    def visit_comprehension(self, node):
        self.generic_visit(node)
        node.ifs.insert(0, self._tick(node.iter))
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        name = _BINARY.get(type(node.op))
        return ast.copy_location(_call(name, node.left, node.right), node) if name else node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        name = _INPLACE.get(type(node.op))
        if name is None:
            return node
        current = copy.deepcopy(node.target)
        current.ctx = ast.Load()
        return ast.copy_location(ast.Assign(targets=[node.target], value=_call(name, current, node.value)), node)

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load) and node.attr in SIZED_METHODS:
            return ast.copy_location(_call("_method", node.value, ast.Constant(node.attr)), node)
        return node

    def visit_FormattedValue(self, node):
        self.generic_visit(node)
        node.value = ast.copy_location(_call("_text", node.value), node.value)
        return node


_UNKNOWN = object()


class _Sized:
    """A constant text or list in the static check: only its kind and size are kept (nothing is built)."""
    __slots__ = ("kind", "size", "text")

    def __init__(self, kind, size: int, text=None):
        self.kind, self.size, self.text = kind, size, text


def _constant(node, memo: dict):
    """What the static check knows of a constant expression: a number (computed through the guards, which
    refuse one that would be too large), a ``_Sized`` text or list (sizes only, refused past the limit), or
    ``_UNKNOWN`` when it depends on data."""
    if id(node) in memo:
        return memo[id(node)]
    value = _UNKNOWN
    if isinstance(node, ast.Constant):
        v = node.value
        value = _Sized(type(v), len(v), v) if isinstance(v, (str, bytes)) else v
    elif isinstance(node, (ast.Tuple, ast.List)):
        items = [_constant(e, memo) for e in node.elts]
        if all(i is not _UNKNOWN for i in items):
            size = sum((i.size or 1) if isinstance(i, _Sized) else 1 for i in items)
            value = _Sized(tuple if isinstance(node, ast.Tuple) else list, size)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _constant(node.operand, memo)
        if isinstance(operand, (int, float)):
            value = -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.BinOp):
        value = _constant_binop(node, _constant(node.left, memo), _constant(node.right, memo))
    memo[id(node)] = value
    return value


def _constant_binop(node, left, right):
    op = type(node.op)
    if op is ast.Mod and isinstance(left, _Sized) and left.text is not None:
        _check_printf(left.text)
    if left is _UNKNOWN or right is _UNKNOWN:
        return _UNKNOWN
    if isinstance(left, _Sized) or isinstance(right, _Sized):
        if op is ast.Mult:
            seq, n = (left, right) if isinstance(left, _Sized) else (right, left)
            if isinstance(n, int):
                if seq.size * n > MAX_ITEMS:
                    _too_large("the result of '*'", seq.size * n, MAX_ITEMS)
                return _Sized(seq.kind, max(seq.size * n, 0))
        elif op is ast.Add and isinstance(left, _Sized) and isinstance(right, _Sized) and left.kind is right.kind:
            if left.size + right.size > MAX_ITEMS:
                _too_large("the result of '+'", left.size + right.size, MAX_ITEMS)
            return _Sized(left.kind, left.size + right.size)
        return _UNKNOWN
    guard = GUARDS.get(_BINARY.get(op, ""))
    if guard is None or not isinstance(left, (int, float)) or not isinstance(right, (int, float)):
        return _UNKNOWN
    try:
        return guard(left, right)
    except ScriptRejected:
        raise
    except Exception:  # noqa: BLE001 - e.g. 1 % 0: the run reports it where it happens
        return _UNKNOWN


def _check_sizes(tree) -> None:
    """Refuse what the code itself shows to be too large: constant expressions, f-string widths."""
    memo: dict = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            _constant(node, memo)
        elif isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            parts = node.format_spec.values
            if any(not isinstance(p, ast.Constant) for p in parts):
                raise ScriptRejected("an f-string format computed at run time is not allowed")
            spec = "".join(str(p.value) for p in parts)
            for digits in re.findall(r"\d+", spec):
                if len(digits) > 9 or int(digits) > MAX_ITEMS:
                    _too_large("a width in an f-string", int(digits[:12]), MAX_ITEMS)


def _depth(tree) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def compile_checked(source: str, mode: str):
    """Parse, screen and compile ``source``; raises ScriptRejected or SyntaxError. Results are cached: the
    same diagram's expressions run again and again, and a code object is immutable."""
    return _compiled(source, mode)[0]


@lru_cache(maxsize=2048)
def _compiled(source: str, mode: str):
    """``(code, ticks)``: the screened, guarded code, and whether it counts its steps (``_tick``)."""
    try:
        tree = ast.parse(source, mode=mode)
    except RecursionError:
        raise ScriptRejected("the code is nested too deeply") from None
    if _depth(tree) > MAX_DEPTH:  # the checks below recurse; a fixed bound keeps them off the stack's limit
        raise ScriptRejected(f"the code is nested too deeply (more than {MAX_DEPTH} levels)")
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
    try:
        _check_sizes(tree)
        operations = sum(isinstance(n, (ast.BinOp, ast.AugAssign, ast.Call)) for n in ast.walk(tree))
        guard = _Guard(every_statement=operations > WATCH_OPERATIONS)
        tree = ast.fix_missing_locations(guard.visit(tree))
        return compile(tree, "<string>", mode), guard.ticks
    except RecursionError:
        raise ScriptRejected("the code is nested too deeply") from None


def check(source: str, mode: str = "eval") -> str | None:
    """None if ``source`` compiles in the sandbox, else the reason it does not."""
    try:
        compile_checked(source, mode)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    except ScriptRejected as exc:
        return str(exc)
    return None


def _plain(value, path: str, _left: list[int] | None = None):
    """``value`` as storable data; all values of one script share ``_left``, the characters and items they may
    hold together (a list held many times would be copied each time)."""
    left = [MAX_ITEMS] if _left is None else _left
    left[0] -= len(value) if isinstance(value, str) else 1
    if left[0] < 0:
        raise ScriptRejected(f"the values to store are too large (at {path!r}): more than {MAX_ITEMS:,} "
                             "characters and items")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date)):
        return _iso(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]", left) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{path}.{k}", left) for k, v in value.items()}
    raise TypeError(f"the value of {path!r} is a {type(value).__name__}, which cannot be stored; "
                    "use str, numbers, bool, lists or dicts")


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm = None  # an open /proc/self/statm of this process; -1 where there is none


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


def ticker():
    """The ``_tick`` of one evaluation: stops the code after ``MAX_LINES`` steps (nested loops within the
    allowed ranges could otherwise run for hours), after ``MAX_SECONDS``, or once the process's resident
    memory grew by more than ``MAX_MEMORY``. A tick is the C-level ``next`` of an iterator that yields
    ``True``; every ``CHECK_EVERY`` ticks Python looks at the count and the clock, and at the memory when
    ``MEMORY_EVERY`` seconds passed since it last did (a syscall: a quick loop pays it rarely, a loop that
    allocates much is slow enough to be looked at often)."""
    limit, seconds, memory, every = MAX_LINES, MAX_SECONDS, MAX_MEMORY, max(1, CHECK_EVERY)
    deadline, start, look = time.monotonic() + seconds, None, 0.0

    def rounds(k: int):
        nonlocal start, look
        now = time.monotonic()
        if k == 0:
            start, look = _resident(), now + MEMORY_EVERY
        elif now > deadline:
            raise ScriptRejected(f"the code runs too long (more than {seconds:g} s)")
        elif now >= look and start is not None:
            look = now + MEMORY_EVERY
            if (_resident() or 0) - start > memory:
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
        code, ticks = _compiled(expression.strip(), "eval")
        try:
            value = eval(code, self._namespace(context, external_context, ticks))  # noqa: S307 - screened
        except Exception as exc:
            small = _small_error(exc)
            if small is exc:
                raise
            raise small from None
        _check_weight("the value of the expression", value)
        return value

    def execute(self, script, context, external_context=None):
        code, ticks = _compiled(script, "exec")
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


def make_script_engine() -> PythonScriptEngine:
    return PythonScriptEngine(environment=RestrictedEnvironment())
