"""A Git commit pins code, data and model: real Git work trees built in tmp_path.

Every test runs git with an empty global config (GIT_CONFIG_GLOBAL), no system config and
no discovery above tmp_path, so the machine's own settings and this project's repository
never leak in. The CLI is the installed `modelkeep` script; the Python API is used where the
command line is not the point.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelkeep as mk
from modelkeep import lockfile
from modelkeep.errors import InvalidArgument, LockFileError
from modelkeep.lockfile import LockEntry
from modelkeep.worktree import HOOK_MARK
from tests.conftest import cli, git, git_work_tree, isolate_git, jcli, ok, one_error_line, write

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

GHOST = "b3:" + "ab" * 32  # a content id no repository here holds


@pytest.fixture(autouse=True)
def _git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git(tmp_path, monkeypatch)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Git work tree with one commit of code; the working directory is its top."""
    top = git_work_tree(tmp_path / "work")
    monkeypatch.chdir(top)
    return top


@pytest.fixture
def wrepo(work: Path) -> Iterator[mk.Repo]:
    """A modelkeep repository at the top of the work tree."""
    with mk.init(work) as r:
        yield r


def lock_lines(top: Path) -> list[str]:
    text = (top / lockfile.NAME).read_text("utf-8")
    assert text.startswith(lockfile.HEADER)
    return text[len(lockfile.HEADER) :].splitlines()


def ignored(top: Path) -> list[str]:
    return (top / ".gitignore").read_text("utf-8").splitlines()


def untracked(top: Path) -> set[str]:
    """What `git status` would show: ignored paths are absent."""
    out = git(top, "status", "--porcelain", "--untracked-files=all")
    return set(out.splitlines())


def snapshot(top: Path) -> dict[str, tuple[str, object]]:
    """Every path under top but .git and .modelkeep: its kind and bytes or link target."""
    out: dict[str, tuple[str, object]] = {}
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in (".git", ".modelkeep")]
        for name in dirs + files:
            p = Path(folder) / name
            rel = p.relative_to(top).as_posix()
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(mode):
                out[rel] = ("dir", None)
            else:
                out[rel] = ("file", p.read_bytes())
    return out


def add_ghost(top: Path, path: str = "ghost.bin") -> None:
    """A hand-written lock line for a version this repository never had."""
    with (top / lockfile.NAME).open("a", encoding="utf-8") as f:
        f.write(f"{path} -> ghost:v1 ({GHOST})\n")


# -- add inside a work tree ------------------------------------------------------------


def test_add_writes_a_sorted_lock_and_ignores_each_path_once(tmp_path: Path) -> None:
    top = tmp_path / "work"
    top.mkdir()
    git(top, "init", "-q", "-b", "main")
    ok("init", cwd=top)
    assert ignored(top) == ["/.modelkeep"]
    assert untracked(top) == {"?? .gitignore"}

    write(top / "zeta.bin", b"z1" * 1000)
    write(top / "data" / "a.csv", b"a,b\n1,2\n")
    write(top / "data" / "b.csv", b"c,d\n3,4\n")
    write(top / "my models" / "best model.bin", b"weights")
    ok("add", "zeta.bin", "--name", "zeta", cwd=top)
    ok("add", "data", "--name", "sales", "--type", "dataset", cwd=top)
    ok("add", "best model.bin", "--name", "best", cwd=top / "my models")
    with mk.open(top) as r:
        digest = {name: r.show(name).digest for name in ("zeta", "sales", "best")}
    assert lock_lines(top) == [
        f"data -> sales:v1 ({digest['sales']})",
        f"my models/best model.bin -> best:v1 ({digest['best']})",
        f"zeta.bin -> zeta:v1 ({digest['zeta']})",
    ]
    assert ignored(top) == ["/.modelkeep", "/zeta.bin", "/data", "/my models/best model.bin"]
    assert untracked(top) == {"?? .gitignore", "?? modelkeep.lock"}
    gitignore = (top / ".gitignore").read_bytes()

    write(top / "zeta.bin", b"z2" * 1000)
    ok("add", "zeta.bin", "--name", "zeta", cwd=top)
    with mk.open(top) as r:
        v2 = r.show("zeta:v2").digest
    assert lock_lines(top)[2] == f"zeta.bin -> zeta:v2 ({v2})"
    assert len(lock_lines(top)) == 3
    assert (top / ".gitignore").read_bytes() == gitignore
    assert ok("status", cwd=top).stdout == "3 tracked path(s) match modelkeep.lock\n"


def test_init_in_a_subfolder_ignores_its_control_dir(work: Path) -> None:
    ok("init", "sub", cwd=work)
    assert ignored(work) == ["/sub/.modelkeep"]
    write(work / "sub" / "m.bin", b"model")
    ok("add", "m.bin", "--name", "m", cwd=work / "sub")
    assert [line.split(" (")[0] for line in lock_lines(work)] == ["sub/m.bin -> m:v1"]
    assert ignored(work) == ["/sub/.modelkeep", "/sub/m.bin"]
    assert untracked(work) == {"?? .gitignore", "?? modelkeep.lock"}


def test_log_artifact_of_a_work_tree_path_is_tracked(wrepo: mk.Repo, work: Path) -> None:
    write(work / "out" / "model.bin", b"trained weights")
    with mk.start_run("train", repo=wrepo, capture_code=False) as run:
        v = run.log_artifact(work / "out" / "model.bin", "fraud", type="model")
    assert lockfile.read(work) == {
        "out/model.bin": LockEntry("out/model.bin", "fraud:v1", v.digest)
    }
    assert "/out/model.bin" in ignored(work)
    # a later run that uses the version reads the tracked path itself
    with mk.start_run("evaluate", repo=wrepo, capture_code=False) as run:
        assert run.use("fraud:v1") == work / "out" / "model.bin"


def test_a_path_git_tracks_is_not_locked(wrepo: mk.Repo, work: Path) -> None:
    write(work / "params.yaml", b"lr: 0.1\n")
    write(work / "conf" / "a.yaml", b"a: 1\n")
    write(work / "conf" / "b.yaml", b"b: 2\n")
    git(work, "add", "params.yaml", "conf/a.yaml")
    git(work, "commit", "-q", "-m", "params")
    before = (work / ".gitignore").read_bytes()
    wrepo.add(work / "params.yaml", "params")
    wrepo.add(work / "conf", "conf")  # Git tracks a file inside it
    assert wrepo.show("params:v1").ref == "params:v1"
    assert not (work / lockfile.NAME).exists()
    assert (work / ".gitignore").read_bytes() == before
    wrepo.add(work / ".gitignore", "gitignore")  # never made to ignore itself
    assert not (work / lockfile.NAME).exists()
    assert (work / ".gitignore").read_bytes() == before
    # the same add in a folder Git does not know is tracked
    write(work / "new.bin", b"new")
    wrepo.add(work / "new.bin", "new")
    assert list(lockfile.read(work)) == ["new.bin"]


def test_outside_git_no_lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    monkeypatch.chdir(tmp_path)
    with mk.init(plain) as r:
        write(plain / "m.bin", b"model")
        r.add(plain / "m.bin", "m")
        with pytest.raises(InvalidArgument, match="git init"):
            r.status()
    assert sorted(p.name for p in plain.iterdir()) == [".modelkeep", "m.bin"]
    assert not (tmp_path / lockfile.NAME).exists()
    line = one_error_line(cli("status", cwd=plain))
    assert "Git work tree" in line and "git init" in line


def test_a_file_of_another_projects_work_tree_is_stored_but_not_tracked_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a file from someone else's Git project must not write into that project:
    its modelkeep.lock and .gitignore would then pin a version of a repository it does
    not use. Only the working directory's or the repository's own work tree is tracked."""
    other = git_work_tree(tmp_path / "other")
    write(other / "weights.bin", b"theirs")
    before = snapshot(other)
    plain = tmp_path / "plain"
    monkeypatch.chdir(tmp_path)  # neither the working directory nor the repository is in Git
    with mk.init(plain) as r:
        added = r.add(other / "weights.bin", "w")
        assert added.created
        with r.open("w:v1") as f:
            assert f.read() == b"theirs"
    ok("add", str(other / "weights.bin"), "--name", "w2", cwd=plain)
    assert snapshot(other) == before  # no modelkeep.lock, no .gitignore line
    mine = git_work_tree(tmp_path / "mine")  # the working directory's own project is tracked
    monkeypatch.chdir(mine)
    with mk.open(plain) as r:
        r.add(other / "weights.bin", "w")
        write(mine / "m.bin", b"mine")
        digest = r.add(mine / "m.bin", "m").version.digest
    assert snapshot(other) == before
    assert lock_lines(mine) == [f"m.bin -> m:v1 ({digest})"]


def test_add_from_a_deleted_working_directory_tracks_in_the_repositorys_tree(
    wrepo: mk.Repo, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    write(work / "m.bin", b"model")
    digest = wrepo.add(work / "m.bin", "m").version.digest
    assert lock_lines(work) == [f"m.bin -> m:v1 ({digest})"]


def test_odd_paths_round_trip_through_the_lock(wrepo: mk.Repo, work: Path) -> None:
    names = [
        "with space/file 1.csv",
        " leading.bin",
        "trailing.bin ",
        "tab\tname.bin",
        '"quoted".bin',
        "#hash.bin",
        "café.bin",
        "star*[x]?.bin",
        "arrow -> x:v1 (b3:00).bin",
    ]
    for i, name in enumerate(names):
        write(work / name, f"content {i}".encode())
        wrepo.add(work / name, f"odd{i}")
    lines = lock_lines(work)
    for i, name in enumerate(names):
        quoted = name != name.strip() or "\t" in name or name[0] in '"#'
        shown = json.dumps(name) if quoted else name
        assert f"{shown} -> odd{i}:v1 ({wrepo.show(f'odd{i}').digest})" in lines
    assert lines == sorted(lines, key=lambda line: lockfile.parse(line).popitem()[0])
    entries = lockfile.read(work)
    assert {p: e.ref for p, e in entries.items()} == {n: f"odd{i}:v1" for i, n in enumerate(names)}
    assert untracked(work) == {"?? .gitignore", "?? modelkeep.lock"}  # each one ignored
    assert {s.state for s in wrepo.status()} == {"ok"}
    for name in names:
        (work / name).unlink()
    assert {s.state for s in wrepo.status()} == {"missing"}
    assert len(wrepo.checkout()) == len(names)
    for i, name in enumerate(names):
        assert (work / name).read_bytes() == f"content {i}".encode()


def test_dot_dot_and_symlinked_paths_are_named_by_their_place_in_the_tree(
    work: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(work, target_is_directory=True)
    with mk.init(link / "sub") as r:  # the work tree reached through a symlink
        assert ignored(work) == ["/sub/.modelkeep"]
        write(work / "data" / "x.csv", b"x")
        write(work / "model.bin", b"m")
        r.add(link / "data" / ".." / "model.bin", "m")
        r.add(link / "data", "d")
        assert sorted(lockfile.read(work)) == ["data", "model.bin"]
        assert ignored(work) == ["/sub/.modelkeep", "/model.bin", "/data"]
        (work / "model.bin").unlink()
        shutil.rmtree(work / "data")
        assert [s.path for s in r.checkout([str(link / "model.bin")])] == ["model.bin"]
        assert not (work / "data").exists()
        assert [s.path for s in r.checkout([str(link / "data")])] == ["data"]
        assert (work / "data" / "x.csv").read_bytes() == b"x"


# -- status ----------------------------------------------------------------------------


def test_status_lists_modified_missing_and_not_in_store(wrepo: mk.Repo, work: Path) -> None:
    for name in ("a.bin", "b.bin", "c.bin"):
        write(work / name, name.encode())
        wrepo.add(work / name, name[0])
    write(work / "b.bin", b"changed and never added")
    (work / "c.bin").unlink()
    add_ghost(work)
    write(work / "ghost2.bin", b"something")
    add_ghost(work, "ghost2.bin")
    doc = jcli("status", cwd=work)
    states = {p["path"]: (p["ref"], p["state"], p["current"]) for p in doc["paths"]}
    changed, _mode = wrepo.digest_of(work / "b.bin")
    held, _mode = wrepo.digest_of(work / "ghost2.bin")
    assert states == {
        "a.bin": ("a:v1", "ok", None),
        "b.bin": ("b:v1", "modified", changed),
        "c.bin": ("c:v1", "missing", None),
        "ghost.bin": ("ghost:v1", "not-in-store", None),
        "ghost2.bin": ("ghost:v1", "not-in-store", held),
    }
    assert {p["path"]: p["digest"] for p in doc["paths"]}["a.bin"] == wrepo.show("a").digest
    text = ok("status", cwd=work).stdout.splitlines()
    assert text == [
        "modified:      b.bin  (b:v1; changed since it was added)",
        "missing:       c.bin  (c:v1; not in the work tree; `modelkeep checkout` restores it)",
        "not-in-store:  ghost.bin  (ghost:v1; its version is not in this repository's store)",
        "not-in-store:  ghost2.bin  (ghost:v1; its version is not in this repository's store)",
    ]
    assert [s.state for s in wrepo.status()] == [
        "ok",
        "modified",
        "missing",
        "not-in-store",
        "not-in-store",
    ]


# -- checkout --------------------------------------------------------------------------


def test_checkout_restores_missing_and_modified_paths(wrepo: mk.Repo, work: Path) -> None:
    write(work / "data" / "x.csv", b"x" * 5000)
    write(work / "data" / "sub" / "y.csv", b"y" * 5000)
    wrepo.add(work / "data", "data")
    data = snapshot(work / "data")
    write(work / "model.bin", b"model v1")
    wrepo.add(work / "model.bin", "model")
    write(work / "model.bin", b"model v2")
    wrepo.add(work / "model.bin", "model")

    shutil.rmtree(work / "data")
    write(work / "model.bin", b"model v1")  # modified, but some version holds it
    restored = wrepo.checkout()
    assert sorted((s.path, s.state) for s in restored) == [
        ("data", "missing"),
        ("model.bin", "modified"),
    ]
    assert snapshot(work / "data") == data
    assert (work / "model.bin").read_bytes() == b"model v2"
    assert {s.state for s in wrepo.status()} == {"ok"}
    assert wrepo.checkout() == []
    assert ok("checkout", cwd=work).stdout == "tracked paths already match modelkeep.lock\n"


def test_checkout_refuses_changes_no_version_holds(wrepo: mk.Repo, work: Path) -> None:
    write(work / "a.bin", b"a")
    write(work / "c.bin", b"c")
    write(work / "data" / "x.csv", b"x")
    for name in ("a.bin", "c.bin", "data"):
        wrepo.add(work / name, name.split(".")[0])
    write(work / "a.bin", b"a, edited and never added")
    write(work / "data" / "extra.csv", b"new file")
    (work / "c.bin").unlink()
    before = snapshot(work)
    lock = (work / lockfile.NAME).read_bytes()

    line = one_error_line(cli("checkout", cwd=work))
    assert "'a.bin'" in line and "'data'" in line and "--force" in line
    assert "c.bin" not in line
    assert snapshot(work) == before  # c.bin not restored either: nothing changed
    assert (work / lockfile.NAME).read_bytes() == lock
    one_error_line(cli("checkout", "a.bin", cwd=work))
    assert snapshot(work) == before

    r = ok("checkout", "--force", cwd=work)
    assert sorted(r.stdout.splitlines()) == [
        "restored a.bin (a:v1)",
        "restored c.bin (c:v1)",
        "restored data (data:v1)",
    ]
    assert (work / "a.bin").read_bytes() == b"a"
    assert (work / "c.bin").read_bytes() == b"c"
    assert sorted(p.name for p in (work / "data").iterdir()) == ["x.csv"]


def test_checkout_named_paths(wrepo: mk.Repo, work: Path) -> None:
    write(work / "a.bin", b"a")
    write(work / "b.bin", b"b")
    write(work / "data" / "x.csv", b"x")
    for name in ("a.bin", "b.bin", "data/x.csv"):
        wrepo.add(work / name, name[0])
    for name in ("a.bin", "b.bin", "data/x.csv"):
        (work / name).unlink()

    doc = jcli("checkout", "a.bin", cwd=work)
    assert [(s["path"], s["state"]) for s in doc["restored"]] == [("a.bin", "missing")]
    assert (work / "a.bin").read_bytes() == b"a"
    assert not (work / "b.bin").exists()
    ok("checkout", "x.csv", cwd=work / "data")  # relative to the working directory
    assert (work / "data" / "x.csv").read_bytes() == b"x"
    assert not (work / "b.bin").exists()
    (work / "data" / "x.csv").unlink()
    ok("checkout", ".", cwd=work / "data")  # a folder: the tracked paths inside it
    assert (work / "data" / "x.csv").read_bytes() == b"x"
    assert not (work / "b.bin").exists()

    before = snapshot(work)
    line = one_error_line(cli("checkout", "b.bin", "nope.bin", cwd=work))
    assert "'nope.bin'" in line and "not tracked" in line and "modelkeep status" in line
    assert "modelkeep show" not in line
    assert snapshot(work) == before  # b.bin was named too, and is still missing
    with pytest.raises(InvalidArgument, match="nope"):
        wrepo.checkout(["nope.bin"])


def test_checkout_of_a_version_missing_from_the_store(wrepo: mk.Repo, work: Path) -> None:
    write(work / "a.bin", b"a")
    wrepo.add(work / "a.bin", "a")
    (work / "a.bin").unlink()
    add_ghost(work)
    before = snapshot(work)
    line = one_error_line(cli("checkout", cwd=work))
    assert "'ghost.bin'" in line and "ghost:v1" in line and GHOST[:19] in line
    assert "copy it from the repository that added it" in line
    assert snapshot(work) == before
    assert [s.path for s in wrepo.checkout(["a.bin"])] == ["a.bin"]  # the rest still works


def test_checkout_never_writes_outside_the_work_tree(
    wrepo: mk.Repo, work: Path, tmp_path: Path
) -> None:
    """A committed symlink must not lead a lock entry out of the tree."""
    write(work / "a.bin", b"a")
    wrepo.add(work / "a.bin", "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "out").symlink_to(outside, target_is_directory=True)
    with (work / lockfile.NAME).open("a", encoding="utf-8") as f:
        f.write(f"out/a.bin -> a:v1 ({wrepo.show('a').digest})\n")
    line = one_error_line(cli("checkout", cwd=work))
    assert "'out/a.bin'" in line and "outside" in line
    assert list(outside.iterdir()) == []
    # nor into .git, through a link that points there
    (work / "hooks").symlink_to(".git/hooks", target_is_directory=True)
    text = (work / lockfile.NAME).read_text().replace("out/a.bin", "hooks/post-checkout")
    (work / lockfile.NAME).write_text(text)
    with pytest.raises(InvalidArgument, match="'hooks/post-checkout'"):
        wrepo.checkout()
    assert not (work / ".git" / "hooks" / "post-checkout").exists()


# -- the whole story -------------------------------------------------------------------


def test_git_checkout_of_an_old_commit_brings_back_its_data_and_model(
    wrepo: mk.Repo, work: Path
) -> None:
    def save(version: int) -> dict[str, tuple[str, object]]:
        write(work / "data" / "train.csv", f"rows of v{version}\n".encode() * 2000)
        write(work / "data" / "nested" / "test.csv", f"test v{version}".encode())
        write(work / "model.bin", os.urandom(300_000))
        wrepo.add(work / "data", "transactions", type="dataset")
        wrepo.add(work / "model.bin", "fraud", type="model")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"v{version}")
        assert git(work, "status", "--porcelain") == ""  # data ignored, lock committed
        return snapshot(work)

    v1 = save(1)
    first = git(work, "rev-parse", "HEAD")
    v2 = save(2)
    assert v1 != v2
    assert "fraud:v1" in git(work, "show", f"{first}:modelkeep.lock")

    git(work, "checkout", "-q", first)
    assert "fraud:v1" in (work / lockfile.NAME).read_text()
    assert (work / "model.bin").read_bytes() == v2["model.bin"][1]  # Git alone: stale data
    assert sorted(ok("checkout", cwd=work).stdout.splitlines()) == [
        "restored data (transactions:v1)",
        "restored model.bin (fraud:v1)",
    ]
    assert snapshot(work) == v1
    git(work, "checkout", "-q", "main")
    ok("checkout", cwd=work)
    assert snapshot(work) == v2

    r = ok("install-hooks", cwd=work)
    hook = work / ".git" / "hooks" / "post-checkout"
    assert str(hook) in r.stdout
    assert hook.stat().st_mode & stat.S_IXUSR
    git(work, "checkout", "-q", first)  # alone: the hook runs `modelkeep checkout`
    assert snapshot(work) == v1
    git(work, "checkout", "-q", "main")
    assert snapshot(work) == v2
    git(work, "checkout", "-q", "-b", "old", first)
    assert snapshot(work) == v1


def test_install_hooks_keeps_a_foreign_hook_unless_forced(wrepo: mk.Repo, work: Path) -> None:
    hook = work / ".git" / "hooks" / "post-checkout"
    write(hook, b"#!/bin/sh\necho mine\n")
    line = one_error_line(cli("install-hooks", cwd=work))
    assert str(hook) in line and "--force" in line
    assert hook.read_bytes() == b"#!/bin/sh\necho mine\n"
    ok("install-hooks", "--force", cwd=work)
    assert HOOK_MARK in hook.read_text()
    assert wrepo.install_hooks() == hook  # ours: replaced without --force


# -- a lock file edited into an invalid state ------------------------------------------


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("this is not a lock line", "is not 'PATH -> NAME:vN (b3:HEX)'"),
        (f"x.bin -> x:latest ({GHOST})", "is not a version like NAME:v3"),
        (f"a.bin -> a:v2 ({GHOST})", "'a.bin' is listed twice"),
        (f"../x.bin -> x:v1 ({GHOST})", "is not a relative path inside the tree"),
        (f"data//x.bin -> x:v1 ({GHOST})", "is not a relative path inside the tree"),
        (f'"bad \\q" -> x:v1 ({GHOST})', "bad quoted path"),
        (f".git/hooks/post-checkout -> x:v1 ({GHOST})", "inside .git"),
        (f"a.bin -> a:v1 (b3:{'0' * 63})", "is not 'PATH -> NAME:vN (b3:HEX)'"),
    ],
)
def test_invalid_lock_file_is_one_error_naming_the_line(
    wrepo: mk.Repo, work: Path, bad: str, why: str
) -> None:
    write(work / "a.bin", b"a")
    wrepo.add(work / "a.bin", "a")
    (work / "a.bin").unlink()  # checkout would restore it, if it ran
    with (work / lockfile.NAME).open("a", encoding="utf-8") as f:
        f.write(bad + "\n")
    before = snapshot(work)
    for command in ("status", "checkout"):
        line = one_error_line(cli(command, cwd=work))
        assert f"{work / lockfile.NAME}, line 4: " in line
        assert why in line
        assert snapshot(work) == before
    with pytest.raises(LockFileError) as info:
        wrepo.status()
    assert info.value.line == 4
    # adding another path reports the broken lock before storing anything
    write(work / "b.bin", b"b" * 1000)
    stored = wrepo.du().stored_bytes
    line = one_error_line(cli("add", "b.bin", "--name", "b", cwd=work))
    assert f"{work / lockfile.NAME}, line 4: " in line
    assert [a.name for a in wrepo.artifacts()] == ["a"]
    assert wrepo.du().stored_bytes == stored


# -- the lock file format --------------------------------------------------------------

segment = st.text(
    st.characters(codec="utf-8", exclude_characters="/") | st.sampled_from("\udcff\udc80"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and lockfile.control_folder([s]) is None)
paths = st.lists(segment, min_size=1, max_size=4).map("/".join)
refs = st.builds(
    "{}:v{}".format,
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}(/[a-z0-9][a-z0-9._-]{0,8}){0,2}", fullmatch=True),
    st.integers(1, 10**9),
)
digests = st.binary(min_size=32, max_size=32).map(lambda b: "b3:" + b.hex())
entries = st.lists(
    st.builds(LockEntry, paths, refs, digests), max_size=8, unique_by=lambda e: e.path
)


@settings(max_examples=200, deadline=None)
@given(entries)
def test_lock_file_round_trip(found: list[LockEntry]) -> None:
    by_path = {e.path: e for e in found}
    text = lockfile.HEADER + "".join(lockfile.format_entry(e) + "\n" for e in found)
    assert lockfile.parse(text) == by_path
    with tempfile.TemporaryDirectory() as tmp:
        lockfile.write(Path(tmp), by_path)
        assert lockfile.read(Path(tmp)) == by_path
        raw = (Path(tmp) / lockfile.NAME).read_text("utf-8", "surrogateescape")
        body = raw[len(lockfile.HEADER) :].splitlines()
        assert len(body) == len(found)  # one line per path, whatever the path holds
        assert [next(iter(lockfile.parse(line))) for line in body] == sorted(by_path)


# -- concurrency -----------------------------------------------------------------------


_ADDER = """
import sys, time
from pathlib import Path
import modelkeep as mk

top, who, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
with mk.open(top) as repo:
    while not go.exists():  # start together, so the adds overlap
        time.sleep(0.001)
    for i in range(5):
        repo.add(top / who / f"f{i}.bin", f"{who}-{i}")
"""


def test_concurrent_adds_lose_no_line(wrepo: mk.Repo, work: Path, tmp_path: Path) -> None:
    """4 processes, each adding 5 paths at once: 20 read-modify-writes of one lock file."""
    names = [f"part{i}" for i in range(4)]
    expected = []
    for name in names:
        for i in range(5):
            write(work / name / f"f{i}.bin", os.urandom(1000))
            expected.append(f"{name}/f{i}.bin")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ADDER, str(work), name, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    time.sleep(0.5)
    go.touch()
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    entries = lockfile.read(work)
    assert sorted(entries) == sorted(expected)
    assert {e.ref for e in entries.values()} == {f"{p.split('/')[0]}-{p[-5]}:v1" for p in expected}
    assert sorted(ignored(work)) == sorted(["/.modelkeep", *(f"/{p}" for p in expected)])
    assert {s.state for s in wrepo.status()} == {"ok"}
