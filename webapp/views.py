"""Read-only overview pages over the engine."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template

bp = Blueprint("overview", __name__)

KIND_LABELS = {"consultation": "客户咨询", "complaint": "客户投诉", "repair": "客户报修"}
STATUS_LABELS = {"active": "处理中", "completed": "已完成", "incident": "异常"}
ROLE_LABELS = {"agent": "客服专员", "supervisor": "客服主管", "department": "责任部门", "technician": "维修人员",
               "taskforce": "专项处理小组", "qa": "质检", "auditor": "审计", "process_owner": "流程负责人"}
TASK_STATES = {"ready": "待处理", "completed": "已完成", "cancelled": "已取消"}


def kefu():
    return current_app.extensions["kefu"]


@bp.get("/")
def index():
    """Overview: deployed processes, recent tickets and the ready tasks of every queue."""
    k = kefu()
    return render_template("index.html", definitions=k.definitions(), instances=k.instances(limit=30),
                           tasks=k.tasks(), kinds=KIND_LABELS, statuses=STATUS_LABELS, roles=ROLE_LABELS)


@bp.get("/instances/<ref>")
def instance(ref):
    """One ticket: status, tasks, timers and its audit trail."""
    return render_template("instance.html", i=kefu().show(ref), kinds=KIND_LABELS, statuses=STATUS_LABELS,
                           roles=ROLE_LABELS, task_states=TASK_STATES)


@bp.get("/healthz")
def healthz():
    """Liveness for operators and load balancers."""
    return jsonify({"status": "ok", "definitions": len(kefu().definitions())})
