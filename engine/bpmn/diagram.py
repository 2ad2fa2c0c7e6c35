"""Process definitions: safe parsing, checks before deploy, immutable versions, the parsed-spec cache and
the serializer that stores a reference to the definition instead of a copy of it."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from uuid import UUID

from lxml import etree

try:
    import orjson
except ImportError:  # pragma: no cover - a declared dependency; the standard library serves without it
    orjson = None
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator, full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.parser.task_spec import UserTaskParser as SpiffUserTaskParser
from SpiffWorkflow.spiff.serializer import DEFAULT_CONFIG as SPIFF_CONFIG
from SpiffWorkflow.spiff.specs.defaults import UserTask as SpiffUserTask

from engine.bpmn import camunda, juel, sandbox as scripting, screen
from engine.bpmn.forms import CAMUNDA_NS, lint_form, read_form, read_properties
from engine.bpmn.tasktypes import ExternalTask, ExternalTaskParser, add_converters, finish_spec
from engine.bpmn.vocabulary import (  # noqa: F401 - re-exported: the diagram language's names
    B, BPMN_NS, LANE_ROLES, ROLES, RULE_ID, lane_role, rule_ids)
from engine.clock import use_in_spiffworkflow
from engine.errors import DefinitionError

use_in_spiffworkflow()  # every workflow is parsed or restored through here: its timers read Kefu's clock

C = "{%s}" % CAMUNDA_NS
ROUTING_ATTRS = ("assignee", "candidateGroups", "candidateUsers")
PROCESS_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
MAX_DIAGRAM_BYTES = 5 * 1024 * 1024
# A DOCTYPE before the root element (after the XML declaration, comments and processing instructions).
_DOCTYPE_FIRST = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<!DOCTYPE", re.S | re.I)
_DECLARED_ENCODING = re.compile(rb"^(?:\xef\xbb\xbf)?\s*<\?xml\s[^>]*?encoding\s*=\s*[\"']([^\"']*)[\"']", re.I)
_UNQUOTED_DURATION = re.compile(r"^\s*R?\d*/?P(?:\d|T\d)", re.I)


def _check_utf8(data: bytes, filename: str) -> None:
    """A diagram is stored and read back as UTF-8 text: refuse other encodings here, where lint and deploy
    both parse, rather than letting lint pass a GBK or UTF-16 file that deploy then refuses."""
    declared = _DECLARED_ENCODING.match(data[:1024])
    name = declared[1].decode("ascii", "replace").strip() if declared else None
    if name is not None and name.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise DefinitionError(f"the diagram must be UTF-8 encoded, but it declares encoding {name!r}: "
                              "save it as UTF-8", file=filename, line=1)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise DefinitionError("the diagram must be UTF-8 encoded, but it is UTF-16: save it as UTF-8",
                              file=filename, line=1)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DefinitionError("the diagram must be UTF-8 encoded: save it as UTF-8", file=filename,
                              line=line) from None


def safe_xml(data: bytes, filename: str, root_tag: str | None = B + "definitions") -> etree._Element:
    """Parse XML without DTDs, entities or network access; refuse any DOCTYPE (XXE, billion laughs)."""
    if len(data) > MAX_DIAGRAM_BYTES:
        raise DefinitionError(f"diagram larger than {MAX_DIAGRAM_BYTES} bytes", file=filename)
    _check_utf8(data, filename)
    if _DOCTYPE_FIRST.match(data[:65536]):
        raise DefinitionError("a DOCTYPE is not allowed in a diagram (external entities are refused)",
                              file=filename, line=1)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_blank_text=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise DefinitionError(f"invalid XML: {exc.msg}", file=filename, line=exc.lineno) from None
    doctype = root.getroottree().docinfo.internalDTD or root.getroottree().docinfo.doctype
    if doctype:
        raise DefinitionError("a DOCTYPE is not allowed in a diagram (external entities are refused)",
                              file=filename, line=1)
    if root_tag is not None and root.tag != root_tag:
        raise DefinitionError(f"the root element must be bpmn:definitions, not {root.tag}", file=filename,
                              line=root.sourceline)
    return root


class FormUserTaskParser(SpiffUserTaskParser):
    """Spiff user task semantics, plus Kefu's reading of the Camunda extensions into plain JSON."""

    def parse_extensions(self, node=None):
        ext = super().parse_extensions(node)
        node = self.node if node is None else node
        form = read_form(node)
        if form is not None:
            ext["form"] = form
        ext["kefu_properties"] = read_properties(node)
        for attr in ROUTING_ATTRS:
            if node.get(C + attr):
                ext[f"kefu_{attr}"] = node.get(C + attr)
        return ext


class KefuParser(SpiffBpmnParser):
    OVERRIDE_PARSER_CLASSES = {**SpiffBpmnParser.OVERRIDE_PARSER_CLASSES,
                               full_tag("userTask"): (FormUserTaskParser, SpiffUserTask),
                               full_tag("serviceTask"): (ExternalTaskParser, ExternalTask)}


_VALIDATOR = None


def _validator() -> BpmnValidator:
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = BpmnValidator()
    return _VALIDATOR


@dataclass
class ParsedDiagram:
    filename: str
    data: bytes
    sha256: str
    process_ids: list[str]
    names: dict[str, str | None]
    specs: dict[str, tuple]  # process id -> (spec, subprocess specs)
    calls: dict[str, str] = field(default_factory=dict)  # called process id -> sha256 of its diagram


def _element_of(root, element_id):
    found = root.xpath("//*[@id=$i]", i=element_id) if element_id else []
    return found[0] if found else None


def _spiff_error(exc, filename, root) -> DefinitionError:
    element = getattr(exc, "id", None) or getattr(exc, "name", None)
    line = getattr(exc, "line_number", None) or getattr(exc, "sourceline", None)
    node = _element_of(root, element)
    if node is not None and not line:
        line = node.sourceline
    message = str(getattr(exc, "message", None) or exc).split("\n")[0]
    return DefinitionError(message, file=filename, element=element, line=line)


def lint(root, filename: str) -> list[DefinitionError]:
    """Kefu's own checks, which SpiffWorkflow would report only at run time or never (on a tree the Camunda
    dialect's translation has rewritten)."""
    problems: list[DefinitionError] = []

    def bad(msg, node):
        problems.append(DefinitionError(msg, file=filename, element=node.get("id"), line=node.sourceline))

    processes = [p for p in root.iter(B + "process") if p.get("isExecutable") == "true"]
    if not processes:
        problems.append(DefinitionError("no executable process (isExecutable=\"true\")", file=filename))
    for proc in processes:
        pid = proc.get("id") or ""
        if not PROCESS_ID.fullmatch(pid):
            bad("process id must be a letter followed by letters, digits, '_', '-' or '.' (at most 64)", proc)
        lanes = list(proc.iter(B + "lane"))
        laned = any(lane_role(lane.get("name")) for lane in lanes)  # else the lanes are only drawn
        in_lane = {}
        for lane in lanes:
            if laned and lane_role(lane.get("name")) is None:
                bad(f"lane name {lane.get('name')!r} names no single role (use one of: {', '.join(LANE_ROLES)},"
                    " alone or beside a label, e.g. '客服专员 agent')", lane)
            for ref in lane.iterfind(B + "flowNodeRef"):
                in_lane[(ref.text or "").strip()] = lane.get("name")
        data_tags = {B + t for t in ("property", "dataObject", "dataObjectReference", "dataInput", "dataOutput",
                                     "inputDataItem", "outputDataItem")}
        element_ids = {e.get("id") for e in proc.iter(f"{B}*") if e.get("id") and e.tag not in data_tags}
        for task in proc.iter(B + "userTask"):
            if laned and task.get("id") not in in_lane:
                bad("user task is in no lane, so no role can work it", task)
            form = read_form(task)
            for fid, msg in lint_form(form):
                bad(f"form field {fid!r}: {msg}", task)
            for f in (form or {}).get("fields", []):
                if f.get("id") in element_ids:
                    # SpiffWorkflow resolves flows by id: a field named like an element replaces it.
                    bad(f"form field {f.get('id')!r} has the same id as an element of the diagram", task)
            for attr in ROUTING_ATTRS:
                expr = task.get(C + attr)
                if expr:
                    _check_expr(expr, f"camunda:{attr}", task, bad)
        for flow in proc.iter(B + "sequenceFlow"):
            cond = flow.find(B + "conditionExpression")
            if cond is not None and (cond.text or "").strip() and not cond.get(camunda.KEFU + "refused"):
                _check_expr(cond.text, "condition", flow, bad)
        for script in proc.iter(B + "script"):
            reason = screen.check(script.text or "", "exec")
            if reason:
                bad(f"script does not compile in the sandbox: {reason}", script.getparent())
        for timer in proc.iter(B + "timerEventDefinition"):
            for kind in ("timeDate", "timeDuration", "timeCycle"):
                node = timer.find(B + kind)
                if node is None or node.get(camunda.KEFU + "refused"):
                    continue
                text = (node.text or "").strip()
                event = timer.getparent()
                if _UNQUOTED_DURATION.match(text):
                    bad(f"timer {kind} {text!r} is a Python expression: quote the duration, e.g. \"{text}\"",
                        event)
                else:
                    _check_expr(text, f"timer {kind}", event, bad)
        outgoing = {}
        for flow in proc.iter(B + "sequenceFlow"):
            outgoing.setdefault(flow.get("sourceRef"), []).append(flow)
        for gw in proc.iter(B + "exclusiveGateway", B + "inclusiveGateway"):
            flows = outgoing.get(gw.get("id"), [])
            for flow in flows:
                cond = flow.find(B + "conditionExpression")
                if len(flows) > 1 and flow.get("id") != gw.get("default") and (
                        cond is None or not (cond.text or "").strip()):
                    bad(f"flow {flow.get('id')!r} leaving the gateway has no condition", gw)
    return problems


def _check_expr(expr, what, node, bad):
    text = (expr or "").strip()
    if juel.is_juel(text):
        bad(f"{what} {text!r} uses Camunda/JUEL syntax; Kefu expressions are Python (e.g. severity == 'major')",
            node)
        return
    reason = screen.check(text, "eval")
    if reason:
        bad(f"{what} {text!r} does not compile in the sandbox: {reason}", node)


def translate(root) -> list:
    """Rewrite the Camunda 7 dialect of a diagram tree in place (``engine.bpmn.camunda``); its notes."""
    return camunda.translate(root, lane_role)


class CallUnresolved(DefinitionError):
    """A call activity names a process that is neither in the file, nor among the others given, nor deployed;
    ``details["zh"]`` says it in Chinese."""

    def __init__(self, message: str, zh: str, **where):
        super().__init__(message, **where)
        self.details["zh"] = zh


def parse_specs(root, filename: str, resolver=None) -> tuple[list[str], dict, dict]:
    """SpiffWorkflow's specs of the executable processes of a translated tree: (process ids, id → (spec,
    subprocess specs), calls). A call activity to a process not in the file is looked up with
    ``resolver(process_id)`` → ``(xml bytes, filename, sha256)`` or None; ``calls`` maps each process found so
    to the sha256 of the diagram it came from."""
    parser = KefuParser()
    parser.add_bpmn_xml(root, filename=filename)
    own = parser.get_process_ids()
    known = {p.get("id") for p in root.iter(B + "process")}
    calls: dict[str, str] = {}
    trees = [root]
    while trees:
        tree = trees.pop()
        for call in tree.iter(B + "callActivity"):
            called = (call.get("calledElement") or "").strip()
            if not called or called in known:
                continue
            where = dict(file=filename, element=call.get("id"), line=call.sourceline)
            if juel.is_juel(called):
                raise CallUnresolved(f"the called process {called!r} is an expression; name the process id",
                                     f"被调用的流程 {called!r} 是表达式；请写明流程 id", **where)
            found = resolver(called) if resolver is not None else None
            if found is None:
                raise CallUnresolved(f"the call activity calls process {called!r}, which is neither in this file, "
                                     "nor among the diagrams given with it, nor deployed",
                                     f"调用活动调用的流程 {called!r} 既不在本文件中，也不在一同给出的图中，也没有部署", **where)
            data, other_name, sha = found
            other = safe_xml(data, other_name)
            translate(other)
            parser.add_bpmn_xml(other, filename=other_name)
            calls[called] = sha
            known.update(p.get("id") for p in other.iter(B + "process"))
            trees.append(other)
    settings = camunda.settings(root)
    specs = {}
    for pid in own:
        spec, subs = parser.get_spec(pid), parser.get_subprocess_specs(pid)
        for proc in (spec, *subs.values()):
            finish_spec(proc)
        spec.kefu_ticket_prefix = settings.get(pid, {}).get("ticket_prefix")
        spec.kefu_initiator = settings.get(pid, {}).get("initiator")
        specs[pid] = (spec, subs)
    return own, specs, calls


def parse_diagram(data: bytes, filename: str, resolver=None) -> ParsedDiagram:
    """Safe-parse, validate (XSD), translate the Camunda dialect, lint and parse one diagram; raises
    DefinitionError naming the element."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    root = safe_xml(data, filename)
    try:
        _validator().validate(root, filename)
    except ValidationException as exc:
        raise DefinitionError(f"not valid BPMN 2.0: {exc.message if hasattr(exc, 'message') else exc}",
                              file=filename, line=getattr(exc, "line_number", None)) from None
    names = {p.get("id"): p.get("name") for p in root.iter(B + "process")}
    problems = [DefinitionError(n.en, file=filename, element=n.element, line=n.line)
                for n in translate(root) if n.severity == "error"]
    problems += lint(root, filename)
    if problems:
        first = problems[0]
        if len(problems) > 1:
            first.details["problems"] = [p.to_dict() for p in problems]
            first.message += f" (and {len(problems) - 1} more problem(s))"
            first.args = (first.message,)
        raise first
    try:
        pids, specs, calls = parse_specs(root, filename, resolver)
    except (ValidationException, SpiffWorkflowException) as exc:
        raise _spiff_error(exc, filename, root) from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DefinitionError(f"cannot be parsed: {exc}", file=filename) from None
    return ParsedDiagram(filename, data, hashlib.sha256(data).hexdigest(), pids, names, specs, calls)


class SpecCache:
    """Parsed specs by process id and sha256; a definition version is parsed at most once per process."""

    def __init__(self, loader=None):
        self._specs: dict[str, tuple] = {}
        self._by_id: dict[int, str] = {}  # definition row id → key (a deployed version never changes)
        # loader(definition, process_id, sha256) -> (xml bytes, filename, sha256) of a process the definition
        # calls (its ``calls``, recorded at deploy), or None
        self.loader = loader

    @staticmethod
    def key(process_id: str, sha: str) -> str:
        return f"{process_id}@{sha}"

    def put(self, process_id: str, sha: str, spec_and_subs: tuple) -> None:
        spec, subs = spec_and_subs
        for proc in (spec, *subs.values()):
            _connect_loop_children(proc)
        spec.kefu_ref = self.key(process_id, sha)
        self._specs[spec.kefu_ref] = spec_and_subs

    def get(self, definition) -> tuple:
        hit = self._specs.get(self.key(definition.process_id, definition.sha256))
        if hit is None:
            calls = getattr(definition, "calls", None) or {}
            resolver = None
            if calls and self.loader is not None:
                def resolver(pid):
                    return self.loader(definition, pid, calls[pid]) if pid in calls else None
            parsed = parse_diagram(definition.xml.encode("utf-8"), definition.filename, resolver)
            hit = parsed.specs[definition.process_id]
            self.put(definition.process_id, definition.sha256, hit)
        if definition.id is not None:
            self._by_id[definition.id] = self.key(definition.process_id, definition.sha256)
        return hit

    def get_by_id(self, definition_id: int, load) -> tuple:
        """The spec of the definition with this row id; ``load()`` gives the definition row the first time."""
        ref = self._by_id.get(definition_id)
        hit = self._specs.get(ref) if ref is not None else None
        return hit if hit is not None else self.get(load())

    def __getitem__(self, ref: str) -> tuple:
        return self._specs[ref]


def _connect_loop_children(proc_spec) -> None:
    """A multi-instance task learns of its children's completion through a signal that SpiffWorkflow
    connects only when it creates a child, or when it deserializes a spec. A freshly parsed spec that
    restores a running instance needs it connected here, or the last member's completion is never merged."""
    for task_spec in proc_spec.task_specs.values():
        child_name = getattr(task_spec, "task_spec", None)
        if isinstance(child_name, str) and hasattr(task_spec, "merge_child"):
            child = proc_spec.task_specs[child_name]
            if not child.completed_event.is_connected(task_spec.merge_child):
                child.completed_event.connect(task_spec.merge_child)


class _SpecRefWorkflowConverter(BpmnWorkflowConverter):
    """Serializes a workflow with ``spec_ref`` (the definition's sha256) instead of the embedded spec."""

    def __init__(self, target_class, registry, cache: SpecCache):
        super().__init__(target_class, registry)
        self.cache = cache

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["spec_ref"] = workflow.spec.kefu_ref
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct):
        spec, subprocess_specs = self.cache[dct.pop("spec_ref")]
        workflow = self.target_class(spec, subprocess_specs, script_engine=scripting.make_script_engine(),
                                     deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


class FastJsonSerializer(BpmnWorkflowSerializer):
    """SpiffWorkflow's serializer writing and reading the JSON text with orjson (several times faster than the
    standard library's encoder on a workflow's nested task data). The text means the same: values the standard
    encoder hands to SpiffWorkflow's registry (datetimes, timedeltas, sets, callables) are handed to it here
    too, through the same rules (``_default``); anything orjson refuses (an integer beyond 64 bits, a
    non-finite float) is written by the standard encoder instead, and text orjson cannot read is read by the
    standard decoder."""

    _OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
                | orjson.OPT_PASSTHROUGH_DATACLASS) if orjson is not None else 0

    def _default(self, obj):
        typename = self.registry.typenames.get(type(obj))
        if typename is not None:
            return self.registry.convert_to_dict[typename](obj)
        if callable(obj) or isinstance(obj, ModuleType):
            return None
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, str):  # a subclass of str (passed through): its text
            return str(obj)
        if isinstance(obj, dict):
            return dict(obj)
        if isinstance(obj, (list, tuple)):
            return list(obj)
        if isinstance(obj, int) and not isinstance(obj, bool):
            return int(obj)
        if isinstance(obj, float):
            return float(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    def serialize_json(self, workflow, use_gzip=False):
        if orjson is None or use_gzip:
            return super().serialize_json(workflow, use_gzip)
        self.registry._encoder_mode = True
        try:
            dct = self.to_dict(workflow)
            dct[self.VERSION_KEY] = self.VERSION
            try:
                return orjson.dumps(dct, default=self._default, option=self._OPTIONS).decode("utf-8")
            except (TypeError, orjson.JSONEncodeError):  # what only the standard encoder writes (or refuses)
                return json.dumps(dct, cls=self._encoder_cls)
        finally:
            self.registry._encoder_mode = False

    def deserialize_json(self, serialization, use_gzip=False):
        if orjson is None or use_gzip or self.json_decoder_cls is not None:
            return super().deserialize_json(serialization, use_gzip)
        try:
            dct = orjson.loads(serialization)
        except orjson.JSONDecodeError:  # NaN, Infinity or a huge integer, written by the standard encoder
            dct = json.loads(serialization)
        self.migrate(dct)
        return self.from_dict(dct)


def make_serializer(cache: SpecCache) -> BpmnWorkflowSerializer:
    config = dict(SPIFF_CONFIG)
    add_converters(config)
    config[BpmnWorkflow] = lambda cls, reg: _SpecRefWorkflowConverter(cls, reg, cache)
    return FastJsonSerializer(FastJsonSerializer.configure(config))


def diagram_files(paths) -> list[Path]:
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted([*p.glob("*.bpmn"), *p.glob("*.dmn")]))
        elif p.exists():
            files.append(p)
        else:
            raise DefinitionError("no such file or folder", file=str(p))
    if not files:
        raise DefinitionError("no .bpmn diagrams or .dmn tables found", file=", ".join(str(p) for p in paths))
    return files
