"""Paths from records are checked like paths from users.

Each test plays the attacker: it edits a row of the metadata database with sqlite3, writes
lock lines by hand, or writes into a shared checkout copy, then drives the real CLI (or the
public Python API where a script is the user) and asserts the safe outcome: one error line,
nothing written outside, no setuid bit, no data lost, the original bytes back.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import warnings
from pathlib import Path

import pytest

import modelkeep as mk
from modelkeep import lockfile
from modelkeep.errors import CheckoutCopyWarning, UnsafeRecord
from tests.conftest import cli, git, git_work_tree, isolate_git, jcli, ok, one_error_line, write

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def everything(top: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under top (but the metadata database, which reads may touch): its mode
    and its bytes or link target."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            p = Path(folder) / name
            if name.startswith("meta.sqlite") or name.startswith("index.sqlite"):
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                data: bytes | None = os.fsencode(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                data = p.read_bytes()
            else:
                data = None
            out[str(p.relative_to(top))] = (st.st_mode, data)
    return out


def edit_version(root: Path, **values: object) -> None:
    """What an attacker with the database file does: change a row behind modelkeep's back."""
    db = sqlite3.connect(root / ".modelkeep" / "meta.sqlite")
    with db:
        for column, value in values.items():
            db.execute(f"UPDATE versions SET {column} = ?", (value,))
    db.close()


# -- finding 4: a row of the metadata database leads `get` astray -----------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """tmp_path/outer/proj holds a repository with one file version f:v1; the working
    directory of the commands is proj/work/here, so '../../x' still lands inside tmp_path."""
    root = tmp_path / "outer" / "proj"
    with mk.init(root) as repo:
        repo.add(write(root / "f.bin", b"the real bytes\n"), "f")
    (root / "work" / "here").mkdir(parents=True)
    return root


BAD_NAMES = [
    b"../../escaped",
    b"..",
    b".",
    b"",
    b"a/b",
    b"nul\0byte",
    b"x" * 300,
]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
def test_edited_source_name_never_leads_get_astray(
    project: Path, tmp_path: Path, bad: bytes
) -> None:
    edit_version(project, source_name=bad)
    here = project / "work" / "here"
    before = everything(tmp_path)
    for args in (("get", "f:v1"), ("get", "f:v1", "--force"), ("get", "f:v1", "-o", "into/")):
        line = one_error_line(cli(*args, cwd=here))
        assert "f:v1 has an unsafe source_name" in line and "nothing was written" in line
        assert everything(tmp_path) == before  # the working folder survives --force
    with mk.open(project) as repo:
        with pytest.raises(UnsafeRecord, match="source_name"):
            repo.restore("f:v1", here / "target")
        with pytest.raises(UnsafeRecord, match="source_name"):
            repo.local_copy("f:v1")
        assert [v.ref for v in repo.versions("f")] == ["f:v1"]  # still listed, deletable
    assert everything(tmp_path) == before


def test_edited_absolute_source_name_writes_nothing_there(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "planted"
    edit_version(project, source_name=os.fsencode(target))
    here = project / "work" / "here"
    for args in (("get", "f:v1"), ("get", "f:v1", "--force"), ("get", "f:v1", "-o", "d/")):
        assert "unsafe source_name" in one_error_line(cli(*args, cwd=here))
    assert not target.parent.exists()
    assert not (here / "d").exists()


@pytest.mark.parametrize("mode", [0o6777, 0o2644, 0o777, 0])
def test_edited_mode_never_restores_a_setuid_or_odd_file(
    project: Path, tmp_path: Path, mode: int
) -> None:
    edit_version(project, mode=mode)
    here = project / "work" / "here"
    before = everything(tmp_path)
    for args in (("get", "f:v1"), ("get", "f:v1", "-o", "out.bin")):
        line = one_error_line(cli(*args, cwd=here))
        assert "f:v1 has an unsafe mode" in line and "0o644 or 0o755" in line
    with mk.open(project) as repo, pytest.raises(UnsafeRecord, match="mode"):
        repo.local_copy("f:v1")
    assert everything(tmp_path) == before
    for _folder, _dirs, files in os.walk(tmp_path):
        for name in files:
            assert not os.lstat(Path(_folder) / name).st_mode & (stat.S_ISUID | stat.S_ISGID)


def test_a_folder_version_with_a_file_mode_is_refused(project: Path) -> None:
    with mk.open(project) as repo:
        write(project / "d" / "x.txt", b"x")
        repo.add(project / "d", "d")
    db = sqlite3.connect(project / ".modelkeep" / "meta.sqlite")
    with db:
        db.execute("UPDATE versions SET mode = ? WHERE kind = 'dir'", (0o4755,))
    db.close()
    line = one_error_line(cli("get", "d:v1", "-o", "restored", cwd=project))
    assert "d:v1 has an unsafe mode '0o4755'" in line and "a dir is stored with mode 0)" in line
    assert not (project / "restored").exists()


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("mode", "rwx", "mode"),
        ("kind", "zzz", "kind"),
        ("digest", "../../etc", "digest"),
        ("source_name", 42, "source_name"),
        ("metadata_json", "{not json", "metadata"),
        ("metadata_json", "[1, 2]", "metadata"),
    ],
)
def test_a_row_of_the_wrong_type_is_one_error_not_a_traceback(
    project: Path, column: str, value: object, field: str
) -> None:
    edit_version(project, **{column: value})
    for args in (("get", "f:v1"), ("ls",)):
        line = one_error_line(cli(*args, cwd=project))
        assert f"f:v1 has an unsafe {field}" in line
    assert not (project / "work" / "here" / "f.bin").exists()


@needs_git
def test_checkout_of_a_lock_line_whose_version_row_was_edited_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_git(tmp_path, monkeypatch)
    top = _work(tmp_path)
    with mk.init(top) as repo:
        repo.add(write(top / "data.bin", b"data"), "data")
    (top / "data.bin").unlink()
    edit_version(top, mode=0o6755)
    line = one_error_line(cli("checkout", cwd=top))
    assert "data:v1 has an unsafe mode" in line
    assert not (top / "data.bin").exists()


# -- finding 6: the lock file and `add` reach into .modelkeep/ or .git/ -------------------


def _work(tmp_path: Path) -> Path:
    return git_work_tree(tmp_path / "work")


EVIL = b'[remote.evil]\nurl = "s3://evil/bucket"\ndefault = true\n'


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Git work tree with a repository at its top (no remote yet), and a version evil:v1
    (a remotes.toml naming the attacker's bucket as the default remote) in the store."""
    isolate_git(tmp_path, monkeypatch)
    top = _work(tmp_path)
    monkeypatch.chdir(top)
    with mk.init(top) as repo:
        evil = write(tmp_path / "evil" / "remotes.toml", EVIL)
        repo.add(evil, "evil", track=False)
    return top


def _digest(top: Path, ref: str = "evil:v1") -> str:
    with mk.open(top) as repo:
        return repo.show(ref).digest


def _append(top: Path, line: str) -> None:
    with (top / lockfile.NAME).open("a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write(lockfile.HEADER)
        f.write(line + "\n")


def _protected(top: Path) -> dict[str, tuple[int, bytes | None]]:
    return {
        **{f".modelkeep/{k}": v for k, v in everything(top / ".modelkeep").items()},
        **{f".git/{k}": v for k, v in everything(top / ".git").items() if "hooks" in k},
    }


@needs_git
@pytest.mark.parametrize(
    ("path", "why"),
    [
        (".modelkeep/remotes.toml", "is inside .modelkeep"),
        (".MODELKEEP/remotes.toml", "is inside .MODELKEEP"),
        (".Modelkeep./remotes.toml", "is inside .Modelkeep."),
        ("./.modelkeep/remotes.toml", "is not a relative path inside the tree"),
        ("a/../.modelkeep/remotes.toml", "is not a relative path inside the tree"),
        ("sub/.git/hooks/post-checkout", "is inside .git"),
        ("sub/.Git/hooks/x", "is inside .Git"),
        ("sub/proj/.modelkeep/config.toml", "is inside .modelkeep"),
        ("/etc/x", "is not a relative path inside the tree"),
        ("../x", "is not a relative path inside the tree"),
    ],
)
def test_a_lock_line_into_a_control_folder_is_refused_before_anything_is_written(
    work: Path, path: str, why: str
) -> None:
    _append(work, f"{path} -> evil:v1 ({_digest(work)})")
    before = _protected(work)
    for command in ("status", "checkout"):
        line = one_error_line(cli(command, cwd=work))
        assert f"{work / lockfile.NAME}, line 3: " in line and why in line
        assert _protected(work) == before
    assert not (work / "sub").exists()
    assert not (work.parent / "x").exists()


@needs_git
@pytest.mark.parametrize(
    ("link", "to", "leads"),
    [
        ("cfg", ".modelkeep", "into .modelkeep"),
        ("cfg", ".modelkeep/store", "into .modelkeep"),
        ("cfg", "sub/.git", "into .git"),
        ("cfg", "../outside", "outside the work tree"),
    ],
)
def test_a_lock_line_through_a_symlinked_folder_into_a_control_folder_is_refused(
    work: Path, link: str, to: str, leads: str
) -> None:
    (work / "sub" / ".git").mkdir(parents=True)
    (work.parent / "outside").mkdir()
    (work / link).symlink_to(to, target_is_directory=True)
    _append(work, f"a.bin -> evil:v1 ({_digest(work)})")  # a good line, restored if it ran
    _append(work, f"{link}/remotes.toml -> evil:v1 ({_digest(work)})")
    before = _protected(work)
    for command in ("status", "checkout"):
        line = one_error_line(cli(command, cwd=work))
        assert f"{work / lockfile.NAME}, line 4: '{link}/remotes.toml' leads {leads}" in line
        assert _protected(work) == before
    assert not (work / "a.bin").exists()  # the whole checkout was refused
    assert list((work.parent / "outside").iterdir()) == []
    assert list((work / "sub" / ".git").iterdir()) == []


@needs_git
def test_a_folder_restored_first_cannot_open_the_way_for_a_later_line(work: Path) -> None:
    """Line 1 restores a folder holding a link to .modelkeep; line 2 writes through it."""
    with mk.open(work) as repo:
        trap = work.parent / "trap"
        trap.mkdir()
        (trap / "b").symlink_to("../.modelkeep", target_is_directory=True)
        trojan = repo.add(trap, "trap", track=False).version
    _append(work, f"a -> trap:v1 ({trojan.digest})")
    _append(work, f"a/b/remotes.toml -> evil:v1 ({_digest(work)})")
    line = one_error_line(cli("checkout", cwd=work))
    assert "line 4: 'a/b/remotes.toml' leads into" in line and ".modelkeep" in line
    assert not (work / ".modelkeep" / "remotes.toml").exists()


@needs_git
def test_the_post_checkout_hook_does_not_replace_the_default_remote(work: Path) -> None:
    ok("install-hooks", cwd=work)
    git(work, "checkout", "-q", "-b", "attack")
    _append(work, f".modelkeep/remotes.toml -> evil:v1 ({_digest(work)})")
    git(work, "add", lockfile.NAME)
    git(work, "commit", "-q", "-m", "innocent")
    git(work, "checkout", "-q", "main")
    # the hook runs `modelkeep checkout`, which refuses; git reports the hook's failure
    r = subprocess.run(
        ["git", "checkout", "-q", "attack"], cwd=work, capture_output=True, text=True, check=False
    )
    assert "line 3: '.modelkeep/remotes.toml' is inside .modelkeep" in r.stderr
    assert (work / lockfile.NAME).exists()  # git did switch; modelkeep wrote nothing
    assert not (work / ".modelkeep" / "remotes.toml").exists()
    with mk.open(work) as repo:
        assert repo.remotes() == []


@needs_git
@pytest.mark.parametrize(
    "path", [".modelkeep", ".modelkeep/store", "ml", "ml/store", ".git/config", "sub/.GIT/x"]
)
def test_add_of_a_control_folder_is_refused_however_it_is_reached(work: Path, path: str) -> None:
    (work / "ml").symlink_to(".modelkeep", target_is_directory=True)
    write(work / "sub" / ".GIT" / "x", b"x")
    line = one_error_line(cli("add", path, "--name", "x", cwd=work))
    assert "add your files or folders instead" in line
    assert ".modelkeep" in line or ".git" in line.casefold()
    with mk.open(work) as repo:
        assert [a.name for a in repo.artifacts()] == ["evil"]


@needs_git
def test_add_of_the_parent_or_the_top_leaves_the_control_folder_out(work: Path) -> None:
    (work / "sub").mkdir()
    write(work / "sub" / "x.txt", b"x")
    (work / "up").symlink_to(".", target_is_directory=True)
    for where, args in (
        (work / "sub", ("add", "..", "--name", "top-a")),
        (work, ("add", ".", "--name", "top-b")),
        (work / "sub", ("add", "../up/sub/..", "--name", "top-c")),
    ):
        ok(*args, cwd=where)
    for name in ("top-a", "top-b", "top-c"):
        paths = [f["path"] for f in jcli("show", f"{name}:v1", cwd=work)["files"]]
        assert "sub/x.txt" in paths and "train.py" in paths
        assert not [p for p in paths if p.split("/")[0] == ".modelkeep"], paths
        assert jcli("show", f"{name}:v1", cwd=work)["source_name"] == "work"


# -- finding 10: shared checkout copies are read-only and verified before reuse ----------


@pytest.fixture
def dataset(repo: mk.Repo) -> dict[str, bytes]:
    data = {"a.csv": b"id,amount\n1,10\n", "sub/b.csv": b"id,amount\n2,20\n", "run.sh": b"#!\n"}
    for rel, content in data.items():
        write(repo.root / "ds" / rel, content)
    os.chmod(repo.root / "ds" / "run.sh", 0o755)
    repo.add(repo.root / "ds", "ds", type="dataset")
    shutil.rmtree(repo.root / "ds")
    return data


def files_under(top: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(top)): p.read_bytes()
        for p in sorted(top.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def test_a_checkout_copy_is_read_only(repo: mk.Repo, dataset: dict[str, bytes]) -> None:
    with mk.start_run(name="reader", repo=repo, capture_code=False) as run:
        copy = run.use("ds:v1")
    assert files_under(copy) == dataset
    modes = {str(p.relative_to(copy)): stat.S_IMODE(p.stat().st_mode) for p in copy.rglob("*")}
    assert modes == {"a.csv": 0o444, "sub": 0o555, "sub/b.csv": 0o444, "run.sh": 0o555}
    assert stat.S_IMODE(copy.stat().st_mode) == 0o555


def test_a_script_writing_into_its_copy_does_not_poison_the_next_reader(
    repo: mk.Repo, dataset: dict[str, bytes]
) -> None:
    with mk.start_run(name="writer", repo=repo, capture_code=False) as run:
        copy = run.use("ds:v1")
        for p in (copy, copy / "sub", copy / "a.csv"):
            os.chmod(p, 0o755)  # root could write anyway; a script may chmod first
        (copy / "a.csv").write_bytes(b"id,amount\n1,999999\n")
        (copy / "extra.csv").write_bytes(b"planted\n")
        (copy / "sub" / "b.csv").unlink()
    with (
        mk.start_run(name="reader", repo=repo, capture_code=False) as run,
        pytest.warns(CheckoutCopyWarning, match="restoring a fresh copy"),
    ):
        again = run.use("ds:v1")
    assert again == copy
    assert files_under(again) == dataset
    assert stat.S_IMODE((again / "a.csv").stat().st_mode) == 0o444
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified and sealed: reused without a word
        assert files_under(repo.local_copy("ds:v1")) == dataset


def test_an_edit_with_the_mtime_put_back_is_detected(repo: mk.Repo) -> None:
    """Same size, same inode, mtime restored with os.utime: the ctime still moved, so the
    copy is hashed, found different, and restored."""
    repo.add(write(repo.root / "w.bin", b"weights-0123456789"), "w")
    copy = repo.local_copy("w:v1")
    st = copy.stat()
    os.chmod(copy, 0o644)
    with open(copy, "r+b") as f:
        f.write(b"WEIGHTS")
    os.chmod(copy, 0o444)
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = copy.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        st.st_size,
        st.st_ino,
        st.st_mtime_ns,
    )
    with pytest.warns(CheckoutCopyWarning):
        assert repo.local_copy("w:v1").read_bytes() == b"weights-0123456789"


def test_a_copy_touched_but_unchanged_is_kept_after_hashing(repo: mk.Repo) -> None:
    repo.add(write(repo.root / "w.bin", b"weights"), "w")
    copy = repo.local_copy("w:v1")
    inode = copy.stat().st_ino
    os.utime(copy)  # stamps differ, bytes do not: no warning, no new copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repo.local_copy("w:v1") == copy
    assert copy.stat().st_ino == inode
    assert copy.read_bytes() == b"weights"


def test_a_copy_replaced_by_a_link_or_with_a_mode_changed_is_restored(
    repo: mk.Repo, tmp_path: Path
) -> None:
    repo.add(write(repo.root / "w.bin", b"weights"), "w")
    copy = repo.local_copy("w:v1")
    planted = write(tmp_path / "planted.bin", b"planted")
    os.chmod(copy.parent, 0o755)
    copy.unlink()
    copy.symlink_to(planted)
    with pytest.warns(CheckoutCopyWarning):
        again = repo.local_copy("w:v1")
    assert not again.is_symlink() and again.read_bytes() == b"weights"
    assert planted.read_bytes() == b"planted"
    os.chmod(again, 0o755)  # made executable: not what the version holds
    with pytest.warns(CheckoutCopyWarning):
        assert stat.S_IMODE(repo.local_copy("w:v1").stat().st_mode) == 0o444


def test_a_copy_from_before_sealing_is_verified_and_sealed(repo: mk.Repo) -> None:
    repo.add(write(repo.root / "w.bin", b"weights"), "w")
    copy = repo.local_copy("w:v1")
    shutil.rmtree(repo.settings.control_dir / "checkouts" / ".stamps")  # as older versions
    os.chmod(copy, 0o644)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repo.local_copy("w:v1") == copy
    assert stat.S_IMODE(copy.stat().st_mode) == 0o444


@pytest.mark.parametrize(
    ("sql", "args", "said"),
    [
        ("UPDATE versions SET created_at = 'not a time'", ("ls",), "f:v1 has an unsafe created_at"),
        ("UPDATE versions SET created_at = 12", ("versions", "f"), "f:v1 has an unsafe created_at"),
        ("UPDATE versions SET digest = 'zz'", ("show", "f"), "f:v1 has an unsafe digest"),
        ("UPDATE versions SET metadata_json = '[1]'", ("show", "f:v1"), "unsafe metadata"),
    ],
)
def test_read_commands_refuse_an_edited_row_in_one_line(
    project: Path, sql: str, args: tuple[str, ...], said: str
) -> None:
    """The read commands run on SQLite through the standard library (no ORM between the row
    and the record): an edited row still gets the one-line refusal, not a traceback."""
    db = sqlite3.connect(project / ".modelkeep" / "meta.sqlite")
    with db:
        db.execute(sql)
    db.close()
    line = one_error_line(cli(*args, cwd=project))
    assert said in line and "edited or damaged" in line
