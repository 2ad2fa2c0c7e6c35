"""The screen every piece of diagram code passes before it runs: what it may contain, what its constants show
to be too large, and its rewriting so that it runs through the guards and counts its steps.

``compile_checked`` refuses imports, ``global``/``nonlocal``, ``while``, generators and ``async``, names and
attributes that start with ``_``, attributes outside ``ALLOWED_ATTRIBUTES``, ``**`` without a small constant
exponent and code nested too deeply; it caches the compiled result, since the same diagram's expressions run
again and again.
"""
from __future__ import annotations

import ast
import copy
import re
from datetime import date, datetime, timedelta
from functools import lru_cache

from engine.bpmn.guards import GUARDS, MAX_ITEMS, SIZED_METHODS, ScriptRejected, check_printf, too_large

MAX_POWER = 10_000
MAX_DEPTH = 100                  # levels of nesting in the syntax tree of one piece of code
WATCH_OPERATIONS = 16            # loop-free code with more operations and calls than this is watched too

_ATTR_SOURCES = (str, list, dict, set, tuple, int, float, bool, datetime, date, timedelta)
_ATTR_DENY = {"format", "format_map", "mro", "maketrans"}
ALLOWED_ATTRIBUTES = frozenset(
    name for typ in _ATTR_SOURCES for name in dir(typ) if not name.startswith("_")) - _ATTR_DENY
_BINARY = {ast.Add: "_add", ast.Mult: "_mul", ast.Pow: "_pow", ast.LShift: "_lshift", ast.Mod: "_mod"}
_INPLACE = {ast.Add: "_iadd", ast.Mult: "_imul", ast.Pow: "_pow", ast.LShift: "_lshift", ast.Mod: "_mod"}


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

    def _display(self, node):
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load) and any(isinstance(e, ast.Starred) for e in node.elts):
            return ast.copy_location(_call("_built", node), node)
        return node

    def visit_List(self, node):
        return self._display(node)

    def visit_Tuple(self, node):
        return self._display(node)

    def visit_Set(self, node):
        self.generic_visit(node)
        if any(isinstance(e, ast.Starred) for e in node.elts):
            return ast.copy_location(_call("_built", node), node)
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
        check_printf(left.text)
    if left is _UNKNOWN or right is _UNKNOWN:
        return _UNKNOWN
    if isinstance(left, _Sized) or isinstance(right, _Sized):
        if op is ast.Mult:
            seq, n = (left, right) if isinstance(left, _Sized) else (right, left)
            if isinstance(n, int):
                if seq.size * n > MAX_ITEMS:
                    too_large("the result of '*'", seq.size * n, MAX_ITEMS)
                return _Sized(seq.kind, max(seq.size * n, 0))
        elif op is ast.Add and isinstance(left, _Sized) and isinstance(right, _Sized) and left.kind is right.kind:
            if left.size + right.size > MAX_ITEMS:
                too_large("the result of '+'", left.size + right.size, MAX_ITEMS)
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
                    too_large("a width in an f-string", int(digits[:12]), MAX_ITEMS)


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
    return compiled(source, mode)[0]


@lru_cache(maxsize=2048)
def compiled(source: str, mode: str):
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


CHEAP_OPERATIONS = 8             # at most this many operations in code run in the calling thread
# Calls code may make and still run in the calling thread: each takes time and memory at most in proportion to
# its arguments (plain data without shared parts, or values the guards measured) and Kefu's helpers.
CHEAP_CALLS = frozenset({"len", "abs", "bool", "isinstance", "int", "float", "min", "max", "now", "due_at",
                         "add_hours", "add_minutes", "add_seconds", "seconds_until", "add_working_days",
                         "window_opens", "window_closes", "earliest", "is_working_day"})
_COSTLY = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda, ast.For, ast.FunctionDef,
           ast.ClassDef, ast.Starred, ast.Slice, ast.JoinedStr)


@lru_cache(maxsize=2048)
def cheap(source: str, mode: str) -> bool:
    """Whether screened code is cheap enough to run in the calling thread rather than a worker process: no
    loop, comprehension, function or lambda, no ``**``, no star-unpacking or slice (which copy without a
    guard), no ``%`` or f-string (text made from values of many items), calls only to ``CHEAP_CALLS`` by their
    own name (never rebound, never passed on) and at most ``CHEAP_OPERATIONS`` operations that make a new
    value (each refused past a million characters or items by the guards: 8 MB at most). Such code takes time
    in proportion to its data and some tens of MB at most; anything else runs in a worker under the hard
    bounds (``engine.bpmn.workers``). Raises as ``compiled`` does."""
    if compiled(source, mode)[1]:
        return False
    tree = ast.parse(source, mode=mode)
    callees, operations = set(), 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in CHEAP_CALLS and not node.keywords):
                return False
            callees.add(id(node.func))
            operations += 1
        elif isinstance(node, _COSTLY) or (isinstance(node, ast.Dict) and None in node.keys):
            return False
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            if isinstance(node.op, (ast.Pow, ast.Mod)):  # '%' may format text from values of many items
                return False
            operations += 1
    for node in ast.walk(tree):  # a cheap name anywhere else could be rebound or passed on (``len = sorted``)
        if isinstance(node, ast.Name) and node.id in CHEAP_CALLS and id(node) not in callees:
            return False
        if isinstance(node, ast.arg) and node.arg in CHEAP_CALLS:
            return False
    return operations <= CHEAP_OPERATIONS


def check(source: str, mode: str = "eval") -> str | None:
    """None if ``source`` compiles in the sandbox, else the reason it does not."""
    try:
        compile_checked(source, mode)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    except ScriptRejected as exc:
        return str(exc)
    return None

