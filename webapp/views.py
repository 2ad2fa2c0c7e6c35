"""Overview pages for those who oversee every ticket, and the health check."""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from .access import WIDE_ROLES
from .auth import kefu, roles_required

bp = Blueprint("overview", __name__)


@bp.get("/overview")
@roles_required(*WIDE_ROLES)
def index():
    """Overview: deployed processes, recent tickets and the ready tasks of every queue."""
    k = kefu()
    return render_template("index.html", definitions=k.definitions.all(), instances=k.instances.recent(limit=30),
                           tasks=k.tasks.ready())


@bp.get("/healthz")
def healthz():
    """Liveness for operators and load balancers."""
    return jsonify({"status": "ok", "definitions": len(kefu().definitions.all())})
