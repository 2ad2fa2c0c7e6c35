"""Audit (issue 6): verify the hash chains and the ledger, trace one ticket to the rules it followed, search and
export instances, replay them from their events."""
from __future__ import annotations

from collections.abc import Iterator

from engine.clock import iso
from engine.records import replay as replaying, search as searching, trace as tracing
from engine.records.search import MAX_PAGE
from engine.services.context import Context
from engine.services.instances import InstanceService
from engine.services.runner import Runner
from engine.store import chain as audit


class AuditService:
    """What auditors ask of the engine; nothing here changes anything."""

    def __init__(self, ctx: Context, runner: Runner, instances: InstanceService):
        self.ctx = ctx
        self.runner = runner
        self.instances = instances

    def verify(self, instance_ref=None, anchor: tuple[int, str] | None = None) -> list[dict]:
        """Audit (issue 6): every problem in the ledger and the instances' chains, each naming the first
        changed, deleted or reordered event (see ``engine.store.chain``)."""
        with self.ctx.db.reading() as s:
            instance_id = self.ctx.instance(s, instance_ref).id if instance_ref is not None else None
            return audit.verify(s, instance_id, anchor=anchor)

    def trace(self, instance_ref) -> dict:
        """Everything that happened to one ticket, for auditors (``engine.records.trace``)."""
        shown = self.instances.show(instance_ref)
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, shown["instance_id"])
            spec, subs = self.ctx.specs.get(inst.definition)
            d = inst.definition
            definition = {"process_id": d.process_id, "version": d.version, "sha256": d.sha256,
                          "filename": d.filename, "deployed_at": iso(d.deployed_at), "deployed_by": d.deployed_by}
        return tracing.build(shown, tracing.element_rules(spec, subs), definition, self.ctx.now())

    def search(self, args: dict) -> dict:
        """Filtered, newest-first, keyset-paginated instances (``engine.records.search``)."""
        f = searching.parse(args or {})
        with self.ctx.db.reading() as s:
            page = searching.search(s, f, self.ctx.now())
        for row in page["rows"]:
            for key in ("created_at", "completed_at", "response_due", "finish_due"):
                row[key] = iso(row[key])
        return {**page, "filters": f.params(), "limit": f.limit}

    def export(self, args: dict, most: int = 10_000) -> dict:
        """Up to ``most`` rows of a search result in one dictionary, keyset pages walked; ``next`` (None when
        the result is complete) continues after them. An export of the whole result uses ``audit_rows``."""
        rows, args = [], {**(args or {}), "limit": None}
        while True:
            args["limit"] = min(MAX_PAGE, most - len(rows))
            page = self.search(args)
            rows += page["rows"]
            if page["next"] is None or len(rows) >= most:
                return {**page, "rows": rows, "limit": most}
            args["after"] = page["next"]

    def rows(self, args: dict, batch: int | None = None) -> tuple[dict, Iterator[dict]]:
        """Every row of a search result, for an export of any size: ``(filters, rows)``. The filters are
        checked at once (a bad one raises InvalidInput before anything is written); the rows follow lazily,
        newest first, read in keyset batches of ``batch`` rows, each batch a short read of its own, so an
        export holds one batch in memory and no transaction stays open while the caller writes."""
        args = {k: v for k, v in (args or {}).items() if k != "limit"}  # a page size means nothing here
        f = searching.parse({**args, "limit": batch or MAX_PAGE})
        return f.params(), self._batches({**args, "limit": f.limit})

    def _batches(self, args: dict) -> Iterator[dict]:
        while True:
            page = self.search(args)
            yield from page["rows"]
            if page["next"] is None:
                return
            args = {**args, "after": page["next"]}

    def replay(self, instance_ref=None) -> list[dict]:
        """Rebuild one instance (or all) from its recorded events and compare (``engine.records.replay``)."""
        if instance_ref is None:
            return replaying.replay_all(self.ctx, self.runner)
        return [replaying.replay(self.ctx, self.runner, instance_ref)]

    def head(self) -> dict | None:
        """The newest ledger entry: record it outside the database to anchor later verifications."""
        with self.ctx.db.reading() as s:
            head = audit.ledger_head(s)
        return head and {**head, "at": iso(head["at"])}
