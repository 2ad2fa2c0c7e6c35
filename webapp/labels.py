"""What people read: labels for the engine's ids, times in Asia/Shanghai, remaining time, masked contact
details and Chinese messages for the engine's (English) validation messages. UI text is Chinese; the
English catalogue in ``translations/`` covers it."""
from __future__ import annotations

import re
from datetime import datetime

from flask import current_app
from flask_babel import get_locale, gettext as _, lazy_gettext as _l
from markupsafe import Markup, escape

from engine.clock import SHANGHAI
from engine.services.masking import mask_phone, mask_text  # the policy's masks (I4), for the templates

KINDS = {"consultation": _l("客户咨询"), "complaint": _l("客户投诉"), "repair": _l("客户报修"),
         "escalation": _l("升级工单"), "qa_sampling": _l("质检抽检"), "care": _l("客户关怀")}
INTAKE_KINDS = ("consultation", "complaint", "repair")
NEW_KIND = {"consultation": _l("新建咨询"), "complaint": _l("新建投诉"), "repair": _l("新建报修")}
STATUSES = {"active": _l("处理中"), "completed": _l("已完成"), "incident": _l("异常")}
ROLES = {"agent": _l("客服专员"), "supervisor": _l("客服主管"), "department": _l("责任部门"),
         "technician": _l("维修人员"), "taskforce": _l("专项处理小组"), "qa": _l("质检"), "auditor": _l("审计"),
         "process_owner": _l("流程负责人"), "integration": _l("系统集成")}
TASK_STATES = {"ready": _l("待处理"), "completed": _l("已完成"), "cancelled": _l("已取消")}
SEVERITIES = {"general": _l("一般"), "urgent": _l("紧急"), "major": _l("重大")}
# SLA cases as the deadline messages name them (T-cap)
SLA_CASES = {"work_order": _l("工单"), "vip": _l("VIP 工单"), "emergency": _l("紧急报修"),
             "emergency_large": _l("大型紧急报修"), "urgent": _l("紧急问题"), "major": _l("重大投诉"),
             "owner_claim": _l("负责人认领")}
# K-who roll-up: the departments a charge names (the transfer forms' departments, the lanes without one); the
# groups of the user pickers (P5)
DEPARTMENTS = {"customer_service": _l("客服部"), "security_ops": _l("安保勤务部"), "tech_defense": _l("技术防范部"),
               "maintenance": _l("工程维修部"), "sales": _l("市场销售部"), "finance": _l("财务部"),
               "hr": _l("人力资源部"), "technician": _l("维修人员"), "taskforce": _l("专项处理小组"),
               "department": _l("责任部门")}
END_REASONS = {"timer": _l("超时自动取消"), "cancelled": _l("已取消")}
EVENTS = {
    "instance_started": _l("工单创建"), "start_passed": _l("流程开始"), "task_created": _l("任务生成"),
    "task_claimed": _l("认领任务"), "task_unclaimed": _l("释放任务"), "task_reassigned": _l("改派任务"),
    "owner_changed": _l("移交负责人"),
    "handover_listed": _l("列入交接班"), "repeat_complaint_detected": _l("识别为重复投诉"),
    "repeat_complaint_linked": _l("关联重复投诉"),
    "owner_claim_lapsed": _l("负责人逾时未认领，退回队列"),
    "task_returned_to_queue": _l("任务退回队列"), "conflict_of_interest_found": _l("投诉涉及负责人，须回避"),
    "task_completed": _l("完成任务"), "task_cancelled": _l("任务取消"), "task_escalated": _l("升级至主管"),
    "gateway_passed": _l("流程分支"), "script_ran": _l("系统处理"), "timer_fired": _l("定时触发"),
    "end_reached": _l("流程结束"), "instance_completed": _l("工单完成"), "incident_raised": _l("出现异常"),
    "incident_retried": _l("异常重试"), "timer_set": _l("设定时限"), "deadline_set": _l("设定时限"),
    "clock_paused": _l("计时暂停"), "clock_resumed": _l("计时恢复"), "clock_started": _l("计时开始"),
    "value_revealed": _l("已查看完整联系方式"), "customer_created": _l("客户建档"),
    "customer_updated": _l("客户资料变更"),
    "clock_stopped": _l("计时结束"), "deadline_extended": _l("主管延长时限"),
    "external_task_created": _l("外部任务生成"), "external_task_completed": _l("外部任务完成"),
    "external_task_failed": _l("外部任务失败"), "external_task_cancelled": _l("外部任务取消"),
    "message_received": _l("收到消息"), "instance_migrated": _l("已迁移到新版本"),
    # care (issue 21, Q1-Q3)
    "customer_revisited": _l("定期回访已记入客户资料"), "greeting_sent": _l("问候已发送"),
    "greeting_withheld": _l("客户未同意，问候未发送"), "repeat_complaint_opened": _l("客户仍不满意，再次投诉"),
    "note_added": _l("内部备注"), "contact_logged": _l("联系客户"), "attachment_added": _l("添加附件"),
    "attachment_superseded": _l("附件被新版本替代"),
}
# X2: what a handover lists, and what became of each line on acceptance
HANDOVER_KINDS = {"case": _l("工单"), "task": _l("待办任务"), "promise": _l("对客户承诺的时限"), "escalation": _l("升级事项")}
HANDOVER_OUTCOMES = {"taken": _l("已接手"), "skipped": _l("未移交"), "left_out": _l("未列入（漏交）"),
                     "noted": _l("已告知")}
HANDOVER_STATES = {"open": _l("待接班"), "accepted": _l("已接班")}
CHANNELS = {"phone": _l("电话"), "sms": _l("短信"), "visit": _l("上门")}
# The case timeline shows what people did; the engine's own steps stay in the full audit trail.
ENGINE_EVENTS = {"start_passed", "gateway_passed", "script_ran", "end_reached", "task_created", "timer_set",
                 "deadline_set", "clock_started", "clock_stopped", "clock_paused", "clock_resumed",
                 "external_task_created", "timer_fired"}
VIEWS = {"mine": _l("我的工单"), "overdue": _l("超时"), "vip": _l("VIP"), "today": _l("今日新建")}
DEADLINES = {"response": _l("响应时限"), "finish": _l("完成时限")}
# Column headers of the CSV files the pages offer, in the reader's language (the CLI keeps the column names;
# ``?columns=names`` gives them on the web too, for scripts)
CSV_HEADERS = {
    "instance_id": _l("实例编号"), "ticket_no": _l("工单号"), "kind": _l("类型"), "status": _l("状态"),
    "severity": _l("严重程度"), "vip": _l("重要客户"), "customer": _l("客户"), "customer_id": _l("客户编号"),
    "created_by": _l("创建人"), "created_at": _l("创建时间"), "completed_at": _l("完成时间"),
    "response_due": _l("响应截止"), "finish_due": _l("完成截止"), "finish_overdue": _l("已超时"),
    "summary": _l("摘要"), "seq": _l("序号"), "at": _l("时间"), "type": _l("事件"), "actor": _l("操作人"),
    "bpmn_id": _l("环节编号"), "task_name": _l("环节名称"), "rules": _l("规则"), "data": _l("数据"),
    "hash": _l("哈希"), "month": _l("月份"), "scope": _l("范围"), "kpi": _l("指标"), "name": _l("名称"),
    "numerator": _l("分子"), "denominator": _l("分母"), "value": _l("数值"), "unit": _l("单位"),
    "target": _l("目标值"), "score": _l("得分"), "agent": _l("责任人"), "counted": _l("是否计入"),
    "outcome": _l("结果"), "reason": _l("原因"), "charged": _l("计入"), "charged_why": _l("计入依据"),
}


def csv_headers() -> dict | None:
    """The CSV header labels for this request: the reader's language, or None (column names) when the
    request asks ``?columns=names``."""
    from flask import request
    if request.args.get("columns") == "names":
        return None
    return {k: str(v) for k, v in CSV_HEADERS.items()}  # now: a streamed file is written after the request
SYSTEM_EVENTS = {"start_passed", "gateway_passed", "script_ran", "end_reached", "task_created", "timer_set",
                 "clock_started", "external_task_created"}
NEAR_DUE_SECONDS = 4 * 3600
translate = _  # for text not written here (from the diagrams): not picked up by extraction

# The engine's validation messages (engine/bpmn/forms.py, customer checks) → Chinese for the person at the form.
_FIELD_MESSAGES = [
    (r"required", lambda m: _("必填")),
    (r"unknown field", lambda m: _("表单中没有这个字段")),
    (r"field is read-only", lambda m: _("只读字段，不能修改")),
    (r"must be text", lambda m: _("必须是文本")),
    (r"at most (\d+) characters", lambda m: _("最多 %(n)s 个字符", n=m[1])),
    (r"at least (\d+) characters", lambda m: _("至少 %(n)s 个字符", n=m[1])),
    (r"must be a whole number", lambda m: _("必须是整数")),
    (r"must be at least (\S+)", lambda m: _("不能小于 %(n)s", n=m[1])),
    (r"must be at most (\S+)", lambda m: _("不能大于 %(n)s", n=m[1])),
    (r"must be true or false", lambda m: _("请选择“是”或“否”")),
    (r"must be one of: .*", lambda m: _("请从选项中选择")),
    (r"must be a date \(YYYY-MM-DD\)", lambda m: _("请填写日期（年-月-日）")),
    (r"must not be in the past", lambda m: _("不能早于今天")),
    (r"must not be in the future", lambda m: _("不能晚于当前时间")),
    (r"must not be before the ticket was opened \((.+)\)", lambda m: _("不能早于工单创建时间（%(when)s）", when=m[1])),
    (r"must be a date and time.*", lambda m: _("请填写日期和时间")),
    (r"must be in the future", lambda m: _("必须晚于当前时间")),
    (r"must be user names", lambda m: _("请选择用户")),
    (r"must name exactly one user", lambda m: _("请选择一位用户")),
    (r"no such user: (.+)", lambda m: _("没有用户 %(name)s", name=m[1])),
    (r"user (\S+) does not have the role (\S+)",
     lambda m: _("用户 %(name)s 不具备“%(role)s”角色", name=m[1],
                 role="/".join(str(ROLES.get(r, r)) for r in m[2].split("|")))),
    (r"user (\S+) is named in the complaint \(P12\)",
     lambda m: _("用户 %(name)s 是本投诉涉及的人员，须回避（P12）", name=m[1])),
    (r"must be no later than (\S+ \S+) \(the (\S+) target: (\S+) (h|min) from now\).*",
     lambda m: _("不能晚于 %(when)s（%(case)s时限：自现在起 %(n)s %(unit)s）；如需延长，请升级至客服主管",
                 when=m[1], case=SLA_CASES.get(m[2], m[2]), n=m[3], unit=_("小时") if m[4] == "h" else _("分钟"))),
    (r"required: the time is later than the (\S+) target \((\S+) (h|min), (\S+ \S+)\); give the reason",
     lambda m: _("时间晚于%(case)s时限（%(n)s %(unit)s，%(when)s），请填写原因", case=SLA_CASES.get(m[1], m[1]),
                 n=m[2], unit=_("小时") if m[3] == "h" else _("分钟"), when=m[4])),
    (r"a customer needs a name", lambda m: _("客户名称必填")),
    (r"vip must be true or false", lambda m: _("请选择“是”或“否”")),
    (r"customer \S+ must be text", lambda m: _("必须是文本")),
    (r"customer \S+ is longer than (\d+) characters", lambda m: _("最多 %(n)s 个字符", n=m[1])),
]


def field_message(message: str) -> str:
    """The engine's message for one field, in the reader's language."""
    for pattern, render in _FIELD_MESSAGES:
        m = re.fullmatch(pattern, message or "")
        if m:
            return render(m)
    return message


def to_local(value) -> datetime | None:
    if not value:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=SHANGHAI)
    return when.astimezone(SHANGHAI)


def when(value) -> str:
    """An ISO time as people read it, in Asia/Shanghai: 2026-11-23 08:52."""
    local = to_local(value)
    return local.strftime("%Y-%m-%d %H:%M") if local else "—"


def iso_time(value) -> str:
    """An ISO time with its offset, for scripts (live.js counts down to it)."""
    local = to_local(value)
    return local.isoformat() if local else ""


def local_input(value) -> str:
    """An ISO time as an ``<input type=datetime-local>`` value (Asia/Shanghai)."""
    local = to_local(value)
    return local.strftime("%Y-%m-%dT%H:%M") if local else ""


def duration(seconds: float) -> str:
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return _("%(d)d天%(h)d小时", d=days, h=hours)
    if hours:
        return _("%(h)d小时%(m)d分", h=hours, m=mins)
    return _("%(m)d分钟", m=mins)


def due_state(value) -> dict | None:
    """How urgent a due time is now (the engine's clock): css class and the remaining time in words."""
    due = to_local(value)
    if due is None:
        return None
    left = (due - current_app.extensions["kefu"].now()).total_seconds()
    if left < 0:
        return {"css": "overdue", "text": _("已超时 %(t)s", t=duration(left)), "seconds": left}
    css = "near" if left <= NEAR_DUE_SECONDS else "ok"
    return {"css": css, "text": _("剩余 %(t)s", t=duration(left)), "seconds": left}


def clock_words(c: dict) -> dict:
    """One clock of a ticket in words (T-stop): running ones count down, stopped ones say how they ended."""
    due = to_local(c.get("due_at"))
    if c["state"] == "running":
        return due_state(c["due_at"]) or {"css": "ok", "text": ""}
    if c["state"] == "paused":
        return {"css": "paused", "text": _("已暂停")}
    stopped = to_local(c.get("stopped_at"))
    if c["state"] == "met":
        return {"css": "met", "text": _("按时完成")}
    over = (stopped - due).total_seconds() if stopped and due else 0
    if c.get("ended_by") == "timer":
        return {"css": "missed", "text": _("超时未完成")}
    if over >= 60:
        return {"css": "missed", "text": _("超时 %(t)s 完成", t=duration(over))}
    return {"css": "missed", "text": _("超时未完成")}




def lang() -> str:
    return str(get_locale())


def in_english() -> bool:
    return lang() == "en"


def task_title(task: dict) -> str:
    """The task's name in the reader's language (the diagram carries both)."""
    if in_english() and task.get("name_en"):
        return task["name_en"]
    name = task.get("name") or task.get("task_name") or task.get("bpmn_id") or ""
    return step_text(name) if in_english() else name


def step_text(text: str | None) -> str:
    """A line that keeps only a task's (or a clock's) Chinese name — a handover's task, "组建专项小组时限 · 组建专项
    处理小组" — in the reader's language: each part by the deployed diagrams' English names, a shift by its own."""
    if not text or not in_english():
        return text or ""
    names = names_en()
    return " · ".join(names.get(p) or str(SHIFTS.get(p, p)) for p in text.split(" · "))


def names_en() -> dict[str, str]:
    """Chinese → English names of the deployed diagrams' user tasks and of the clocks (read once per app)."""
    names = current_app.extensions.get("kefu_names_en")
    if names is None:
        names = current_app.extensions["kefu_names_en"] = current_app.extensions["kefu"].definitions.names_en()
    return names


PUNCT_EN = {"：": ": ", "；": "; ", "（": " (", "）": ")", "、": ", "}


def punct(mark: str) -> str:
    """Chinese punctuation between a label and its value, or the English kind on the English pages."""
    return PUNCT_EN.get(mark, mark) if in_english() else mark


SHIFTS = {"白班": _l("白班"), "夜班": _l("夜班")}  # the default shifts (engine.services.shifts); others as entered


def field_label(field: dict) -> str:
    if in_english() and field.get("label_en"):
        return field["label_en"]
    return field.get("label") or field.get("id")


def diagram_text(text: str | None) -> str:
    """A Chinese name from a diagram (an option, a timer) in the reader's language; the catalogue takes
    them from the diagrams (``webapp/i18n.py``)."""
    return translate(text) if text and in_english() else (text or "")


def option_label(option: dict) -> str:
    return diagram_text(option["label"])


def user_choices(users: dict, role: str | None) -> list[tuple[str, list[dict]]]:
    """The users a user picker offers (``users``: active users by role; ``role``: the field's role or roles,
    comma-separated), grouped by department (the user's first group, else the role) for the picker (P5)."""
    roles = [r.strip() for r in (role or "").split(",") if r.strip()] or sorted(users)
    seen, groups = set(), {}
    for r in roles:
        for u in users.get(r, []):
            if u["name"] in seen:
                continue
            seen.add(u["name"])
            key = (u.get("groups") or [r])[0]
            groups.setdefault(str(DEPARTMENTS.get(key, ROLES.get(key, key))), []).append(u)
    return list(groups.items())


def vip_badge(vip) -> Markup:
    return Markup('<span class="vip" title="%s">VIP</span>') % escape(_("重要客户")) if vip else Markup("")


def register_template_helpers(app) -> None:
    app.jinja_env.filters.update(when=when, local_input=local_input, iso_time=iso_time, mask_phone=mask_phone,
                                 mask_text=mask_text, clock_words=clock_words)
    app.jinja_env.globals.update(
        lang=lang, diagram_text=diagram_text, due_state=due_state, task_title=task_title, step_text=step_text, names_en=names_en, punct=punct, field_label=field_label, option_label=option_label,
        vip_badge=vip_badge, user_choices=user_choices, kinds=KINDS, new_kind=NEW_KIND, statuses=STATUSES, role_labels=ROLES,
        task_states=TASK_STATES, severities=SEVERITIES, end_reasons=END_REASONS, event_labels=EVENTS, deadline_labels=DEADLINES,
        system_events=SYSTEM_EVENTS)
