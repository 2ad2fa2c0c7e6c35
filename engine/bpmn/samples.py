"""Sample data for checking a diagram before deploy: values that pass each form field, what a ticket may carry
when a timer is evaluated, and the data a start event declares for the test run."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from engine import clock
from engine.bpmn.diagram import B, C
from engine.bpmn.forms import read_form
from engine.errors import DefinitionError

START = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # a Monday, 10:00 in Shanghai


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # a malformed constraint: the lint reports it


def sample_value(f: dict, now: datetime = START):
    """A value that passes the field's own validation."""
    t, v = f.get("type"), f.get("validation") or {}
    if t == "long":
        low = _number(v.get("min"))
        return int(low) if low is not None else 1
    if t == "boolean":
        return False
    if t == "date":
        return (now + timedelta(days=3)).astimezone(clock.SHANGHAI).date().isoformat()
    if t == "datetime":
        return (now - timedelta(minutes=1) if "past" in v else now + timedelta(days=1)).isoformat()
    if t == "enum":
        opts = f.get("options") or []
        return opts[0]["id"] if opts else None
    if t == "user":
        return "sample_user"
    if t == "users":
        return ["sample_user"]
    text = f"sample {f.get('id')}"
    low = _number(v.get("minlength"))
    if low is not None:
        text = text.ljust(min(int(low), 10_000), "x")
    high = _number(v.get("maxlength"))
    if high is not None:
        text = text[:max(1, int(high))]
    return text


def sample_data(root) -> dict:
    """Data a ticket may carry when a timer is evaluated: sample values of every form field, the process'
    standard data, and a time for every name assigned in a script."""
    now = START
    data = {"ticket_no": "T-0001", "kind": "sample", "started_by": "agent", "customer_id": None, "vip": False,
            "sla_targets": _default_targets()}
    for task in root.iter(B + "userTask"):
        for f in (read_form(task) or {}).get("fields", []):
            if f.get("id"):
                data.setdefault(f["id"], sample_value(f, now))
    for script in root.iter(B + "script"):
        for name in re.findall(r"^\s*([A-Za-z]\w*)\s*=", script.text or "", re.M):
            data.setdefault(name, (now + timedelta(hours=1)).isoformat())
    return data


def _default_targets() -> dict:
    from engine.config import Config
    from engine.bpmn.sla import parse_sla
    path = Config.from_env().processes_dir / "sla.dmn"
    try:
        return parse_sla(path.read_bytes(), path.name).targets
    except (OSError, DefinitionError):
        return {}


def start_sample(root, process_id: str) -> dict:
    """The data a process is started with, for the test run: a start event may declare it as the JSON object
    of a ``camunda:property`` named ``test_data`` (e.g. the QA sample's ticket list, which its starter
    supplies). A malformed value is ignored here; the lint reports it."""
    if root is None:
        return {}
    for proc in root.iter(f"{B}process"):
        if proc.get("id") != process_id:
            continue
        for prop in proc.iterfind(f"./{B}startEvent/{B}extensionElements/{C}properties/{C}property"):
            if prop.get("name") == "test_data":
                try:
                    value = json.loads(prop.get("value") or "")
                except ValueError:
                    return {}
                return value if isinstance(value, dict) else {}
    return {}


def start_variants(root, process_id: str) -> list[dict]:
    """Further start data for the test run: a start event's ``camunda:property`` ``test_variants``, a JSON list
    of objects, each laid over ``test_data`` for one more run (e.g. the care process's greeting branch, chosen by
    a start variable no form sets). A malformed value gives none."""
    if root is None:
        return []
    for proc in root.iter(f"{B}process"):
        if proc.get("id") != process_id:
            continue
        for prop in proc.iterfind(f"./{B}startEvent/{B}extensionElements/{C}properties/{C}property"):
            if prop.get("name") == "test_variants":
                try:
                    value = json.loads(prop.get("value") or "")
                except ValueError:
                    return []
                return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
    return []


def declared_test_data(root) -> dict[str, dict]:
    """Element id → the JSON object of its ``test_data`` property: what a worker completes an external task
    with, or what a message brings, in the test run (a malformed value is ignored here; the lint reports it)."""
    out = {}
    if root is None:
        return out
    for prop in root.iterfind(f".//{B}extensionElements/{C}properties/{C}property"):
        if prop.get("name") != "test_data":
            continue
        owner = prop.getparent().getparent().getparent()
        try:
            value = json.loads(prop.get("value") or "")
        except ValueError:
            continue
        if isinstance(value, dict) and owner.get("id"):
            out[owner.get("id")] = value
    return out
