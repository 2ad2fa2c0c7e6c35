"""Expressions and scripts in diagrams run restricted: no imports, no dunders, only Kefu's helpers."""
import threading
import time

import pytest

from engine.bpmn import sandbox as scripting
from engine.bpmn import screen
from engine.bpmn.sandbox import RestrictedEnvironment, ScriptRejected

ESCAPES = [
    "__import__('os').system('true')",
    "().__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__bases__[0].__subclasses__()]",
    "open('/etc/passwd').read()",
    "eval('1')",
    "exec('x = 1')",
    "getattr((), '__class__')",
    "'{0.__class__}'.format(1)",
    "(x for x in [1]).gi_frame.f_globals",
    "type(1)",
    "globals()",
    "compile('1', 'x', 'eval')",
    "vars()",
]


@pytest.mark.parametrize("code", ESCAPES)
def test_known_escapes_fail_cleanly(code):
    env = RestrictedEnvironment()
    with pytest.raises((ScriptRejected, NameError, SyntaxError)):
        env.evaluate(code, {})


@pytest.mark.parametrize("script", ["import os", "from os import system", "global x\nx = 1",
                                    "def f(__x):\n    return 1", "_secret = 1", "while True:\n    pass",
                                    "x = 10 ** 10 ** 10", "x = [i for i in range(10 ** 9)]",
                                    "def g():\n    yield 1"])
def test_scripts_that_import_or_use_private_names_are_rejected(script):
    with pytest.raises((ScriptRejected, SyntaxError, ValueError)):
        RestrictedEnvironment().execute(script, {})


def test_data_key_named_builtins_cannot_restore_builtins():
    env = RestrictedEnvironment()
    import builtins
    with pytest.raises(NameError):
        env.evaluate("open('/etc/passwd')", {"__builtins__": builtins.__dict__})


def test_helpers_and_plain_python_work():
    env = RestrictedEnvironment()
    data = {"severity": "major", "n": 3, "names": ["a", "b"]}
    assert env.evaluate("severity == 'major' and len(names) == 2", data)
    env.execute("total = sum([n, 2])\nlabel = ', '.join(names).upper()\ndue = add_hours('2026-11-23T09:00+08:00', 2)",
                data)
    assert data["total"] == 5 and data["label"] == "A, B"
    assert data["due"].startswith("2026-11-23T03:00:00")  # UTC


def test_a_script_cannot_leave_unstorable_values_behind():
    with pytest.raises(TypeError, match="cannot be stored"):
        RestrictedEnvironment().execute("x = range(3)", {})


def test_check_reports_reason():
    assert screen.check("severity == 'major'") is None
    assert "not allowed" in screen.check("x.__class__")
    assert "syntax error" in screen.check("severity ==")


# ---------------------------------------------------------------- values and running time stay bounded
HUGE_CONSTANTS = ["'x' * 10 ** 9", "[0] * 10 ** 9", "x = 10 ** 10 ** 8", "(9 ** 9999) ** 9999", "1 << 10 ** 9",
                  "'ab' * 999999 * 999999", "('a', 'b') * 600000", "'%0999999999d' % 1", "f'{x:>999999999}'",
                  "f'{x:>{width}}'", "'x' * 999999 + 'y' * 999999"]


@pytest.mark.parametrize("code", HUGE_CONSTANTS)
def test_huge_values_visible_in_the_code_are_refused_before_anything_runs(code):
    mode = "exec" if "=" in code.split("'")[0] else "eval"
    reason = screen.check(code, mode)
    assert reason and ("too large" in reason or "exponent" in reason or "format" in reason), reason
    with pytest.raises(ScriptRejected):
        RestrictedEnvironment().execute(code if mode == "exec" else f"y = {code}", {})


HUGE_AT_RUN_TIME = [
    ("'x' * n", {"n": 10 ** 9}), ("[0] * n", {"n": 10 ** 9}), ("n * [0]", {"n": 10 ** 9}),
    ("n ** 99", {"n": 10 ** 9999}), ("1 << n", {"n": 10 ** 9}), ("n * n", {"n": 1 << 60000}),
    ("s.ljust(n)", {"s": "a", "n": 10 ** 9}), ("s.center(n)", {"s": "a", "n": 10 ** 9}),
    ("s.zfill(n)", {"s": "1", "n": 10 ** 9}), ("s.expandtabs(n)", {"s": "\t", "n": 10 ** 9}),
    ("s.replace('a', s)", {"s": "a" * 100_000}), ("''.join([s] * 10)", {"s": "a" * 200_000}),
    ("s.join([s, s, s])", {"s": "a" * 400_000}), ("str.join('', [s, s, s])", {"s": "a" * 400_000}),
    ("s.translate({97: 'b' * 1000})", {"s": "a" * 10_000}), ("n.to_bytes(10 ** 9, 'big')", {"n": 1}),
    ("str([l] * 1000)", {"l": list(range(10_000))}), ("len(str(l))", {"l": [list(range(1000))] * 2000}),
    ("f'{l}'", {"l": [list(range(1000))] * 2000}), ("'%s' % (l,)", {"l": [list(range(1000))] * 2000}),
    ("list(map(str, [l]))", {"l": [list(range(1000))] * 2000}), ("sum([l] * 10, [])", {"l": [0] * 200_000}),
    ("fmt % 1", {"fmt": "%0999999999d"}), ("fmt % (n, 1)", {"fmt": "%*d", "n": 10 ** 9}),
]


@pytest.mark.parametrize("code, data", HUGE_AT_RUN_TIME, ids=[c for c, _ in HUGE_AT_RUN_TIME])
def test_huge_values_made_from_data_are_refused_at_once(code, data):
    assert screen.check(code) is None  # nothing wrong in the code itself
    started = time.perf_counter()
    with pytest.raises(ScriptRejected, match="too large|not allowed"):
        RestrictedEnvironment().evaluate(code, dict(data))
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("script", [
    "s = 'ab'\nfor i in range(40):\n    s = s + s",
    "s = 'ab'\nfor i in range(40):\n    s += s",
    "l = [1]\nfor i in range(40):\n    l += l",
    "l = [1]\nfor i in range(40):\n    l.extend(l)",
    "l = [1]\nfor i in range(40):\n    l *= 2",
    "n = 3\nfor i in range(40):\n    n = n * n",
])
def test_values_doubled_in_a_loop_stop_at_the_limit(script):
    with pytest.raises(ScriptRejected, match="too large"):
        RestrictedEnvironment().execute(script, {})


def test_code_that_runs_long_stops_after_the_time_limit(monkeypatch):
    # Slow steps that keep nothing: a million steps and the memory bound are far off, only the clock stops the
    # code (100,000 scans of a 100,000-item list take minutes); the margin on the wall clock is wide.
    monkeypatch.setattr(scripting, "MAX_SECONDS", 0.3)
    started = time.perf_counter()
    with pytest.raises(ScriptRejected, match=r"runs too long \(more than 0.3 s\)"):
        RestrictedEnvironment().execute("for i in range(100000):\n    n = max(l)", {"l": list(range(100_000))})
    assert time.perf_counter() - started < 10


needs_memory = pytest.mark.skipif(scripting._usage() is None,
                                  reason="memory is read from /proc and per-thread page faults (Linux)")


@needs_memory
def test_code_that_piles_up_memory_stops_at_the_memory_limit(monkeypatch):
    monkeypatch.setattr(scripting, "MAX_MEMORY", 64 * 2 ** 20)
    with pytest.raises(ScriptRejected, match=r"too much memory \(more than 64 MB\)"):
        RestrictedEnvironment().execute("x = [str(i) * 10000 for i in range(100000)]", {})


@needs_memory
def test_memory_that_builtins_copy_counts_too(monkeypatch):
    # sorted() copies in C, where no guard looks; the time limit is out of the way: only memory stops this.
    monkeypatch.setattr(scripting, "MAX_SECONDS", 600.0)
    monkeypatch.setattr(scripting, "MAX_MEMORY", 64 * 2 ** 20)
    with pytest.raises(ScriptRejected, match=r"too much memory \(more than 64 MB\)"):
        RestrictedEnvironment().execute("x = [sorted(l) for i in range(5000)]", {"l": list(range(100_000))})


@needs_memory
def test_memory_the_code_gives_back_and_takes_again_counts_once(monkeypatch):
    # 20 rounds of 20 copies of a 100,000-item list: 320 MB taken one after another, at most 16 MB at a time
    # (the allocator gives much of it back and takes it again, so the thread's page faults add up past 64 MB)
    monkeypatch.setattr(scripting, "MAX_SECONDS", 600.0)
    monkeypatch.setattr(scripting, "MAX_MEMORY", 64 * 2 ** 20)
    data = {"l": list(range(100_000))}
    RestrictedEnvironment().execute("for i in range(20):\n    n = len([l[:] for j in range(20)])", data)
    assert data["n"] == 20


class Elsewhere:
    """Another thread of the process that takes ``megabytes`` of fresh memory (every page written) and holds
    it: what busy web threads beside a running script do."""

    def __init__(self, megabytes: int):
        self.megabytes, self.held = megabytes, []
        self.thread = threading.Thread(target=self._take)

    def _take(self):
        self.held.extend(bytes([i % 251 + 1]) * 2 ** 20 for i in range(self.megabytes))

    def start(self):
        self.thread.start()
        return True

    def wait(self):
        self.thread.join()
        return True


@needs_memory
def test_memory_other_threads_take_does_not_count_against_the_code(monkeypatch):
    monkeypatch.setattr(scripting, "MAX_MEMORY", 64 * 2 ** 20)
    monkeypatch.setattr(scripting, "CHECK_EVERY", 1)  # look at the memory at every step, so that looks
    monkeypatch.setattr(scripting, "MEMORY_EVERY", 0.0)  # before and after the other thread's are certain
    monkeypatch.setattr(scripting, "FAULT_BYTES", scripting._PAGE)  # a page a fault, also on THP "always" hosts
    elsewhere = Elsewhere(160)
    env = RestrictedEnvironment({"start_elsewhere": elsewhere.start, "wait_elsewhere": elsewhere.wait})
    before = scripting._resident()
    script = ("for i in range(3):\n    n = max(l)\nstarted = start_elsewhere()\nfor i in range(20):\n    n = max(l)\n"
              "done = wait_elsewhere()\nfor i in range(20):\n    n = max(l)")
    data = {"l": list(range(10_000))}
    try:
        env.execute(script, data)
        assert data["done"] is True and data["n"] == 9_999
        assert scripting._resident() - before > scripting.MAX_MEMORY  # the process did grow past the limit
        # ... and code that takes memory itself, while the other thread holds its share, is still stopped
        with pytest.raises(ScriptRejected, match=r"too much memory \(more than 64 MB\)"):
            env.execute("x = [str(i) * 10000 for i in range(100000)]", {})
    finally:
        elsewhere.held.clear()


@pytest.mark.parametrize("script", ["def f(n):\n    return 1 if n == 0 else f(n - 1) + f(n - 1)\nx = f(60)",
                                    "x = sorted(range(100000), key=lambda i: [j for j in range(100000)])",
                                    "\n".join(f"a{i} = [0] * 999999" for i in range(2000))],
                         ids=["recursion", "lambda", "long"])
def test_recursion_lambdas_and_long_code_are_counted_too(monkeypatch, script):
    monkeypatch.setattr(scripting, "MAX_MEMORY", 64 * 2 ** 20)
    with pytest.raises(ScriptRejected, match="runs too long|too much memory"):
        RestrictedEnvironment().execute(script, {})


def test_a_script_cannot_store_or_raise_a_value_too_large():
    data = {"l": list(range(1000))}
    with pytest.raises(ScriptRejected, match="values to store are too large"):
        RestrictedEnvironment().execute("x = [l for i in range(10000)]", dict(data))
    with pytest.raises(ScriptRejected, match="too large to show"):
        RestrictedEnvironment().execute("raise ValueError([l for i in range(10000)])", dict(data))


def test_ordinary_code_keeps_its_meaning_under_the_guards():
    env = RestrictedEnvironment()
    data = {"names": ["b", "A"], "n": 3, "d": {"k": 1}, "l": [1]}
    same = data["l"]
    env.execute("n += 2\nn *= 2\nl += [2]\nl *= 2\nd['k'] += 1\nt = 'ab' * 2 + 'c'\nu = '%s-%03d' % ('x', 7)\n"
                "v = f'{n:>4}|{names}'\nw = ', '.join(sorted(names, key=str.lower)).ljust(8, '.')\n"
                "z = sum([[1], [2]], []) + list(map(str, [1, 2]))\nok = isinstance(t, str) and isinstance(1, (str, int))\n"
                "p = 2 ** 10 + (1 << 4) + 7 % 3\nq = [i * j for i in range(3) for j in range(3)]", data)
    assert data["n"] == 10 and data["l"] == [1, 2, 1, 2] and same == [1, 2, 1, 2] and data["d"] == {"k": 2}
    assert data["t"] == "ababc" and data["u"] == "x-007" and data["v"] == "  10|['b', 'A']"
    assert data["w"] == "A, b...." and data["z"] == [1, 2, "1", "2"] and data["ok"] is True
    assert data["p"] == 1024 + 16 + 1 and data["q"] == [0, 0, 0, 0, 1, 2, 0, 2, 4]
    assert env.evaluate("str.upper(names[0]) + str(n)", data) == "B10"
