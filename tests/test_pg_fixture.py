"""Smoke tests for the PostgreSQL fixtures in tests/pg.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.pg import PostgresServer


def _scalar(url: str, query: str) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar_one()
    finally:
        engine.dispose()


def test_postgres_url_is_psycopg(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.database
    assert _scalar(postgres_url, "SELECT 1") == 1


def test_fresh_database_select_one(fresh_postgres_url: str) -> None:
    assert _scalar(fresh_postgres_url, "SELECT 1") == 1
    assert _scalar(fresh_postgres_url, "SELECT current_database()") == (
        make_url(fresh_postgres_url).database
    )
    tables = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
    assert _scalar(fresh_postgres_url, tables) == 0


def test_two_fresh_databases_are_distinct(
    fresh_postgres_url: str, make_fresh_postgres_url: Callable[[], str]
) -> None:
    other_url = make_fresh_postgres_url()
    assert make_url(fresh_postgres_url).database != make_url(other_url).database

    engine = create_engine(fresh_postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE only_here (x int)"))
    finally:
        engine.dispose()
    exists = "SELECT to_regclass('public.only_here') IS NOT NULL"
    assert _scalar(fresh_postgres_url, exists) is True
    assert _scalar(other_url, exists) is False


_seen: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_fresh_database_dropped_after_test(
    round_: int, fresh_postgres_url: str, postgres_server: PostgresServer
) -> None:
    name = make_url(fresh_postgres_url).database
    assert name is not None
    for previous in _seen:
        assert previous != name
        with postgres_server.connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [previous]
            ).fetchone()
        assert row is None, f"database {previous} from an earlier test was not dropped"
    _seen.append(name)
