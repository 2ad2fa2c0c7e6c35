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
