"""The Flask extensions (CSRF, Babel, login) and the interface's language settings, created unbound here and
attached to the app by ``create_app``."""
from __future__ import annotations

from flask import request
from flask_babel import Babel
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

LOCALES = ("zh", "en")
LANG_COOKIE = "kefu_lang"
csrf = CSRFProtect()
babel = Babel()
login_manager = LoginManager()


def selected_locale() -> str:
    """The language chosen with the switch (the ``kefu_lang`` cookie), else Chinese."""
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LOCALES else "zh"
