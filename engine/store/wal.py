"""SQLite's write-ahead log, checkpointed off the write path.

By default SQLite checkpoints inside the commit that takes the log past 1,000 pages: that writer copies the
log into the database file and waits for the disk (fsync) while it still holds the write lock, so on a busy
disk every other writer, a firing timer among them, waits seconds behind it. Here the writing connections turn
automatic checkpoints off and one thread per process runs PASSIVE checkpoints on a connection of its own: they
copy what no reader still needs and never block a writer (or wait for one). When the process ends, closing the
last connection checkpoints what is left, as SQLite always does.
"""
from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("kefu.store")

COMMITS_PER_CHECKPOINT = 50   # a kick after this many commits in this process …
IDLE_SECONDS = 2.0            # … and a look at least this often while anything was committed


def database_file(url) -> str | None:
    """The file of a SQLite URL, or None for an in-memory database (which has no log)."""
    name = url.database
    if not name or name == ":memory:" or name.startswith("file::memory:") or "mode=memory" in str(url):
        return None
    return name


class Checkpointer:
    def __init__(self, path: str):
        self.path = path
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._commits = 0
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # how many ran (tests and diagnostics)

    def committed(self) -> None:
        """Called after every commit of this process's writing connections."""
        with self._lock:
            self._commits += 1
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="kefu-wal-checkpoint", daemon=True)
                self._thread.start()
            if self._commits >= COMMITS_PER_CHECKPOINT:
                self._wake.set()

    def _run(self) -> None:
        conn = None
        try:
            while not self._stop.is_set():
                self._wake.wait(IDLE_SECONDS)
                self._wake.clear()
                with self._lock:
                    pending, self._commits = self._commits, 0
                if self._stop.is_set() or not pending:
                    continue
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)
                self.checkpoint(conn)
        finally:
            if conn is not None:
                conn.close()

    def checkpoint(self, conn) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # busy with another checkpoint, or the file is gone: the next look retries
            log.debug("WAL checkpoint skipped: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            self._thread = None
        self._stop.clear()  # a later commit (the database used again after dispose) starts a new thread
