"""Running the service: the all-in-one server (web UI, scheduler, embedded database) or the web UI and JSON
API under gunicorn."""
from __future__ import annotations

import importlib
import os

from engine.cli.common import _service
from engine.errors import InvalidInput


def cmd_serve(args):
    # The web layer is loaded by name so the engine package itself never depends on it.
    webapp = importlib.import_module("webapp")
    return webapp.serve(host=args.host, port=args.port, demo=not args.no_demo)


def default_web_workers() -> int:
    """One gunicorn worker per core (at least two, so one slow request never holds the only one; at most 8:
    each holds database connections). Each has two threads, which overlap one request's database waits with
    another's Python work; more processes than cores only switch among themselves."""
    return max(2, min(8, os.cpu_count() or 1))


def cmd_web(args):
    if args.workers < 1 or args.threads < 1 or args.timeout < 1 or args.live_streams < 1:
        raise InvalidInput("--workers, --threads, --timeout and --live-streams must be at least 1")
    _service()  # refuse to start on a database without the schema
    webapp = importlib.import_module("webapp.server")
    return webapp.run_gunicorn(args.bind, workers=args.workers, threads=args.threads, timeout=args.timeout,
                               live_streams=args.live_streams)


def register(sub, add) -> None:
    sp = add("serve", cmd_serve, "run the service: web UI, scheduler, embedded database")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=5000)
    sp.add_argument("--no-demo", action="store_true", help="do not seed demo users and customers")
    sp = add("web", cmd_web, "run the web UI and JSON API under gunicorn (no scheduler: run 'kefu scheduler')")
    sp.add_argument("--bind", default="127.0.0.1:8000", help="host:port (default 127.0.0.1:8000)")
    # Defaults from bench/http.py on 2 cores: one worker per core with two threads each used 9-10 ms of CPU per
    # completion, four workers 9.5-11 ms (more processes than cores switch more); 2 x 4 threads did worse.
    sp.add_argument("--workers", type=int, default=default_web_workers(),
                    help="worker processes (default one per CPU core, at least 2 and at most 8)")
    sp.add_argument("--threads", type=int, default=2, help="threads per worker (default 2)")
    sp.add_argument("--timeout", type=int, default=60, help="seconds before a silent worker is restarted")
    sp.add_argument("--live-streams", type=int, default=8,
                    help="live pages' event streams per worker, on threads of their own (default 8)")
