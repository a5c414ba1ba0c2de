"""Sharing versions through a remote alone: no shared database.

Every store here is its own SQLite database; the only thing they share is the remote (a
folder, or S3 on a moto server). Real CLI subprocesses throughout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelkeep.meta import wire
from modelkeep.remotes import Remote
from tests.conftest import MODELKEEP, cli, one_error_line, write

TRAIN = """\
import modelkeep as mk
with mk.start_run(name="train", params={"lr": 0.1, "depth": 6}) as run:
    run.use("data:v1")
    run.log_metric("auc", 0.91)
    open("w.bin", "wb").write(b"weights one")
    run.log_artifact("w.bin", name="fraud", type="model", message="first")
"""


class Store:
    """One person's repository: its own SQLite database and store, one default remote."""

    def __init__(self, root: Path, remote: str, user: str, host: str) -> None:
        self.root = root
        self.env = {"MODELKEEP_USER": user, "MODELKEEP_HOST": host}
        root.mkdir(parents=True)
        self.ok("init")
        self.ok("remote", "add", "shared", remote, "--default")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(*args, cwd=self.root, env=self.env)

    def ok(self, *args: str) -> str:
        r = self.run(*args)
        assert r.returncode == 0, f"modelkeep {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [MODELKEEP, *args],
            cwd=self.root,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def origin_store(tmp_path: Path, remote: str) -> Store:
    """Alice's store: data:v1, a run that used it and made fraud:v1 (registered, in
    production), fraud:v2 with the alias champion; everything pushed."""
    a = Store(tmp_path / "alice", remote, "alice", "host-a")
    write(a.root / "data.csv", b"x,y\n1,2\n")
    a.ok("add", "data.csv", "--name", "data", "--type", "dataset")
    write(a.root / "train.py", TRAIN.encode())
    r = subprocess.run(
        [sys.executable, "train.py"],
        cwd=a.root,
        env={**os.environ, **a.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    a.ok("register", "fraud:v1", "--as", "fraud")
    a.ok("promote", "fraud:v1", "production", "--reason", "offline eval ok")
    write(a.root / "w.bin", b"weights two")
    a.ok("add", "w.bin", "--name", "fraud", "-m", "second")
    a.ok("alias", "set", "fraud@champion", "fraud:v2")
    a.ok("push")
    return a


@pytest.fixture
def folder(tmp_path: Path) -> str:
    return str(tmp_path / "remote")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """Alice's store and its remote, made once; tests read them, or pull from a copy."""
    top = tmp_path_factory.mktemp("published")
    return origin_store(top, str(top / "remote")), top / "remote"


@pytest.fixture
def copied(published: tuple[Store, Path], tmp_path: Path) -> str:
    """A copy of the published remote, for a test that damages it."""
    shutil.copytree(published[1], tmp_path / "remote")
    return str(tmp_path / "remote")


def test_a_fresh_store_pulls_by_number_with_history(
    tmp_path: Path, published: tuple[Store, Path]
) -> None:
    a, remote = published
    folder = str(remote)
    b = Store(tmp_path / "bob", folder, "bob", "host-b")
    pulled = b.json("pull", "fraud:v1")
    assert pulled["versions"] == ["fraud:v1"]
    assert set(pulled["imported"]) >= {"fraud:v1", "fraud:v2", "data:v1"}  # lineage too
    theirs, ours = a.json("show", "fraud:v1"), b.json("show", "fraud:v1")
    for key in ("digest", "size", "user", "host", "created_at", "message", "run_id", "stage"):
        assert ours[key] == theirs[key], key
    assert ours["stage"] == "production"
    assert [v["ref"] for v in b.json("versions", "fraud")["versions"]] == ["fraud:v1", "fraud:v2"]
    b.ok("get", "fraud:v1", "-o", "out.bin")
    assert (b.root / "out.bin").read_bytes() == b"weights one"
    run = b.json("runs", "show", ours["run_id"])
    assert run == a.json("runs", "show", ours["run_id"])
    lineage = b.json("lineage", "fraud:v1")
    assert "data:v1" in json.dumps(lineage)
    history = b.json("history", "fraud")["events"]
    assert [e["action"] for e in history] == ["register", "promote", "alias-set"]
    assert {e["actor"] for e in history} == {"alice"}
    assert all(e["after"]["origin"]["remote"].endswith("remote") for e in history)
    assert b.json("audit", "--verify")["ok"]
    again = b.json("pull", "fraud:v1")  # nothing new: no event appended twice
    assert again["imported"] == []
    assert len(b.json("history", "fraud")["events"]) == 3


def test_pull_by_stage_by_name_and_all(tmp_path: Path, published: tuple[Store, Path]) -> None:
    folder = str(published[1])
    c = Store(tmp_path / "carol", folder, "carol", "host-c")
    assert c.json("pull", "fraud@production")["versions"] == ["fraud:v1"]
    assert c.json("show", "fraud@champion")["ref"] == "fraud:v2"
    d = Store(tmp_path / "dave", folder, "dave", "host-d")
    assert d.json("pull", "fraud")["versions"] == ["fraud:v2"]
    e = Store(tmp_path / "erin", folder, "erin", "host-e")
    everything = e.json("pull", "--all")
    assert {"data:v1", "fraud:v1", "fraud:v2"} <= set(everything["versions"])
    e.ok("get", "data:v1", "-o", "d.csv")
    assert (e.root / "d.csv").read_bytes() == b"x,y\n1,2\n"
    assert e.json("audit", "--verify")["ok"]
    r = e.run("pull")
    assert r.returncode == 2 and "--all" in r.stderr


def test_registry_changes_travel_both_ways_and_both_chains_verify(
    tmp_path: Path, folder: str
) -> None:
    a = origin_store(tmp_path, folder)
    b = Store(tmp_path / "bob", folder, "bob", "host-b")
    b.ok("pull", "fraud")
    b.ok("register", "fraud:v2", "--as", "fraud")
    b.ok("promote", "fraud:v2", "production", "--reason", "better auc")
    b.ok("push", "fraud:v2")
    a.ok("pull", "fraud")
    assert a.json("show", "fraud@production")["ref"] == "fraud:v2"
    assert a.json("show", "fraud:v1")["stage"] == "archived"
    mine = [e for e in a.json("history", "fraud")["events"] if "origin" in e["after"]]
    assert [(e["action"], e["actor"]) for e in mine] == [
        ("register", "bob"),
        ("archive", "bob"),
        ("promote", "bob"),
    ]
    for store in (a, b):
        assert store.json("audit", "--verify")["ok"]
    a.ok("pull", "fraud")  # again: nothing imported twice, nothing pushed back
    assert len(a.json("history", "fraud")["events"]) == 6
    a.ok("alias", "set", "fraud@champion", "fraud:v1")
    a.ok("push")  # no new version: the registry change goes up all the same
    b.ok("pull", "fraud")
    assert b.json("show", "fraud@champion")["ref"] == "fraud:v1"
    assert len(b.json("history", "fraud")["events"]) == 7
    for store in (a, b):
        assert store.json("audit", "--verify")["ok"]


def _two_stores_with_v1(tmp_path: Path, folder: str) -> tuple[Store, Store]:
    a = Store(tmp_path / "alice", folder, "alice", "host-a")
    b = Store(tmp_path / "bob", folder, "bob", "host-b")
    for store, text in ((a, b"alice's weights"), (b, b"bob's weights")):
        write(store.root / "m.bin", text)
        store.ok("add", "m.bin", "--name", "m")
    return a, b


def test_a_conflicting_push_is_refused_then_pull_renumbers(tmp_path: Path, folder: str) -> None:
    a, b = _two_stores_with_v1(tmp_path, folder)
    a.ok("push")
    a.ok("push", "m:v1")  # the same version again: no conflict, nothing new
    theirs, ours = a.json("show", "m:v1"), b.json("show", "m:v1")
    for args in (("push",), ("push", "m:v1")):
        line = one_error_line(b.run(*args))
        assert "m:v1 conflicts" in line
        for v in (theirs, ours):
            assert v["digest"][3:19] in line and v["user"] in line and v["host"] in line
        assert "modelkeep pull m" in line
    pulled = b.json("pull", "m")
    assert pulled["renumbered"] == [{"was": "m:v1", "now": "m:v2"}]
    assert b.json("show", "m:v1")["digest"] == theirs["digest"]
    assert b.json("show", "m:v2")["digest"] == ours["digest"]
    b.ok("push")
    c = Store(tmp_path / "carol", folder, "carol", "host-c")
    c.ok("pull", "--all")
    c.ok("get", "m:v2", "-o", "b.bin")
    assert (c.root / "b.bin").read_bytes() == b"bob's weights"


def test_racing_pushes_exactly_one_wins_nothing_lost(tmp_path: Path, folder: str) -> None:
    a, b = _two_stores_with_v1(tmp_path, folder)
    procs = [s.popen("push") for s in (a, b)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    loser = (a, b)[[rc for rc, _ in results].index(1)]
    assert "conflicts" in results[[rc for rc, _ in results].index(1)][1]
    loser.ok("pull", "m")
    loser.ok("push")
    c = Store(tmp_path / "carol", folder, "carol", "host-c")
    c.ok("pull", "--all")
    got = set()
    for n in (1, 2):
        c.ok("get", f"m:v{n}", "-o", f"{n}.bin")
        got.add((c.root / f"{n}.bin").read_bytes())
    assert got == {b"alice's weights", b"bob's weights"}


def _forge(folder: str, path: str, data: bytes) -> None:
    target = Path(folder) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _record(folder: str, path: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((Path(folder) / path).read_bytes())
    return doc


@pytest.mark.parametrize(
    ("path", "edit"),
    [
        ("records/fraud/V-1.json", lambda d: b"\xff not json"),
        ("records/fraud/V-1.json", lambda d: {**d, "digest": "zz" * 32}),
        ("records/fraud/V-1.json", lambda d: {**d, "number": 7}),
        ("records/fraud/V-2.json", lambda d: {**d, "mode": 0o4755}),
        ("records/fraud/V-2.json", lambda d: {**d, "source_name": "../../etc/passwd"}),
        ("records/fraud/V-2.json", lambda d: {**d, "size": -1}),
        ("records/fraud/V-2.json", lambda d: {**d, "metadata": "nope"}),
        ("records/fraud/V-2.json", lambda d: {**d, "run_id": "0" * 32}),
        ("records/fraud/E-*.json", lambda d: {**d, "after": {"stage": "heaven"}}),
        ("records/fraud/E-*.json", lambda d: {**d, "target": "other:v1"}),
        ("runs/*.json", lambda d: {**d, "metrics": [["auc", "high", 0, "x"]]}),
    ],
)
def test_a_malformed_record_is_named_and_nothing_is_stored(
    tmp_path: Path, copied: str, path: str, edit: Any
) -> None:
    folder = copied
    if "*" in path:
        path = str(sorted(Path(folder).glob(path))[0].relative_to(folder))
    forged = edit(_record(folder, path))
    _forge(folder, path, forged if isinstance(forged, bytes) else wire.canonical(forged))
    b = Store(tmp_path / "bob", folder, "bob", "host-b")
    wanted = "runs/" if "run_id" in json.dumps(forged, default=str) else path
    line = one_error_line(b.run("pull", "fraud:v1"))
    assert "malformed" in line and (wanted in line or path in line), line
    assert b.json("ls")["artifacts"] == []
    assert b.json("audit", "--verify")["events"] == 0


@given(
    st.builds(
        wire.VersionRecord,
        store=st.just("a" * 32),
        name=st.from_regex(r"[a-z][a-z0-9_-]{0,20}(/[a-z][a-z0-9_-]{0,9})?", fullmatch=True),
        number=st.integers(1, 2**31 - 1),
        type=st.sampled_from(["model", "dataset"]),
        kind=st.just("file"),
        digest=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        size=st.integers(0, 2**63 - 1),
        file_count=st.just(1),
        mode=st.sampled_from([0o644, 0o755]),
        source_name=st.from_regex(r"[a-zA-Z0-9_.-]{0,20}[a-zA-Z0-9_-]", fullmatch=True),
        created_at=st.datetimes(timezones=st.just(__import__("datetime").UTC)),
        user=st.text(max_size=30),
        host=st.none() | st.text(max_size=30),
        message=st.text(max_size=100),
        metadata=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)),
        run_id=st.none() | st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    ),
    st.data(),
)
@settings(max_examples=60, deadline=None)
def test_a_version_record_round_trips_and_damage_is_a_clear_error(
    rec: wire.VersionRecord, data: st.DataObject
) -> None:
    raw = wire.canonical(rec.to_json())
    if "\0" in rec.user + (rec.host or "") + rec.message:
        with pytest.raises(wire.BadRecord):
            wire.parse_version(raw)
        return
    assert wire.parse_version(raw) == rec
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(wire.BadRecord):
        wire.parse_version(raw[:cut])
    at = data.draw(st.integers(0, len(raw) - 1))
    flipped = raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :]
    try:
        again = wire.parse_version(flipped)
    except wire.BadRecord:
        return
    assert wire.canonical(again.to_json()) == wire.canonical(wire.load(flipped))


@pytest.mark.parametrize("backend", ["folder", "s3", "azure"])
def test_record_writes_are_create_exclusive(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """The second write of a name loses and changes nothing. (The GCS emulator of the
    suite ignores ifGenerationMatch, so GCS is not checked here; real GCS honours it.)"""
    if backend == "folder":
        url = str(tmp_path / "remote")
    elif backend == "s3":
        url = f"s3://{request.getfixturevalue('s3_bucket')}/team"
    else:
        url = f"az://{request.getfixturevalue('azure_container')}/team"
    remote = Remote(url)
    path = "records/team/x/V-1.json"
    assert remote.put_exclusive(path, b"first")
    assert not remote.put_exclusive(path, b"second")
    assert remote.read_files([path, "records/none.json"]) == {
        path: b"first",
        "records/none.json": None,
    }
    assert remote.existing([path, "records/team/x/V-2.json"]) == {path}
    assert remote.list_files("records", recursive=True) == {path: 5}


def test_s3_pull_by_stage_and_conflicts(tmp_path: Path, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/team"
    a = origin_store(tmp_path, url)
    b = Store(tmp_path / "bob", url, "bob", "host-b")
    assert b.json("pull", "fraud@production")["versions"] == ["fraud:v1"]
    assert b.json("audit", "--verify")["ok"]
    write(b.root / "w.bin", b"bob's own v3")
    write(a.root / "w.bin", b"alice's own v3")
    for store in (a, b):
        store.ok("add", "w.bin", "--name", "fraud")
    a.ok("push")
    assert "fraud:v3 conflicts" in one_error_line(b.run("push"))
