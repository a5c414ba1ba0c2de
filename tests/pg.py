"""Throwaway PostgreSQL server for the test suite (a pytest plugin module).

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.pg"]``.

Fixtures:

* ``postgres_url`` (session): SQLAlchemy URL ``postgresql+psycopg://USER@127.0.0.1:PORT/DB`` of a
  private server started with ``initdb``/``pg_ctl`` in a temporary folder and stopped at the end
  of the session.
* ``fresh_postgres_url`` (function): URL of a new, empty database on that server, dropped after
  the test.
* ``make_fresh_postgres_url`` (function): factory returning such URLs, for tests needing several.
* ``postgres_server`` (session): the server itself (psycopg connections, create/drop database).

Environment:

* ``MODELKEEP_TEST_DATABASE_URL``: use this existing server instead of starting one. Its user
  must be allowed to create databases.
* ``MODELKEEP_TEST_SKIP_POSTGRES=1``: skip PostgreSQL tests when no server can be provided
  (binaries missing). Without it, a missing PostgreSQL is a test error, not a silent skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

__all__ = [
    "PostgresServer",
    "fresh_postgres_url",
    "make_fresh_postgres_url",
    "postgres_server",
    "postgres_url",
]

ENV_DATABASE_URL = "MODELKEEP_TEST_DATABASE_URL"
ENV_SKIP = "MODELKEEP_TEST_SKIP_POSTGRES"

PG_SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
INITIAL_DB = "modelkeep_test"
START_TIMEOUT_S = 60
START_ATTEMPTS = 3


class PostgresUnavailable(Exception):
    """Prerequisites for starting a PostgreSQL server are missing."""


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin/initdb -> numeric version parts
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres``; highest version wins."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    if candidates:
        return Path(candidates[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
            if out and (Path(out) / "initdb").is_file():
                return Path(out)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _psycopg_kwargs(url: URL) -> dict[str, str | int]:
    """Connection keywords for psycopg from an SQLAlchemy URL (query args become options)."""
    kwargs: dict[str, str | int] = {}
    if url.host:
        kwargs["host"] = url.host
    if url.port:
        kwargs["port"] = url.port
    if url.username:
        kwargs["user"] = url.username
    if url.password:
        kwargs["password"] = url.password
    if url.database:
        kwargs["dbname"] = url.database
    for key, value in url.query.items():
        kwargs[key] = value if isinstance(value, str) else value[-1]
    return kwargs


def _url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@dataclass
class PostgresServer:
    """A PostgreSQL server reachable through ``url`` (maintenance database included)."""

    url: URL

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conninfo = make_conninfo("", connect_timeout=30, **_psycopg_kwargs(self.url))
        return psycopg.connect(conninfo, autocommit=True)

    def create_database(self, name: str) -> str:
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return _url_string(self.url.set(database=name))

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class LocalPostgres:
    """Private ``initdb``'d cluster in a temp folder, run as the ``postgres`` user when root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.tmpdir: Path | None = None
        self.datadir: Path | None = None
        self.logfile: Path | None = None
        self.port: int | None = None
        self.running = False

    # -- helpers -----------------------------------------------------------------------------

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            return ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd]
        return cmd

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.tmpdir is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        return subprocess.run(
            self._cmd(*args),
            cwd=self.tmpdir,  # the postgres user may not be able to read the caller's cwd
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _log_tail(self, limit: int = 4000) -> str:
        if self.logfile is None or not self.logfile.exists():
            return "(no server log)"
        return self.logfile.read_text(errors="replace")[-limit:]

    @staticmethod
    def _describe(proc: subprocess.CompletedProcess[str]) -> str:
        return (
            f"command {proc.args!r} exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def check_prerequisites(self) -> None:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (self.bindir / tool).is_file():
                raise PostgresUnavailable(f"{self.bindir / tool} not found")
        if self.as_root:
            if shutil.which("runuser") is None:
                raise PostgresUnavailable(
                    "running as root but `runuser` is missing (PostgreSQL refuses to run as root)"
                )
            try:
                import pwd

                pwd.getpwnam(PG_SYSTEM_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root but there is no {PG_SYSTEM_USER!r} system user to run "
                    "PostgreSQL as (install the `postgresql` package or create the user)"
                ) from None

    def start(self) -> None:
        self.check_prerequisites()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="modelkeep-pg-", dir="/tmp"))
        self.datadir = self.tmpdir / "data"
        self.logfile = self.tmpdir / "server.log"
        if self.as_root:
            shutil.chown(self.tmpdir, user=PG_SYSTEM_USER, group=None)
        os.chmod(self.tmpdir, 0o700)

        proc = self._run(
            "initdb",
            "--pgdata",
            str(self.datadir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        if proc.returncode != 0:
            raise RuntimeError("initdb failed\n" + self._describe(proc))

        (self.datadir / "pg_hba.conf").write_text(
            "# modelkeep test cluster: trust, loopback only\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )

        last_error = ""
        for _attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            self._write_config(self.port)
            proc = self._run(
                "pg_ctl",
                "start",
                "--pgdata",
                str(self.datadir),
                "--log",
                str(self.logfile),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
                timeout=START_TIMEOUT_S + 30,
            )
            if proc.returncode == 0:
                self.running = True
                break
            last_error = self._describe(proc) + "\nserver log:\n" + self._log_tail()
            # The port may have been taken between picking and binding; try another one.
            self._stop_quietly()
            time.sleep(0.5)
        else:
            raise RuntimeError(
                f"could not start PostgreSQL after {START_ATTEMPTS} attempts\n{last_error}"
            )

        server = PostgresServer(self.maintenance_url())
        server.create_database(INITIAL_DB)

    def _write_config(self, port: int) -> None:
        assert self.datadir is not None and self.tmpdir is not None
        conf = self.datadir / "postgresql.auto.conf"
        conf.write_text(
            "# written by tests/pg.py\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            f"unix_socket_directories = '{self.tmpdir}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 200\n"
            "shared_buffers = 32MB\n"
        )
        if self.as_root:
            shutil.chown(conf, user=PG_SYSTEM_USER, group=None)

    def maintenance_url(self) -> URL:
        return URL.create(
            "postgresql+psycopg",
            username=SUPERUSER,
            host="127.0.0.1",
            port=self.port,
            database="postgres",
        )

    def _stop_quietly(self) -> None:
        if self.datadir is None or not self.datadir.exists():
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self._run("pg_ctl", "stop", "--pgdata", str(self.datadir), "-m", "immediate", "-w")

    def stop(self) -> None:
        try:
            if self.running:
                self._stop_quietly()
                self.running = False
        finally:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None


def _unavailable(reason: str) -> NoReturn:
    """Skip when the user opted out of PostgreSQL tests, otherwise fail loudly."""
    if os.environ.get(ENV_SKIP) == "1":
        pytest.skip(f"PostgreSQL tests skipped ({ENV_SKIP}=1): {reason}")
    pytest.fail(
        f"PostgreSQL is required for these tests but is unavailable: {reason}.\n"
        "Install the PostgreSQL server binaries (Debian: `apt-get install postgresql`), or point "
        f"{ENV_DATABASE_URL} at a server whose user can CREATE DATABASE, or set {ENV_SKIP}=1 to "
        "skip these tests.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The server all PostgreSQL fixtures use (external via env var, or a private one)."""
    external = os.environ.get(ENV_DATABASE_URL)
    if external:
        url = make_url(external)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        yield PostgresServer(url)
        return

    bindir = find_pg_bindir()
    if bindir is None:
        _unavailable("no initdb found under /usr/lib/postgresql/*/bin, via pg_config, or on PATH")

    local = LocalPostgres(bindir)
    try:
        try:
            local.start()
        except PostgresUnavailable as exc:
            _unavailable(str(exc))
        yield PostgresServer(local.maintenance_url().set(database=INITIAL_DB))
    finally:
        local.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of the session's PostgreSQL database."""
    return _url_string(postgres_server.url)


@pytest.fixture
def make_fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """Factory for any number of new empty databases in one test; all dropped afterwards."""
    created: list[str] = []

    def make() -> str:
        name = f"mk_test_{uuid.uuid4().hex[:16]}"
        url = postgres_server.create_database(name)
        created.append(name)
        return url

    try:
        yield make
    finally:
        for name in reversed(created):
            postgres_server.drop_database(name)


@pytest.fixture
def fresh_postgres_url(make_fresh_postgres_url: Callable[[], str]) -> str:
    """SQLAlchemy URL of a brand-new empty database, dropped (WITH (FORCE)) after the test."""
    return make_fresh_postgres_url()
