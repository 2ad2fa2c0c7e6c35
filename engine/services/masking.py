"""Confidential customer data (I4): one policy deciding who reads a customer's contact details in full.

Contact data is a customer profile's ``phone``, ``email`` and ``address`` and every form field that carries them:
a field declares it in the diagram with the property ``pii`` (``phone``, ``email``, ``address``, or ``true``),
and the shipped diagrams' fields are known by name (``DEFAULT_FIELDS``) even without it.

Full values only for those serving the customer on that ticket: the agent who owns the case (``owner``, else
the agent who registered it) and whoever holds a ready task on it (its assignee, or a candidate of an
unclaimed one: the lane's role and group, or the candidate groups and users). Everyone else (auditors,
supervisors, QA and process owners included) reads ``138****5678``. A customer's profile is shown in full to
whoever may see one of that customer's tickets in full.

A user with a legitimate oversight role (``REVEAL_ROLES``) may reveal one masked value with a reason; the
reveal is an audit event (``value_revealed``: field, reason, actor; never the value) on the ticket, or in the
security log for a customer profile (subject ``customer:<id>``).
"""
from __future__ import annotations

from sqlalchemy import or_, select

from engine.bpmn.forms import pii_kind
from engine.errors import InvalidInput, NotAllowed, NotFound
from engine.limits import is_blank
from engine.services import routing
from engine.services.context import SYSTEM, Context, row_id
from engine.store import chain as audit
from engine.store.tables import Customer, HumanTask, Instance, SecurityEvent

CUSTOMER_FIELDS = {"phone": "phone", "email": "email", "address": "address"}
# Form fields holding contact data in the shipped diagrams (and the usual names elsewhere); a diagram's own
# ``pii`` property adds to these.
DEFAULT_FIELDS = {"contact_phone": "phone", "phone": "phone", "mobile": "phone", "contact_mobile": "phone",
                  "email": "email", "contact_email": "email", "address": "address",
                  "customer_address": "address", "contact_address": "address"}
# Who may reveal a masked value (with a reason): the roles that oversee tickets for the company's business
# need (000 §四.4, §六): the supervisor, quality inspection and audit.
REVEAL_ROLES = frozenset({"supervisor", "qa", "auditor"})
MAX_REASON = 500
MIN_SECRET = 7  # shorter values are not searched for in free text (a date or a ticket number could hold them)


def mask_phone(phone) -> str:
    """138****5678: enough to recognise a number, not to call it (I4)."""
    if not phone:
        return ""
    text = str(phone)
    if len(text) < 7:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 7) + text[-4:]


def mask_text(value, keep: int = 2) -> str:
    """An e-mail address as ``z***@example.com``; other text as its first ``keep`` characters and ``****``."""
    if not value:
        return ""
    text = str(value)
    if "@" in text:
        user, _at, domain = text.partition("@")
        return (user[:1] + "***@" + domain) if user else text
    return text[:keep] + "****"


def mask(kind: str | None, value):
    """One contact value masked as its kind is shown; None and "" stay as they are, lists item by item."""
    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple)):
        return [mask(kind, v) for v in value]
    if kind == "phone":
        return mask_phone(value)
    if kind == "address":
        return mask_text(value, 4)
    return mask_text(value)


def declared_fields(spec, subs=None) -> dict[str, str]:
    """field id → contact kind of every form field a definition (and the processes it calls) declares."""
    out = {}
    for proc in (spec, *(subs or {}).values()):
        for tspec in proc.task_specs.values():
            form = (getattr(tspec, "extensions", None) or {}).get("form") or {}
            for f in form.get("fields", []):
                kind = pii_kind((f.get("properties") or {}).get("pii"))
                if kind and f.get("id"):
                    out[f["id"]] = kind
    return out


def secrets_of(customer: dict | None, data_sets, fields: dict[str, str]) -> dict[str, str]:
    """full value → masked value for every contact value found in the customer and the data dictionaries."""
    out = {}

    def add(kind, value):
        if isinstance(value, (list, tuple)):
            for v in value:
                add(kind, v)
        elif isinstance(value, (str, int)) and not isinstance(value, bool) and len(str(value)) >= MIN_SECRET:
            out[str(value)] = mask(kind, str(value))

    for key, kind in CUSTOMER_FIELDS.items():
        add(kind, (customer or {}).get(key))
    for data in data_sets:
        _collect(data, fields, add)
    return out


def _collect(value, fields, add) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in fields:
                add(fields[k], v)
            else:
                _collect(v, fields, add)
    elif isinstance(value, list):
        for v in value:
            _collect(v, fields, add)


def scrub(value, fields: dict[str, str], secrets: dict[str, str]):
    """A copy of ``value`` with every contact field masked by its key and every known full value masked
    wherever it appears in text (a phone typed into a note too)."""
    if isinstance(value, dict):
        return {k: (mask(fields[k], v) if k in fields and isinstance(v, (str, int, list)) and not isinstance(v, bool)
                    else scrub(v, fields, secrets)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, fields, secrets) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v, fields, secrets) for v in value)
    if isinstance(value, str) and secrets:
        for full in sorted(secrets, key=len, reverse=True):
            if full in value:
                value = value.replace(full, secrets[full])
        return value
    return value


def masked_customer(c: dict | None) -> dict | None:
    if c is None:
        return None
    return {**c, **{k: mask(kind, c.get(k)) for k, kind in CUSTOMER_FIELDS.items()}, "masked": True}


def holds_ready_task(name: str, roles: set, groups: set, rows) -> bool:
    """Whether the user is the assignee of one of the ready task rows or may take it."""
    return any(r.state == "ready" and (r.assignee == name or routing.may_work(name, roles, groups, r))
               for r in rows)


def case_owner(inst: Instance) -> str | None:
    return getattr(inst, "owner", None) or inst.created_by


class MaskingService:
    """Who reads contact data in full, the masked views of tickets and customers, and reveals."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    # ---------------------------------------------------------------- who sees full values
    def _full(self, s, user, inst: Instance) -> bool:
        if user is None:
            return False
        if case_owner(inst) == user.name:
            return True
        rows = s.scalars(select(HumanTask).where(HumanTask.instance_id == inst.id, HumanTask.state == "ready"))
        return holds_ready_task(user.name, user.role_set, user.group_set, rows)

    def _user(self, s, actor):
        if actor is None or actor == SYSTEM:
            return None
        try:
            return self.ctx.user(s, actor)
        except NotAllowed:
            return None

    def sees_full(self, actor: str | None, instance_ref) -> bool:
        """Whether ``actor`` reads the ticket's contact data in full (``None``/system: no one in particular,
        masked)."""
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, instance_ref)
            return self._full(s, self._user(s, actor), inst)

    def sees_customer(self, actor: str | None, customer_id: int | None) -> bool:
        """Whether ``actor`` reads this customer's profile in full: the owner of one of the customer's tickets
        or the holder of a ready task on one."""
        if customer_id is None or not row_id(customer_id):
            return False
        with self.ctx.db.reading() as s:
            return bool(self._customer_ids(s, actor, [customer_id]))

    def _customer_ids(self, s, actor, customer_ids) -> set[int]:
        user = self._user(s, actor)
        if user is None or not customer_ids:
            return set()
        ids = set(customer_ids)
        owned = [Instance.created_by == user.name] + ([Instance.owner == user.name]
                                                      if hasattr(Instance, "owner") else [])
        out = {inst.customer_id for inst in s.scalars(select(Instance).where(Instance.customer_id.in_(ids),
                                                                             or_(*owned)))
               if case_owner(inst) == user.name}
        rows = s.execute(select(HumanTask, Instance.customer_id).join(Instance, Instance.id == HumanTask.instance_id)
                         .where(Instance.customer_id.in_(ids - out), HumanTask.state == "ready")).all()
        for row, cid in rows:
            if cid not in out and holds_ready_task(user.name, user.role_set, user.group_set, [row]):
                out.add(cid)
        return out

    # ---------------------------------------------------------------- masked views
    def fields_of(self, instance_ref) -> dict[str, str]:
        """field id → contact kind for the ticket's definition: the defaults and what its diagram declares."""
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, instance_ref)
            spec, subs = self.ctx.spec_of(inst)
        return {**DEFAULT_FIELDS, **declared_fields(spec, subs)}

    def ticket(self, shown: dict, actor: str | None, full: bool | None = None) -> dict:
        """A ticket as ``instances.show`` or ``audit.trace`` gives it, as ``actor`` may read it: unchanged for
        those who see it in full, else with every contact value masked (customer, data, events, tasks)."""
        if full is None:
            full = self.sees_full(actor, shown["instance_id"])
        if full:
            return {**shown, "contact_masked": False}
        fields = self.fields_of(shown["instance_id"])
        customer = shown.get("customer") if isinstance(shown.get("customer"), dict) else None
        if customer is None and shown.get("customer") is not None:
            customer = self._customer_of(shown["instance_id"])
        secrets = secrets_of(customer, [shown.get("data") or {}, *[e.get("data") or {} for e in
                                                                    shown.get("events") or []]], fields)
        out = scrub({k: v for k, v in shown.items() if k != "customer"}, fields, secrets)
        out["customer"] = masked_customer(shown["customer"]) if isinstance(shown.get("customer"), dict) \
            else shown.get("customer")
        out["contact_masked"] = True
        return out

    def _customer_of(self, instance_id) -> dict | None:
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, instance_id)
            c = inst.customer
            return {k: getattr(c, k) for k in CUSTOMER_FIELDS} if c is not None else None

    def customer(self, c: dict, actor: str | None) -> dict:
        """A customer profile as ``actor`` may read it."""
        return {**c, "masked": False} if self.sees_customer(actor, c["id"]) else masked_customer(c)

    def customers(self, found: list[dict], actor: str | None) -> list[dict]:
        with self.ctx.db.reading() as s:
            full = self._customer_ids(s, actor, [c["id"] for c in found])
        return [{**c, "masked": False} if c["id"] in full else masked_customer(c) for c in found]

    def text(self, value, actor: str | None, instance_ref):
        """Any value about one ticket (a KPI lineage row, an export row) with its contact values masked
        unless ``actor`` sees that ticket in full."""
        if self.sees_full(actor, instance_ref):
            return value
        fields = self.fields_of(instance_ref)
        return scrub(value, fields, secrets_of(self._customer_of(instance_ref), [value], fields))

    # ---------------------------------------------------------------- reveal
    def _check_reveal(self, s, actor: str, reason) -> tuple:
        user = self.ctx.user(s, actor)
        if not user.role_set & REVEAL_ROLES:
            raise NotAllowed(f"user {actor} may not reveal customer contact data (I4: needs role "
                             f"{', '.join(sorted(REVEAL_ROLES))})")
        if not isinstance(reason, str) or is_blank(reason):
            raise InvalidInput("a reveal needs a reason (I4)", fields=["reason"])
        reason = reason.strip()
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", fields=["reason"])
        return user, reason

    def reveal(self, instance_ref, field: str, actor: str, reason) -> dict:
        """The full value of one contact field of a ticket (``phone``/``email``/``address`` of its customer,
        or a contact form field of its data), recorded as ``value_revealed`` on the ticket (I4)."""
        with self.ctx.db.unit_of_work() as s:
            user, reason = self._check_reveal(s, actor, reason)
            inst = self.ctx.instance(s, instance_ref, with_state=True)
            value = self._ticket_value(s, inst, field)
            audit.append(s, inst, [audit.PendingEvent(
                "value_revealed", user.name, self.ctx.now(), rules=["I4"],
                data={"field": field, "reason": reason})])
            s.flush()
            return {"ticket_no": inst.ticket_no, "field": field, "value": value}

    def _ticket_value(self, s, inst: Instance, field: str):
        if not isinstance(field, str) or not field:
            raise InvalidInput("name the field to reveal", fields=["field"])
        if field in CUSTOMER_FIELDS and inst.customer is not None and getattr(inst.customer, field):
            return getattr(inst.customer, field)
        spec, subs = self.ctx.spec_of(inst)
        fields = {**DEFAULT_FIELDS, **declared_fields(spec, subs)}
        if field not in fields:
            raise InvalidInput(f"{field!r} is not a contact field of ticket {inst.ticket_no} (contact fields: "
                               f"{', '.join(sorted(set(CUSTOMER_FIELDS) | set(fields)))})", fields=["field"])
        wf = self.ctx.serializer.deserialize_json(inst.state)
        data = wf.last_task.data if wf.last_task else wf.data
        value = data.get(field)
        if value in (None, ""):
            raise NotFound(f"ticket {inst.ticket_no} holds no {field}")
        return value

    def reveal_customer(self, customer_id, field: str, actor: str, reason) -> dict:
        """The full value of a profile's ``phone``, ``email`` or ``address``, recorded in the security log
        as ``value_revealed`` with subject ``customer:<id>`` (I4)."""
        with self.ctx.db.unit_of_work() as s:
            user, reason = self._check_reveal(s, actor, reason)
            c = s.get(Customer, customer_id) if row_id(customer_id) else None
            if c is None:
                raise NotFound(f"no customer {customer_id}")
            if field not in CUSTOMER_FIELDS:
                raise InvalidInput(f"{field!r} is not a contact field (one of {', '.join(CUSTOMER_FIELDS)})",
                                   fields=["field"])
            s.add(SecurityEvent(at=self.ctx.now(), type="value_revealed", actor=user.name,
                                subject=f"customer:{c.id}", data={"field": field, "reason": reason,
                                                                  "rules": "I4"}))
            return {"customer_id": c.id, "field": field, "value": getattr(c, field)}
