"""Expressions and scripts in diagrams run restricted: no imports, no dunders, only Kefu's helpers."""
import pytest

from engine import scripting
from engine.scripting import RestrictedEnvironment, ScriptRejected

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
    assert scripting.check("severity == 'major'") is None
    assert "not allowed" in scripting.check("x.__class__")
    assert "syntax error" in scripting.check("severity ==")
