"""Kefu's web layer: a Flask app over the engine's public surface (``engine.Kefu``).

It never imports SpiffWorkflow; everything it knows about processes comes from the engine.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from engine import Kefu, KefuError

from . import hardening
from .extensions import babel, csrf, login_manager, selected_locale
from .secret_key import secret_key

log = logging.getLogger("kefu.web")


def create_app(config: dict | None = None, kefu: Kefu | None = None) -> Flask:
    """Build the app; ``config`` overrides Flask settings, ``kefu`` injects an engine (tests)."""
    app = Flask(__name__)
    app.extensions["kefu"] = kefu = kefu or Kefu()
    app.config.update(BABEL_DEFAULT_LOCALE="zh", BABEL_DEFAULT_TIMEZONE="Asia/Shanghai",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      WTF_CSRF_TIME_LIMIT=None)  # an agent's form may stay open all shift
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = secret_key(kefu, app.instance_path)

    hardening.init_app(app)  # body limit, bounded JSON, security headers, HTTPS cookies
    csrf.init_app(app)
    babel.init_app(app, locale_selector=selected_locale, timezone_selector=lambda: "Asia/Shanghai")
    login_manager.init_app(app)

    from . import auth, casefile, desk, records, timekeeping, views
    from .labels import register_template_helpers
    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(desk.bp)
    app.register_blueprint(records.bp)
    casefile.register(app)
    app.register_blueprint(timekeeping.bp)
    from . import kpi as kpi_pages  # kpi (issue 7): dashboard, lineage, monthly report, CSV
    app.register_blueprint(kpi_pages.bp)
    register_template_helpers(app)
    from . import api, api_external  # noqa: F401 - the JSON API (issue 8) and its Camunda-shaped routes
    app.register_blueprint(api.bp)
    from . import audit  # audit (issue 6): search, trace, exports (read-only)
    app.register_blueprint(audit.bp)
    # designer: definitions page, modeler, check and deploy
    from . import designer
    app.register_blueprint(designer.bp)
    from . import security  # sign-in lockouts and security events
    app.register_blueprint(security.bp)
    from . import handover  # X2: shift handover pages
    app.register_blueprint(handover.bp)
    from . import care  # relationship care (Q1-Q4) and the period summaries
    app.register_blueprint(care.bp)
    from . import live, notify  # live pages and notifications (issue 20)
    app.register_blueprint(live.bp)
    app.register_blueprint(notify.bp)
    app.jinja_env.globals["live_config"] = live.live_config

    def wants_json() -> bool:
        return request.path.startswith("/api/") or (
            request.accept_mimetypes.best == "application/json")

    @app.before_request
    def refuse_nul():
        """No text needs a NUL character and PostgreSQL cannot store one: refuse it in the path, the query
        or a posted form before any view sees it."""
        values = [request.path, *(k + v for k, v in request.args.items(multi=True))]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data") and \
                not request.path.startswith("/api/"):  # the API reads JSON only and checks it itself
            values += [k + v for k, v in request.form.items(multi=True)]
        if any("\x00" in v for v in values):
            message = "the request contains a NUL character (\\0), which no field accepts"
            if wants_json():
                return jsonify({"error": {"code": "invalid_input", "message": message}}), 400
            return render_template("error.html", status=400, code="invalid_input", message=message), 400
        return None

    @app.errorhandler(KefuError)
    def kefu_error(exc: KefuError):
        """Answer engine errors with their stable code: JSON for the API, a page for people."""
        status = {"not_found": 404, "not_allowed": 403, "conflict": 409}.get(exc.code, 400)
        if wants_json():
            return jsonify({"error": exc.to_dict()}), status
        return render_template("error.html", status=status, code=exc.code, message=exc.message), status

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        """A form without a valid CSRF token changes nothing."""
        if wants_json():
            return jsonify({"error": {"code": "csrf", "message": exc.description}}), 400
        return render_template("error.html", status=400, code="csrf", message=exc.description), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        """Every HTTP error — refused, missing, wrong method, too large, and the 500 of a failed view (logged
        before this runs) — as the API's JSON error under /api/v1, else JSON or a page in the user's language
        rather than the framework's English page."""
        status = exc.code or 500
        if request.path == api.PREFIX or request.path.startswith(api.PREFIX + "/"):
            return api.from_http(exc)
        if wants_json():
            response = jsonify({"error": {"code": exc.name.lower().replace(" ", "_"), "message": exc.description}})
        else:
            # the framework's own English description says nothing the page does not say in the reader's
            # language already; a description a view gave (abort(400, "…")) is shown
            message = "" if exc.description == type(exc).description else exc.description
            response = app.make_response(render_template("error.html", status=status, code=str(status),
                                                         message=message))
        response.status_code = status
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    return app


def start_scheduler(kefu: Kefu, sweep_seconds: float = 1.0):
    """Fire due timers in the background (the embedded default): see ``engine.services.scheduler``."""
    from engine.services.scheduler import TimerScheduler
    return TimerScheduler(kefu, sweep_seconds).start()


def serve(host: str = "127.0.0.1", port: int = 5000, demo: bool = True) -> int:
    """Run the whole service: schema, deployed diagrams, demo data, scheduler and web UI."""
    from engine.bpmn import workers
    from engine.logs import configure_logging
    from engine.services.demo import seed_demo
    from waitress import serve as waitress_serve

    configure_logging()
    kefu = Kefu()
    kefu.init()
    for d in kefu.definitions.deploy():
        log.info("%s %s v%s", d["status"], d["process_id"], d["version"])
    if demo:
        seed_demo(kefu)
    for y in kefu.time.calendar_status()["years"]:
        if y["missing"]:
            log.warning("no official working-day calendar for %s: Monday-Friday is used until the process "
                        "owner enters it ('kefu calendar set')", y["year"])
    scheduler = start_scheduler(kefu)
    workers.warm()  # the sandbox's worker process, started before the first request needs it
    log.info("Kefu on http://%s:%d/ (database %s, env %s)", host, port, kefu.config.database_url,
             kefu.config.env)
    try:
        # live pages: each open event stream holds a thread, so waitress gets that many on top of its 8
        from .live import stream_limit
        waitress_serve(create_app(kefu=kefu), host=host, port=port, threads=8 + stream_limit())
    finally:
        scheduler.shutdown(wait=False)
    return 0
