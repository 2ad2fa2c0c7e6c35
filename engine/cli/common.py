"""What the command groups share: opening the service, reading ``--data`` and diagrams, printing a result,
and the guard that keeps read-only users from changing anything."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import InvalidInput, KefuError
from engine.limits import MAX_JSON_DEPTH, too_deep


# Every service a command opened; main() closes their connections when the command ends.
_opened = []


def _service(need_schema=True):
    from engine.service import Kefu
    k = Kefu()
    _opened.append(k)
    if need_schema and not k.db.has_schema():
        _no_schema(k.config.database_url)
    if need_schema:
        from engine.store import schema as migrate
        if not migrate.is_current(k.db):
            _not_current(k.config.database_url, migrate.current(k.db))
    return k


def _no_schema(url: str):
    raise KefuError(f"the database {url} has no Kefu schema yet; run 'kefu init'")


def _not_current(url: str, revision: str | None):
    from engine.store import schema as migrate
    raise KefuError(f"the database {url} is at schema revision {revision or '(none)'}, this Kefu needs "
                    f"{migrate.head()}; run 'kefu db upgrade'")


def _reader():
    """What a command that only reads plain rows reads on (``engine.services.queue``): a connection of its own
    (``engine.services.readers.OwnReader``), without SQLAlchemy; for a database URL only SQLAlchemy reads, the
    service's context. The same checks of the schema as ``_service``'s."""
    from engine.config import Config
    from engine.services.readers import OwnReader
    from engine.store import plain, schema as migrate
    config = Config.from_env()
    try:
        reader = OwnReader.open(config)
    except plain.NoDatabase:  # what SQLAlchemy would report after making an empty file, without making it
        _no_schema(config.database_url)
    if reader is None:
        return _service().ctx
    _opened.append(reader)
    with reader.plain() as conn:
        if not conn.has_table("instances"):
            _no_schema(config.database_url)
        revisions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")] \
            if conn.has_table("alembic_version") else []
    if len(revisions) > 1:  # several heads: Alembic's own reading decides
        return _service().ctx
    if (revisions[0] if revisions else None) != migrate.head():
        _not_current(config.database_url, revisions[0] if revisions else None)
    return reader


def _data(text: str | None):
    if text is None:
        return None
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except RecursionError:
        raise InvalidInput(f"--data nests deeper than {MAX_JSON_DEPTH} levels") from None
    if too_deep(value):
        raise InvalidInput(f"--data nests deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(value, dict):
        raise InvalidInput("--data must be a JSON object")
    return value


def _read_diagram(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _print(args, value, text=None):
    if args.json or text is None:
        print(json.dumps(value, ensure_ascii=False, indent=2, default=str))
    else:
        print(text(value) if callable(text) else text)


# Every command is one or the other; tests/test_audit_readonly.py fails on a command in neither set.
MUTATING = {"init", "deploy", "users add", "demo", "customers add", "customers update", "start", "claim",
            "unclaim", "reassign", "escalate", "complete", "timers fire-due", "incident retry", "clock advance",
            "calendar set", "calendar unset", "scheduler", "serve", "web", "users token", "db upgrade",
            "db downgrade", "kpi report", "qa sample", "qa sample-size", "migrate", "users unlock", "external fetch",
            "external complete", "external fail", "external extend-lock", "message", "handover start",
            "handover accept", "shifts set", "shifts remove", "repeats window", "care plan", "care cycles",
            "events add", "events invite", "events feedback", "hand-over", "users deactivate", "users activate",
            "note", "contact", "attach", "users notify", "notifications deliver", "notifications retry"}
READ_ONLY = {"definitions", "users list", "customers find", "customers show", "tasks", "task", "show",
             "timers list", "audit verify", "audit replay", "audit search", "audit export", "audit head",
             "clock show", "calendar status", "calendar add", "db current", "db history", "lint",
             "testrun", "users lockouts", "audit security", "external list", "handover show", "handover list",
             "shifts list", "care list", "events show", "events list", "report", "cases", "search",
             "notifications list", "reveal", "customers reveal"}  # a reveal changes nothing; it is recorded (I4)


def _command_path(parser, prefix=()):
    """(path, parser) of every leaf command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_path(sub, prefix + (name,))
            return
    yield " ".join(prefix), parser


def _read_only_guard(parser) -> None:
    """Every mutating command takes ``--as``; an auditor (read-only role) given there is refused."""
    for path, sp in _command_path(parser):
        if path in MUTATING and not any("--as" in a.option_strings for a in sp._actions):
            sp.add_argument("--as", dest="actor")
        sp.set_defaults(command_path=path)


def _check_may_change(args) -> None:
    if getattr(args, "command_path", None) in MUTATING and getattr(args, "actor", None):
        k = _service(need_schema=False)
        if k.db.has_schema():
            k.users.check_may_change(args.actor)
