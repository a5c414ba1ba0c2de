"""Bad input through the real CLI: one clear line on stderr, exit 1, nothing half-written."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

import modelkeep as mk
from modelkeep.meta import NewVersion, add_version
from modelkeep.store.add import Writer
from modelkeep.store.chunking import digest
from modelkeep.store.packs import KIND_CHUNK, KIND_TREE
from modelkeep.store.trees import Kind, Tree, TreeEntry
from tests.conftest import cli, jcli, ok, write

PREFIX = "modelkeep: error: "
# Root reads files whatever their permissions; without these two capabilities it is
# held to permission bits like any user, so unreadable paths can be tested as root too.
AS_PLAIN_USER = (
    ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")
    if os.geteuid() == 0
    else ()
)


def error_line(*args: str, cwd: Path, prefix: tuple[str, ...] = ()) -> str:
    """Run a command that must be refused; return its one error line."""
    r = cli(*args, cwd=cwd, prefix=prefix)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    assert len(lines[0]) > len(PREFIX) + 10
    assert r.stdout == "", r.stdout
    return lines[0]


@dataclass(frozen=True)
class State:
    artifacts: list[tuple[str, int]]
    packs: list[str]
    tmp: list[str]
    files: list[str]  # everything outside .modelkeep/ in the repository folder


def state(root: Path) -> State:
    doc = jcli("ls", cwd=root)
    store = root / ".modelkeep" / "store"
    return State(
        artifacts=[(a["name"], a["versions"]) for a in doc["artifacts"]],
        packs=sorted(p.name for p in (store / "packs").iterdir()),
        tmp=sorted(p.name for p in (store / "tmp").iterdir()),
        files=sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if ".modelkeep" not in p.relative_to(root).parts
        ),
    )


def assert_untouched(root: Path, before: State) -> None:
    after = state(root)
    assert after.artifacts == before.artifacts, "a refused command changed the versions"
    assert after.files == before.files, "a refused command created or removed files"
    assert after.tmp == [], "a refused command left temporary files in the store"
    assert after.packs == before.packs, "a refused command stored data no version uses"
    fsck = jcli("fsck", cwd=root)
    assert fsck["ok"] is True, fsck


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """A repository with one artifact, fraud-detector:v1 (a file), and one folder, ckpt:v1.

    Made through the library, not three CLI processes: the tests are about the command
    each one runs next (test_cli.py covers init and add through the CLI).
    """
    root = tmp_path / "proj"
    write(root / "model.bin", b"fraud model weights" * 1000)
    write(root / "ckpt" / "weights.bin", b"w" * 5000)
    write(root / "ckpt" / "sub" / "config.json", b'{"layers": 2}')
    with mk.init(root) as repo:
        repo.add(root / "model.bin", "fraud-detector", type="model")
        repo.add(root / "ckpt", "ckpt")
    return root


# -- paths to add -------------------------------------------------------------


def test_missing_path(proj: Path) -> None:
    before = state(proj)
    line = error_line("add", "no-such-file.bin", "--name", "x", cwd=proj)
    assert "no-such-file.bin" in line
    assert "does not exist" in line
    assert_untouched(proj, before)


def test_unreadable_file(proj: Path) -> None:
    secret = write(proj / "secret.bin", b"secret")
    secret.chmod(0)
    before = state(proj)
    try:
        line = error_line("add", "secret.bin", "--name", "x", cwd=proj, prefix=AS_PLAIN_USER)
    finally:
        secret.chmod(0o644)
    assert "secret.bin" in line
    assert "permission" in line.lower()
    assert_untouched(proj, before)


def test_unreadable_folder(proj: Path) -> None:
    folder = proj / "locked"
    write(folder / "a.bin", b"a")
    folder.chmod(0)
    before_versions = jcli("ls", cwd=proj)
    try:
        line = error_line("add", "locked", "--name", "x", cwd=proj, prefix=AS_PLAIN_USER)
    finally:
        folder.chmod(0o755)
    assert "locked" in line
    assert "permission" in line.lower()
    assert jcli("ls", cwd=proj) == before_versions
    assert jcli("fsck", cwd=proj)["ok"] is True


def test_fifo_inside_folder(proj: Path) -> None:
    folder = proj / "data"
    write(folder / "a.bin", b"a" * 10_000)
    write(folder / "b.bin", b"b" * 10_000)
    os.mkfifo(folder / "pipe")
    before = state(proj)
    line = error_line("add", "data", "--name", "data", cwd=proj)
    assert "pipe" in line
    assert "named pipe" in line
    assert "only files, folders and symlinks" in line
    assert_untouched(proj, before)
    assert "data" not in [name for name, _ in before.artifacts]


def test_fifo_itself(proj: Path) -> None:
    os.mkfifo(proj / "pipe")
    before = state(proj)
    line = error_line("add", "pipe", "--name", "pipe", cwd=proj)
    assert "named pipe" in line
    assert_untouched(proj, before)


def test_adding_the_control_folder_is_refused(proj: Path) -> None:
    before = state(proj)
    line = error_line("add", ".modelkeep", "--name", "self", cwd=proj)
    assert ".modelkeep" in line
    assert_untouched(proj, before)


# -- names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "a" * 129, "/x", "a/../b", "a//b", "Fraud-Detector", "fraud/", "..", "a b", "a:b"],
)
def test_invalid_names(proj: Path, name: str) -> None:
    before = state(proj)
    line = error_line("add", "model.bin", "--name", name, cwd=proj)
    assert "invalid name" in line
    assert repr(name) in line
    assert "lowercase" in line  # says what a valid name looks like
    assert_untouched(proj, before)


# -- refs ---------------------------------------------------------------------


def test_unknown_artifact_suggests_similar(proj: Path) -> None:
    for command in (["show", "fraud-detectr"], ["versions", "fraud-detectr"]):
        line = error_line(*command, cwd=proj)
        assert "'fraud-detectr'" in line
        assert "did you mean 'fraud-detector'" in line
    before = state(proj)
    line = error_line("get", "fraud-detectr:v1", "-o", "out", cwd=proj)
    assert "fraud-detector" in line
    assert not (proj / "out").exists()
    assert_untouched(proj, before)


def test_unknown_artifact_without_similar_names(proj: Path) -> None:
    line = error_line("show", "zzzzzzzz", cwd=proj)
    assert "'zzzzzzzz'" in line
    assert "modelkeep ls" in line


def test_unknown_version_says_latest(proj: Path) -> None:
    write(proj / "model.bin", b"second version")
    ok("add", "model.bin", "--name", "fraud-detector", cwd=proj)
    line = error_line("show", "fraud-detector:v7", cwd=proj)
    assert "latest is v2" in line
    assert "modelkeep versions fraud-detector" in line
    before = state(proj)
    line = error_line("get", "fraud-detector:v3", "-o", "out/", cwd=proj)
    assert "latest is v2" in line
    assert not (proj / "out").exists()
    assert_untouched(proj, before)


@pytest.mark.parametrize("ref", ["x:v0", "x:vabc", "x:1", "b3:zz", "b3:abc", "b3:0123456"])
def test_malformed_refs(proj: Path, ref: str) -> None:
    line = error_line("show", ref, cwd=proj)
    assert "invalid ref" in line
    assert repr(ref) in line
    assert "NAME:vN" in line  # what a valid ref looks like
    before = state(proj)
    error_line("get", ref, "-o", "out", cwd=proj)
    assert not (proj / "out").exists()
    assert_untouched(proj, before)


def _colliding_contents() -> tuple[bytes, bytes]:
    """Two small contents whose BLAKE3 ids share their first 8 hex digits."""
    seen: dict[bytes, bytes] = {}
    for i in range(5_000_000):
        data = i.to_bytes(8, "little")
        head = blake3.blake3(data).digest()[:4]
        if head in seen:
            return seen[head], data
        seen[head] = data
    raise AssertionError("no collision found")


def test_ambiguous_and_unknown_digest_prefix(proj: Path) -> None:
    a, b = _colliding_contents()
    id_a, id_b = blake3.blake3(a).hexdigest(), blake3.blake3(b).hexdigest()
    assert id_a[:8] == id_b[:8]
    write(proj / "a.bin", a)
    write(proj / "b.bin", b)
    ok("add", "a.bin", "--name", "twin-a", cwd=proj)
    ok("add", "b.bin", "--name", "twin-b", cwd=proj)
    line = error_line("show", f"b3:{id_a[:8]}", cwd=proj)
    assert "ambiguous" in line
    assert f"b3:{id_a[:16]}" in line
    assert f"b3:{id_b[:16]}" in line
    assert "more hex digits" in line
    # Enough digits to tell them apart resolve.
    common = next(i for i in range(64) if id_a[i] != id_b[i])
    assert jcli("show", f"b3:{id_a[: common + 1]}", cwd=proj)["name"] == "twin-a"
    assert jcli("show", f"b3:{id_b[: common + 1]}", cwd=proj)["name"] == "twin-b"

    known = {id_a, id_b, *(a["latest"]["digest"][3:] for a in jcli("ls", cwd=proj)["artifacts"])}
    unknown = next(
        p for p in ("00000000", "11111111", "22222222") if not any(k.startswith(p) for k in known)
    )
    line = error_line("show", f"b3:{unknown}", cwd=proj)
    assert f"b3:{unknown}" in line
    assert "no version has content id" in line
    before = state(proj)
    error_line("get", f"b3:{id_a[:8]}", "-o", "out", cwd=proj)
    assert not (proj / "out").exists()
    assert_untouched(proj, before)


# -- no repository ------------------------------------------------------------


def test_outside_a_repository(tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    above = [p for p in (outside, *outside.parents) if (p / ".modelkeep").exists()]
    if above:
        pytest.skip(f"a parent folder is a modelkeep repository: {above[0]}")
    write(outside / "m.bin", b"m")
    for command in (["ls"], ["add", "m.bin", "--name", "m"], ["show", "m"], ["fsck"], ["gc"]):
        line = error_line(*command, cwd=outside)
        assert "no modelkeep repository" in line
        assert "modelkeep init" in line
    assert not (outside / ".modelkeep").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["m.bin"]


def test_repo_option_pointing_nowhere(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    line = error_line("--repo", str(missing), "ls", cwd=tmp_path)
    assert "modelkeep init" in line
    assert not missing.exists()


# -- restoring ----------------------------------------------------------------


def test_destination_exists_folder(proj: Path) -> None:
    dest = proj / "restored"
    write(dest / "old.txt", b"old content")
    before = state(proj)
    line = error_line("get", "ckpt", "-o", "restored", cwd=proj)
    assert "restored" in line
    assert "--force" in line
    assert_untouched(proj, before)
    assert sorted(os.listdir(dest)) == ["old.txt"]
    assert (dest / "old.txt").read_bytes() == b"old content"

    ok("get", "ckpt", "-o", "restored", "--force", cwd=proj)
    assert not (dest / "old.txt").exists()
    assert sorted(os.listdir(dest)) == ["sub", "weights.bin"]
    assert (dest / "weights.bin").read_bytes() == b"w" * 5000
    assert (dest / "sub" / "config.json").read_bytes() == b'{"layers": 2}'
    leftovers = [p for p in proj.iterdir() if p.name.startswith(".restored")]
    assert leftovers == []


def test_destination_exists_file(proj: Path) -> None:
    write(proj / "out" / "model.bin", b"something else entirely")
    before = state(proj)
    line = error_line("get", "fraud-detector", "-o", "out/", cwd=proj)
    assert "model.bin" in line
    assert "--force" in line
    assert (proj / "out" / "model.bin").read_bytes() == b"something else entirely"
    assert_untouched(proj, before)
    ok("get", "fraud-detector", "-o", "out/", "--force", cwd=proj)
    assert (proj / "out" / "model.bin").read_bytes() == b"fraud model weights" * 1000
    assert os.listdir(proj / "out") == ["model.bin"]


def test_force_replaces_a_symlink_destination_not_its_target(proj: Path) -> None:
    victim = proj.parent / "victim"
    write(victim / "keep.txt", b"keep me")
    os.symlink(victim, proj / "linked")
    before = state(proj)
    error_line("get", "ckpt", "-o", "linked", cwd=proj)
    assert_untouched(proj, before)
    ok("get", "ckpt", "-o", "linked", "--force", cwd=proj)
    assert not (proj / "linked").is_symlink()
    assert (proj / "linked" / "weights.bin").read_bytes() == b"w" * 5000
    assert os.listdir(victim) == ["keep.txt"]
    assert (victim / "keep.txt").read_bytes() == b"keep me"


def test_path_not_in_version(proj: Path) -> None:
    before = state(proj)
    line = error_line("get", "ckpt:v1", "--path", "sub/nope.json", "-o", "out/", cwd=proj)
    assert "'sub/nope.json'" in line
    assert "ckpt:v1" in line
    assert "modelkeep show ckpt:v1" in line
    assert not (proj / "out").exists()
    assert_untouched(proj, before)
    # A path below a file is not there either.
    line = error_line("get", "ckpt", "--path", "weights.bin/x", "-o", "out/", cwd=proj)
    assert "weights.bin/x" in line
    assert not (proj / "out").exists()


def test_destination_below_a_file(proj: Path) -> None:
    write(proj / "afile", b"x")
    before = state(proj)
    line = error_line("get", "fraud-detector", "-o", "afile/", cwd=proj)
    assert "afile" in line
    line = error_line("get", "ckpt", "-o", "afile/sub", cwd=proj)
    assert "afile" in line
    assert (proj / "afile").read_bytes() == b"x"
    assert_untouched(proj, before)


def test_symlink_to_outside_is_stored_as_a_link(proj: Path) -> None:
    folder = proj / "linky"
    write(folder / "real.txt", b"real")
    os.symlink("/etc/passwd", folder / "passwd")
    os.symlink("../../outside", folder / "escape")
    ok("add", "linky", "--name", "linky", cwd=proj)
    files = {f["path"]: f for f in jcli("show", "linky", cwd=proj)["files"]}
    assert files["passwd"]["kind"] == "link"
    assert files["passwd"]["size"] == len(b"/etc/passwd")
    assert files["passwd"]["digest"] == "b3:" + blake3.blake3(b"/etc/passwd").hexdigest()
    passwd = Path("/etc/passwd").read_bytes()
    assert files["passwd"]["digest"] != "b3:" + blake3.blake3(passwd).hexdigest()
    assert jcli("show", "linky", cwd=proj)["size"] == len(b"real") + len(b"/etc/passwd") + len(
        b"../../outside"
    )

    ok("get", "linky", "-o", "back", cwd=proj)
    assert (proj / "back" / "passwd").is_symlink()
    assert os.readlink(proj / "back" / "passwd") == "/etc/passwd"
    assert os.readlink(proj / "back" / "escape") == "../../outside"
    assert not (proj.parent / "outside").exists()
    with mk.open(proj) as repo:
        assert repo.store.link_target(digest(b"/etc/passwd")) == b"/etc/passwd"
        with repo.open("linky", "real.txt") as f:
            assert f.read() == b"real"
    # Restoring just the link gives the link, not the file it names.
    ok("get", "linky", "--path", "passwd", "-o", "one/", cwd=proj)
    assert os.readlink(proj / "one" / "passwd") == "/etc/passwd"


# -- crafted trees ------------------------------------------------------------


def _register_tree(root: Path, name: str, tree: Tree, extra: list[bytes]) -> None:
    """Put a (possibly malicious) tree and some chunks into the store and name a version."""
    with mk.open(root) as repo:
        writer = Writer(repo.store)
        for data in extra:
            writer._put(digest(data), KIND_CHUNK, data)
        data = tree.encode()
        writer._put(digest(data), KIND_TREE, data)
        writer.commit()
        size = sum(e.size for e in tree.entries)
        add_version(
            repo.db,
            name,
            None,
            NewVersion(
                kind="dir",
                digest=digest(data).hex(),
                size=size,
                file_count=len(tree.entries),
                mode=0,
                source_name="evil",
                user="x",
            ),
        )


def _file(name: bytes, data: bytes) -> TreeEntry:
    return TreeEntry(name, Kind.FILE, 0o644, len(data), digest(data))


@pytest.mark.parametrize(
    "bad_name", [b"..", b"../escaped", b"sub/../../escaped", b"/tmp/escaped", b".", b"a\0b"]
)
def test_crafted_tree_with_unsafe_name(tmp_path: Path, bad_name: bytes) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    ok("init", cwd=root)
    payload = b"pwned"
    tree = Tree((_file(b"fine.txt", b"fine"), _file(bad_name, payload)))
    _register_tree(root, "evil", tree, [b"fine", payload])

    out = tmp_path / "out"
    out.mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*") if ".modelkeep" not in p.parts)
    line = error_line("get", "evil", "-o", str(out / "dest"), cwd=root)
    assert "unsafe" in line
    assert repr(os.fsdecode(bad_name)) in line
    assert os.listdir(out) == []
    after = sorted(str(p) for p in tmp_path.rglob("*") if ".modelkeep" not in p.parts)
    assert after == before
    assert not Path("/tmp/escaped").exists() or Path("/tmp/escaped").read_bytes() != payload
    # The default destination (the working directory) is left alone too.
    error_line("get", "evil", cwd=out)
    assert os.listdir(out) == []


def test_crafted_nested_tree_with_unsafe_name(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    ok("init", cwd=root)
    inner = Tree((_file(b"../../escaped", b"pwned"),))
    inner_data = inner.encode()
    outer = Tree(
        (
            _file(b"a-first.txt", b"first"),
            TreeEntry(b"sub", Kind.DIR, 0, 5, digest(inner_data)),
        )
    )
    with mk.open(root) as repo:
        writer = Writer(repo.store)
        writer._put(digest(inner_data), KIND_TREE, inner_data)
        writer.commit()
    _register_tree(root, "evil", outer, [b"first", b"pwned"])
    out = tmp_path / "out"
    out.mkdir()
    line = error_line("get", "evil", "-o", str(out / "dest"), cwd=root)
    assert "unsafe" in line
    assert "../../escaped" in line
    assert os.listdir(out) == []
    assert not (tmp_path / "escaped").exists()
    assert not (out / "escaped").exists()


# -- types and metadata -------------------------------------------------------


def test_wrong_type_for_existing_artifact(proj: Path) -> None:
    write(proj / "model.bin", b"new weights")
    before = state(proj)
    line = error_line("add", "model.bin", "--name", "fraud-detector", "--type", "dataset", cwd=proj)
    assert "'fraud-detector'" in line
    assert "'model'" in line
    assert "'dataset'" in line
    assert "--type" in line
    assert_untouched(proj, before)


@pytest.mark.parametrize("pair", ["novalue", "=0.01", " =x"])
def test_meta_without_key_value(proj: Path, pair: str) -> None:
    write(proj / "model.bin", b"new weights")
    before = state(proj)
    line = error_line("add", "model.bin", "--name", "fraud-detector", "--meta", pair, cwd=proj)
    assert repr(pair) in line
    assert "KEY=VALUE" in line
    assert_untouched(proj, before)


# -- usage errors: exit 2 -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["add", "model.bin"], "--name"),
        (["frobnicate"], "frobnicate"),
        (["add", "model.bin", "--name", "x", "--type", "weights"], "--type"),
        (["show"], "REF"),
        (["get", "ckpt", "--bogus"], "--bogus"),
    ],
)
def test_usage_errors_exit_2(proj: Path, args: list[str], says: str) -> None:
    write(proj / "model.bin", b"new weights")
    before = state(proj)
    r = cli(*args, cwd=proj)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "Usage:" in r.stderr
    assert says in r.stderr
    assert_untouched(proj, before)


# -- edge cases that must work ------------------------------------------------


def test_empty_file(proj: Path) -> None:
    write(proj / "empty.bin", b"")
    r = ok("add", "empty.bin", "--name", "empty", cwd=proj)
    assert r.stdout.startswith("empty:v1  ")
    v = jcli("show", "empty", cwd=proj)
    assert v["size"] == 0
    assert v["kind"] == "file"
    assert v["digest"] == "b3:" + blake3.blake3(b"").hexdigest()
    ok("get", "empty", "-o", "out/", cwd=proj)
    assert (proj / "out" / "empty.bin").read_bytes() == b""
    assert jcli("fsck", cwd=proj)["ok"] is True


def test_empty_folder(proj: Path) -> None:
    (proj / "nothing").mkdir()
    ok("add", "nothing", "--name", "nothing", cwd=proj)
    v = jcli("show", "nothing", cwd=proj)
    assert (v["kind"], v["size"], v["file_count"], v["files"]) == ("dir", 0, 0, [])
    ok("get", "nothing", "-o", "back", cwd=proj)
    assert (proj / "back").is_dir()
    assert os.listdir(proj / "back") == []
    assert jcli("fsck", cwd=proj)["ok"] is True


def test_folder_with_zero_files(proj: Path) -> None:
    (proj / "skeleton" / "a" / "b").mkdir(parents=True)
    (proj / "skeleton" / "c").mkdir()
    ok("add", "skeleton", "--name", "skeleton", cwd=proj)
    v = jcli("show", "skeleton", cwd=proj)
    assert v["file_count"] == 0
    assert v["size"] == 0
    assert sorted(f["path"] for f in v["files"]) == ["a", "a/b", "c"]
    ok("get", "skeleton", "-o", "back", cwd=proj)
    found = sorted(
        str(p.relative_to(proj / "back")) for p in (proj / "back").rglob("*") if p.is_dir()
    )
    assert found == ["a", "a/b", "c"]
    assert not any(p.is_file() for p in (proj / "back").rglob("*"))
    assert stat.S_ISDIR((proj / "back" / "a" / "b").lstat().st_mode)
    assert jcli("fsck", cwd=proj)["ok"] is True
