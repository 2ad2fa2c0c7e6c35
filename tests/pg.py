"""A throw-away PostgreSQL server for the tests that ask for one.

``pg_server`` (session) starts a private cluster the first time a test asks for it: initdb + pg_ctl in a
temporary directory (as user ``postgres`` when running as root), listening on a free 127.0.0.1 port with
its unix socket in that directory, durability off. It is stopped and removed at the end of the session.
``KEFU_TEST_PG_URL`` names an existing server instead (any database on it; the tests create their own).

``pg_url`` (function) creates a fresh database for one test and drops it afterwards.

Without PostgreSQL the tests that need it are skipped with the reason, except under CI (``CI=true``, ``1`` or
``yes``, see tests/ci.py), where they fail: CI must run them (``scripts/install-postgres.sh`` installs the
server binaries).
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.ci import under_ci

PG_URL_ENV = "KEFU_TEST_PG_URL"
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "deadlock_timeout": "100ms",  # a deadlocked unit of work becomes a Conflict quickly
    "max_connections": "100",
}


class PgUnavailable(Exception):
    pass


def unavailable(reason: str):
    """Skip the test, or fail it under CI, where PostgreSQL must be there."""
    if under_ci():
        pytest.fail(f"PostgreSQL is required under CI={os.environ['CI']}: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def server_bindir() -> Path:
    """The newest installed server's bin directory (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    def major(path):
        m = re.search(r"/postgresql/(\d+)/", path)
        return int(m.group(1)) if m else 0
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PgUnavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); "
                        "run 'bash scripts/install-postgres.sh' as root, or set "
                        f"{PG_URL_ENV}=postgresql://user:password@host:port/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    """A server the tests may create databases on; ``admin_url`` is a SQLAlchemy URL (psycopg driver)."""
    admin_url: str
    root: Path | None = None       # set when this session started the server
    bindir: Path | None = None
    run_as: str | None = None
    startup_seconds: float = 0.0

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def connect(self):
        """A psycopg connection to the admin database, in autocommit (CREATE/DROP DATABASE need it)."""
        import psycopg
        url = make_url(self.admin_url).set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True, connect_timeout=10)

    def create_database(self, template: str = "template0") -> str:
        name = f"kefu_test_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" ENCODING \'UTF8\'')
        return name

    @contextmanager
    def database(self, template: str = "template0"):
        """A new database (a copy of ``template``) for the block, dropped after it."""
        name = self.create_database(template=template)
        try:
            yield name
        finally:
            self.drop_database(name)

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            _run_as([str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w",
                     "stop"], self.run_as, timeout=30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def _run_as(cmd, user, timeout):
    kwargs = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
                  "env": {**os.environ, "HOME": entry.pw_dir, "USER": user, "LOGNAME": user}}
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          cwd="/", check=False, **kwargs)


def start_server() -> PgServer:
    """initdb + pg_ctl start on a free port; raises PgUnavailable with the reason when that fails."""
    began = time.monotonic()
    bindir = server_bindir()
    run_as = None
    if os.geteuid() == 0:  # initdb and the server refuse to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PgUnavailable("running as root and there is no 'postgres' user to run the server") from None
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="kefu-pg-"))
    try:
        if run_as:
            entry = pwd.getpwnam(run_as)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        init = _run_as([str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"], run_as, timeout=120)
        if init.returncode != 0:
            raise PgUnavailable(f"initdb failed: {(init.stderr or init.stdout).strip()[-800:]}")
        last = ""
        for _attempt in range(3):  # the free port may be taken between probing and binding
            port = free_port()
            options = " ".join([f"-p {port}", f"-k {root}"] + [f"-c {k}={v}" for k, v in SERVER_SETTINGS.items()])
            started = _run_as([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"),
                               "-w", "-t", "30", "-o", options, "start"], run_as, timeout=60)
            if started.returncode == 0:
                server = PgServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", root=root,
                                  bindir=bindir, run_as=run_as)
                server.startup_seconds = time.monotonic() - began
                return server
            log = root / "server.log"
            last = (log.read_text(errors="replace") if log.exists() else started.stderr).strip()[-800:]
        raise PgUnavailable(f"pg_ctl start failed: {last}")
    except PgUnavailable:
        shutil.rmtree(root, ignore_errors=True)
        raise
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise PgUnavailable(f"{type(exc).__name__}: {exc}") from None


@pytest.fixture(scope="session")
def pg_server():
    url = os.environ.get(PG_URL_ENV)
    if url:
        parsed = make_url(url)
        if parsed.get_backend_name() != "postgresql":
            unavailable(f"{PG_URL_ENV} must be a postgresql:// URL, got {parsed.drivername}://")
        server = PgServer(parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        try:
            server.connect().close()
        except Exception as exc:  # noqa: BLE001 - any failure to reach it is the reason to skip/fail
            unavailable(f"cannot connect to {PG_URL_ENV} ({parsed.render_as_string()}): {exc}")
        yield server
        return
    try:
        server = start_server()
    except PgUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server):
    """A SQLAlchemy URL (psycopg) of a new, empty database, dropped after the test."""
    with pg_server.database() as name:
        yield pg_server.url_for(name)


@pytest.fixture(scope="session")
def pg_template(pg_server):
    """The name of a database migrated to head once per session; ``pg_url_at_head`` copies it."""
    from engine.store import schema as migrate
    from engine.store.database import Database
    with pg_server.database() as name:
        db = Database(pg_server.url_for(name))
        try:
            migrate.upgrade(db)
        finally:
            db.dispose()  # CREATE DATABASE ... TEMPLATE needs the template without connections
        yield name


@pytest.fixture
def pg_url_at_head(pg_server, pg_template):
    """Like ``pg_url``, with the schema already at the newest migration (a copy of ``pg_template``)."""
    with pg_server.database(template=pg_template) as name:
        yield pg_server.url_for(name)


@pytest.fixture(scope="session")
def pg_deployed_template(pg_server, pg_template):
    """``pg_template`` with the real diagrams deployed and the demo users (see conftest's ``db_url``)."""
    from engine import Clock
    from tests.conftest import MONDAY_9AM
    from tests.factories import make_kefu
    with pg_server.database(template=pg_template) as name:
        make_kefu(pg_server.url_for(name), Clock(MONDAY_9AM)).db.dispose()
        yield name


@pytest.fixture
def pg_url_deployed(pg_server, pg_deployed_template):
    """Like ``pg_url_at_head``, with the diagrams deployed and the demo users (a copy of the template)."""
    with pg_server.database(template=pg_deployed_template) as name:
        yield pg_server.url_for(name)


# Run an existing SQLite test on PostgreSQL as well: decorate it with ``@on_both_databases`` (it must take
# its database URL from the ``db_url`` fixture, directly or through ``kefu``/``scenario``).
on_both_databases = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
