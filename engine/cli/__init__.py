"""``kefu``: the scriptable surface for operators and tests. ``--json`` gives machine-readable output;
errors go to stderr with a non-zero exit code (1 other error, 2 bad input, 3 not allowed, 4 not found,
5 conflict, 6 incident, 7 ``audit verify`` found a broken chain).

Each command group is a module here that registers its own commands; ``common`` holds what they share."""
from __future__ import annotations

import argparse
import json
import os
import sys

from engine.cli import (audit, care, casefile, customers, designer, external, handover, kpi, server, setup, tickets,
                        timers, users)
from engine.cli.common import _check_may_change, _opened, _read_only_guard
from engine.errors import KefuError


GROUPS = (setup, designer, users, customers, tickets, casefile, timers, external, audit, server, kpi, handover, care)
# The order ``kefu --help`` lists the commands in (and argparse names them in an "invalid choice" error).
COMMANDS = ("init", "deploy", "definitions", "lint", "testrun", "migrate", "users", "demo", "customers", "start",
            "tasks", "task", "cases", "claim", "unclaim", "reassign", "escalate", "complete", "show", "reveal", "note",
            "contact", "attach", "search", "hand-over", "timers", "incident", "handover", "shifts", "repeats",
            "external", "message",
            "audit", "scheduler", "clock", "calendar", "db", "serve", "web", "kpi", "qa", "report", "care", "events",
            "notifications")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``kefu`` parser; with ``only`` (a command name) only that command gets its parser, the others are
    left out: building the ~100 parsers of every command takes ~15 ms, as long as ``kefu tasks`` takes to
    read its tasks. ``main`` asks for one command when its arguments name one, and for all otherwise (``kefu --help``,
    a mistyped command: argparse lists them)."""
    p = argparse.ArgumentParser(prog="kefu", description="Kefu customer-service process service")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_, parents=(common,), subparsers=sub):
        if subparsers is _LEFT_OUT or (only is not None and subparsers is sub and name != only):
            return _LEFT_OUT
        sp = subparsers.add_parser(name, help=help_, parents=list(parents), description=help_)
        sp.set_defaults(func=func)
        return sp

    for group in GROUPS:
        group.register(sub if only is None else _OnlyOne(sub, only), add)
    _in_order(sub, COMMANDS)
    _read_only_guard(p)  # audit (issue 6): every changing command takes --as
    return p


class _LeftOut:
    """The parser of a command left out (``build_parser(only=...)``): whatever a group adds to it goes nowhere."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: self


_LEFT_OUT = _LeftOut()


class _OnlyOne:
    """The command list of ``build_parser(only=name)``: a group's own ``add_parser`` of another command gives
    a parser left out."""

    def __init__(self, sub, name: str):
        self._sub, self._name = sub, name

    def add_parser(self, name, **kwargs):
        return self._sub.add_parser(name, **kwargs) if name == self._name else _LEFT_OUT

    def __getattr__(self, name):
        return getattr(self._sub, name)


def _in_order(sub, names) -> None:
    """Put the top-level commands in the order of ``names``, whichever group added them."""
    rank = {name: i for i, name in enumerate(names)}
    parsers = sorted(sub.choices.items(), key=lambda item: rank.get(item[0], len(rank)))
    sub.choices.clear()  # the same dict argparse looks commands up in
    sub.choices.update(parsers)
    sub._choices_actions.sort(key=lambda action: rank.get(action.dest, len(rank)))


def _report(args, exc: KefuError) -> None:
    if args.json:
        print(json.dumps({"error": exc.to_dict()}, ensure_ascii=False, default=str), file=sys.stderr)
    else:
        print(f"kefu: error: {getattr(exc, 'headline', exc.message)}", file=sys.stderr)
        for field, msg in (getattr(exc, "errors", None) or {}).items():
            print(f"  {field}: {msg}", file=sys.stderr)
        files = exc.details.get("files") or []
        for problem in exc.details.get("problems", [])[1:] if not files else ():
            print(f"  also: {problem['message']}", file=sys.stderr)
        for f in files:  # a folder: what is wrong with each file (nothing was deployed)
            print(f"  {f['file']}: FAILED: {f['message']}", file=sys.stderr)
            for problem in (f.get("problems") or [])[1:]:
                print(f"    also: {problem['message']}", file=sys.stderr)


def main(argv=None) -> int:
    import warnings
    from engine.calendar import CalendarDataMissing
    warnings.simplefilter("ignore", CalendarDataMissing)  # reported through the log and 'calendar status'
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    try:
        _check_may_change(args)  # audit (issue 6): read-only roles change nothing
        rc = args.func(args)
        return rc or 0
    except KefuError as exc:
        _report(args, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of the output went away (``kefu tasks --json | head``): what was done stays done; say
        # nothing more, and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe's reader left
    except Exception as exc:  # after BrokenPipeError (an OSError)
        if not _database_error(exc):
            raise
        detail = (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0]
        _report(args, KefuError(f"database error: {detail}"))
        return 1
    finally:
        while _opened:  # close the connections: SQLite folds its write-ahead log back into the file
            opened = _opened.pop()
            (getattr(opened, "close", None) or opened.db.dispose)()


def _database_error(exc: Exception) -> bool:
    """Whether ``exc`` is the database's (SQLAlchemy's, or a DB-API driver's on the reads without SQLAlchemy):
    only the modules loaded already can have raised it, and none is imported to ask."""
    kinds = [getattr(sys.modules.get(module), name, None) for module, name in (
        ("sqlalchemy.exc", "SQLAlchemyError"), ("sqlite3", "Error"), ("psycopg", "Error"))]
    return isinstance(exc, tuple(k for k in kinds if k is not None))
