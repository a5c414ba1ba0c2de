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

import functools
import re
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from modelkeep.errors import DatabaseError, ModelkeepError
from modelkeep.meta.records import new_identity

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

HEAD = "0012"  # the newest migration; checked cheaply so alembic is imported only to migrate
MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_SCHEMA = Path(__file__).parent / "schema.sql"  # what `create` runs on a new SQLite file
_MIGRATION_LOCK = 7160250515  # PostgreSQL: one machine builds or migrates a shared schema
_WRITERS: dict[str, threading.RLock] = {}  # SQLite file -> this process's writers' queue
_WRITERS_GUARD = threading.Lock()
# A plain SQLite file URL, which the standard library's sqlite3 opens as well as SQLAlchemy
# (`sqlite:////abs/path`, `sqlite:///rel/path`); anything else (options, memory) goes
# through SQLAlchemy only.
_SQLITE_FILE = re.compile(r"sqlite(?:\+pysqlite)?:///([^?#]+)")
_EXPANDING = re.compile(r":(\w+)\b")
_CHANGE = "change"  # Session.info: the transaction's `Change`


def _writers(url: str) -> threading.RLock:
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(url, threading.RLock())


def _sqlite_engine(url: str, begin: str) -> Engine:
    from sqlalchemy import create_engine, event

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


@functools.cache
def _row_type(columns: tuple[str, ...]) -> Any:
    return namedtuple("Row", columns, rename=True)


def _named_rows(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Any:
    return _row_type(tuple(d[0] for d in cursor.description))(*row)


def expand(sql: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """`IN :ids` with a list or tuple becomes `IN (:ids_0, :ids_1, ...)` for either driver."""
    flat: dict[str, Any] = {}

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        value = params.get(name)
        if not isinstance(value, (list, tuple)):
            return match.group(0)
        names = [f"{name}__{i}" for i in range(len(value))]
        flat.update(zip(names, value, strict=True))
        return "(" + ", ".join(f":{n}" for n in names) + ")" if names else "(NULL)"

    sql = _EXPANDING.sub(one, sql)
    flat.update((k, v) for k, v in params.items() if not isinstance(v, (list, tuple)))
    return sql, flat


def sqlite_time(at: datetime) -> str:
    """A time as SQLAlchemy's SQLite dialect stores it (`models.UTCDateTime`): UTC, as text."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Query:
    """Reads in one snapshot, written once as SQL that SQLite and PostgreSQL both speak:
    on a SQLite file through the standard library's sqlite3 (a read command then never
    imports SQLAlchemy), elsewhere through SQLAlchemy's connection. Rows are named tuples
    (or SQLAlchemy's rows): fields by column name. Values come back as each driver gives
    them (SQLite: times as text, booleans as 0/1); the record builders normalise them."""

    for_update = ""  # a snapshot locks nothing (see `Change`)

    def __init__(self, run: Any) -> None:
        self._run = run

    def rows(self, sql: str, **params: Any) -> Sequence[Any]:
        rows: Sequence[Any] = self._run(*expand(sql, params))
        return rows

    def row(self, sql: str, **params: Any) -> Any | None:
        found = self.rows(sql, **params)
        return found[0] if found else None

    def scalar(self, sql: str, **params: Any) -> Any:
        found = self.row(sql, **params)
        return found[0] if found is not None else None


class Change(Query):
    """`Query` inside a writer's transaction, which also changes rows with SQL written once
    for both databases: the registry's changes and their events, which every change pays
    for, run so rather than through the ORM's unit of work (which cost more than the
    change itself). Locks as the ORM's writers do: `for_update` rows on PostgreSQL, while
    SQLite's write transaction (BEGIN IMMEDIATE) holds the whole database."""

    def __init__(
        self, run: Any, change: Any, insert: Any, postgres: bool, info: dict[str, Any]
    ) -> None:
        super().__init__(run)
        self._change = change
        self._insert = insert
        self.postgres = postgres
        self.for_update = " FOR UPDATE" if postgres else ""
        self.info = info  # what this transaction has read once (the chain's head, webhooks)

    def execute(self, sql: str, **params: Any) -> int:
        """Run an INSERT, UPDATE or DELETE; the number of rows it changed."""
        count: int = self._change(*expand(sql, params))
        return count

    def insert(self, sql: str, **params: Any) -> int:
        """Run an INSERT of one row into a table with an `id` key; the new row's id."""
        made: int = self._insert(*expand(sql, params))
        return made

    def time(self, at: datetime) -> Any:
        """at as this database's driver takes it for a time column."""
        return at if self.postgres else sqlite_time(at)


@functools.lru_cache(maxsize=256)  # bounded: an IN list of each length is its own SQL
def _text(sql: str) -> Any:
    from sqlalchemy import text

    return text(sql)


def session_query(s: Session) -> Change:
    """`Query`'s SQL inside a writer's own transaction (what it changed so far included),
    one per transaction: on SQLite through the driver's own connection (SQLAlchemy's costs
    more than the statement), elsewhere through SQLAlchemy's connection, never the ORM's."""
    found = s.info.get(_CHANGE)
    if isinstance(found, Change):
        return found
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        lite = conn.connection.driver_connection
        assert isinstance(lite, sqlite3.Connection)

        def run(sql: str, params: dict[str, Any]) -> Sequence[Any]:
            s.flush()
            cursor = lite.cursor()
            cursor.row_factory = _named_rows
            return cursor.execute(sql, params).fetchall()

        def change(sql: str, params: dict[str, Any]) -> int:
            s.flush()
            return lite.execute(sql, params).rowcount

        def insert(sql: str, params: dict[str, Any]) -> int:
            s.flush()
            made = lite.execute(sql, params).lastrowid  # RETURNING needs SQLite 3.35
            assert made is not None
            return made

    else:

        def run(sql: str, params: dict[str, Any]) -> Sequence[Any]:
            s.flush()
            return conn.execute(_text(sql), params).all()

        def change(sql: str, params: dict[str, Any]) -> int:
            s.flush()
            count: int = conn.execute(_text(sql), params).rowcount
            return count

        def insert(sql: str, params: dict[str, Any]) -> int:
            s.flush()
            made: int = conn.execute(_text(f"{sql} RETURNING id"), params).scalar_one()
            return made

    postgres = conn.dialect.name == "postgresql"
    found = s.info[_CHANGE] = Change(run, change, insert, postgres, s.info)
    return found


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        plain = _SQLITE_FILE.fullmatch(url)
        path = unquote(plain.group(1)) if plain else None
        self._sqlite_file = path if path and path != ":memory:" else None
        self._queue: threading.RLock | None = None
        self._made: tuple[Engine, Engine] | None = None
        self._engines_lock = threading.Lock()  # a server's first requests come at once
        if url.startswith("sqlite"):
            self._queue = _writers(url)
        if self._sqlite_file is not None:
            self.display_url = url  # a file's URL holds no password
        else:
            self.display_url = self._parsed().render_as_string(hide_password=True)

    def _parsed(self) -> Any:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url)
        except sa_exc.ArgumentError as exc:
            raise DatabaseError(self.url, f"not a database URL ({exc})") from exc

    @property
    def _engines(self) -> tuple[Engine, Engine]:
        """(reader, writer), made on first use: a read command on a SQLite file never needs them."""
        with self._engines_lock:
            if self._made is None:
                self._made = self._make_engines()
            return self._made

    def _make_engines(self) -> tuple[Engine, Engine]:
        from sqlalchemy import create_engine
        from sqlalchemy import exc as sa_exc

        try:
            if self._parsed().get_backend_name() == "sqlite":
                return _sqlite_engine(self.url, "BEGIN"), _sqlite_engine(
                    self.url, "BEGIN IMMEDIATE"
                )
            engine = create_engine(self.url, pool_pre_ping=True)
            return engine, engine
        except (sa_exc.SQLAlchemyError, ImportError) as exc:
            raise self._failed(exc) from exc

    @property
    def _reader(self) -> Engine:
        return self._engines[0]

    @property
    def _writer(self) -> Engine:
        return self._engines[1]

    def close(self) -> None:
        if self._made is not None:
            reader, writer = self._made
            reader.dispose()
            writer.dispose()

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy.orm import Session

        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                yield session
        except ModelkeepError:
            raise
        except (sa_exc.SQLAlchemyError, sqlite3.Error) as exc:  # sqlite3: `session_query`
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

    @contextmanager
    def query(self) -> Iterator[Query]:
        """A read-only snapshot for `Query`'s SQL (see there)."""
        if self._sqlite_file is None:
            from sqlalchemy import text

            with self.read() as s:
                yield Query(lambda sql, params: s.execute(text(sql), params).all())
            return
        try:
            conn = self._sqlite_connect()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        try:
            conn.execute("BEGIN")
            yield Query(lambda sql, params: conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        finally:
            conn.close()  # rolls back: nothing was written

    def _sqlite_connect(self) -> sqlite3.Connection:
        """The file, never created here (a missing file is an error, as SQLAlchemy's
        first write would make an empty one)."""
        assert self._sqlite_file is not None
        uri = Path(self._sqlite_file).absolute().as_uri() + "?mode=rw"
        conn = sqlite3.connect(uri, uri=True, timeout=300, isolation_level=None)
        try:
            conn.row_factory = _named_rows
            conn.execute("PRAGMA busy_timeout=300000")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- schema -----------------------------------------------------------------

    def current_revision(self) -> str | None:
        if self._sqlite_file is not None:
            if not Path(self._sqlite_file).exists():
                return None  # made by the migration, as SQLAlchemy's first connection would
            try:
                lite = self._sqlite_connect()
                try:
                    row = lite.execute("SELECT version_num FROM alembic_version").fetchone()
                finally:
                    lite.close()
            except sqlite3.Error as exc:
                if "no such table" in str(exc):
                    return None
                raise self._failed(exc) from exc
            return row[0] if row is not None else None
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        try:
            with self._reader.connect() as conn:
                found: str | None = conn.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar()
                return found
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
        from sqlalchemy import exc as sa_exc

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
        if not (self._create_sqlite() if self._sqlite_file else self._create_at_head()):
            self.migrate()

    def _create_at_head(self) -> bool:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        from modelkeep.meta.schema import create_at_head

        try:
            with self._writer.begin() as conn:
                if conn.dialect.name == "postgresql":  # several machines may init at once
                    conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
                created: bool = create_at_head(conn, HEAD)
                return created
        except sa_exc.SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    def _create_sqlite(self) -> bool:
        """`create_at_head` on a SQLite file with the standard library alone: the DDL that
        SQLAlchemy's `create_all` runs there (`schema.sql`), the stamp and the database's id,
        in one transaction; False (and nothing done) when the file has tables already."""
        assert self._sqlite_file is not None
        statements = [s for s in SQLITE_SCHEMA.read_text().split(";\n") if s.strip()]
        database_id, created = new_identity()
        created_at = sqlite_time(created)
        try:
            conn = sqlite3.connect(self._sqlite_file, timeout=300, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # as every connection of ours runs
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone():
                    conn.execute("ROLLBACK")
                    return False
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD,))
                conn.execute(
                    "INSERT INTO database_identity (id, created_at) VALUES (?, ?)",
                    (database_id, created_at),
                )
                conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return True
