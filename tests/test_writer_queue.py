"""SQLite writers of one process take turns in arrival order (engine.store.database.WriterQueue)."""
import threading
import time

import pytest

from engine.store.database import WriterQueue
from engine.errors import Conflict


def test_writers_get_the_lock_in_the_order_they_asked_for_it():
    q = WriterQueue(timeout=10)
    q.acquire()
    order, threads = [], []
    for i in range(5):
        def work(i=i):
            q.acquire()
            order.append(i)
            q.release()
        t = threading.Thread(target=work)
        t.start()
        threads.append(t)
        while len(q._waiting) < i + 1:  # each is queued before the next one arrives
            time.sleep(0.001)
    q.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_unit_of_work_inside_another_on_the_same_thread_does_not_wait_for_itself():
    q = WriterQueue(timeout=1)
    q.acquire()
    q.acquire()
    q.release()
    got = []
    t = threading.Thread(target=lambda: (q.acquire(), got.append(1), q.release()))
    t.start()
    time.sleep(0.05)
    assert got == []  # still held by the outer unit of work
    q.release()
    t.join(5)
    assert got == [1]


def test_a_writer_that_waited_too_long_gets_a_conflict_and_leaves_the_line():
    q = WriterQueue(timeout=0.2)
    q.acquire()
    errors = []

    def impatient():
        try:
            q.acquire()
        except Conflict as exc:
            errors.append(str(exc))

    t = threading.Thread(target=impatient)
    t.start()
    t.join(5)
    assert len(errors) == 1 and "nothing was saved" in errors[0]
    assert not q._waiting
    q.release()
    q.acquire()  # the line still works after someone gave up
    q.release()


def test_the_embedded_database_queues_its_writers_and_lets_go_after_a_failure(tmp_path):
    from engine.store.database import Database
    lite = Database(f"sqlite:///{tmp_path / 'q.db'}")
    assert isinstance(lite.writers, WriterQueue)
    lite.create_all()
    with lite.unit_of_work():
        assert lite.writers._owner == threading.get_ident()
    assert lite.writers._owner is None
    with pytest.raises(RuntimeError):
        with lite.unit_of_work():
            raise RuntimeError("boom")
    assert lite.writers._owner is None  # released after a failed unit of work too
    lite.dispose()


def test_the_write_ahead_log_is_checkpointed_by_its_own_thread_not_inside_a_commit(tmp_path):
    """A commit never copies the log into the database file (and waits for the disk) while holding the write
    lock: the writing connections have automatic checkpoints off, and a thread of the process checkpoints."""
    import sqlite3

    from sqlalchemy import text

    from engine.store import wal
    from engine.store.database import Database

    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.unit_of_work() as s:
        s.execute(text("CREATE TABLE t (x TEXT)"))
        assert s.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 0
    for i in range(wal.COMMITS_PER_CHECKPOINT + 5):
        with db.unit_of_work() as s:
            s.execute(text("INSERT INTO t VALUES (:x)"), {"x": "x" * 3000 * (i % 3 + 1)})
    deadline = time.monotonic() + 10
    while db.checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert db.checkpointer.checkpoints >= 1
    assert (tmp_path / "w.db").stat().st_size > 200_000  # the rows reached the database file, not just the log
    probe = sqlite3.connect(tmp_path / "w.db")
    assert probe.execute("SELECT count(*) FROM t").fetchone()[0] == wal.COMMITS_PER_CHECKPOINT + 5
    probe.close()
    db.dispose()
    assert db.checkpointer._thread is None  # stopped with the connections
    with db.unit_of_work() as s:  # … and started again when the database is used after dispose
        s.execute(text("INSERT INTO t VALUES ('again')"))
    assert db.checkpointer._thread is not None
    db.dispose()


def test_an_in_memory_database_has_no_checkpointer():
    from engine.store.database import Database

    assert Database("sqlite://").checkpointer is None
    assert Database("sqlite:///:memory:").checkpointer is None
