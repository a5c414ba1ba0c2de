"""The metadata layer on both databases: numbering, refs, errors, records, migrations."""

from __future__ import annotations

import functools
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import modelkeep as mk
from modelkeep.errors import (
    ArtifactNotFound,
    DigestNotFound,
    InvalidArgument,
    InvalidName,
    InvalidRef,
    TypeMismatch,
    VersionNotFound,
)
from modelkeep.meta.db import HEAD
from modelkeep.store.chunking import digest
from tests.conftest import downgrade, write

_n = itertools.count()


def _add(repo: mk.Repo, tmp: Path, name: str, content: bytes, **kw: Any) -> mk.AddResult:
    path = write(tmp / f"src-{next(_n)}" / "file.bin", content)
    return repo.add(path, name, **kw)


@functools.cache
def _colliding_contents() -> tuple[bytes, bytes]:
    """Two small contents whose BLAKE3 ids share their first 8 hex digits (a birthday search)."""
    seen: dict[bytes, bytes] = {}
    for i in itertools.count():
        content = b"collide-%d" % i
        head = digest(content)[:4]
        if head in seen:
            return seen[head], content
        seen[head] = content
    raise AssertionError("unreachable")


# -- numbering ----------------------------------------------------------------------


def test_version_numbers_start_at_one_and_increase(backend_repo: mk.Repo, tmp_path: Path) -> None:
    numbers = [_add(backend_repo, tmp_path, "m", b"v%d" % i).version.number for i in range(6)]
    assert numbers == [1, 2, 3, 4, 5, 6]
    listed = backend_repo.versions("m")
    assert [v.number for v in listed] == numbers
    assert [v.ref for v in listed] == [f"m:v{n}" for n in numbers]


def test_artifacts_have_independent_numbering(backend_repo: mk.Repo, tmp_path: Path) -> None:
    got: dict[str, list[int]] = {"a": [], "team/b": [], "c.d_e-f": []}
    for i in range(3):
        for name in got:
            got[name].append(
                _add(backend_repo, tmp_path, name, f"{name}{i}".encode()).version.number
            )
    assert got == {name: [1, 2, 3] for name in got}
    assert _add(backend_repo, tmp_path, "late", b"x").version.number == 1


# -- refs -----------------------------------------------------------------------------


def test_resolve_name_latest_and_number(backend_repo: mk.Repo, tmp_path: Path) -> None:
    v1 = _add(backend_repo, tmp_path, "m", b"one").version
    v2 = _add(backend_repo, tmp_path, "m", b"two").version
    v3 = _add(backend_repo, tmp_path, "m", b"three").version
    assert backend_repo.show("m") == v3
    assert backend_repo.show("m:latest") == v3
    assert backend_repo.show("m:v1") == v1
    assert backend_repo.show("m:v2") == v2
    assert backend_repo.show("m:v3") == v3
    assert backend_repo.show("  m:v2  ") == v2


def test_resolve_digest_prefix(backend_repo: mk.Repo, tmp_path: Path) -> None:
    v = _add(backend_repo, tmp_path, "m", b"content for prefix lookups").version
    _add(backend_repo, tmp_path, "m", b"something else")
    hexid = v.digest.removeprefix("b3:")
    for n in (8, 12, 20, 64):
        assert backend_repo.show(f"b3:{hexid[:n]}") == v
    assert backend_repo.show(f"b3:{hexid[:16].upper()}") == v
    _resolve_digest_shared_by_two_artifacts_is_not_ambiguous(backend_repo, tmp_path)
    _resolve_unknown_digest(backend_repo, tmp_path)


def _resolve_digest_shared_by_two_artifacts_is_not_ambiguous(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    a = _add(backend_repo, tmp_path, "a", b"same bytes").version
    b = _add(backend_repo, tmp_path, "b", b"same bytes").version
    assert a.digest == b.digest
    found = backend_repo.show(f"b3:{a.digest[3:15]}")
    assert found.digest == a.digest
    assert found.ref in {a.ref, b.ref}


def test_resolve_ambiguous_prefix(backend_repo: mk.Repo, tmp_path: Path) -> None:
    one, two = _colliding_contents()
    d1, d2 = digest(one).hex(), digest(two).hex()
    assert d1[:8] == d2[:8] and d1 != d2
    _add(backend_repo, tmp_path, "x", one)
    _add(backend_repo, tmp_path, "y", two)
    with pytest.raises(DigestNotFound) as info:
        backend_repo.show(f"b3:{d1[:8]}")
    assert info.value.prefix == d1[:8]
    assert sorted(info.value.matches) == sorted([f"b3:{d1[:16]}", f"b3:{d2[:16]}"])
    assert "ambiguous" in str(info.value)
    # One more digit where they differ makes it unique.
    common = next(i for i, (c1, c2) in enumerate(zip(d1, d2, strict=True)) if c1 != c2)
    assert backend_repo.show(f"b3:{d1[: common + 1]}").name == "x"
    assert backend_repo.show(f"b3:{d2[: common + 1]}").name == "y"


def _resolve_unknown_digest(backend_repo: mk.Repo, tmp_path: Path) -> None:
    v = _add(backend_repo, tmp_path, "m", b"abc").version
    other = "0" * 16 if not v.digest[3:].startswith("0000") else "f" * 16
    with pytest.raises(DigestNotFound) as info:
        backend_repo.show(f"b3:{other}")
    assert info.value.matches == []
    assert other in str(info.value)
    with pytest.raises(InvalidRef):
        backend_repo.show("b3:1234567")  # too short


def test_unknown_artifact_suggests_similar(backend_repo: mk.Repo, tmp_path: Path) -> None:
    _add(backend_repo, tmp_path, "fraud-detector", b"1")
    _add(backend_repo, tmp_path, "team/vision", b"2")
    with pytest.raises(ArtifactNotFound) as info:
        backend_repo.show("fraud-detektor")
    assert info.value.name == "fraud-detektor"
    assert "fraud-detector" in info.value.similar
    assert "fraud-detector" in str(info.value)
    with pytest.raises(ArtifactNotFound) as info:
        backend_repo.show("fraud")
    assert "fraud-detector" in info.value.similar
    with pytest.raises(ArtifactNotFound) as info:
        backend_repo.versions("zzzzzzzz")
    assert info.value.similar == []
    with pytest.raises(ArtifactNotFound):
        backend_repo.get("nothing:v1", tmp_path / "out")
    with pytest.raises(InvalidName):
        backend_repo.versions("Bad Name")
    _unknown_version_names_latest(backend_repo, tmp_path)


def _unknown_version_names_latest(backend_repo: mk.Repo, tmp_path: Path) -> None:
    _add(backend_repo, tmp_path, "m", b"1")
    _add(backend_repo, tmp_path, "m", b"2")
    with pytest.raises(VersionNotFound) as info:
        backend_repo.show("m:v5")
    assert (info.value.name, info.value.number, info.value.latest) == ("m", 5, 2)
    assert "latest is v2" in str(info.value)


# -- records --------------------------------------------------------------------------


def test_type_mismatch(backend_repo: mk.Repo, tmp_path: Path) -> None:
    v1 = _add(backend_repo, tmp_path, "m", b"1", type="model").version
    assert v1.type == "model"
    with pytest.raises(TypeMismatch) as info:
        _add(backend_repo, tmp_path, "m", b"2", type="dataset")
    assert (info.value.existing, info.value.given) == ("model", "dataset")
    assert [v.number for v in backend_repo.versions("m")] == [1], "a refused add left a version"
    v2 = _add(backend_repo, tmp_path, "m", b"3").version  # no type: keeps the artifact's
    assert (v2.number, v2.type) == (2, "model")
    assert _add(backend_repo, tmp_path, "m", b"4", type="model").version.number == 3
    assert _add(backend_repo, tmp_path, "untyped", b"5").version.type == "other"
    with pytest.raises(InvalidArgument):
        _add(backend_repo, tmp_path, "n", b"6", type="weights")
    with pytest.raises(ArtifactNotFound):
        backend_repo.show("n")


def test_metadata_round_trip(backend_repo: mk.Repo, tmp_path: Path) -> None:
    meta: dict[str, Any] = {
        "lr": 0.001,
        "epochs": 12,
        "big": 2**53,
        "tags": ["a", "b", {"nested": [1, 2.5, None, True, False]}],
        "config": {"optimizer": {"name": "adam", "betas": [0.9, 0.999]}, "empty": {}},
        "unicode": "naïve ☃ 日本",
        "quote": 'it\'s "quoted"\n',
        "none": None,
    }
    added = _add(backend_repo, tmp_path, "m", b"x", message="first try ✓", metadata=meta)
    assert added.version.metadata == meta
    assert added.version.message == "first try ✓"
    shown = backend_repo.show("m:v1")
    assert shown.metadata == meta
    assert shown.message == "first try ✓"
    assert backend_repo.versions("m")[0].metadata == meta
    plain = _add(backend_repo, tmp_path, "m", b"y").version
    assert plain.metadata == {}
    assert plain.message == ""
    _version_record_fields(backend_repo, tmp_path)


def test_created_at_is_utc_aware(
    backend_repo: mk.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = datetime.now(UTC)
    v = _add(backend_repo, tmp_path, "m", b"x").version
    after = datetime.now(UTC)
    for when in (v.created_at, backend_repo.show("m").created_at):
        assert when.tzinfo is not None
        assert when.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1)
    art = backend_repo.artifacts()[0]
    assert art.created_at.utcoffset() == timedelta(0)
    assert backend_repo.show("m").created_at == v.created_at
    _user_from_environment(backend_repo, tmp_path, monkeypatch)


def _user_from_environment(
    backend_repo: mk.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _add(backend_repo, tmp_path, "u", b"1").version.user == "tester"
    monkeypatch.setenv("MODELKEEP_USER", "alice@example")
    with mk.open(backend_repo.root) as other:
        v2 = _add(other, tmp_path, "u", b"2").version
    assert v2.user == "alice@example"
    assert [v.user for v in backend_repo.versions("u")] == ["tester", "alice@example"]


def test_identical_readd_returns_existing(backend_repo: mk.Repo, tmp_path: Path) -> None:
    path = write(tmp_path / "f.bin", b"weights")
    first = backend_repo.add(path, "m", message="one")
    assert first.created is True
    again = backend_repo.add(path, "m", message="two", metadata={"k": 1})
    assert again.created is False
    assert again.version == first.version
    assert again.version.message == "one"
    copy = write(tmp_path / "elsewhere" / "g.bin", b"weights")
    third = backend_repo.add(copy, "m")
    assert third.created is False
    assert third.version.number == 1
    assert [v.number for v in backend_repo.versions("m")] == [1]


def test_readding_older_content_returns_that_version(backend_repo: mk.Repo, tmp_path: Path) -> None:
    """Content equal to an older version of the name is that version: no second number
    (as W&B does), and `same_as` says it was an older one."""
    v1 = _add(backend_repo, tmp_path, "m", b"A").version
    r2 = _add(backend_repo, tmp_path, "m", b"B")
    assert r2.same_as is None and r2.created
    r3 = _add(backend_repo, tmp_path, "m", b"A")
    assert r3.created is False
    assert r3.version == v1 and r3.same_as == v1
    assert backend_repo.show("m").number == 2  # latest stays the newest number
    # per artifact: equal content under another name is a version of its own.
    r = _add(backend_repo, tmp_path, "other", b"B")
    assert r.created and r.same_as is None
    r4 = _add(backend_repo, tmp_path, "m", b"B")  # the latest itself: unchanged
    assert r4.created is False and r4.same_as is None and r4.version.number == 2
    backend_repo.delete("m:v1", reason="bad data")
    r5 = _add(backend_repo, tmp_path, "m", b"A")  # a deleted version is not returned
    assert r5.created and r5.version.number == 3


def test_artifacts_lists_latest(backend_repo: mk.Repo, tmp_path: Path) -> None:
    assert backend_repo.artifacts() == []
    for i in range(3):
        _add(backend_repo, tmp_path, "zeta", b"z%d" % i, type="model")
    _add(backend_repo, tmp_path, "alpha/data", b"a", type="dataset")
    arts = backend_repo.artifacts()
    assert [a.name for a in arts] == ["alpha/data", "zeta"]
    assert [a.type for a in arts] == ["dataset", "model"]
    latest = [a.latest for a in arts]
    assert all(v is not None for v in latest)
    assert [v.ref for v in latest if v] == ["alpha/data:v1", "zeta:v3"]
    assert arts[1].latest == backend_repo.show("zeta")


def _version_record_fields(backend_repo: mk.Repo, tmp_path: Path) -> None:
    data = b"0123456789" * 1000
    path = write(tmp_path / "weights.bin", data)
    os.chmod(path, 0o755)
    v = backend_repo.add(path, "rec", type="model").version
    assert (v.name, v.number, v.ref, v.type, v.kind) == ("rec", 1, "rec:v1", "model", "file")
    assert v.digest == "b3:" + digest(data).hex()
    assert (v.size, v.file_count, v.mode, v.source_name) == (len(data), 1, 0o755, "weights.bin")
    write(tmp_path / "d" / "a.bin", b"a")
    write(tmp_path / "d" / "s" / "b.bin", b"bb")
    d = backend_repo.add(tmp_path / "d", "folder").version
    assert (d.kind, d.size, d.file_count, d.source_name) == ("dir", 3, 2, "d")


# -- migrations ---------------------------------------------------------------------


def _fresh_database_is_at_head(backend_repo: mk.Repo) -> None:
    engine = create_engine(backend_repo.settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert [r[0] for r in rows] == [HEAD]
    assert backend_repo.db.current_revision() == HEAD


def test_reopening_does_not_migrate_again(
    backend_repo: mk.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fresh_database_is_at_head(backend_repo)
    _add(backend_repo, tmp_path, "m", b"kept")
    from alembic import command

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("migrations ran again on an up-to-date database")

    monkeypatch.setattr(command, "upgrade", refuse)
    for _ in range(2):
        with mk.open(backend_repo.root) as again:
            assert again.show("m:v1").digest == "b3:" + digest(b"kept").hex()
            assert _add(again, tmp_path, "m", b"more").version.number == 2
    assert [v.number for v in backend_repo.versions("m")] == [1, 2]


def test_metadata_that_is_not_json_is_refused_before_storing(repo: mk.Repo, tmp_path: Path) -> None:
    source = tmp_path / "m.bin"
    source.write_bytes(b"weights" * 1000)
    with pytest.raises(InvalidArgument, match="metadata must be JSON"):
        repo.add(source, "m", metadata={"when": object()})
    assert repo.artifacts() == []
    assert repo.du().stored_bytes == 0


def test_a_repository_made_before_runs_is_upgraded_with_its_versions(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    """A 0001 database (versions, no runs) opens at HEAD, keeping every version."""
    first = _add(backend_repo, tmp_path, "m", b"old").version
    downgrade(backend_repo.settings.database_url, "0001")
    engine = create_engine(backend_repo.settings.database_url)
    try:
        with engine.connect() as conn:
            tables = set(
                conn.execute(
                    text(
                        "SELECT name FROM sqlite_master WHERE type='table'"
                        if conn.dialect.name == "sqlite"
                        else "SELECT tablename FROM pg_tables WHERE schemaname='public'"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()
    assert "runs" not in tables and "versions" in tables
    backend_repo.close()
    with mk.open(backend_repo.root) as upgraded:
        assert upgraded.db.current_revision() == HEAD
        again = upgraded.show("m:v1")
        assert (again.digest, again.run_id) == (first.digest, None)
        with mk.start_run(repo=upgraded, capture_code=False) as run:
            made = run.log_artifact(write(tmp_path / "new" / "f.bin", b"new"), "m")
        assert made.number == 2 and made.run_id == run.id


def test_the_migrations_build_exactly_the_models_schema(backend_repo: mk.Repo) -> None:
    """Alembic's autogenerate finds nothing to change: models.py and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from modelkeep.meta.models import Base

    engine = create_engine(backend_repo.settings.database_url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_head_is_the_newest_migration() -> None:
    """db.HEAD lets an up-to-date database skip importing alembic: it must name the newest."""
    from modelkeep.meta.db import HEAD, MIGRATIONS

    newest = max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert newest == HEAD


def test_query_runs_one_sql_on_either_database(backend_repo: mk.Repo, tmp_path: Path) -> None:
    """`Database.query`: the read commands' SQL, with list parameters expanded for either
    driver, rows by column name, and the same records as the writers' ORM rows give."""
    for i in range(3):
        _add(backend_repo, tmp_path, "m", f"v{i}".encode())
    with backend_repo.db.query() as q:
        sql = "SELECT number FROM versions WHERE number IN :n ORDER BY number"
        assert [r.number for r in q.rows(sql, n=[1, 3])] == [1, 3]
        assert q.rows(sql, n=[]) == []
        found = q.row(sql, n=(2,))
        assert found is not None and found.number == 2
        assert q.scalar("SELECT count(*) FROM versions") == 3
        assert q.row("SELECT number FROM versions WHERE number = :n", n=99) is None
    listed = backend_repo.versions("m")
    assert [v.number for v in listed] == [1, 2, 3]
    assert all(v.created_at.tzinfo is not None and isinstance(v.registered, bool) for v in listed)
    assert backend_repo.show("m:v2") == listed[1]


def test_a_read_never_creates_a_missing_sqlite_file(tmp_path: Path) -> None:
    from modelkeep.errors import DatabaseError
    from modelkeep.meta.db import Database

    missing = tmp_path / "gone.sqlite"
    db = Database(f"sqlite:///{missing}")
    assert db.current_revision() is None
    with pytest.raises(DatabaseError, match=r"gone\.sqlite"), db.query() as q:
        q.rows("SELECT 1")
    assert not missing.exists()


def test_a_change_that_cannot_begin_is_one_error_and_holds_no_lock(tmp_path: Path) -> None:
    """The write transaction cannot begin (a folder where the database file belongs): each
    attempt is one DatabaseError, and none keeps the process's writer lock, so a change
    from another thread is refused the same way rather than waiting forever."""
    import threading

    from modelkeep.errors import DatabaseError
    from modelkeep.meta.chain import Write, clock
    from modelkeep.meta.db import Database

    (tmp_path / "meta.sqlite").mkdir()
    db = Database(f"sqlite:///{tmp_path / 'meta.sqlite'}")

    def attempt() -> Exception | None:
        try:
            with Write(db) as s:
                clock(s)
        except DatabaseError as exc:
            return exc
        return None

    assert attempt() is not None
    outcome: list[Exception | None] = []
    other = threading.Thread(target=lambda: outcome.append(attempt()))
    other.start()
    other.join(60)
    assert not other.is_alive() and outcome and isinstance(outcome[0], DatabaseError)
    db.close()
