"""The case file beside the process: internal notes, the contact log (calls, messages, visits) and attachments
on a ticket. Notes and contact records are audit events themselves (``note_added``, ``contact_logged``: the
hash-chained trail is their store, append-only); an attachment's bytes are a row of ``attachments``, never
deleted, only superseded by a newer version, its arrival an ``attachment_added`` (and
``attachment_superseded``) event. Whoever may read the ticket reads them (``routing.may_read``); whoever may
read it and change things may add to them."""
from __future__ import annotations

from typing import TYPE_CHECKING

import hashlib
import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import undefer

from engine.clock import iso
from engine.errors import InvalidInput, NotAllowed, NotFound
from engine.limits import CONTACT_CHANNELS, MAX_ATTACHMENT, is_blank  # noqa: F401 - re-exported
from engine.records import desk as desk_search
from engine.services import routing
from engine.services.masking import mask_phone
from engine.services.context import Context, row_id
from engine.store import chain as audit
from engine.store.tables import Attachment, AuditEvent, HumanTask, Instance, User

if TYPE_CHECKING:  # the runner (SpiffWorkflow) is not needed to import this module
    from engine.services.runner import Runner

MAX_NOTE = 4000  # characters
MAX_OUTCOME = 1000
CHANNELS = CONTACT_CHANNELS
READ_ONLY_ROLES = {"auditor"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What a file's first bytes say it is; nothing else is accepted (the name and the sender's claim count for nothing).
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"))
TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf", "text/plain")


def sniff(content: bytes) -> str | None:
    """The content type by the file's own bytes: JPEG, PNG, GIF, WebP, PDF or plain UTF-8 text; None otherwise."""
    for magic, kind in _MAGIC:
        if content.startswith(magic):
            return kind
    if len(content) >= 12 and content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else "text/plain"


def clean_filename(name) -> str:
    """The last part of a path, without control characters, at most 255 characters; InvalidInput if empty."""
    if not isinstance(name, str):
        raise InvalidInput("the file name must be text", fields=["filename"])
    name = unicodedata.normalize("NFC", re.split(r"[\\/]", name)[-1])
    name = _CONTROL.sub("", name).strip().lstrip(".")
    if not name:
        raise InvalidInput("the file has no name", fields=["filename"])
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:250 - len(ext)] + dot + ext) if dot and len(ext) < 16 else name[:255]
    return name


def _text(value, name: str, longest: int) -> str:
    if not isinstance(value, str) or is_blank(value):
        raise InvalidInput(f"{name} is empty", fields=[name])
    value = value.strip()
    if _CONTROL.search(value):
        raise InvalidInput(f"{name} contains control characters", fields=[name])
    if len(value) > longest:
        raise InvalidInput(f"{name} is longer than {longest} characters", fields=[name])
    return value


def attachment_dict(a: Attachment) -> dict:
    return {"id": a.id, "author": a.uploaded_by, "at": iso(a.uploaded_at), "filename": a.filename,
            "size": a.size, "content_type": a.content_type, "sha256": a.sha256, "superseded_by": a.superseded_by}


def entries(events: list[dict], attachments: list[Attachment]) -> dict:
    """``notes``, ``contacts`` and ``attachments`` of a ticket from its events (as ``show`` gives them) and its
    attachment rows."""
    notes = [{"id": e["seq"], "author": e["actor"], "at": e["at"], "text": (e["data"] or {}).get("text")}
             for e in events if e["type"] == "note_added"]
    contacts = [{"id": e["seq"], "author": e["actor"], "at": e["at"], "channel": (e["data"] or {}).get("channel"),
                 "outcome": (e["data"] or {}).get("outcome")} for e in events if e["type"] == "contact_logged"]
    return {"notes": notes, "contacts": contacts, "attachments": [attachment_dict(a) for a in attachments]}


class CaseFileService:
    """Notes, contact records and attachments of one ticket."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    # ---- reading
    def _reader(self, s, inst: Instance, actor: str) -> User:
        user = self.ctx.user(s, actor)
        tasks = s.scalars(select(HumanTask).where(HumanTask.instance_id == inst.id))
        if not routing.may_read(user.name, user.role_set, user.group_set, tasks):
            raise NotAllowed(f"user {actor} has no task on {inst.ticket_no} and may not read it")
        return user

    def _writer(self, s, ref, actor: str) -> tuple[Instance, User]:
        inst = self.ctx.instance(s, ref)
        user = self._reader(s, inst, actor)
        if not user.role_set - READ_ONLY_ROLES:
            raise NotAllowed(f"user {actor} reads tickets and changes nothing")
        # One writer of the ticket's trail at a time (PostgreSQL); the version check catches any other.
        s.execute(select(Instance.id).where(Instance.id == inst.id).with_for_update())
        return inst, user

    def of(self, ref, actor: str | None = None) -> dict:
        """The ticket's notes, contacts and attachments (``actor``: checked against the ticket's read rule)."""
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, ref)
            if actor is not None:
                self._reader(s, inst, actor)
            events = [{"seq": e.seq, "type": e.type, "actor": e.actor, "at": iso(e.at), "data": e.data}
                      for e in s.scalars(select(AuditEvent).where(
                          AuditEvent.instance_id == inst.id,
                          AuditEvent.type.in_(("note_added", "contact_logged"))).order_by(AuditEvent.seq))]
            return {"ticket_no": inst.ticket_no, **entries(events, self.attachment_rows(s, inst.id))}

    @staticmethod
    def attachment_rows(s, instance_id: int) -> list[Attachment]:
        return list(s.scalars(select(Attachment).where(Attachment.instance_id == instance_id)
                              .order_by(Attachment.id)))

    def download(self, attachment_id, actor: str, ref=None) -> dict:
        """One attachment with its bytes (``content``), for a reader of its ticket (``ref``: it must be that
        ticket's)."""
        with self.ctx.db.reading() as s:
            a = s.get(Attachment, attachment_id, options=(undefer(Attachment.content),)) \
                if row_id(attachment_id) else None
            if a is None:
                raise NotFound(f"no attachment {attachment_id}")
            inst = s.get(Instance, a.instance_id)
            if ref is not None and self.ctx.instance(s, ref).id != inst.id:
                raise NotFound(f"no attachment {attachment_id} on {ref}")
            self._reader(s, inst, actor)
            return {**attachment_dict(a), "ticket_no": inst.ticket_no, "content": a.content}

    # ---- writing
    def note(self, ref, actor: str, text) -> dict:
        """An internal note on the ticket (audit event ``note_added``)."""
        text = _text(text, "text", MAX_NOTE)
        with self.ctx.db.unit_of_work() as s:
            inst, user = self._writer(s, ref, actor)
            event = audit.PendingEvent("note_added", user.name, self.ctx.now(), data={"text": text})
            self.runner.touch(s, inst, [event])
            return {"id": inst.audit_count, "ticket_no": inst.ticket_no, "author": user.name,
                    "at": iso(event.at), "text": text}

    def contact(self, ref, actor: str, channel, outcome) -> dict:
        """A contact with the customer: a call, a message or a visit, and its outcome (``contact_logged``; R4)."""
        if channel not in CHANNELS:
            raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}", fields=["channel"])
        outcome = _text(outcome, "outcome", MAX_OUTCOME)
        with self.ctx.db.unit_of_work() as s:
            inst, user = self._writer(s, ref, actor)
            event = audit.PendingEvent("contact_logged", user.name, self.ctx.now(), rules=["R4", "P6"],
                                       data={"channel": channel, "outcome": outcome})
            self.runner.touch(s, inst, [event])
            return {"id": inst.audit_count, "ticket_no": inst.ticket_no, "author": user.name, "at": iso(event.at),
                    "channel": channel, "outcome": outcome}

    def attach(self, ref, actor: str, filename, content: bytes, supersedes=None) -> dict:
        """Add a file (at most 20 MB; JPEG, PNG, GIF, WebP, PDF or plain text by its content). With
        ``supersedes`` (an attachment id of the same ticket) the new file replaces that one, which stays."""
        filename = clean_filename(filename)
        if not isinstance(content, (bytes, bytearray)):
            raise InvalidInput("the file's content must be bytes", fields=["file"])
        if len(content) > MAX_ATTACHMENT:
            raise InvalidInput(f"{filename} is {len(content) / 1024 / 1024:.1f} MB; an attachment may have at most "
                               f"{MAX_ATTACHMENT // 1024 // 1024} MB", fields=["file"], reason="too_large")
        if not content:
            raise InvalidInput(f"{filename} is empty", fields=["file"], reason="empty")
        kind = sniff(bytes(content[:4096])) if len(content) > 4096 else sniff(bytes(content))
        if kind == "text/plain" and len(content) > 4096:  # the whole file must be text, not only its start
            kind = sniff(bytes(content))
        if kind is None:
            raise InvalidInput(f"{filename} is not an accepted file type (JPEG, PNG, GIF, WebP, PDF or plain "
                               "text, checked by its content)", fields=["file"], reason="type")
        with self.ctx.db.unit_of_work() as s:
            inst, user = self._writer(s, ref, actor)
            old = None
            if supersedes not in (None, ""):
                old = s.get(Attachment, supersedes, with_for_update=True) if row_id(supersedes) else None
                if old is None or old.instance_id != inst.id:
                    raise NotFound(f"no attachment {supersedes} on {inst.ticket_no}")
                if old.superseded_by is not None:
                    raise InvalidInput(f"attachment {supersedes} was superseded already by {old.superseded_by}",
                                       fields=["supersedes"])
            now = self.ctx.now()
            row = Attachment(instance_id=inst.id, filename=filename, content_type=kind, size=len(content),
                             sha256=hashlib.sha256(content).hexdigest(), content=bytes(content),
                             uploaded_by=user.name, uploaded_at=now)
            s.add(row)
            s.flush()
            events = [audit.PendingEvent("attachment_added", user.name, now, data={
                "attachment": row.id, "filename": filename, "size": row.size, "content_type": kind,
                "sha256": row.sha256, **({"supersedes": old.id} if old else {})})]
            if old is not None:
                old.superseded_by = row.id
                events.append(audit.PendingEvent("attachment_superseded", user.name, now, data={
                    "attachment": old.id, "filename": old.filename, "sha256": old.sha256, "superseded_by": row.id}))
            self.runner.touch(s, inst, events)
            return {**attachment_dict(row), "ticket_no": inst.ticket_no}

    # ---- the desk's search
    def search(self, actor: str, q=None, filters: dict | None = None) -> dict:
        """Tickets the user may read by number, customer name or phone, filters and a saved view
        (``engine.records.desk``), newest first; phones masked (I4)."""
        text, f, assignee, view = desk_search.parse(q, {k: v for k, v in (filters or {}).items()
                                                        if v not in (None, "")})
        with self.ctx.db.reading() as s:
            user = self.ctx.user(s, actor)
            wide = bool(user.role_set & set(routing.WIDE_ROLES))
            reader = None if wide else desk_search.reader_clause(user.name, user.role_set)
            page = desk_search.run(s, text, f, assignee, view, self.ctx.now(), user.name, reader)
            if not wide:  # the condition is the rule's outline; every row found is checked against the rule
                keep = set()
                for r in page["rows"]:
                    tasks = s.scalars(select(HumanTask).where(HumanTask.instance_id == r["instance_id"]))
                    if routing.may_read(user.name, user.role_set, user.group_set, tasks):
                        keep.add(r["instance_id"])
                page["rows"] = [r for r in page["rows"] if r["instance_id"] in keep]
        for row in page["rows"]:
            row["customer_phone"] = mask_phone(row["customer_phone"]) or None
            for key in ("created_at", "completed_at", "finish_due"):
                row[key] = iso(row[key])
        return {**page, "query": text, "view": view, "limit": f.limit}
