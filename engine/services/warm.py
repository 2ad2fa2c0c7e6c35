"""Warm instances: the workflows this process has just saved, kept in memory so that the next change of the
same instance skips restoring it from its JSON.

A kept workflow is keyed by its instance id and the lock version its save committed. A unit of work that
changes the instance takes it (``take``) only if the version it read from the database is that one: any
save by another process (or another ``Kefu`` on the same database) moved the version on, and the stale copy
is dropped, never used. Taking removes it, so one unit of work at a time holds it; it comes back (``put``) only
after the unit of work that saved it committed, with the new version - a unit of work that fails or rolls
back never puts its half-changed workflow back, and the next one restores from the database. Reading paths
(show, replay, migration checks) restore their own copy and never touch a kept one.

Memory is bounded: a least-recently-used list whose size in bytes is estimated from the saved JSON's length
(``SIZE_FACTOR`` times it), within ``Config.instance_cache_bytes`` (``KEFU_INSTANCE_CACHE_MB``; 0: off).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

SIZE_FACTOR = 4  # a restored workflow takes about this many bytes of memory per character of its JSON
PENDING = "kefu_warm"  # session.info key: what a unit of work puts back when it commits


class WarmInstances:
    """A size-bounded LRU of workflows by instance id, each with the lock version it was saved at."""

    def __init__(self, budget: int):
        self.budget = max(0, int(budget))
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[int, object, int]] = OrderedDict()  # id → (version, wf, size)
        self.size = 0
        self.hits = self.misses = self.stale = 0

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def take(self, instance_id: int, version: int):
        """The workflow kept for the instance at ``version``, removed from the cache (the caller holds it
        alone now); None if none is kept or the kept one is of another version (then it is dropped)."""
        with self._lock:
            item = self._items.pop(instance_id, None)
            if item is not None:
                self.size -= item[2]
                if item[0] == version:
                    self.hits += 1
                    return item[1]
                self.stale += 1
            self.misses += 1
            return None

    def put(self, instance_id: int, version: int, wf, size: int) -> None:
        """Keep ``wf`` as the instance's workflow at ``version`` (the newest use); the least recently used
        ones leave while the total is over the budget. One larger than the whole budget is not kept."""
        with self._lock:
            old = self._items.get(instance_id)
            if old is not None and old[0] > version:  # a later save of another thread was kept meanwhile
                return
            if old is not None:
                del self._items[instance_id]
                self.size -= old[2]
            if size > self.budget:
                return
            self._items[instance_id] = (version, wf, size)
            self.size += size
            while self.size > self.budget:
                _id, (_v, _wf, dropped) = self._items.popitem(last=False)
                self.size -= dropped

    def rekey(self, instance_id: int, old: int, new: int) -> None:
        """The instance was saved from version ``old`` to ``new`` without a change of its workflow (a claim,
        a hand-over): a workflow kept at ``old`` is still the one at ``new``."""
        with self._lock:
            item = self._items.get(instance_id)
            if item is not None:
                if item[0] == old:
                    self._items[instance_id] = (new, item[1], item[2])
                    self._items.move_to_end(instance_id)
                else:
                    self._items.pop(instance_id)
                    self.size -= item[2]

    def discard(self, instance_id: int) -> None:
        with self._lock:
            item = self._items.pop(instance_id, None)
            if item is not None:
                self.size -= item[2]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0

    def version_of(self, instance_id: int) -> int | None:
        """The lock version the instance's workflow is kept at, or None (for tests and statistics)."""
        item = self._items.get(instance_id)
        return item[0] if item is not None else None

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict:
        return {"instances": len(self._items), "bytes": self.size, "budget": self.budget, "hits": self.hits,
                "misses": self.misses, "stale": self.stale}
