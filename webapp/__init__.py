"""Kefu's web layer: a Flask app over the engine's public surface (``engine.Kefu``).

It never imports SpiffWorkflow; everything it knows about processes comes from the engine.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify

from engine import Kefu, KefuError

log = logging.getLogger("kefu.web")


def create_app(config: dict | None = None, kefu: Kefu | None = None) -> Flask:
    """Build the app; ``config`` overrides Flask settings, ``kefu`` injects an engine (tests)."""
    app = Flask(__name__)
    app.config.update(config or {})
    app.extensions["kefu"] = kefu or Kefu()

    from .views import bp
    app.register_blueprint(bp)

    @app.template_filter("when")
    def when(value):
        """An ISO time (Asia/Shanghai) as people read it: 2026-11-23 08:52."""
        return value[:16].replace("T", " ") if value else "—"

    @app.errorhandler(KefuError)
    def kefu_error(exc: KefuError):
        """Answer engine errors as JSON with their stable code."""
        status = {"not_found": 404, "not_allowed": 403, "conflict": 409}.get(exc.code, 400)
        return jsonify({"error": exc.to_dict()}), status

    return app


def start_scheduler(kefu: Kefu, sweep_seconds: float = 5.0):
    """Fire due timers in the background (the embedded default): see ``engine.scheduler``."""
    from engine.scheduler import TimerScheduler
    return TimerScheduler(kefu, sweep_seconds).start()


def serve(host: str = "127.0.0.1", port: int = 5000, demo: bool = True) -> int:
    """Run the whole service: schema, deployed diagrams, demo data, scheduler and web UI."""
    from engine.cli import seed_demo
    from waitress import serve as waitress_serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    kefu = Kefu()
    kefu.init()
    for d in kefu.deploy():
        log.info("%s %s v%s", d["status"], d["process_id"], d["version"])
    if demo:
        seed_demo(kefu)
    for y in kefu.calendar_status()["years"]:
        if y["missing"]:
            log.warning("no official working-day calendar for %s: Monday-Friday is used until the process "
                        "owner enters it ('kefu calendar set')", y["year"])
    scheduler = start_scheduler(kefu)
    log.info("Kefu on http://%s:%d/ (database %s, env %s)", host, port, kefu.config.database_url,
             kefu.config.env)
    try:
        waitress_serve(create_app(kefu=kefu), host=host, port=port, threads=8)
    finally:
        scheduler.shutdown(wait=False)
    return 0
