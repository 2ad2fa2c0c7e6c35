"""Login (hashed passwords checked by the engine), the current user with their roles, role checks and the
language switch."""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from .extensions import LANG_COOKIE, LOCALES, login_manager

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = _l("请先登录")
login_manager.login_message_category = "info"


def kefu():
    return current_app.extensions["kefu"]


class WebUser(UserMixin):
    def __init__(self, user: dict):
        self.name = user["name"]
        self.display_name = user.get("display_name") or user["name"]
        self.roles = set(user["roles"])
        self.groups = set(user.get("groups") or ())

    def get_id(self) -> str:
        return self.name

    def has(self, *roles) -> bool:
        return bool(self.roles & set(roles))


@login_manager.user_loader
def load_user(name: str):
    user = kefu().users.get(name)
    return WebUser(user) if user else None


@login_manager.unauthorized_handler
def unauthorized():
    """API calls get 401 JSON; pages go to the login form and come back."""
    if request.path.startswith("/api/"):
        return jsonify({"error": {"code": "unauthorized", "message": _("请先登录")}}), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def me() -> str:
    return current_user.name


def roles_required(*roles):
    """Login, and at least one of ``roles``; anyone else gets 403."""
    def wrap(view):
        @wraps(view)
        @login_required
        def inner(*args, **kwargs):
            if not current_user.has(*roles):
                abort(403, _("您的角色不能使用此功能"))
            return view(*args, **kwargs)
        return inner
    return wrap


class LoginForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[DataRequired(_l("请填写用户名"))])
    password = PasswordField(_l("密码"), validators=[DataRequired(_l("请填写密码"))])


def safe_next(target: str | None, default: str | None = None) -> str:
    """``target`` if it is a path on this site (never an open redirect), else ``default`` or the inbox."""
    if target and not urlsplit(target).netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return default or url_for("desk.inbox")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with user name and password."""
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user = kefu().users.authenticate(form.username.data.strip(), form.password.data)
        if user:
            login_user(WebUser(user))
            return redirect(safe_next(request.args.get("next")))
        error = _("用户名或密码不正确")
    demo = kefu().config.env == "demo"  # the README's demo users; never shown in production
    return render_template("login.html", form=form, error=error, demo=demo), 401 if error else 200


@bp.post("/logout")
@login_required
def logout():
    """Sign out."""
    logout_user()
    flash(_("已退出登录"), "info")
    return redirect(url_for("auth.login"))


@bp.get("/lang/<code>")
def language(code):
    """Switch the interface language (Chinese by default) and go back."""
    if code not in LOCALES:
        abort(404)
    response = redirect(safe_next(request.args.get("next") or request.referrer and urlsplit(request.referrer).path))
    response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response
