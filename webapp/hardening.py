"""What every request and response passes through: the body limit, bounded JSON parsing, the security headers
(a Content-Security-Policy the pages, the diagram viewer and the modeler work under) and ``Secure`` cookies
when the service is reached over HTTPS."""
from __future__ import annotations

import os

from flask import Flask, abort, has_request_context, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from engine import InvalidInput
from engine.limits import load_json

MAX_BODY = 1024 * 1024  # bytes a web form or JSON request may carry; routes that take more raise their own
# Scripts and styles come from this site only (no inline script runs: data for scripts travels in
# <script type="application/json"> blocks). Styles allow inline attributes: the diagram viewer and the modeler
# set them as they draw. Nothing may frame the pages (clickjacking), and forms post only here.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
BODY_LIMITS: dict[str, int] = {}  # endpoint or blueprint → its own limit (diagrams, API bodies, attachments)
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"}


class BoundedJSON(DefaultJSONProvider):
    """Flask's JSON, except that parsing refuses nesting deeper than ``engine.limits.MAX_JSON_DEPTH`` as bad
    JSON (``get_json`` answers 400, or None when silent) instead of letting a RecursionError through."""

    def loads(self, s, **kwargs):
        try:
            return load_json(s)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


class SessionCookies(SecureCookieSessionInterface):
    """The session cookie is ``Secure`` with KEFU_HTTPS, and whenever the request came over HTTPS (as a trusted
    proxy reports it): it is written after the response's other cookies are marked."""

    def get_cookie_secure(self, app) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def https_enabled() -> bool:
    """``KEFU_HTTPS=1``: the service is reached over HTTPS only (directly or through a proxy)."""
    return os.environ.get("KEFU_HTTPS", "").strip().lower() in ("1", "true", "yes", "on")


def trusted_proxies() -> int:
    """``KEFU_TRUSTED_PROXIES=N``: the service runs behind N reverse proxies whose X-Forwarded-For and
    X-Forwarded-Proto headers are believed (the client's address for sign-in throttling; HTTPS for cookies).
    Without it those headers are ignored: anyone could send them."""
    try:
        return max(0, int(os.environ.get("KEFU_TRUSTED_PROXIES", "0") or 0))
    except ValueError:
        return 0


def init_app(app: Flask) -> None:
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json = BoundedJSON(app)
    app.session_interface = SessionCookies()
    if https_enabled():
        app.config["SESSION_COOKIE_SECURE"] = True
    proxies = trusted_proxies()
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    @app.before_request
    def refuse_large_bodies():
        """Refuse a body larger than the route's limit from its declared length, before anything reads it (a
        body sent without a length is cut off at the limit as it is read)."""
        limit = request.max_content_length = BODY_LIMITS.get(request.endpoint or "", BODY_LIMITS.get(
            request.blueprint or "", app.config["MAX_CONTENT_LENGTH"]))
        if limit is not None and request.content_length is not None and request.content_length > limit:
            abort(413, f"the request body is larger than {limit} bytes")

    @app.after_request
    def security_headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure or app.config.get("SESSION_COOKIE_SECURE"):  # HTTPS: KEFU_HTTPS, or a trusted proxy
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            _secure_cookies(response)
        return response


def _secure_cookies(response) -> None:
    """Mark every cookie of a response served over HTTPS ``Secure`` (the session, the language choice)."""
    cookies = response.headers.getlist("Set-Cookie")
    if not cookies:
        return
    response.headers.remove("Set-Cookie")
    for cookie in cookies:
        if "; secure" not in cookie.lower():
            cookie += "; Secure"
        response.headers.add("Set-Cookie", cookie)
