"""Sign-in (throttled by the engine per user and per address), sessions that end at logout (the session
carries the user's session version), changing one's password, the current user with their roles, role checks
and the language switch."""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, session,
                   url_for)
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from engine import InvalidInput, NotAllowed, SignInFailed, SignInLocked

from .extensions import LANG_COOKIE, LOCALES, login_manager

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = _l("请先登录")
login_manager.login_message_category = "info"
SESSION_VERSION = "kefu_sv"  # the user's session version when this session signed in


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
    """The signed-in user, while the session's version is the user's: logout, or a new password, moved it on
    and every cookie issued before opens nothing."""
    user = kefu().users.get(name)
    if not user or session.get(SESSION_VERSION) != user["session_version"]:
        return None
    return WebUser(user)


def start_session(user: dict) -> None:
    session.clear()  # nothing from before the sign-in carries over (session fixation)
    login_user(WebUser(user))
    session[SESSION_VERSION] = user["session_version"]


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
    error, status = None, 200
    if form.validate_on_submit():
        try:
            user = kefu().security.sign_in(form.username.data.strip(), form.password.data, request.remote_addr)
        except SignInLocked:
            error, status = _("登录失败次数过多，已暂时锁定。请 15 分钟后再试，或请管理员解锁。"), 429
        except SignInFailed:
            error, status = _("用户名或密码不正确"), 401
        else:
            start_session(user)
            return redirect(safe_next(request.args.get("next")))
    demo = kefu().config.env == "demo"  # the README's demo users; never shown in production
    return render_template("login.html", form=form, error=error, demo=demo), status


@bp.post("/logout")
@login_required
def logout():
    """Sign out: this session and every other of the user end (their session version moves on)."""
    kefu().users.end_sessions(current_user.name)
    logout_user()
    session.clear()
    flash(_("已退出登录"), "info")
    response = redirect(url_for("auth.login"))
    # The browser forgets what this site stored (intake drafts with customers' names and phones), also where
    # the page's own script did not run; cookies stay (the language choice).
    response.headers["Clear-Site-Data"] = '"storage"'
    return response


class PasswordForm(FlaskForm):
    current_password = PasswordField(_l("当前密码"), validators=[DataRequired(_l("请填写当前密码"))])
    new_password = PasswordField(_l("新密码"), validators=[DataRequired(_l("请填写新密码"))])
    confirm_password = PasswordField(_l("确认新密码"), validators=[DataRequired(_l("请再次填写新密码"))])


PASSWORD_MESSAGES = {  # the engine's policy messages (engine.services.passwords) in the reader's language
    "too short": _l("密码太短：至少 8 个字符"), "too long": _l("密码太长：最多 128 个字符"),
    "too simple": _l("密码太简单：至少使用三个不同的字符"), "most common": _l("这是最常见的密码之一，请换一个"),
    "user name": _l("密码不能包含用户名"), "current password": _l("当前密码不正确"),
}


def password_message(message: str) -> str:
    return str(next((text for key, text in PASSWORD_MESSAGES.items() if key in message), message))


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    """Change one's own password (held to the policy); one's other sessions end, this one goes on."""
    form = PasswordForm()
    errors: dict[str, str] = {}
    if form.validate_on_submit():
        if form.new_password.data != form.confirm_password.data:
            errors["confirm_password"] = _("两次填写的新密码不一致")
        else:
            try:
                user = kefu().users.set_password(current_user.name, form.new_password.data,
                                                 current=form.current_password.data)
            except (InvalidInput, NotAllowed) as exc:
                field = (exc.details.get("fields") or ["new_password"])[0]
                errors["current_password" if field == "current_password" else "new_password"] = \
                    password_message(exc.message)
            else:
                start_session(user)
                flash(_("密码已修改；在其他地方的登录已退出"), "success")
                return redirect(url_for("desk.inbox"))
    for name, field in (("current_password", form.current_password), ("new_password", form.new_password),
                        ("confirm_password", form.confirm_password)):
        if field.errors and name not in errors:
            errors[name] = str(field.errors[0])
    return render_template("password.html", form=form, errors=errors), 422 if errors else 200


@bp.get("/lang/<code>")
def language(code):
    """Switch the interface language (Chinese by default) and go back."""
    if code not in LOCALES:
        abort(404)
    response = redirect(safe_next(request.args.get("next") or request.referrer and urlsplit(request.referrer).path))
    response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response
