"""Read-only overview pages over the engine."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template

bp = Blueprint("overview", __name__)

KIND_LABELS = {"consultation": "客户咨询", "complaint": "客户投诉", "repair": "客户报修"}
STATUS_LABELS = {"active": "处理中", "completed": "已完成", "incident": "异常"}


def kefu():
    return current_app.extensions["kefu"]


@bp.get("/")
def index():
    """Overview: deployed processes, recent tickets and the ready tasks of every queue."""
    k = kefu()
    return render_template("index.html", definitions=k.definitions(), instances=k.instances(limit=30),
                           tasks=k.tasks(), kinds=KIND_LABELS, statuses=STATUS_LABELS)


@bp.get("/instances/<ref>")
def instance(ref):
    """One ticket: status, tasks, timers and its audit trail."""
    return render_template("instance.html", i=kefu().show(ref), kinds=KIND_LABELS, statuses=STATUS_LABELS)


@bp.get("/healthz")
def healthz():
    """Liveness for operators and load balancers."""
    return jsonify({"status": "ok", "definitions": len(kefu().definitions())})
