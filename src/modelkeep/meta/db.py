"""Engines, transactions and migrations; the one seam where database errors are translated.

SQLite (the default) runs in WAL mode with a long busy timeout, and write transactions
begin with BEGIN IMMEDIATE, so concurrent writers queue instead of failing. PostgreSQL
gets the same guarantees from row locks (`SELECT ... FOR UPDATE`).

The threads of one process (a server's) also queue for SQLite's write lock on a lock of
their own: SQLite's busy handler polls with sleeps of up to 100 ms and serves no one first,
so under 16 concurrent writers a waiter could lose again and again (p99 over a second);
a thread lock hands the turn over as soon as the writer before it commits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from modelkeep.errors import DatabaseError, ModelkeepError

HEAD = "0012"  # the newest migration; checked cheaply so alembic is imported only to migrate
MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7160250515  # PostgreSQL: one machine builds or migrates a shared schema
_WRITERS: dict[str, threading.RLock] = {}  # SQLite file -> this process's writers' queue
_WRITERS_GUARD = threading.Lock()


def _writers(url: str) -> threading.RLock:
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(url, threading.RLock())


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 300})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun by the event below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=300000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except sa_exc.ArgumentError as exc:
            raise DatabaseError(url, f"not a database URL ({exc})") from exc
        self.display_url = parsed.render_as_string(hide_password=True)
        try:
            if parsed.get_backend_name() == "sqlite":
                self._reader = _sqlite_engine(url, "BEGIN")
                self._writer = _sqlite_engine(url, "BEGIN IMMEDIATE")
                self._queue: threading.RLock | None = _writers(url)
            else:
                self._reader = self._writer = create_engine(url, pool_pre_ping=True)
                self._queue = None
        except (sa_exc.SQLAlchemyError, ImportError) as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        self._reader.dispose()
        self._writer.dispose()

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                yield session
        except ModelkeepError:
            raise
        except sa_exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> DatabaseError:
        """The driver's first line of explanation, under the URL (password hidden)."""
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return DatabaseError(self.display_url, reason)

    def read(self) -> AbstractContextManager[Session]:
        return self._session(self._reader)

    @contextmanager
    def write(self) -> Iterator[Session]:
        if self._queue is None:
            with self._session(self._writer) as session:
                yield session
            return
        with self._queue, self._session(self._writer) as session:
            yield session

    # -- schema -----------------------------------------------------------------

    def current_revision(self) -> str | None:
        try:
            with self._reader.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except sa_exc.ProgrammingError:  # PostgreSQL: relation does not exist
            return None
        except sa_exc.SQLAlchemyError as exc:
            if "no such table" in str(exc):  # SQLite
                return None
            raise self._failed(exc) from exc

    def migrate(self) -> None:
        """Bring the schema to HEAD (creating it on a new database)."""
        if self.current_revision() == HEAD:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self._writer.connect() as conn:
                sqlite = conn.dialect.name == "sqlite"
                if sqlite:  # a table rebuild drops the old table: no cascading checks then
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
        except sa_exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    def create(self) -> None:
        """Make a new database's schema at HEAD directly and stamp it, as Alembic documents
        for a fresh database (create_all, then stamp): running the migration chain to build
        empty tables costs importing Alembic and every migration. A database that has
        tables already (a team's shared one) is migrated instead."""
        from modelkeep.meta.schema import create_at_head

        try:
            with self._writer.begin() as conn:
                if conn.dialect.name == "postgresql":  # several machines may init at once
                    conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
                created = create_at_head(conn, HEAD)
        except sa_exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc
        if not created:
            self.migrate()
