"""Sign-in security for people: supervisors see who is locked out after failed sign-ins and lift a lockout;
auditors read the same page and the security events (lockouts, unlocks)."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user

from engine import NotFound
from engine.services import security as throttle

from .auth import kefu, me, roles_required

bp = Blueprint("security", __name__)

UNLOCK_ROLES = ("supervisor",)
READ_ROLES = ("supervisor", "auditor")
KINDS = {"user": _l("用户"), "address": _l("地址")}
EVENT_TYPES = {"sign_in_locked": _l("登录锁定"), "sign_in_unlocked": _l("解除锁定"),
               # I3, I4: customer profiles' changes and reveals (subject customer:<id>)
               "customer_created": _l("客户建档"), "customer_updated": _l("客户资料变更"),
               "value_revealed": _l("已查看完整联系方式")}


@bp.get("/security")
@roles_required(*READ_ROLES)
def overview():
    """Current lockouts and the newest security events."""
    return render_template("security.html", lockouts=kefu().security.lockouts(), events=kefu().security.events(50),
                           may_unlock=current_user.has(*UNLOCK_ROLES), kinds=KINDS, event_types=EVENT_TYPES,
                           user_limit=throttle.USER_LIMIT, address_limit=throttle.ADDRESS_LIMIT,
                           minutes=int(throttle.LOCKOUT.total_seconds() // 60))


@bp.post("/security/unlock")
@roles_required(*UNLOCK_ROLES)
def unlock():
    """Lift the lockout of a user name or an address (recorded as a security event)."""
    kind, subject = request.form.get("kind", ""), request.form.get("subject", "").strip()
    if kind not in KINDS or not subject or len(subject) > 150:
        abort(400, _("请选择要解锁的用户或地址"))
    try:
        kefu().security.unlock(**{"name" if kind == "user" else "address": subject}, actor=me(),
                               from_address=request.remote_addr)
    except NotFound:
        flash(_("%(subject)s 没有需要解除的锁定", subject=subject), "info")
    else:
        flash(_("已解锁：%(subject)s", subject=subject), "success")
    return redirect(url_for("security.overview"))
