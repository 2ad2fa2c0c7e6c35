"""Customers (I1–I3): the registry of profiles, found by name or by the digits of a phone number."""
from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy import or_, select

from engine.errors import InvalidInput, NotAllowed, NotFound
from engine.limits import is_blank
from engine.clock import iso
from engine.services import shapes
from engine.services.context import SYSTEM, Context, row_id
from engine.services.masking import CUSTOMER_FIELDS as CONTACT_FIELDS, mask
from engine.store.tables import Customer, SecurityEvent

log = logging.getLogger("kefu.care")
CUSTOMER_FIELDS = ("name", "phone", "email", "company", "address", "region", "needs", "vip", "special_note",
                   "customer_class", "owner", "greeting_consent", "greeting_channel", "anniversary")
CLASSES = ("general", "important")  # besides the VIP mark (Q1: important customers are revisited quarterly)
GREETING_CHANNELS = ("sms", "email", "card", "wechat")  # Q3: SMS, cards; where the customer agreed
# The longest text each field takes (the column's size; the free-text fields a page of text): longer is refused
# with the field named, never cut short in silence.
FIELD_LENGTHS = {"name": 128, "phone": 32, "email": 128, "company": 200, "address": 300, "region": 100,
                 "needs": 2000, "special_note": 2000, "owner": 64}


# Who may create or change a profile (I2, I3): those who serve customers, and integrations. The service itself
# (SYSTEM: the CLI without --as, demo data) may too.
EDIT_ROLES = frozenset({"agent", "supervisor", "integration"})


def _shown(key: str, value):
    """A field's value as the change record keeps it: contact details masked (I4)."""
    if isinstance(value, (date, datetime)):  # the anniversary (Q3): kept as its ISO text
        return value.isoformat()
    return mask(CONTACT_FIELDS[key], value) if key in CONTACT_FIELDS else value


def phone_digits(phone) -> str | None:
    """The digits of a phone number, so that 021-6321 0000 and 02163210000 find the same customer."""
    digits = "".join(ch for ch in str(phone or "") if ch.isdigit())
    return digits or None


class CustomerService:
    """Create, change, read and find customer profiles."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.listeners: list = []  # called with a profile's id after it was created or changed (care planner)

    def _changed(self, customer: dict) -> dict:
        for listener in self.listeners:
            try:
                listener(customer["id"])
            except Exception:  # noqa: BLE001 - the profile is saved; the planner's next run catches up
                log.exception("planning care for customer %s failed", customer["id"])
        return customer

    def create(self, data: dict, actor: str = SYSTEM, notify: bool = True) -> dict:
        """Register a customer (I1); ``notify``: tell the listeners (the care planner, Q1)."""
        with self.ctx.db.unit_of_work() as s:
            self._check(s, actor)
            c = new_customer(s, self.ctx.now(), data)
            self._record(s, "customer_created", actor, c, created_changes(c))
            out = shapes.customer_dict(c)
        return self._changed(out) if notify else out

    def same_phone(self, phone, exclude: int | None = None) -> list[dict]:
        """Customers whose phone has the same digits as ``phone`` (a new customer's likely duplicates): a warning
        for the person registering, never a refusal."""
        digits = phone_digits(phone) if isinstance(phone, str) else None
        if not digits or len(digits) < 5:
            return []
        with self.ctx.db.reading() as s:
            found = s.scalars(select(Customer).where(Customer.phone_digits == digits).order_by(Customer.id).limit(5))
            return [shapes.customer_dict(c) for c in found if c.id != exclude]

    def update(self, customer_id: int, data: dict, actor: str = SYSTEM) -> dict:
        """Keep a profile up to date (I3): only the fields in ``data`` change."""
        with self.ctx.db.unit_of_work() as s:
            self._check(s, actor)
            c = s.get(Customer, customer_id) if row_id(customer_id) else None
            if c is None:
                raise NotFound(f"no customer {customer_id}")
            before = {k: getattr(c, k) for k in CUSTOMER_FIELDS}
            apply_customer(c, data, partial=True)
            changed = {k: {"from": _shown(k, before[k]), "to": _shown(k, getattr(c, k))}
                       for k in CUSTOMER_FIELDS if getattr(c, k) != before[k]}
            c.updated_at = self.ctx.now()
            if changed:
                self._record(s, "customer_updated", actor, c, changed)
            out = shapes.customer_dict(c)
        return self._changed(out)

    def _record(self, s, type_: str, actor: str, c: Customer, changes: dict) -> None:
        record_change(s, self.ctx.now(), type_, actor, c, changes)

    def history(self, customer_id: int, limit: int = 200) -> list[dict]:
        """The profile's recorded changes and reveals (I3, I4), newest first."""
        with self.ctx.db.reading() as s:
            rows = s.scalars(select(SecurityEvent).where(SecurityEvent.subject == f"customer:{customer_id}")
                             .order_by(SecurityEvent.id.desc()).limit(limit))
            return [{"id": e.id, "at": iso(e.at), "type": e.type, "actor": e.actor, "data": e.data}
                    for e in rows]

    def _check(self, s, actor: str) -> None:
        if actor == SYSTEM:
            return
        user = self.ctx.user(s, actor)
        if not user.role_set & EDIT_ROLES:
            raise NotAllowed(f"user {actor} may not change customer profiles (needs role agent, supervisor "
                             "or integration)")

    def get(self, customer_id: int) -> dict:
        with self.ctx.db.reading() as s:
            c = s.get(Customer, customer_id) if row_id(customer_id) else None
            if c is None:
                raise NotFound(f"no customer {customer_id}")
            return shapes.customer_dict(c)

    def find(self, query: str, limit: int = 20) -> list[dict]:
        """Customers whose name or phone contains ``query`` (any spelling of the phone's digits), VIP first."""
        q = (query or "").strip()
        if not q:
            return []
        like = f"%{q.replace('%', '').replace('_', '')}%"
        digits = phone_digits(q)
        matches = [Customer.name.like(like), Customer.phone.like(like)]
        if digits and len(digits) >= 3:
            matches.append(Customer.phone_digits.like(f"%{digits}%"))
        with self.ctx.db.reading() as s:
            found = s.scalars(select(Customer).where(or_(*matches))
                              .order_by(Customer.vip.desc(), Customer.name).limit(limit))
            return [shapes.customer_dict(c) for c in found]


def record_change(s, now: datetime, type_: str, actor: str, c: Customer, changes: dict) -> None:
    """I3: every profile change is recorded in the append-only security log (subject ``customer:<id>``) with
    the fields changed, contact values masked (I4)."""
    s.flush()
    s.add(SecurityEvent(at=now, type=type_, actor=actor or SYSTEM, subject=f"customer:{c.id}",
                        data={"fields": sorted(changes), "changes": changes, "rules": "I3"}))


def created_changes(c: Customer) -> dict:
    """The fields a new profile was given, as ``customer_created`` records them."""
    return {k: {"to": _shown(k, getattr(c, k))} for k in CUSTOMER_FIELDS if getattr(c, k) not in (None, "", False)}


def _day(value):
    """An ISO date (the customer's anniversary, Q3) or None."""
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInput("anniversary must be a date (YYYY-MM-DD)", fields=["anniversary"]) from None


def new_customer(s, now: datetime, data: dict) -> Customer:
    """A new customer profile from ``data`` (checked as a whole), added to the session."""
    c = Customer(created_at=now, updated_at=now, vip=False)
    apply_customer(c, data, partial=False)
    s.add(c)
    s.flush()
    return c


def apply_customer(c: Customer, data: dict, partial: bool) -> None:
    """Check ``data`` and set it on the profile; ``partial``: only the fields given change."""
    if not isinstance(data, dict):
        raise InvalidInput("customer data must be a JSON object")
    unknown = [k for k in data if k not in CUSTOMER_FIELDS]
    if unknown:
        raise InvalidInput(f"unknown customer field(s): {', '.join(map(str, unknown))}",
                           fields=unknown)
    if not partial or "name" in data:
        name = data.get("name")
        if not isinstance(name, str) or is_blank(name):  # a zero-width space alone is no name either
            raise InvalidInput("a customer needs a name", fields=["name"])
    for key in CUSTOMER_FIELDS:
        if key not in data:
            continue
        value = data[key]
        if key in ("vip", "greeting_consent"):
            if not isinstance(value, bool):
                raise InvalidInput(f"{key} must be true or false", fields=[key])
        elif key == "customer_class":
            if value not in (None, "", *CLASSES):
                raise InvalidInput(f"customer_class must be one of {', '.join(CLASSES)}", fields=[key])
            value = None if value in (None, "", "general") else value
        elif key == "greeting_channel":
            if value not in (None, "", *GREETING_CHANNELS):
                raise InvalidInput(f"greeting_channel must be one of {', '.join(GREETING_CHANNELS)}", fields=[key])
            value = value or None
        elif key == "anniversary":
            value = _day(value)
        elif value is not None:
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise InvalidInput(f"customer {key} must be text", fields=[key])
            value = str(value).strip()
            if len(value) > FIELD_LENGTHS[key]:
                raise InvalidInput(f"customer {key} is longer than {FIELD_LENGTHS[key]} characters",
                                   fields=[key])
            value = None if is_blank(value) else value
        setattr(c, key, value)
    c.phone_digits = phone_digits(c.phone)
