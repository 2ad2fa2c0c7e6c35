"""What a read of plain rows needs (``engine.services.queue``: the task lists and one task): the configuration,
a DB-API connection to read on, the tasks' forms from the stored diagrams, and the check that a user exists
and is active. ``Context`` is one (on a connection of its database's reading pool); ``OwnReader`` is the one a
command that only reads makes (``kefu tasks``, ``kefu task``): it opens a connection of its own from the
database URL, and neither it nor anything it imports loads SQLAlchemy."""
from __future__ import annotations

from contextlib import contextmanager

from engine.bpmn import catalogue
from engine.config import Config
from engine.errors import NotAllowed
from engine.limits import MAX_ROW_ID
from engine.store import light, plain

SYSTEM = "system"  # the actor of what Kefu does by itself (timers, imports, the console's setup)
_DEFINITION = 'WHERE "id" = :id'


def instance_keys(ref) -> list[tuple[str, object]]:
    """The columns, in turn, that may name the instance ``ref``: its id (a number a row id can hold; beyond it
    no row exists, and the database refuses the number), then its ticket number."""
    keys = []
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
        if 0 < int(ref) <= MAX_ROW_ID:
            keys.append(("id", int(ref)))
    if isinstance(ref, str):
        keys.append(("ticket_no", ref))
    return keys


class Reader:
    def __init__(self, config: Config):
        self.config = config
        self.catalogues: dict[int, dict] = {}  # definition row id → its tasks as a task list shows them

    @contextmanager
    def plain(self):
        """A DB-API connection to read on (``engine.store.plain.Connection``)."""
        raise NotImplementedError
        yield  # pragma: no cover

    @staticmethod
    def active(user, name: str):
        """``user`` (the row found for ``name``: mapped or a plain row) if it exists and is active; NotAllowed
        otherwise."""
        if user is None or not user.active:
            raise NotAllowed(f"unknown or inactive user {name!r}; add it with 'kefu users add'")
        return user

    def task_info(self, inst, spec_name: str, s=None) -> dict:
        """What a task list shows of the task spec ``spec_name`` of the instance's definition version (form,
        English name, documentation, rule IDs), read from the stored diagram (``engine.bpmn.catalogue``) once
        per definition version, without parsing it into a spec. ``inst``: a mapped instance or a row with its
        ``definition_id``; ``s``: the connection (``engine.store.plain``) or session to read on."""
        tasks = self.catalogues.get(inst.definition_id)
        if tasks is None:
            row = self._definition(inst.definition_id, s)
            tasks = self.catalogues[inst.definition_id] = catalogue.read(row.xml, row.process_id)
        return catalogue.task_info(*tasks.get(spec_name, (None, None, None)))

    def _definition(self, definition_id: int, s=None):
        """The definition row's process id and diagram."""
        if isinstance(s, plain.Connection):
            return s.first(light.definitions, _DEFINITION, {"id": definition_id})
        with self.plain() as conn:
            return conn.first(light.definitions, _DEFINITION, {"id": definition_id})


class OwnReader(Reader):
    """A reader on one connection of its own (made when first read on, closed by ``close``)."""

    def __init__(self, config: Config):
        super().__init__(config)
        self._conn: plain.Connection | None = None

    @classmethod
    def open(cls, config: Config) -> OwnReader | None:
        """A reader of the configured database, connected; None for a URL only SQLAlchemy reads (see
        ``engine.store.plain.connect``). ``plain.NoDatabase`` when the SQLite file does not exist."""
        conn = plain.connect(config.database_url)
        if conn is None:
            return None
        reader = cls(config)
        reader._conn = conn
        return reader

    @contextmanager
    def plain(self):
        yield self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
