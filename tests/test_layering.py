"""The layering the design relies on: the engine knows nothing of the web, the web nothing of SpiffWorkflow."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(package: str) -> dict[str, set[str]]:
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


def test_engine_never_imports_flask_or_webapp():
    offenders = {f: n & {"flask", "werkzeug", "webapp", "jinja2"} for f, n in imported_modules("engine").items()}
    assert not {f: n for f, n in offenders.items() if n}


def test_webapp_never_imports_spiffworkflow():
    offenders = {f: n & {"SpiffWorkflow"} for f, n in imported_modules("webapp").items()}
    assert not {f: n for f, n in offenders.items() if n}


def test_importing_the_engine_loads_no_web_framework():
    code = "import sys, engine, engine.cli; assert 'flask' not in sys.modules, 'flask loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
