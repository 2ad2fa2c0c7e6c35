"""Changing a procedure in the browser: the definitions page (every process, its immutable versions, what
changed and how many tickets run on each), the modeler (bpmn-js with the Camunda 7 properties panel, served
from the vendored bundle), upload of a Camunda Modeler file, the check before deploy (lint and test run, each
finding naming its element) and the deploy itself. Process owners only; auditors may read the versions.

Everything here goes through the engine: ``engine.bpmn.lint``, ``engine.bpmn.testrun`` and the ``Kefu`` facade decide;
this module only carries the diagram between the browser and them."""
from __future__ import annotations

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext as _
from flask_login import current_user

from engine import Conflict, InvalidInput, KefuError, NotFound

from .auth import kefu, me, roles_required
from .hardening import BODY_LIMITS

bp = Blueprint("designer", __name__)

OWNER = ("process_owner",)
READERS = ("process_owner", "auditor")
MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # the engine's own limit for a diagram (engine.bpmn.diagram)
BODY_LIMITS["designer"] = MAX_UPLOAD_BYTES + 64 * 1024  # a diagram may be larger than other bodies
DMN_NS = b"/spec/DMN/"  # the DMN namespace, http or https, any edition


# ---------------------------------------------------------------- helpers
def _locale() -> str:
    return "en" if str(get_locale() or "zh").startswith("en") else "zh"


def _finding(f: dict) -> dict:
    """One lint finding for the page: severity, element, line and the text in the reader's language."""
    msg = f.get("message") or {}
    text = msg.get(_locale()) or msg.get("zh") or msg.get("en") if isinstance(msg, dict) else str(msg)
    return {"severity": f.get("severity", "error"), "element": f.get("element_id") or f.get("element"),
            "line": f.get("line"), "code": f.get("code"), "text": text}


def lint_report(data: bytes, filename: str) -> dict:
    """The engine's lint of ``data``, with each finding's text in the reader's language; ``readable`` says
    whether the file parsed as a BPMN document at all (then the modeler can open it to fix the rest)."""
    report = kefu().designer.lint(data, filename)  # call activities find the deployed processes
    out = report.to_dict()
    out["findings"] = [_finding(f) for f in out.get("findings", [])]
    out["process_ids"] = list(getattr(report, "process_ids", None) or out.get("process_ids") or [])
    out["readable"] = getattr(report, "root", None) is not None
    return out


def test_run_report(data: bytes, filename: str) -> list[dict] | None:
    """The engine's test run of every process in ``data``."""
    return [r.to_dict() for r in kefu().designer.test_run(data, filename)]


def _read_diagram() -> tuple[bytes, str]:
    """The diagram a request carries: JSON ``{xml, filename}``, a form field ``xml`` or an uploaded file."""
    if request.content_length and request.content_length > MAX_UPLOAD_BYTES + 64 * 1024:
        raise InvalidInput(_("文件太大：图不能超过 %(mb)s MB", mb=MAX_UPLOAD_BYTES // (1024 * 1024)))
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("xml"), str):
            raise InvalidInput(_("请求中没有流程图 XML"))
        xml, filename = body["xml"].encode("utf-8"), body.get("filename")
    elif "file" in request.files:
        upload = request.files["file"]
        try:
            xml, filename = upload.read(MAX_UPLOAD_BYTES + 1), upload.filename
        finally:
            upload.close()
    else:
        xml, filename = (request.form.get("xml") or "").encode("utf-8"), request.form.get("filename")
    if len(xml) > MAX_UPLOAD_BYTES:
        raise InvalidInput(_("文件太大：图不能超过 %(mb)s MB", mb=MAX_UPLOAD_BYTES // (1024 * 1024)))
    if not xml.strip():
        raise InvalidInput(_("文件为空，请选择一个 .bpmn 文件"))
    filename = (filename or "diagram.bpmn").replace("\\", "/").rsplit("/", 1)[-1][:120] or "diagram.bpmn"
    return xml, filename


def _overview() -> list[dict]:
    """The engine's overview; each process also says whether it is a decision table (a .dmn file), which the
    modeler does not edit."""
    processes = kefu().designer.overview()
    for p in processes:
        p["table"] = p.get("kind") == "decision"
    return processes


def _process(process_id: str) -> dict:
    for p in _overview():
        if p["process_id"] == process_id:
            return p
    raise NotFound(_("没有这个流程：%(id)s", id=process_id))


def _is_table(xml: bytes) -> bool:
    return DMN_NS in xml[:3000]


def _json_error(message: str, status: int, code: str = "invalid_input", **extra):
    return jsonify({"error": {"code": code, "message": message, **extra}}), status


# ---------------------------------------------------------------- pages
@bp.get("/definitions")
@roles_required(*READERS)
def definitions():
    """Every process and decision table with its versions, change summaries and instance counts."""
    processes = _overview()
    may_edit = current_user.has(*OWNER)
    return render_template("designer_definitions.html", processes=processes, may_edit=may_edit,
                           stranded=_running_on_old_versions(processes) if may_edit else {},
                           max_mb=MAX_UPLOAD_BYTES // (1024 * 1024))


def _running_on_old_versions(processes: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """(process id, version) -> running tickets on a version older than the latest (candidates to move)."""
    out: dict[tuple[str, int], list[dict]] = {}
    for p in processes:
        if p["table"] or not any(v["running"] for v in p["versions"][1:]):
            continue
        latest = p["versions"][0]["version"]
        for status in ("active", "incident"):
            for i in kefu().instances.recent(status=status, kind=p["process_id"], limit=500):
                if i["version"] < latest:
                    out.setdefault((p["process_id"], i["version"]), []).append(i)
    return out


@bp.get("/definitions/<process_id>/v/<int:version>.bpmn")
@roles_required(*READERS)
def download(process_id, version):
    """One version's file exactly as deployed (a .dmn for the SLA decision table)."""
    xml = kefu().designer.xml(process_id, version)
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    ext = "dmn" if _is_table(xml) else "bpmn"
    return Response(xml, mimetype="application/xml", headers={
        "Content-Disposition": f'attachment; filename="{process_id}-v{version}.{ext}"',
        "X-Content-Type-Options": "nosniff"})


@bp.get("/designer/<process_id>")
@roles_required(*OWNER)
def modeler(process_id):
    """The modeler on the latest version of a process (or ``?v=N``)."""
    process = _process(process_id)
    latest = process["versions"][0]
    version = request.args.get("v", type=int) or latest["version"]
    if not any(v["version"] == version for v in process["versions"]):
        raise NotFound(_("流程 %(id)s 没有第 %(n)s 版", id=process_id, n=version))
    xml = kefu().designer.xml(process_id, version)
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8")
    if process["table"] or _is_table(xml.encode("utf-8")):
        raise InvalidInput(_("决策表不能在流程图编辑器中修改"))
    return render_template("designer_modeler.html", process=process, version=version, xml=xml,
                           filename=f"{process_id}.bpmn", base_version=latest["version"], lint=None,
                           uploaded=False)


@bp.post("/designer/upload")
@roles_required(*OWNER)
def upload():
    """Open a .bpmn file (e.g. made in Camunda Modeler) in the modeler with its lint findings; a file that
    is not a diagram at all goes back to the definitions page with the reason."""
    try:
        xml, filename = _read_diagram()
    except InvalidInput as exc:
        return _upload_refused(exc.message, [])
    report = lint_report(xml, filename)
    if not report["readable"]:
        return _upload_refused(_("无法打开这个文件：它不是有效的 BPMN 流程图"), report["findings"])
    try:
        text = xml.decode("utf-8")
    except UnicodeDecodeError:
        return _upload_refused(_("文件不是 UTF-8 编码的文本"), [])
    pid = report["process_ids"][0] if report["process_ids"] else None
    process = next((p for p in _overview() if p["process_id"] == pid), None) if pid else None
    return render_template("designer_modeler.html", process=process or {"process_id": pid, "name": None,
                                                                       "versions": []},
                           version=None, xml=text, filename=filename, lint=report, uploaded=True,
                           base_version="")  # an uploaded file replaces the latest version deliberately


def _upload_refused(message: str, findings: list[dict]):
    return render_template("designer_definitions.html", processes=_overview(), may_edit=True,
                           max_mb=MAX_UPLOAD_BYTES // (1024 * 1024), upload_error=message,
                           upload_findings=findings), 422


@bp.post("/designer/check")
@roles_required(*OWNER)
def check():
    """Lint and, when the lint finds no error, the test run of the diagram in the modeler (JSON)."""
    try:
        xml, filename = _read_diagram()
    except InvalidInput as exc:
        return _json_error(exc.message, 400)
    report = lint_report(xml, filename)
    runs = None
    if report["ok"]:
        try:
            runs = test_run_report(xml, filename)
        except KefuError as exc:
            return jsonify({"lint": report, "testrun": None, "testrun_error": exc.message})
    return jsonify({"lint": report, "testrun": runs})


@bp.post("/designer/deploy")
@roles_required(*OWNER)
def deploy():
    """Deploy the diagram as a new immutable version. The same diagram posted twice (a double click, a
    resent form) creates one version; a diagram opened on an older version than the latest is refused, so
    nobody overwrites a colleague's deploy unseen."""
    as_json = request.is_json
    try:
        xml, filename = _read_diagram()
        base = request.get_json(silent=True).get("base_version") if as_json else request.form.get("base_version")
        result = _deploy(xml, filename, base)
    except KefuError as exc:
        message = _error_message(exc)
        if as_json:
            status = {"not_found": 404, "not_allowed": 403, "conflict": 409}.get(exc.code, 422)
            return _json_error(message, status, exc.code, **_definition_details(exc))
        flash(message, "error")
        return redirect(url_for("designer.definitions"))
    if as_json:
        result["url"] = url_for("designer.definitions", _anchor=f"p-{result['process_id']}")
        return jsonify(result)
    flash(_deployed_message(result), "success")
    return redirect(url_for("designer.definitions", _anchor=f"p-{result['process_id']}"))


def _deploy(xml: bytes, filename: str, base) -> dict:
    report = lint_report(xml, filename)
    if not report["ok"]:
        raise InvalidInput(_("检查发现 %(n)s 个错误，不能部署", n=report["errors"]),
                           findings=[f for f in report["findings"] if f["severity"] == "error"])
    if base not in (None, ""):
        try:
            base = int(base)
        except (TypeError, ValueError):
            raise InvalidInput(_("基础版本号无效")) from None
        for pid in report["process_ids"]:
            known = next((p for p in _overview() if p["process_id"] == pid), None)
            newest = known["versions"][0] if known else None
            if newest and newest["version"] > base and newest["sha"] != _sha(xml):
                raise Conflict(_("您打开的是第 %(base)s 版，其后已有人部署了第 %(n)s 版（%(who)s）。请重新打开最新版本再修改。",
                                 base=base, n=newest["version"], who=newest["deployed_by"]))
    return kefu().designer.deploy_xml(xml, filename, me())


def _sha(xml: bytes) -> str:
    import hashlib
    return hashlib.sha256(xml).hexdigest()


def _error_message(exc: KefuError) -> str:
    """The engine's refusal in the reader's language (the engine gives Chinese beside its English)."""
    if _locale() == "zh" and exc.details.get("message_zh"):
        return exc.details["message_zh"]
    return exc.message


def _engine_locale() -> str:
    """The reader's language as the engine's ``locale`` parameter names it."""
    return "zh_CN" if _locale() == "zh" else "en"


def _definition_details(exc: KefuError) -> dict:
    """What the page shows beside the message: the findings (in the reader's language) and test runs."""
    out = {}
    if exc.details.get("findings"):
        out["findings"] = [f if "text" in f else _finding(f) for f in exc.details["findings"]]
    for key in ("element", "line", "test_runs", "reasons"):
        if exc.details.get(key):
            out[key] = exc.details[key]
    return out


def _deployed_message(result: dict) -> str:
    if result.get("created", True):
        return _("已部署 %(id)s 第 %(n)s 版；新工单将使用此版本，进行中的工单保持原版本",
                 id=result["process_id"], n=result["version"])
    return _("%(id)s 与第 %(n)s 版完全相同，未创建新版本", id=result["process_id"], n=result["version"])


@bp.app_context_processor
def _designer_helpers():
    return {"deployed_message": _deployed_message}


# ---------------------------------------------------------------- moving a running ticket to a newer version
def _migration_page(ref, refused: dict | None = None, status: int = 200):
    shown = kefu().instances.show(ref)
    current = shown["definition"]
    process = _process(current["process_id"])
    running = shown["status"] in ("active", "incident")
    targets = []
    for v in sorted(process["versions"], key=lambda v: v["version"]):
        if v["version"] <= current["version"]:
            continue
        reasons = kefu().designer.migration_check(shown["instance_id"], v["version"], locale=_engine_locale()) \
            if running else []
        targets.append({**v, "reasons": reasons})
    return render_template("designer_migrate.html", i=shown, process=process, targets=targets, running=running,
                           refused=refused), status


def _refusal(exc: Conflict, version: int) -> dict:
    """A refused move in the reader's language: the engine's reasons, or for a conflict that carries no
    Chinese text (a concurrent change of the ticket) a sentence of our own."""
    zh = _locale() == "zh"
    if zh and not exc.details.get("message_zh"):
        message = _("这张工单刚刚被其他人修改，没有迁移。请刷新页面后再试。")
    else:
        message = _error_message(exc)
    reasons = exc.details.get("reasons_zh" if zh else "reasons") or []
    return {"version": version, "message": message, "reasons": reasons}


@bp.get("/instances/<ref>/migrate")
@roles_required(*OWNER)
def migrate_form(ref):
    """Which newer versions a running ticket may move to, and why not where it may not."""
    return _migration_page(ref)


@bp.post("/instances/<ref>/migrate")
@roles_required(*OWNER)
def migrate(ref):
    """Move the ticket to the chosen version; the engine refuses (and says why) when a step that ran changed."""
    shown = kefu().instances.show(ref)
    to = request.form.get("to_version", type=int)
    if to is None:
        raise InvalidInput(_("请选择目标版本"))
    try:
        result = kefu().designer.migrate_instance(shown["instance_id"], to, me())
    except Conflict as exc:
        return _migration_page(ref, _refusal(exc, to), status=409)
    flash(_("工单 %(ticket)s 已从第 %(old)s 版迁移到第 %(new)s 版", ticket=shown["ticket_no"],
            old=shown["definition"]["version"], new=result.get("to_version", to)), "success")
    return redirect(url_for("records.instance", ref=shown["ticket_no"]))
