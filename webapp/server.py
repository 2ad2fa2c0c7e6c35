"""``kefu web``: the web UI and the JSON API under gunicorn, for several worker processes on one database.

The app is not preloaded: every worker builds its own app, engine and database connections after the fork
(``wsgi_app``), from the same environment as ``kefu serve`` (KEFU_DATABASE_URL, KEFU_ENV, KEFU_SECRET_KEY…).
No worker runs the timer scheduler; run one or more ``kefu scheduler`` processes beside it. SIGTERM stops
gunicorn gracefully: workers finish the requests in hand, then exit.

With a SQLite database the secret key file is made once by the master before the workers start, so every
worker signs sessions alike; on other databases set KEFU_SECRET_KEY (or the key file in the instance folder is
shared the same way).
"""
from __future__ import annotations

import logging

log = logging.getLogger("kefu.web")


def wsgi_app():
    """The app factory each gunicorn worker calls (``gunicorn 'webapp.server:wsgi_app()'``)."""
    from engine.bpmn import workers

    from . import create_app
    app = create_app()
    workers.warm()  # this worker's sandbox worker process, started before the first request needs it
    return app


def _stop_streams_on_term(worker) -> None:
    """gunicorn's ``post_worker_init``: on SIGTERM the worker's open event streams end at once (they would
    otherwise hold the graceful shutdown for its whole timeout)."""
    import signal

    from .live import STOPPING
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        STOPPING.set()
        if callable(previous):
            previous(signum, frame)
    signal.signal(signal.SIGTERM, on_term)


def run_gunicorn(bind: str, workers: int = 4, threads: int = 2, timeout: int = 60, live_streams: int = 8) -> int:
    from gunicorn.app.base import BaseApplication

    from engine import Kefu
    from .secret_key import secret_key

    import os
    from flask import Flask
    # live pages: each worker serves at most ``live_streams`` event streams, on threads of their own beside
    # the ``threads`` that answer requests, so open pages never take a worker's request threads
    os.environ["KEFU_LIVE_STREAMS"] = str(live_streams)
    if not os.environ.get("KEFU_SECRET_KEY"):  # one key for every worker, made before they fork
        k = Kefu()
        try:
            os.environ["KEFU_SECRET_KEY"] = secret_key(k, Flask("webapp").instance_path)
        finally:
            k.db.dispose()

    class KefuWeb(BaseApplication):
        def load_config(self):
            # gthread workers keep connections alive (sync workers close each one), even with one thread.
            # Each holds at most twice as many connections as it has threads, and keeps at most ``threads`` of
            # them idle: a worker stops accepting when it has enough to keep its threads busy, and closes a
            # surplus idle connection after its response (the stream threads and their connections come on
            # top and do not change that). Otherwise keep-alive clients that happen to connect
            # to one worker stay with it and queue there while the other workers idle.
            settings = {"bind": [bind], "workers": workers, "threads": threads + live_streams,
                        "timeout": timeout, "worker_class": "gthread",
                        "worker_connections": 2 * threads + live_streams,
                        "post_worker_init": _stop_streams_on_term,
                        "preload_app": False, "graceful_timeout": 30, "keepalive": 5,
                        "accesslog": None, "errorlog": "-", "loglevel": "info",
                        "proc_name": "kefu-web",
                        "control_socket_disable": True}  # gunicorn 27: several servers may run on one machine
            for key, value in settings.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self):
            return wsgi_app()

    KefuWeb().run()
    return 0
