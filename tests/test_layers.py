"""The parts below Repo work from a Database and an ObjectStore alone, and the metadata
layer has one resolver, one way to make a version row and one clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

import modelkeep as mk
from modelkeep import card, config, content, meta, model, registry, sync, worktree
from modelkeep.errors import PolicyError, ReasonRequired
from modelkeep.meta.models import ChainHeadRow
from modelkeep.parts import Parts
from modelkeep.refs import content_bytes, content_hex, content_id
from modelkeep.store import ObjectStore
from tests.conftest import git, write


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Parts]:
    """A repository's parts, opened without a Repo."""
    monkeypatch.setenv("MODELKEEP_USER", "tester")
    root = tmp_path / "proj"
    mk.init(root).close()
    settings = config.load(root)
    made = Parts(settings, meta.Database(settings.database_url), ObjectStore(settings.store_dir))
    made.db.migrate()
    yield made
    made.store.close()
    made.db.close()


def test_the_parts_below_repo_need_no_repo(
    parts: Parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding, packaging a model, the registry, a card, sync and the work tree, each on
    Parts and resolved versions."""
    data = write(tmp_path / "data.csv", b"a,b\n1,2\n")
    added = content.add(parts, data, "data", type="dataset", message="", metadata=None, run_id=None)
    assert added.created and added.version.ref == "data:v1"
    v = model.log(parts, {"w": [1, 2, 3]}, "m", format="pickle", message="first")
    assert model.load(parts, v, trust=True) == {"w": [1, 2, 3]}
    registered, made = registry.register(parts, v, "m")
    assert registered.registered and not made  # a version of m itself: marked, not copied
    moved = registry.promote(parts, registered, "production")
    assert meta.resolve(parts.db, "m@production").number == moved.version.number
    assert card.card(parts, meta.resolve(parts.db, "m@production")).startswith("# m v1")
    pushed = _push_to_folder(parts, tmp_path / "remote", [added.version])
    assert pushed.versions == ("data:v1",) and pushed.objects > 0
    restored = content.restore(parts, added.version, tmp_path / "back.csv")
    assert restored.read_bytes() == b"a,b\n1,2\n"
    top = tmp_path / "work"
    top.mkdir()
    git(top, "init", "-q")
    monkeypatch.chdir(top)  # the working directory's work tree holds the lock
    placed = worktree.place(parts, write(top / "x.bin", b"x"))
    assert placed is not None
    x = content.add(parts, top / "x.bin", "x", type=None, message="", metadata=None, run_id=None)
    worktree.track(parts, placed, x.version)
    assert [s.state for s in worktree.status(parts)] == ["ok"]


def _push_to_folder(parts: Parts, remote: Path, versions: list[meta.Version]) -> sync.PushResult:
    settings = parts.settings
    cfg = config.RemoteConfig("nas", f"file://{remote}", (), True)
    parts.settings = dataclasses.replace(settings, remotes=(cfg,))
    try:
        return sync.push(parts, versions, "nas")
    finally:
        parts.settings = settings


def test_a_version_is_never_dated_before_the_newest_event(parts: Parts, tmp_path: Path) -> None:
    """add and register share the event chain's clock: with the newest event an hour
    ahead (another host's clock), a new version is not dated before it, so `--at` never
    shows the registry in a state that did not exist."""
    v = content.add(
        parts, write(tmp_path / "a", b"a"), "a", type=None, message="", metadata=None, run_id=None
    ).version
    registry.register(parts, v, "a")
    ahead = datetime.now(UTC) + timedelta(hours=1)
    with parts.db.write() as s:
        s.execute(update(ChainHeadRow).values(last_at=ahead))
    later = content.add(
        parts, write(tmp_path / "b", b"b"), "a", type=None, message="", metadata=None, run_id=None
    ).version
    assert later.created_at >= ahead
    other, made = registry.register(parts, meta.resolve(parts.db, "a:v2"), "copy")
    assert made and other.created_at >= ahead
    assert meta.resolve(parts.db, "copy", at=other.created_at).ref == "copy:v1"


def test_add_and_register_write_source_names_alike(parts: Parts, tmp_path: Path) -> None:
    odd = tmp_path / "caf\udce9.bin"  # an undecodable byte, kept as a surrogate escape
    odd.write_bytes(b"payload")
    v = content.add(parts, odd, "odd", type=None, message="", metadata=None, run_id=None).version
    copy, _ = registry.register(parts, v, "copy")
    assert copy.source_name == v.source_name == odd.name


def test_one_codec_for_content_ids() -> None:
    raw = bytes(range(32))
    cid = content_id(raw)
    assert cid == "b3:" + raw.hex() == content_id(raw.hex())
    assert content_hex(cid) == raw.hex() == content_hex(raw.hex())
    assert content_bytes(cid) == raw


def test_the_policy_can_require_a_reason(parts: Parts, tmp_path: Path) -> None:
    (parts.root / "modelkeep.toml").write_text('[reasons]\nrequire = ["promote", "alias"]\n')
    v = content.add(
        parts, write(tmp_path / "m", b"m"), "m", type=None, message="", metadata=None, run_id=None
    ).version
    v, _ = registry.register(parts, v, "m")  # not named: no reason needed
    with pytest.raises(ReasonRequired, match=r"m:v1 to staging needs a reason .*give --reason"):
        registry.promote(parts, v, "staging")
    with pytest.raises(ReasonRequired, match="removing m@best needs a reason"):
        registry.remove_alias(parts, "m@best")
    assert meta.resolve(parts.db, "m:v1").stage == "none"  # nothing was written
    assert registry.promote(parts, v, "staging", reason="canary").version.stage == "staging"
    (parts.root / "modelkeep.toml").write_text("[reasons]\nrequire = true\n")
    with pytest.raises(ReasonRequired):
        registry.approve(parts, meta.resolve(parts.db, "m:v1"), "production")


@pytest.mark.parametrize(
    "text",
    ['[reasons]\nrequire = ["promote", "deploy"]\n', "[reasons]\nrequire = 1\n", "reasons = 2\n"],
)
def test_a_bad_reasons_table_is_one_policy_error(parts: Parts, tmp_path: Path, text: str) -> None:
    v = content.add(
        parts, write(tmp_path / "m", b"m"), "m", type=None, message="", metadata=None, run_id=None
    ).version
    v, _ = registry.register(parts, v, "m")
    (parts.root / "modelkeep.toml").write_text(text)
    with pytest.raises(PolicyError, match="reasons"):
        registry.promote(parts, v, "staging", reason="x")


def test_deprecated_repo_helpers_warn_and_still_work(tmp_path: Path) -> None:
    with mk.init(tmp_path / "p") as repo:
        v = repo.add(write(tmp_path / "f", b"f"), "f").version
        with pytest.warns(DeprecationWarning, match="Repo.root_of"):
            assert repo.root_of(v) == content.root_of(v)
        with pytest.warns(DeprecationWarning, match="Repo.holds"):
            assert repo.holds(v.digest)
        with pytest.warns(DeprecationWarning, match="Repo.explained"), repo.explained(v):
            pass


def test_threads_asking_for_the_store_at_once_open_one(tmp_path: Path) -> None:
    """The store is opened on first use; a server's first requests all ask at once."""
    import threading

    mk.init(tmp_path / "r").close()
    with mk.open(tmp_path / "r") as repo:
        assert repo.parts.opened_store is None  # a bound store is not opened to open the repo
        start = threading.Barrier(8)
        seen: list[int] = []

        def ask() -> None:
            start.wait()
            seen.append(id(repo.acting_as("someone").store))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(seen)) == 1 and seen[0] == id(repo.store)
