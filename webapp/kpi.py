"""The supervisor's KPI dashboard (K1–K8, K-cycle, K-score, K-who, QA): figures with target, score and colour, trend
charts per month and per person, the tickets behind every figure with who was charged and why, the printable
monthly assessment with the KPI table it was scored by, and CSV."""
from __future__ import annotations

import csv
import io
import re

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext as _, lazy_gettext as _l
from flask_login import current_user

from engine import KefuError
from engine import kpi

from .kpi_charts import bars as bar_chart, status as figure_status, trend as trend_chart
from .auth import kefu, me, roles_required
from .labels import DEADLINES, DEPARTMENTS, csv_headers

bp = Blueprint("kpi", __name__)

READERS = tuple(sorted(kpi.READ_ROLES))
LABELS = {"K1": _l("咨询响应及时率"), "K2": _l("投诉处理率"), "K3": _l("客户满意度"), "K4": _l("信息录入准确率"),
          "K5": _l("工单处理及时率"), "K6": _l("回访率"), "K7": _l("派工准确率"), "K8": _l("30分钟响应率")}
TREND_MONTHS = 6
OWNER_NOTES = {"owner_rule": _l("本指标考核首问责任人"), "no_records": _l("没有时限记录"),
               "no_clock": _l("没有本指标的时限记录"), "no_missed_clock": _l("没有超时的时限记录")}

# The engine words each lineage reason in English (CLI, JSON, CSV); the pages say it in the reader's language.
REASONS = [(re.compile(p), msg) for p, msg in (
    (r"answered on the spot \(C2\)", _l("当场答复（C2）")),
    (r"department deadline overran \((?P<t>\w+)\), answer re-dispatched \(T1\)",
     _l("部门超时（%(t)s），已改派后答复（T1）")),
    (r"answer relayed after the promised reply time \(C3\)", _l("答复晚于承诺回复时间（C3）")),
    (r"answer relayed within the promised reply time \(C3, C5\)", _l("在承诺回复时间内答复客户（C3、C5）")),
    (r"not answered; department deadline overran \((?P<t>\w+)\) \(T1\)", _l("未答复；部门超时（%(t)s）（T1）")),
    (r"not answered by the promised reply time \(C3\)", _l("承诺回复时间已过仍未答复（C3）")),
    (r"still open at month end, promised reply time not yet reached", _l("月底仍在处理，尚未到承诺回复时间")),
    (r"handled, customer satisfied \(P8, P11\)", _l("已处理，客户满意（P8、P11）")),
    (r"handled, customer satisfied after (?P<n>\d+) rounds \(P8: customer sent it back\) \(P8, P11\)",
     _l("客户退回后经 %(n)s 轮处理，客户满意（P8、P11）")),
    (r"not handled by its deadline (?P<t>[\d\- :]+) \(P11\)", _l("处理时限 %(t)s 已过仍未处理完毕（P11）")),
    (r"not handled by its deadline (?P<t>[\d\- :]+) after (?P<n>\d+) rounds \(P8: customer sent it back\) \(P11\)",
     _l("经 %(n)s 轮处理，处理时限 %(t)s 已过仍未处理完毕（P11）")),
    (r"still open at month end, handling deadline not yet reached", _l("月底仍在处理，尚未到处理时限")),
    (r"no revisit score recorded by month end", _l("月底前没有回访评分")),
    (r"revisit score (?P<n>[\d.]+) \(P9/R6\)", _l("回访评分 %(n)s（P9/R6）")),
    (r"revisit score (?P<n>[\d.]+) \(Q1\)", _l("定期回访评分 %(n)s（Q1）")),
    (r"overdue \((?P<t>\w+) fired\) \(T1\)", _l("超时（%(t)s 已触发）（T1）")),
    (r"overdue \((?P<t>\w+) fired\), re-dispatched (?P<n>\d+)× \(T1\)", _l("超时（%(t)s 已触发），改派 %(n)s 次（T1）")),
    (r"handled within its deadline", _l("在时限内处理完毕")),
    (r"handled within its deadline \(clock paused while waiting for the customer, R4\)",
     _l("在时限内处理完毕（等待客户配合期间暂停计时，R4）")),
    (r"deadline passed, not handled \(T1\)", _l("时限已过仍未处理完毕（T1）")),
    (r"still open at month end, deadline not yet reached", _l("月底仍在处理，尚未到时限")),
    (r"revisited \(P9/R6\)", _l("已回访（P9/R6）")),
    (r"revisit window closed without a revisit \(P9/R6\)", _l("回访期限已过未回访（P9/R6）")),
    (r"revisit window still open at month end", _l("月底回访期限未到")),
    (r"not closed, or revisit not yet due at month end", _l("月底未结单或尚未到回访时间")),
    (r"major complaint handed to the supervisor's task force \(P5\)", _l("重大投诉交主管专项小组（P5）")),
    (r"not yet dispatched", _l("尚未派单")),
    (r"not accepted by (?P<a>.+), re-dispatched to (?P<b>.+)", _l("%(a)s 未接单，改派给 %(b)s")),
    (r"(?P<a>.+) accepted, re-dispatched to (?P<b>.+) when overdue \(K5, not routing\)",
     _l("%(a)s 已接单，超时后改派给 %(b)s（计入 K5，不算派错）")),
    (r"routed to (?P<a>.+), accepted", _l("派给 %(a)s，已接单")),
    (r"no response clock \(task force, or not dispatched\)", _l("没有响应时限（专项小组或尚未派单）")),
    (r"accepted (?P<n>\d+) min after dispatch", _l("派单后 %(n)s 分钟接单")),
    (r"accepted (?P<n>\d+) min after dispatch \(> 30 min\)", _l("派单后 %(n)s 分钟接单（超过 30 分钟）")),
    (r"not accepted within 30 min", _l("30 分钟内未接单")),
    (r"dispatched less than 30 min before month end", _l("月底前不足 30 分钟派单")),
    (r"QA gave no entry-accuracy verdict", _l("质检未判定录入是否准确")),
    (r"entry accurate \(QA (?P<a>.+), service quality (?P<n>.+)\)", _l("录入准确（质检 %(a)s，服务质量 %(n)s）")),
    (r"entry inaccurate \(QA (?P<a>.+), service quality (?P<n>.+)\)", _l("录入不准确（质检 %(a)s，服务质量 %(n)s）")),
)]


# The overdue timers a reason names by their diagram id (engine.kpi.OVERDUE_TIMERS), as people call them
TIMERS = {"timer_response_overdue": _l("响应超时"), "timer_department_overdue": _l("处理超时"),
          "timer_repair_overdue": _l("维修超时"), "timer_taskforce_overdue": _l("专项处理超时")}


def reason_text(reason: str) -> str:
    """One lineage reason in the reader's language; several (K7's routing history) are joined by '; '."""
    parts = []
    for part in str(reason or "").split("; "):
        for pattern, msg in REASONS:
            m = pattern.fullmatch(part)
            if m:
                values = {k: str(TIMERS[v]) if k == "t" and v in TIMERS else v for k, v in m.groupdict().items()}
                parts.append(str(msg) % values if values else str(msg))
                break
        else:
            parts.append(part)
    return ("；" if str(get_locale() or "zh").startswith("zh") else "; ").join(parts)


def department_name(key: str | None) -> str:
    return str(DEPARTMENTS.get(key, key or "—"))


def _duration(seconds: int) -> str:
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [_("%(n)s 天", n=days) if days else "", _("%(n)s 小时", n=hours) if hours else "",
             _("%(n)s 分钟", n=mins) if mins else ""]
    return " ".join(p for p in parts if p) or _("不到 1 分钟")


def charge_text(share: dict) -> str:
    """Who a lineage row's outcome is charged or credited to, and why (K-who), in the reader's language."""
    person, dept = share.get("person") or "—", department_name(share.get("department"))
    if not share.get("clock"):
        note = OWNER_NOTES.get(share.get("note"))
        sep = "：" if str(get_locale() or "zh").startswith("zh") else ": "
        return _("首问责任人 %(p)s（X1，%(d)s）", p=person, d=dept) + (f"{sep}{note}" if note else "")
    clock = str(DEADLINES.get(share["clock"], share["clock"]))
    task = share.get("task_name") or share.get("task") or "—"
    late = share.get("late_seconds")
    if share.get("state") == "met":
        what = _("%(clock)s（%(task)s）按时", clock=clock, task=task)
    elif late and late >= 60:
        what = _("%(clock)s（%(task)s）超时 %(late)s", clock=clock, task=task, late=_duration(late))
    else:
        what = _("%(clock)s（%(task)s）超时", clock=clock, task=task)
    if share.get("basis") == "clock":
        who = _("责任人 %(p)s（%(d)s）", p=person, d=dept)
    elif share.get("basis") == "handover" and share.get("note") == "handover_not_taken":
        who = _("交接班列出但未接手（漏接），计入接班人 %(p)s（X2，%(d)s）", p=person, d=dept)
    elif share.get("basis") == "handover":
        who = _("未列入交接班（漏交），计入交班人 %(p)s（X2，%(d)s）", p=person, d=dept)
    elif share.get("basis") == "owner":
        who = _("无责任人记录，计入首问责任人 %(p)s（X1，%(d)s）", p=person, d=dept)
    else:
        who = _("无责任人记录，计入部门 %(d)s", d=dept)
    return f"{what}；{who}" if str(get_locale() or "zh").startswith("zh") else f"{what}; {who}"


def formula_text(f: dict) -> str:
    """A figure's scoring rule (from the KPI table it was scored by) in the reader's language."""
    if "formula" not in f:
        return "—"  # stored before the KPI table existed
    n = lambda x: f"{x:g}"  # noqa: E731
    if f.get("points_per_point") is not None:
        start = f["threshold"] if f.get("threshold") is not None else f["target"]
        text = _("低于 %(s)s%% 每个百分点扣 %(p)s 分", s=n(start), p=n(f["points_per_point"]))
        if f.get("threshold") is not None:
            text += _("；高于 %(s)s%% 由部门内部考核", s=n(start))
    else:
        text = _("实际 ÷ %(d)s%%，封顶 100", d=n(f.get("score_denominator") or f["target"]))
    if f.get("floor") is not None:
        text = _("低于 %(f)s%% 不得分；", f=n(f["floor"])) + text
    charged = _("未达成计入首问责任人") if f.get("charged_to") == "owner" else _("未达成计入时限责任人，关联到所属部门")
    return f"{text}（{charged}）" if str(get_locale() or "zh").startswith("zh") else f"{text} ({charged})"


def _month(text: str | None) -> str:
    if not text:
        return kpi.current_month(kefu().now())
    try:
        return kpi.month_key(*kpi.parse_month(text))
    except KefuError as exc:
        abort(400, exc.message)


def _agent(report: dict, agent: str | None):
    if agent and agent not in report["agents"]:
        abort(404, _("%(month)s 没有 %(agent)s 开立或计入其名下的工单", month=report["month"], agent=agent))
    return agent or None


def _figures(report: dict, agent: str | None) -> list[dict]:
    return _scope(report["agents"][agent] if agent else report["department"])


def _scope(figures: dict) -> list[dict]:
    return [{**f, "label": LABELS[k], "formula_text": formula_text(f),
             "status": figure_status(f["value"], f["target"], f["score"])}
            for k in kpi.KPI_IDS for f in (figures[k],)]


@bp.get("/kpi")
@roles_required(*READERS)
def dashboard():
    k = kefu()
    month = _month(request.args.get("month"))
    report = k.kpi.report(month)
    agent = _agent(report, request.args.get("agent"))
    history = k.kpi.trend(TREND_MONTHS, month, known={month: report})
    charts = {}
    for key in kpi.KPI_IDS:
        spec, target = kpi.SPECS[key], report["department"][key]["target"]
        points = [(h["month"], (h["agents"].get(agent, {}).get(key, {}) if agent else h["department"][key])
                   .get("value")) for h in history]
        agent_rows = [(a, f[key]["value"], f[key]["score"]) for a, f in sorted(report["agents"].items())]
        charts[key] = {"trend": trend_chart(points, target, spec.unit, f"{key} {LABELS[key]}"),
                       "agents": bar_chart(agent_rows, target, spec.unit, f"{key} {LABELS[key]}")}
    return render_template("kpi_dashboard.html", report=report, month=month, agent=agent,
                           figures=_figures(report, agent), charts=charts, agents=sorted(report["agents"]),
                           sample_size=k.kpi.sample_size(), qa_sample=k.kpi.qa_sample_of(month),
                           previous=kpi.previous_month(k.now()),
                           may_store=current_user.has("supervisor"),
                           may_sample=current_user.has(*kpi.QA_START_ROLES),
                           may_size=current_user.has("process_owner"))


@bp.get("/kpi/<month>/<key>")
@roles_required(*READERS)
def lineage(month, key):
    month = _month(month)
    if key not in kpi.KPI_IDS:
        abort(404, _("没有指标 %(key)s", key=key[:20]))
    report = kefu().kpi.report(month)
    agent = _agent(report, request.args.get("agent"))
    figure = (report["agents"][agent] if agent else report["department"])[key]
    return render_template("kpi_lineage.html", report=report, month=month, agent=agent, key=key, f=figure,
                           label=LABELS[key], reason_text=reason_text, charge_text=charge_text,
                           formula=formula_text(figure),
                           status=figure_status(figure["value"], figure["target"], figure["score"]))


@bp.get("/kpi/<month>/report")
@roles_required(*READERS)
def monthly(month):
    month = _month(month)
    report = kefu().kpi.report(month)
    departments = report.get("departments") or {}
    return render_template("kpi_report.html", report=report, month=month, figures=_figures(report, None),
                           agents={a: _figures(report, a) for a in sorted(report["agents"])},
                           departments={department_name(d): _scope(figs) for d, figs in departments.items()},
                           kpi_table=report.get("kpi_table"), in_force=kefu().kpi.table(), p13_reason=p13_reason)


def p13_reason(reason: str) -> str:
    """Why a complaint is not (yet) a verified one (engine.kpi_accountability), in the reader's language."""
    if reason.startswith("not accepted: "):
        return _("不受理：%(why)s", why=reason[len("not accepted: "):])
    return {"no accountability record yet": _("尚无处理记录"),
            "recorded without an accountability record (an earlier diagram version)": _("按旧版流程处理，无问责记录"),
            "solution rejected by the supervisor": _("处理方案被驳回"),
            "awaiting the supervisor's approval": _("待客服主管批准")}.get(reason, reason)


def _csv(columns, rows, filename: str) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf)
    labels = csv_headers() or {}
    w.writerow([str(labels.get(c, c)) for c in columns])
    w.writerows(rows)
    return Response("\ufeff" + buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


@bp.get("/kpi/<month>.csv")
@roles_required(*READERS)
def export(month):
    month = _month(month)
    return _csv(kpi.CSV_COLUMNS, kpi.csv_rows(kefu().kpi.report(month)), f"kpi-{month}.csv")


@bp.get("/kpi/<month>/lineage.csv")
@roles_required(*READERS)
def export_lineage(month):
    month = _month(month)
    return _csv(kpi.LINEAGE_COLUMNS, kpi.lineage_rows(kefu().kpi.report(month)), f"kpi-{month}-lineage.csv")


@bp.post("/kpi/<month>/store")
@roles_required("supervisor")
def store(month):
    month = _month(month)
    try:
        kefu().kpi.store(month, me())
    except KefuError as exc:
        flash(_("考核未保存：%(reason)s", reason=exc.message), "error")
    else:
        flash(_("%(month)s 月度考核已计算并保存", month=month), "success")
    return redirect(url_for(".dashboard", month=month))


@bp.post("/kpi/<month>/qa-sample")
@roles_required(*sorted(kpi.QA_START_ROLES))
def qa_sample(month):
    month = _month(month)
    try:
        r = kefu().kpi.start_qa_sampling(month, me())
    except KefuError as exc:
        flash(_("未抽样：%(reason)s", reason=exc.message), "error")
    else:
        flash(_("已抽取 %(n)s 张工单交质检（%(ticket)s）", n=len(r["sample"]), ticket=r["ticket_no"]), "success")
    return redirect(url_for(".dashboard", month=month))


@bp.post("/kpi/qa-sample-size")
@roles_required("process_owner")
def qa_sample_size():
    try:
        n = kefu().kpi.set_sample_size(request.form.get("size", ""), me())
    except KefuError as exc:
        flash(_("抽样数量未修改：%(reason)s", reason=exc.message), "error")
    else:
        flash(_("每月质检抽样数量设为 %(n)s", n=n), "success")
    return redirect(url_for(".dashboard", month=request.form.get("month") or None))
