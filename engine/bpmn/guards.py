"""The guards diagram code runs with: each operation that can make a value much larger than its operands is
measured before it runs and refused past the limits, and ``range`` is bounded.

The screen (``engine.bpmn.screen``) rewrites screened code so that ``*``, ``+``, ``**``, ``<<``, ``%``, their
augmented forms, f-string values and the methods in ``SIZED_METHODS`` call the guards in ``GUARDS``; diagram
code cannot name or replace them, since their names start with ``_``. A guard measures what the operation
would make and refuses before anything is allocated; ``str`` and ``sum`` are measured too.
"""
from __future__ import annotations

import builtins
import math
import re


class ScriptRejected(Exception):
    """Code in a diagram uses something the sandbox does not allow."""


_SAFE_BUILTIN_NAMES = [
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "isinstance",
    "len", "list", "map", "max", "min", "reversed", "round", "set", "sorted", "str", "sum",
    "tuple", "zip", "True", "False", "None", "ValueError", "Exception",
]
MAX_RANGE = 100_000
MAX_ITEMS = 1_000_000            # characters, bytes or items of one value, counted through nesting
MAX_INT_BITS = 100_000           # about 30,000 decimal digits


def _range(*args):
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise ValueError(f"range of {len(r)} items is larger than the allowed {MAX_RANGE}")
    return r


SAFE_BUILTINS = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
SAFE_BUILTINS["range"] = _range


_TEXT = (str, bytes, bytearray)
_SEQUENCES = (str, bytes, bytearray, list, tuple)
_CONTAINERS = (list, tuple, set, frozenset, dict)
_SCALARS = (str, int, float, bool, type(None))


def too_large(what: str, size: int | None, limit: int, unit: str = "characters or items"):
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


def check_weight(what: str, value) -> None:
    if not isinstance(value, _SCALARS) and weight(value) > MAX_ITEMS:
        too_large(what, None, MAX_ITEMS)


def _check_count(what: str, n) -> None:
    if isinstance(n, int) and n > MAX_ITEMS:
        too_large(what, n, MAX_ITEMS)


def _check_repeat(seq, n) -> None:
    if n <= 1 or not seq:
        return
    if isinstance(seq, _TEXT):
        if len(seq) * n > MAX_ITEMS:
            too_large("the result of '*'", len(seq) * n, MAX_ITEMS)
        return
    most = MAX_ITEMS // n
    if weight(seq, most) > most:
        too_large("the result of '*'", None, MAX_ITEMS)


def _check_bits(what: str, bits) -> None:
    if bits > MAX_INT_BITS:
        too_large(what, math.ceil(bits), MAX_INT_BITS, "bits")


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
        too_large("the result of '+'", len(a) + len(b), MAX_ITEMS)
    return a + b


def _iadd(a, b):
    if isinstance(a, list):  # list += changes the list itself and takes any iterable: measure what it yields
        if not hasattr(b, "__len__"):
            b = list(b)
        if len(a) + len(b) > MAX_ITEMS:
            too_large("the result of '+='", len(a) + len(b), MAX_ITEMS)
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


def check_printf(fmt) -> None:
    text = fmt if isinstance(fmt, str) else bytes(fmt).decode("latin-1")
    for m in _PRINTF.finditer(text):
        for n in m.groups():
            if n == "*":
                raise ScriptRejected("'*' widths in '%' formatting are not allowed")
            if n and (len(n) > 9 or int(n) > MAX_ITEMS):
                too_large("a width in '%' formatting", int(n[:12]), MAX_ITEMS)


def _mod(a, b):
    if isinstance(a, _TEXT):
        check_printf(a)
        check_weight("the values formatted with '%'", b)
    return a % b


def _built(value):
    """A list, tuple or set display with ``*`` unpacking, once built (``l = [*l, *l]`` in a loop)."""
    if len(value) > MAX_ITEMS:
        too_large("the result of '*' unpacking", len(value), MAX_ITEMS)
    return value


def _text(value):
    """A value an f-string is about to turn into text."""
    check_weight("a value in an f-string", value)
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
            check_weight("the text made by str()", args[0])
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
        too_large("the result of sum()", size, MAX_ITEMS)
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
                    too_large(what, size, MAX_ITEMS)
            return bound(tabsize)
        return expandtabs
    if name == "replace":
        def replace(old, new, count=-1):
            if isinstance(old, _TEXT) and isinstance(new, _TEXT) and isinstance(count, int):
                found = obj.count(old) if old else len(obj) + 1
                found = found if count < 0 else min(found, count)
                size = len(obj) + found * (len(new) - len(old))
                if size > MAX_ITEMS:
                    too_large(what, size, MAX_ITEMS)
            return bound(old, new, count)
        return replace
    if name == "join":
        def join(iterable):
            items = list(iterable)
            size = sum(len(x) for x in items if isinstance(x, _TEXT)) + len(obj) * max(len(items) - 1, 0)
            if size > MAX_ITEMS:
                too_large(what, size, MAX_ITEMS)
            return bound(items)
        return join
    if name == "translate":
        def translate(table):
            values = table.values() if isinstance(table, dict) else table if isinstance(table, (list, tuple)) else ()
            longest = max((len(v) for v in values if isinstance(v, _TEXT)), default=1)
            if len(obj) * max(longest, 1) > MAX_ITEMS:
                too_large(what, len(obj) * longest, MAX_ITEMS)
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
                too_large("the result of 'extend'", len(obj) + len(items), MAX_ITEMS)
            return bound(items)
        return extend
    return bound


SIZED_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "translate",
                           "to_bytes", "extend"})
GUARDS = {"_add": _add, "_iadd": _iadd, "_mul": _mul, "_imul": _imul, "_pow": _pow, "_lshift": _lshift,
          "_mod": _mod, "_text": _text, "_built": _built, "_method": _method}
# What the evaluation namespace's __builtins__ holds: the safe builtins with str and sum measured, and the guards.
NAMESPACE_BUILTINS = {**SAFE_BUILTINS, "str": SafeStr, "sum": _sum, **GUARDS}
