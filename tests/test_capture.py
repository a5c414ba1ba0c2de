"""capture/: real Git repositories in tmp_path, the real environment of this venv."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelkeep.capture import (
    DEFAULT_GLOBS,
    command,
    diff_environments,
    environment,
    environment_id,
    hooks_dir,
    ignore,
    is_tracked,
    matches,
    snapshot,
    state,
    user_identity,
    work_tree,
    write_patch,
)
from modelkeep.errors import InvalidArgument
from tests.conftest import git, isolate_git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture(autouse=True)
def _git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git(tmp_path, monkeypatch)


def make_repo(path: Path, files: dict[str, bytes] | None = None) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for rel, data in (files or {}).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    if files:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "first")
    return path


def tree_files(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file outside .git: its bytes and whether it is executable."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            out[rel] = (path.read_bytes(), os.access(path, os.X_OK))
    return out


# -- work_tree ---------------------------------------------------------------------------


def test_work_tree_inside_outside_and_git_dir(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"sub/a.py": b"x = 1\n"})
    top = repo.resolve()
    assert work_tree(repo) == top
    assert work_tree(repo / "sub" / "a.py") == top
    assert work_tree(repo / "sub" / "not" / "yet" / "model.bin") == top
    assert work_tree(repo / ".git") is None
    assert work_tree(repo / ".git" / "objects") is None
    (tmp_path / "plain").mkdir()
    assert work_tree(tmp_path / "plain" / "x") is None


# -- state -------------------------------------------------------------------------------


def test_state_before_first_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    s = state(repo)
    assert (s.commit, s.branch, s.remote, s.dirty) == (None, "main", None, False)
    (repo / "a.py").write_text("x = 1\n")
    assert state(repo).dirty


def test_state_clean_then_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": b"x = 1\n", ".gitignore": b"*.log\n"})
    s = state(repo)
    assert s.commit == git(repo, "rev-parse", "HEAD")
    assert len(s.commit) == 40
    assert (s.branch, s.dirty) == ("main", False)
    assert json.loads(json.dumps(s.to_json())) == {
        "root": str(repo),
        "commit": s.commit,
        "branch": "main",
        "remote": None,
        "dirty": False,
    }

    (repo / "train.log").write_text("ignored\n")
    assert not state(repo).dirty, "an ignored untracked file is not a change"

    (repo / "new.py").write_text("y = 2\n")
    assert state(repo).dirty
    (repo / "new.py").unlink()
    assert not state(repo).dirty

    (repo / "a.py").write_text("x = 2\n")
    assert state(repo).dirty


def test_state_detached_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": b"x = 1\n"})
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--detach")
    s = state(repo)
    assert (s.commit, s.branch, s.dirty) == (head, None, False)


def test_state_remote_prefers_origin_and_drops_credentials(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": b"x = 1\n"})
    git(repo, "remote", "add", "upstream", "https://alice:s3cret@example.com/up.git")
    assert state(repo).remote == "https://example.com/up.git"
    git(repo, "remote", "add", "origin", "https://ghp_token123@github.com/team/proj.git")
    assert state(repo).remote == "https://github.com/team/proj.git"
    git(repo, "remote", "set-url", "origin", "git@github.com:team/proj.git")
    assert state(repo).remote == "git@github.com:team/proj.git"


def test_state_ignores_git_dir_set_by_a_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": b"x = 1\n"})
    other = make_repo(tmp_path / "other", {"b.py": b"y = 1\n"})
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    assert state(repo).commit == git(repo, "--git-dir", str(repo / ".git"), "rev-parse", "HEAD")
    assert not state(repo).dirty


def test_state_outside_a_repository_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="git status"):
        state(tmp_path)


# -- write_patch -------------------------------------------------------------------------


def test_write_patch_restores_the_dirty_tree_exactly(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {
            "a.py": b"print('a')\n",
            "weights.bin": bytes(range(256)) * 4,
            "gone.py": b"old\n",
            "pkg/mod.py": b"def f():\n    return 1\n",
            ".gitignore": b"*.log\nbuild/\n",
        },
    )
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "a.py").write_bytes(b"print('changed')\n")
    (repo / "weights.bin").write_bytes(bytes(reversed(range(256))) * 4 + b"\0\xff")
    (repo / "gone.py").unlink()
    (repo / "pkg" / "mod.py").chmod(0o755)
    (repo / "staged.py").write_bytes(b"staged = True\n")
    git(repo, "add", "staged.py")
    (repo / "pkg" / "fresh").mkdir()
    (repo / "pkg" / "fresh" / "new.py").write_bytes(b"new = 1\n")
    (repo / "notes.txt").write_bytes(b"not code\n")  # untracked, but no glob matches
    (repo / "train.log").write_bytes(b"ignored\n")
    (repo / "build").mkdir()
    (repo / "build" / "gen.py").write_bytes(b"ignored too\n")

    dest = tmp_path / "capture"
    dest.mkdir()
    assert write_patch(repo, dest, DEFAULT_GLOBS) == 2
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "patch.diff",
        "untracked/pkg/fresh/new.py",
    ]

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", commit)
    git(clone, "apply", str(dest / "patch.diff"))
    shutil.copytree(dest / "untracked", clone, dirs_exist_ok=True)

    expected = tree_files(repo)
    for skipped in ("notes.txt", "train.log", "build/gen.py"):
        del expected[skipped]
    assert tree_files(clone) == expected


def test_write_patch_before_first_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "a.py").write_bytes(b"x = 1\n")
    git(repo, "add", "a.py")
    (repo / "a.py").write_bytes(b"x = 2\n")  # the work tree, not the index, is captured
    (repo / "b.py").write_bytes(b"y = 1\n")
    dest = tmp_path / "capture"
    dest.mkdir()
    assert write_patch(repo, dest, ["*.py"]) == 2

    fresh = make_repo(tmp_path / "fresh")
    git(fresh, "apply", str(dest / "patch.diff"))
    shutil.copytree(dest / "untracked", fresh, dirs_exist_ok=True)
    assert tree_files(fresh) == tree_files(repo)


def test_write_patch_on_a_clean_tree_writes_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": b"x = 1\n"})
    dest = tmp_path / "capture"
    dest.mkdir()
    assert write_patch(repo, dest, DEFAULT_GLOBS) == 0
    assert list(dest.iterdir()) == []


# -- is_tracked, ignore, hooks_dir, user_identity ----------------------------------------


def test_is_tracked_file_and_folder(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.py": b"1\n", "data/train.csv": b"x\n"})
    (repo / "loose.py").write_text("2\n")
    (repo / "models").mkdir()
    (repo / "models" / "m.bin").write_bytes(b"\0")
    assert is_tracked(repo, Path("a.py"))
    assert is_tracked(repo, repo / "data")
    assert is_tracked(repo, repo / "data" / "train.csv")
    assert not is_tracked(repo, repo / "loose.py")
    assert not is_tracked(repo, repo / "models")
    assert not is_tracked(repo, Path("da"))  # a prefix of a tracked folder is not it
    assert not is_tracked(repo, repo / "*.py"), "a name is a name, not a pattern"
    assert not is_tracked(repo, tmp_path / "elsewhere.py")


def test_ignore_appends_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert ignore(repo, ".modelkeep")
    assert not ignore(repo, ".modelkeep")
    assert (repo / ".gitignore").read_text() == "/.modelkeep\n"
    (repo / ".modelkeep").mkdir()
    (repo / ".modelkeep" / "db").write_text("x")
    assert git(repo, "status", "--porcelain") == "?? .gitignore"


def test_ignore_adds_a_newline_to_existing_content(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("*.log")
    assert ignore(repo, "models/big.bin")
    assert not ignore(repo, "logs/run.log"), "already ignored by *.log"
    assert (repo / ".gitignore").read_text() == "*.log\n/models/big.bin\n"


@pytest.mark.parametrize("rel", ["#notes", "!bang", "we*ird", "trailing  ", "a/[x]?"])
def test_ignore_matches_exactly_that_name(tmp_path: Path, rel: str) -> None:
    repo = make_repo(tmp_path / "repo")
    assert ignore(repo, rel)
    assert not ignore(repo, rel)
    check = subprocess.run(["git", "check-ignore", "-q", "--no-index", "--", rel], cwd=repo)
    assert check.returncode == 0
    other = subprocess.run(["git", "check-ignore", "-q", "--no-index", "--", "w"], cwd=repo)
    assert other.returncode == 1, (repo / ".gitignore").read_text()


@pytest.mark.parametrize("rel", ["", "/abs", "a/../b", "a//b", "line\nbreak"])
def test_ignore_refuses_odd_paths(tmp_path: Path, rel: str) -> None:
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(InvalidArgument):
        ignore(repo, rel)
    assert not (repo / ".gitignore").exists()


def test_ignore_outside_a_repository_raises(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        ignore(tmp_path, ".modelkeep")
    assert not (tmp_path / ".gitignore").exists()


def test_hooks_dir_follows_core_hooks_path(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert hooks_dir(repo).resolve() == (repo / ".git" / "hooks").resolve()
    git(repo, "config", "core.hooksPath", "tools/hooks")
    assert hooks_dir(repo).resolve() == (repo / "tools" / "hooks").resolve()


def test_user_identity(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    assert user_identity(repo) is None
    git(repo, "config", "user.email", "ann@example.com")
    assert user_identity(repo) == "ann@example.com"
    git(repo, "config", "user.name", "Ann Lee")
    assert user_identity(repo / "not" / "yet") == "Ann Lee <ann@example.com>"


# -- environment -------------------------------------------------------------------------


def test_environment_is_deterministic_and_lists_this_venv() -> None:
    first, second = environment(), environment()
    assert first == second
    assert environment_id(first) == environment_id(second)
    assert len(environment_id(first)) == 64
    assert first["packages"]["pytest"] == importlib.metadata.version("pytest")
    assert list(first["packages"]) == sorted(first["packages"])
    assert first["python"]["version"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert first["cpu"]["count"] == os.cpu_count()
    assert json.loads(json.dumps(first)) == first
    assert sys.executable not in json.dumps(first)
    assert diff_environments(first, second).same


def test_environment_never_imports_torch() -> None:
    if "torch" in sys.modules:
        pytest.skip("torch was imported by another test")
    assert environment()["torch"] is None
    assert "torch" not in sys.modules


def test_environment_id_ignores_key_order() -> None:
    assert environment_id({"a": 1, "b": [1, "é"]}) == environment_id({"b": [1, "é"], "a": 1})
    assert environment_id({"a": 1}) != environment_id({"a": 2})


def test_diff_environments() -> None:
    a: dict[str, Any] = {
        "python": {"version": "3.11.7", "implementation": "CPython"},
        "os": {"system": "Linux", "release": "6.1", "machine": "x86_64"},
        "gpu": [],
        "cuda": None,
        "torch": None,
        "packages": {"numpy": "1.26.4", "pandas": "2.2.0", "six": "1.16.0"},
    }
    b: dict[str, Any] = {
        "python": {"version": "3.12.1", "implementation": "CPython"},
        "os": {"system": "Linux", "release": "6.1", "machine": "x86_64"},
        "gpu": [{"name": "A100", "driver": "550.54", "memory": "81920 MiB"}],
        "cuda": "12.4",
        "torch": {"version": "2.3.0", "cuda": "12.1", "cudnn": 8902, "devices": ["A100"]},
        "packages": {"numpy": "2.0.0", "six": "1.16.0", "torch": "2.3.0", "attrs": "23.2.0"},
    }
    d = diff_environments(a, b)
    assert not d.same
    assert d.packages_added == (("attrs", "23.2.0"), ("torch", "2.3.0"))
    assert d.packages_removed == (("pandas", "2.2.0"),)
    assert d.packages_changed == (("numpy", "1.26.4", "2.0.0"),)
    assert d.other == (
        ("cuda", None, "12.4"),
        ("gpu", [], b["gpu"]),
        ("python.version", "3.11.7", "3.12.1"),
        ("torch", None, b["torch"]),
    )
    doc = d.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["packages_changed"] == [{"name": "numpy", "a": "1.26.4", "b": "2.0.0"}]
    assert diff_environments(b, b).same


# -- matches, snapshot, command ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "glob", "expected"),
    [
        ("a.py", "**/*.py", True),
        ("pkg/sub/a.py", "**/*.py", True),
        ("a.pyc", "**/*.py", False),
        ("a.py", "*.py", True),
        ("pkg/a.py", "*.py", False),
        ("src/a.py", "src/**/*.py", True),
        ("src/x/y/a.py", "src/**/*.py", True),
        ("srcx/a.py", "src/**/*.py", False),
        ("conf/a/b.yaml", "conf/**", True),
        ("config.yaml", "conf/**", False),
        ("a1.py", "a?.py", True),
        ("a/.py", "a?.py", False),
        ("run_b.sh", "run_[abc].sh", True),
        ("run_d.sh", "run_[!abc].sh", True),
        ("run_a.sh", "run_[!abc].sh", False),
        ("a+b.py", "a+b.py", True),
        ("aab.py", "a+b.py", False),
        ("x/Makefile", "**/Makefile", True),
    ],
)
def test_matches(path: str, glob: str, expected: bool) -> None:
    assert matches(path, [glob]) is expected


def test_matches_any_of_several() -> None:
    assert matches("conf.yaml", ["**/*.py", "*.yaml"])
    assert not matches("conf.yml", ["**/*.py", "*.yaml"])
    assert not matches("a.py", [])


def test_snapshot_skips_environments_caches_and_big_files(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    files = {
        "train.py": b"print('train')\n",
        "pkg/__init__.py": b"",
        "pkg/cli.py": b"#!/usr/bin/env python\n",
        "pkg/__pycache__/cli.py": b"cached\n",
        ".venv/lib/site.py": b"venv\n",
        ".git/hooks/h.py": b"git\n",
        "myenv/pyvenv.cfg": b"home = /usr\n",
        "myenv/lib/x.py": b"venv too\n",
        "big.py": b"#" * 2000,
        "README.md": b"not matched\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "pkg" / "cli.py").chmod(0o755)
    (root / "linked").symlink_to(root / "pkg", target_is_directory=True)

    dest = tmp_path / "snap"
    assert snapshot(root, dest, DEFAULT_GLOBS, max_file_bytes=1000) == 3
    got = tree_files(dest)
    assert sorted(got) == ["pkg/__init__.py", "pkg/cli.py", "train.py"]
    assert got["pkg/cli.py"] == (files["pkg/cli.py"], True)
    assert got["train.py"] == (files["train.py"], False)

    again = tmp_path / "snap2"
    assert snapshot(root, again, DEFAULT_GLOBS, max_file_bytes=1000) == 3
    assert tree_files(again) == got


def test_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("")
    c = command(["train.py", "--lr", "0.1"])
    assert c.argv == ("train.py", "--lr", "0.1")
    assert c.script == str(tmp_path / "train.py")
    assert c.cwd == str(tmp_path)
    assert c.to_json() == {
        "argv": ["train.py", "--lr", "0.1"],
        "script": c.script,
        "cwd": c.cwd,
        "entry": "python",  # `reproduce` runs it with python
    }
    assert command(["-c", "print(1)"]).script is None
    assert command().argv == tuple(sys.argv)
