"""Forms live in the diagram as ``camunda:formData``; this module reads them and validates submissions.

Field types: the Camunda types ``string``, ``long``, ``boolean``, ``date``, ``enum`` and Kefu's ``datetime``,
``user`` (one user name) and ``users`` (a list of user names). Constraints (``camunda:validation``):
``required``, ``minlength``, ``maxlength``, ``min``, ``max``, ``readonly``, ``future`` (a date/time
later than now) and ``past`` (not later than now). Field properties: ``label_en`` (English label), ``multiline``
(long text), ``role`` (the role a ``user``/``users`` value must hold; several, comma-separated: any of them),
``assigns`` (``true``: the users picked are given work on the ticket, so the staff a complaint names may not be
picked, P12), ``pii`` (customer contact data: ``phone``, ``email``, ``address`` or ``true``; masked for whoever
does not serve the customer, I4), ``prefill`` (the form shows the value an earlier step left in this data field;
a list, one item a line), ``default_now`` (a date/time left empty is now), ``required_if`` (required when another
field of the form has a value: ``answered_on_spot``, or has one value: ``emergency=true``,
``acceptance=not_accepted``) and ``not_before`` (``opened``: not before the ticket was opened).

Validation turns the submitted values into typed, storable values (dates and times as ISO strings),
rejects unknown fields, and reports every problem at once, keyed by field id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from engine import clock
from engine.errors import FormValidationError
from engine.limits import is_blank

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
C = "{%s}" % CAMUNDA_NS
FIELD_TYPES = ("string", "long", "boolean", "date", "datetime", "enum", "user", "users")
KNOWN_CONSTRAINTS = ("required", "minlength", "maxlength", "min", "max", "readonly", "future", "past")
FIELD_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_STRING = 20000


def read_form(node) -> dict | None:
    """The form of a userTask element as plain JSON (stored in the task spec's extensions)."""
    fields = []
    for f in node.iterfind(f"./{{*}}extensionElements/{C}formData/{C}formField"):
        spec = {"id": f.get("id"), "label": f.get("label"), "type": f.get("type"),
                "default": f.get("defaultValue"), "options": [], "validation": {}, "properties": {},
                "line": getattr(f, "sourceline", None)}
        for child in f:
            if child.tag == C + "value":
                spec["options"].append({"id": child.get("id"), "name": child.get("name")})
            elif child.tag == C + "validation":
                for c in child:
                    if c.tag == C + "constraint":
                        spec["validation"][c.get("name")] = c.get("config")
            elif child.tag == C + "properties":
                for p in child:
                    if p.tag == C + "property":
                        spec["properties"][p.get("id") or p.get("name")] = p.get("value")
        fields.append(spec)
    return {"fields": fields} if fields else None


def read_properties(node) -> dict:
    """Task-level ``camunda:properties`` (e.g. ``name_en``)."""
    props = {}
    for p in node.iterfind(f"./{{*}}extensionElements/{C}properties/{C}property"):
        props[p.get("name") or p.get("id")] = p.get("value")
    return props


# Control characters other than tab and line breaks: no user text needs them; PostgreSQL refuses NUL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    type: str
    required: bool = False
    readonly: bool = False
    options: tuple = ()
    default: object = None
    label_en: str | None = None
    multiline: bool = False
    role: str | None = None
    minlength: int | None = None
    maxlength: int | None = None
    min: float | None = None
    max: float | None = None
    future: bool = False
    cap: str | None = None         # T-cap: the SLA target a deadline may not exceed (finish_hours, respond_minutes)
    cap_case: str | None = None    # expression over the task data naming the SLA case (default: vip or work_order)
    cap_reason: str | None = None  # a field that must give the reason instead of refusing (T-promise)
    pii: str | None = None         # I4: customer contact data of this kind (engine.services.masking)
    assigns: bool = False          # P12: the users picked get work on the ticket
    past: bool = False             # not later than now (a time the work reports: an arrival)
    prefill: str | None = None     # the data field whose earlier value the form shows
    default_now: bool = False      # a date/time left empty is now
    required_if: str | None = None  # "field" (has a value) or "field=value": then this one is required
    not_before: str | None = None  # "opened": not before the ticket was opened

    @property
    def roles(self) -> list[str]:
        """The roles a ``user``/``users`` value may hold (``role`` lists one or several, comma-separated)."""
        return [r.strip() for r in (self.role or "").split(",") if r.strip()]

    def to_dict(self) -> dict:
        out = {"id": self.id, "type": self.type, "label": self.label, "label_en": self.label_en,
               "required": self.required}
        if self.options:
            out["options"] = [{"id": o, "label": n} for o, n in self.options]
        for key in ("default", "role", "minlength", "maxlength", "min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.multiline:
            out["multiline"] = True
        if self.future:
            out["future"] = True
        if self.readonly:
            out["readonly"] = True
        if self.assigns:
            out["assigns"] = True
        if self.required_if:
            out["required_if"] = self.required_if
        if self.cap:
            out["cap"] = self.cap
        if self.pii:
            out["pii"] = self.pii
        for key in ("past", "default_now"):
            if getattr(self, key):
                out[key] = True
        for key in ("prefill", "not_before"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def prefilled(fields: list[dict], data: dict) -> dict:
    """Field id → the earlier value its ``prefill`` property names in ``data`` (a list: one item a line), for the
    form to show; a field without one, or whose source is empty, is left out."""
    out = {}
    for f in fields:
        value = data.get(f.get("prefill") or "")
        if isinstance(value, list):
            value = "\n".join(str(v) for v in value if v not in (None, ""))
        if value not in (None, "") and not isinstance(value, (dict, bool)):
            out[f["id"]] = str(value)
    return out


def lint_form(form: dict | None) -> list[tuple[str, str]]:
    """Problems of a form as (field id, message); empty when the form is well made."""
    problems = []
    seen = set()
    from engine.bpmn.sandbox import RESERVED_NAMES
    for f in (form or {}).get("fields", []):
        fid = f.get("id") or ""
        if not FIELD_ID.match(fid):
            problems.append((fid, "field id must start with a letter and contain only letters, "
                                  "digits and '_' (at most 64)"))
        elif fid in RESERVED_NAMES:
            problems.append((fid, "field id shadows a helper function or builtin"))
        if fid in seen:
            problems.append((fid, "duplicate field id"))
        seen.add(fid)
        if f.get("type") not in FIELD_TYPES:
            problems.append((fid, f"unknown field type {f.get('type')!r} (known: {', '.join(FIELD_TYPES)})"))
        if f.get("type") == "enum" and not f.get("options"):
            problems.append((fid, "enum field without options"))
        ids = [o.get("id") for o in f.get("options", [])]
        if len(ids) != len(set(ids)) or any(not i for i in ids):
            problems.append((fid, "enum options need distinct, non-empty ids"))
        for name, config in f.get("validation", {}).items():
            if name not in KNOWN_CONSTRAINTS:
                problems.append((fid, f"unknown constraint {name!r}"))
            elif name in ("minlength", "maxlength", "min", "max"):
                try:
                    float(config)
                except (TypeError, ValueError):
                    problems.append((fid, f"constraint {name!r} needs a number, got {config!r}"))
        if not f.get("label"):
            problems.append((fid, "field has no label"))
        props = f.get("properties", {})
        if props.get("default_now") and f.get("type") not in ("date", "datetime"):
            problems.append((fid, "default_now needs a date or datetime field"))
        if props.get("prefill") and not FIELD_ID.match(props["prefill"]):
            problems.append((fid, f"prefill names no data field: {props['prefill']!r}"))
        if props.get("not_before") not in (None, "opened"):
            problems.append((fid, "not_before must be 'opened'"))
        other = (props.get("required_if") or "").partition("=")[0].strip()
        if props.get("required_if") and other not in {g.get("id") for g in form.get("fields", [])}:
            problems.append((fid, f"required_if names no field of this form: {other!r}"))
    return problems


def _num(value):
    if value is None:
        return None
    return int(float(value)) if float(value).is_integer() else float(value)


def build_fields(form: dict | None) -> list[Field]:
    out = []
    for f in (form or {}).get("fields", []):
        v, p = f.get("validation", {}), f.get("properties", {})
        out.append(Field(
            id=f["id"], label=f.get("label") or f["id"], type=f.get("type") or "string",
            required="required" in v, readonly="readonly" in v,
            options=tuple((o["id"], o.get("name") or o["id"]) for o in f.get("options", [])),
            default=f.get("default"), label_en=p.get("label_en"),
            multiline=str(p.get("multiline", "")).lower() == "true", role=p.get("role"),
            minlength=_num(v.get("minlength")), maxlength=_num(v.get("maxlength")),
            min=_num(v.get("min")), max=_num(v.get("max")), future="future" in v,
            cap=p.get("cap"), cap_case=p.get("cap_case"), cap_reason=p.get("cap_reason"), past="past" in v,
            pii=pii_kind(p.get("pii")), assigns=str(p.get("assigns", "")).lower() == "true",
            prefill=p.get("prefill") or None, default_now=str(p.get("default_now", "")).lower() == "true",
            required_if=(p.get("required_if") or "").strip() or None, not_before=p.get("not_before") or None))
    return out


def pii_kind(value) -> str | None:
    """The contact kind a field's ``pii`` property declares (I4): phone, email, address, or text for any other
    true value; None when it declares none."""
    text = str(value or "").strip().lower()
    if not text or text in ("false", "0", "no"):
        return None
    return text if text in ("phone", "email", "address") else "text"


_TRUE = {"true", "1", "yes", "on", "y", "是"}
_FALSE = {"false", "0", "no", "off", "n", "否"}


def _blank(value) -> bool:
    """Nothing given: None, an empty list, or text that shows nothing (spaces, a zero-width space alone)."""
    return value is None or (isinstance(value, str) and is_blank(value)) or value == []


class FormValidator:
    """Validates submissions against one task's fields. ``user_lookup(name)`` returns the user's roles
    (a set) or None when there is no such user."""

    def __init__(self, fields: list[Field], user_lookup=None, opened: datetime | None = None):
        self.fields = {f.id: f for f in fields}
        self.user_lookup = user_lookup
        self.opened = opened  # when the ticket was opened (``not_before="opened"``)

    def validate(self, data, task_name: str | None = None) -> dict:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise FormValidationError({"_form": "form data must be a JSON object"}, task_name)
        errors: dict[str, str] = {}
        for key in data:
            if key not in self.fields:
                errors[str(key)] = "unknown field"
        clean = {}
        for fid, f in self.fields.items():
            raw = data.get(fid)
            if f.readonly and fid in data:
                errors[fid] = "field is read-only"
                continue
            if _blank(raw) and f.default_now and f.type in ("date", "datetime"):
                now = clock.now().astimezone(clock.SHANGHAI)
                raw = now.date().isoformat() if f.type == "date" else now.isoformat()
            if _blank(raw):
                if f.required:
                    errors[fid] = "required"
                    continue
                clean[fid] = self._default(f)
                continue
            try:
                clean[fid] = self._coerce(f, raw)
            except ValueError as exc:
                errors[fid] = str(exc)
        for fid, f in self.fields.items():
            if f.required_if and fid not in errors and _blank(clean.get(fid)) and self._condition(f.required_if, clean):
                errors[fid] = "required"
        if errors:
            raise FormValidationError(errors, task_name)
        return clean

    def _condition(self, text: str, clean: dict) -> bool:
        """Whether ``field`` has a value (true, text, a choice), or ``field=value`` holds, in the clean values."""
        other, eq, wanted = (part.strip() for part in text.partition("="))
        value = clean.get(other)
        if not eq:
            return not _blank(value) and value is not False
        target = self.fields.get(other)
        if target is not None and target.type == "boolean":
            return value is (wanted.lower() in _TRUE)
        return value is not None and str(value).strip().lower() == wanted.lower()

    def _default(self, f: Field):
        if f.default is None or f.default == "":
            return [] if f.type == "users" else None
        try:
            return self._coerce(f, f.default)
        except ValueError:
            return None

    def _coerce(self, f: Field, raw):
        t = f.type
        if t == "string":
            if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
                raise ValueError("must be text")
            value = str(raw).strip() if not f.multiline else str(raw).strip("\n")
            if _CONTROL.search(value):
                raise ValueError("must not contain control characters")
            if len(value) > (f.maxlength or MAX_STRING):
                raise ValueError(f"at most {f.maxlength or MAX_STRING} characters")
            if f.minlength and len(value) < f.minlength:
                raise ValueError(f"at least {f.minlength} characters")
            return value
        if t == "long":
            if isinstance(raw, bool):
                raise ValueError("must be a whole number")
            if isinstance(raw, float) and raw.is_integer():
                raw = int(raw)
            if isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", raw):
                raw = int(raw)
            if not isinstance(raw, int):
                raise ValueError("must be a whole number")
            if f.min is not None and raw < f.min:
                raise ValueError(f"must be at least {f.min}")
            if f.max is not None and raw > f.max:
                raise ValueError(f"must be at most {f.max}")
            return raw
        if t == "boolean":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
                return raw.strip().lower() in _TRUE
            raise ValueError("must be true or false")
        if t == "enum":
            ids = [o for o, _ in f.options]
            if not isinstance(raw, str) or raw not in ids:
                raise ValueError(f"must be one of: {', '.join(ids)}")
            return raw
        if t == "date":
            if not isinstance(raw, str):
                raise ValueError("must be a date (YYYY-MM-DD)")
            try:
                day = date.fromisoformat(raw.strip())
            except ValueError:
                raise ValueError("must be a date (YYYY-MM-DD)") from None
            if f.future and day < clock.now().astimezone(clock.SHANGHAI).date():
                raise ValueError("must not be in the past")
            return day.isoformat()
        if t == "datetime":
            if not isinstance(raw, str):
                raise ValueError("must be a date and time (YYYY-MM-DDTHH:MM)")
            try:
                if len(raw.strip()) <= 10:  # a bare date is not a moment; say which time is meant
                    raise ValueError
                when = datetime.fromisoformat(raw.strip())
            except ValueError:
                raise ValueError("must be a date and time (YYYY-MM-DDTHH:MM)") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=clock.SHANGHAI)
            if f.future and when <= clock.now():
                raise ValueError("must be in the future")
            if f.past and when > clock.now():
                raise ValueError("must not be in the future")
            if f.not_before == "opened" and self.opened is not None and when < self.opened:
                raise ValueError(f"must not be before the ticket was opened "
                                 f"({self.opened.astimezone(clock.SHANGHAI):%Y-%m-%d %H:%M})")
            return when.astimezone(clock.SHANGHAI).isoformat()
        if t in ("user", "users"):
            names = raw if isinstance(raw, list) else (
                [n for n in re.split(r"[,\s，、;；]+", raw) if n] if isinstance(raw, str) else None)
            if names is None or not all(isinstance(n, str) for n in names):
                raise ValueError("must be user names")
            names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
            if t == "user" and len(names) != 1:
                raise ValueError("must name exactly one user")
            if self.user_lookup is not None:
                for name in names:
                    roles = self.user_lookup(name)
                    if roles is None:
                        raise ValueError(f"no such user: {name}")
                    allowed = f.roles
                    if allowed and not set(allowed) & set(roles):
                        raise ValueError(f"user {name} does not have the role {'|'.join(allowed)}")
            if f.required and not names:
                raise ValueError("required")
            return names[0] if t == "user" else names
        raise ValueError(f"unsupported field type {t!r}")

