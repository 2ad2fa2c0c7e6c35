"""The rows a unit of work writes on every step of an instance, written with Core statements.

Each user action or timer firing brings the task rows and timer rows that mirror the workflow up to date and
updates the instance (its serialized workflow, status, deadlines, audit head) under its version check. The
ORM's unit of work can do all of that, but for these few fixed shapes its bookkeeping (dirty tracking,
dependency sorting, per-object history) costs more than the statements themselves. Here:

* ``add``, ``change`` and ``remove`` record row writes in the session (``session.info``); ``write`` issues
  them, one executemany per table and kind, for every instance the unit of work touched. New rows are then
  attached to the session as if loaded, changed ones keep their new values without pending history, removed
  ones leave it: the session and the database agree, with no flush left to do for them.
* ``save_instance`` writes the instance's changed columns with one UPDATE checked against ``lock_version``
  (StaleDataError, like the ORM's own check, when someone else saved it meanwhile) - but only when nothing
  else in the session awaits a flush; otherwise the caller lets the ORM flush everything as before.

A unit of work that buffered writes and did not call ``write`` gets them written just before it commits;
a rollback drops them.
"""
from __future__ import annotations

from sqlalchemy import bindparam, delete, event, insert, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import NO_VALUE, instance_state, set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.session import make_transient_to_detached

from engine.store.tables import Instance

try:
    import orjson
except ImportError:  # pragma: no cover - a declared dependency; without it the plain INSERT serves
    orjson = None

WRITES = "kefu_row_writes"

_INSERTS: dict = {}
_UPDATES: dict = {}
_DELETES: dict = {}
_INSTANCE = Instance.__table__
_INSTANCE_COLUMNS = frozenset(c.key for c in Instance.__mapper__.column_attrs) - {"id", "lock_version"}
# The changed columns come as parameters of the same names; the version moves on by one.
_SAVE_INSTANCE = (update(_INSTANCE).where(_INSTANCE.c.id == bindparam("_id"),
                                          _INSTANCE.c.lock_version == bindparam("_version"))
                  .values(lock_version=bindparam("_next_version")))


def _pending(session: Session) -> dict:
    writes = session.info.get(WRITES)
    if writes is None:
        writes = session.info[WRITES] = {"insert": {}, "update": {}, "delete": {}}
    return writes


def add(session: Session, obj) -> None:
    """A new row (every column set on ``obj``) to insert."""
    _pending(session)["insert"].setdefault(type(obj), []).append(obj)


def change(session: Session, obj, **values) -> None:
    """Set ``values`` on a loaded row and write them, without leaving history for the ORM to flush."""
    for key, value in values.items():
        set_committed_value(obj, key, value)
    keys = tuple(sorted(values))
    _pending(session)["update"].setdefault((type(obj), keys), []).append({"_id": obj.id, **values})


def remove(session: Session, obj) -> None:
    """A loaded row to delete; it leaves the session now."""
    _pending(session)["delete"].setdefault(type(obj), []).append(obj.id)
    session.expunge(obj)


def write(session: Session) -> None:
    """Issue the buffered row writes: deletions, then changes, then insertions, one statement each per table."""
    writes = session.info.pop(WRITES, None)
    if not writes:
        return
    issue(session.connection(), [writes])
    for objs in writes["insert"].values():
        for obj in objs:
            make_transient_to_detached(obj)  # every column is set: nothing is left expired to load again
            session.add(obj)


def take(session: Session) -> dict | None:
    """The row writes recorded in ``session`` (removed from it), to be issued in another session's
    transaction by ``issue`` (a firing computed on a reading session, applied in a short unit of work)."""
    return session.info.pop(WRITES, None)


def issue(conn, recorded: list[dict]) -> None:
    """Issue several ``take`` results on ``conn``: deletions, then changes, then insertions, one statement
    each per table (the rows are not attached to any session)."""
    deletes, updates, inserts = {}, {}, {}
    for writes in recorded:
        for model, ids in writes["delete"].items():
            deletes.setdefault(model, []).extend(ids)
        for key, params in writes["update"].items():
            updates.setdefault(key, []).extend(params)
        for model, objs in writes["insert"].items():
            inserts.setdefault(model, []).extend(objs)
    for model, ids in deletes.items():
        conn.execute(_delete_of(model), {"ids": ids})
    for (model, keys), params in updates.items():
        conn.execute(_update_of(model, keys), params)
    for model, objs in inserts.items():
        columns = [c.key for c in model.__table__.columns]
        insert_rows(conn, model.__table__, [{k: getattr(o, k) for k in columns} for o in objs])


def insert_rows(conn, table, rows: list[dict]) -> None:
    """Insert ``rows`` (all with the same keys, columns of ``table``) in one statement.

    On PostgreSQL several rows go in as one JSON document (``INSERT … SELECT … FROM json_to_recordset(…)``):
    a short statement whose text never changes, with one parameter. The multi-row ``VALUES`` list SQLAlchemy
    writes otherwise is a new, long text for every row count, with a dozen parameters per row, which psycopg
    converts again in Python on every call (a tenth of a scheduler's time in a timer storm)."""
    if not rows:
        return
    if len(rows) > 1 and conn.dialect.name == "postgresql" and orjson is not None:
        stmt, columns = _recordset_insert(table, tuple(rows[0]), conn.dialect)
        try:
            document = orjson.dumps([{name: (row[key] if process is None else process(row[key]))
                                      for key, name, process in columns} for row in rows])
        except TypeError:  # a value orjson does not write (none in Kefu's tables): the plain INSERT
            pass
        else:
            conn.execute(stmt, {"rows": document.decode("utf-8")})
            return
    conn.execute(_insert_of_table(table), rows)


_RECORDSETS: dict = {}


def _recordset_insert(table, keys: tuple, dialect):
    """The json_to_recordset INSERT of the columns ``keys`` of ``table`` for ``dialect`` and, per column, its
    key, its name in the document and the function that turns a value into what the document holds (the
    column type's own bind processing; a JSON column's value as its JSON text, cast back to json by the
    server, so SQL NULL and JSON null stay apart as ``none_as_null`` says)."""
    found = _RECORDSETS.get((table, keys, dialect.name))
    if found is not None:
        return found
    from sqlalchemy import JSON, text
    names, selects, record, columns = [], [], [], []
    for i, column in enumerate(table.c[key] for key in keys):
        names.append(dialect.identifier_preparer.format_column(column))
        if isinstance(column.type, JSON):
            dumps = dialect._json_serializer or _json_dumps
            process = (lambda v, dumps=dumps: None if v is None else dumps(v)) if column.type.none_as_null \
                else dumps
            record.append(f"c{i} text")
            selects.append(f"CAST(c{i} AS json)")
        else:
            bind = column.type._cached_bind_processor(dialect)
            process = None if bind is None else (lambda v, bind=bind: None if v is None else bind(v))
            record.append(f"c{i} {column.type.compile(dialect=dialect)}")
            selects.append(f"c{i}")
        columns.append((column.key, f"c{i}", process))
    sql = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({', '.join(names)}) "
           f"SELECT {', '.join(selects)} FROM json_to_recordset(CAST(:rows AS json)) AS r({', '.join(record)})")
    found = _RECORDSETS[(table, keys, dialect.name)] = (text(sql), columns)
    return found


def _json_dumps(value) -> str:
    import json
    return json.dumps(value)


def instance_changes(inst: Instance) -> dict | None:
    """The changed columns of ``inst`` (a loaded instance whose attributes were set since), as
    ``save_instances`` writes them; None if one cannot be written so (a relationship changed)."""
    state = instance_state(inst)
    changed = state.committed_state
    values = state.dict
    if not changed.keys() <= _INSTANCE_COLUMNS or not all(k in values for k in changed):
        return None
    # Like the ORM: only what differs from the loaded value (an attribute set to the value it had is unchanged).
    return {k: values[k] for k, old in changed.items() if old is NO_VALUE or values[k] != old}


def save_instances(conn, saves: list[tuple[Instance, int, dict]]) -> None:
    """Write instances' changes (``instance_changes``), each checked against the lock version it was read at
    (StaleDataError if any was saved by someone else meanwhile); the objects take their new version."""
    groups: dict[tuple, list[dict]] = {}
    for inst, version, params in saves:
        groups.setdefault(tuple(sorted(params)), []).append(
            {**params, "_id": inst.id, "_version": version, "_next_version": version + 1})
    many = conn.dialect.supports_sane_multi_rowcount  # else each UPDATE alone, so each count is checked
    for params in groups.values():
        for chunk in ([params] if many else [[p] for p in params]):
            result = conn.execute(_SAVE_INSTANCE, chunk)
            if result.rowcount != len(chunk):
                raise StaleDataError(f"{len(chunk) - result.rowcount} of {len(chunk)} instances were saved by "
                                     "someone else meanwhile")
    for inst, version, _params in saves:
        set_committed_value(inst, "lock_version", version + 1)


def save_instance(session: Session, inst: Instance) -> bool:
    """Write ``inst``'s changed columns in one version-checked UPDATE; False (nothing done) when the session
    holds other changes or ones this cannot write (relationships), which the ORM's flush must then handle."""
    if session.new or session.deleted or any(o is not inst for o in session.dirty):
        return False
    state = instance_state(inst)
    if state.key is None:
        return False
    if not state.committed_state:
        return True
    values = state.dict
    params = instance_changes(inst)
    version = values.get("lock_version")
    if params is None or version is None:
        return False
    if not params:
        state._commit_all(values, session.identity_map)
        return True
    params.update(_id=inst.id, _version=version, _next_version=version + 1)
    result = session.connection().execute(_SAVE_INSTANCE, params)
    if result.rowcount != 1:
        raise StaleDataError(f"instance {inst.id} was saved by someone else meanwhile (version {version})")
    values["lock_version"] = version + 1
    # What the ORM's flush does after its own UPDATE: the current values become the committed ones.
    state._commit_all(values, session.identity_map)
    return True


def _insert_of_table(table):
    stmt = _INSERTS.get(table)
    if stmt is None:
        stmt = _INSERTS[table] = insert(table)
    return stmt


def _update_of(model, keys: tuple):
    stmt = _UPDATES.get((model, keys))
    if stmt is None:
        table = model.__table__
        stmt = _UPDATES[(model, keys)] = (update(table).where(table.c.id == bindparam("_id"))
                                          .values({k: bindparam(k) for k in keys}))
    return stmt


def _delete_of(model):
    stmt = _DELETES.get(model)
    if stmt is None:
        table = model.__table__
        stmt = _DELETES[model] = delete(table).where(table.c.id.in_(bindparam("ids", expanding=True)))
    return stmt


@event.listens_for(Session, "before_commit")
def _write_leftovers(session: Session) -> None:
    write(session)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(WRITES, None)
