"""A Git clone and a bucket are enough: remotes in the committed modelkeep.toml, and a
fresh clone's checkout (and get/pull of a lock's content id) from the remote."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

import modelkeep as mk
from tests.conftest import cli, git, jcli, ok, one_error_line


def _work_tree(tmp_path: Path) -> Path:
    """A Git work tree holding a new repository, made through the library."""
    proj = tmp_path / "proj"
    proj.mkdir()
    git(proj, "init", "-q")
    mk.init(proj).close()
    return proj


def _project(tmp_path: Path, remote_url: str) -> Path:
    """A Git project whose data is added, pushed to remote_url (a project remote) and
    committed with modelkeep.lock and modelkeep.toml."""
    proj = _work_tree(tmp_path)
    (proj / "modelkeep.toml").write_text(
        '# the team\'s policy\n[policy.default.production]\nrequire_stage = "staging"\n'
    )
    data = proj / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(200_000))
    (data / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (data / "run.sh").chmod(0o755)
    (proj / "model.bin").write_bytes(os.urandom(70_000))
    ok("add", "data", "--name", "churn-data", cwd=proj)
    ok("add", "model.bin", "--name", "churn-model", cwd=proj)
    ok("remote", "add", "nas", remote_url, "--default", "--project", cwd=proj)
    ok("push", cwd=proj)
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "data and model")
    return proj


def _clone(proj: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "clone2"
    git(tmp_path, "clone", "-q", str(proj), str(clone))
    ok("init", cwd=clone)
    return clone


def _same_tree(a: Path, b: Path) -> None:
    for path in sorted(a.rglob("*")):
        twin = b / path.relative_to(a)
        assert twin.exists(), twin
        if path.is_file():
            assert twin.read_bytes() == path.read_bytes(), twin
            assert twin.stat().st_mode & 0o111 == path.stat().st_mode & 0o111, twin


def test_a_fresh_clone_checks_out_from_the_project_remote(tmp_path: Path) -> None:
    proj = _project(tmp_path, str(tmp_path / "nas"))
    doc = tomllib.loads((proj / "modelkeep.toml").read_text())
    assert doc["remotes"]["nas"] == {"url": f"file://{tmp_path / 'nas'}", "default": True}
    assert doc["policy"]["default"]["production"]["require_stage"] == "staging"  # kept
    assert "# the team's policy" in (proj / "modelkeep.toml").read_text()
    clone = _clone(proj, tmp_path)
    listed = jcli("remote", "list", cwd=clone)["remotes"]
    assert [(r["name"], r["scope"], r["default"]) for r in listed] == [("nas", "project", True)]
    states = {s["path"]: s["state"] for s in jcli("status", cwd=clone)["paths"]}
    assert states == {"data": "missing", "model.bin": "missing"}
    ok("checkout", cwd=clone)
    _same_tree(proj / "data", clone / "data")
    assert (clone / "model.bin").read_bytes() == (proj / "model.bin").read_bytes()
    assert {s["state"] for s in jcli("status", cwd=clone)["paths"]} == {"ok"}


def test_get_and_pull_a_lock_content_id_no_version_here_records(tmp_path: Path) -> None:
    proj = _project(tmp_path, str(tmp_path / "nas"))
    clone = _clone(proj, tmp_path)
    lock = (clone / "modelkeep.lock").read_text()
    found = re.search(r"^data -> \S+ \((b3:[0-9a-f]{64})\)$", lock, re.M)
    assert found is not None, lock
    digest = found[1]
    pulled = jcli("pull", digest, cwd=clone)
    assert pulled["versions"] == [digest] and pulled["objects"] > 0
    got = jcli("get", digest, "-o", str(tmp_path / "out"), cwd=clone)
    assert got["ref"] == digest
    _same_tree(proj / "data", tmp_path / "out")
    short = cli("get", digest[:20], cwd=clone)  # a prefix names nothing without a version
    assert short.returncode == 1 and "no version has content id" in one_error_line(short)


def test_a_clone_checkout_from_s3(tmp_path: Path, s3_bucket: str) -> None:
    proj = _project(tmp_path, f"s3://{s3_bucket}/team")
    clone = _clone(proj, tmp_path)
    ok("checkout", cwd=clone)
    _same_tree(proj / "data", clone / "data")


def test_a_damaged_remote_object_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    proj = _project(tmp_path, str(nas))
    clone = _clone(proj, tmp_path)
    for pack in nas.rglob("pack-*.pack"):
        data = bytearray(pack.read_bytes())
        for i in range(100, len(data), 997):  # flip bytes all through the pack
            data[i] ^= 0xFF
        pack.write_bytes(bytes(data))
    r = cli("checkout", cwd=clone)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert not (clone / "data").exists() and not (clone / "model.bin").exists()


def test_a_local_remote_overrides_the_project_one(tmp_path: Path) -> None:
    proj = _project(tmp_path, str(tmp_path / "nas"))
    ok("remote", "add", "nas", str(tmp_path / "mirror"), "--default", cwd=proj)
    listed = {r["name"]: r for r in jcli("remote", "list", cwd=proj)["remotes"]}
    assert listed["nas"]["url"] == f"file://{tmp_path / 'mirror'}"
    assert listed["nas"]["scope"] == "local"
    again = cli("remote", "add", "nas", str(tmp_path / "x"), cwd=proj)
    assert again.returncode == 1 and "already" in one_error_line(again)
    ok("remote", "remove", "nas", cwd=proj)  # the local one goes; the project one shows again
    listed = {r["name"]: r for r in jcli("remote", "list", cwd=proj)["remotes"]}
    assert listed["nas"]["scope"] == "project"
    ok("remote", "remove", "nas", cwd=proj)
    assert jcli("remote", "list", cwd=proj)["remotes"] == []
    doc = tomllib.loads((proj / "modelkeep.toml").read_text())
    assert doc.get("remotes", {}) == {} and "policy" in doc


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('url = "s3://AKIAXXXX:hunter2@bucket/x"', "the url holds a credential"),
        ('url = "/srv/nas"\noptions = { secret_access_key = "hunter2" }', "'secret_access_key'"),
        ('url = "/srv/nas"\noptions = { token = "hunter2" }', "'token'"),
    ],
)
def test_a_secret_in_modelkeep_toml_is_refused(tmp_path: Path, table: str, named: str) -> None:
    proj = _work_tree(tmp_path)
    (proj / "modelkeep.toml").write_text(f"[remotes.nas]\n{table}\n")
    r = cli("remote", "list", cwd=proj)
    line = one_error_line(r)
    assert r.returncode == 1 and named in line and "modelkeep.toml, line" in line
    assert "environment" in line and "hunter2" not in r.stderr + r.stdout


def test_remote_add_project_refuses_a_credential_and_leaves_the_file(tmp_path: Path) -> None:
    proj = _work_tree(tmp_path)
    (proj / "modelkeep.toml").write_text("# policy\n")
    r = cli("remote", "add", "s3", "s3://AKIA:hunter2@b/x", "--project", cwd=proj)
    assert r.returncode == 1 and "credential" in one_error_line(r)
    assert "hunter2" not in r.stderr + r.stdout
    r = cli(
        "remote", "add", "s3", "s3://b/x", "--project", "--option", "secret_key=hunter2", cwd=proj
    )
    assert r.returncode == 1 and "hunter2" not in r.stderr + r.stdout
    assert (proj / "modelkeep.toml").read_text() == "# policy\n"


def test_a_malformed_project_remote_is_one_error_line(tmp_path: Path) -> None:
    proj = _work_tree(tmp_path)
    (proj / "modelkeep.toml").write_text('[remotes.nas]\nurl = "/srv"\ndefault = "yes"\n')
    r = cli("ls", cwd=proj)
    assert r.returncode == 1 and "default must be true or false" in one_error_line(r)


def test_status_names_the_version_a_path_holds_after_git_checkout(tmp_path: Path) -> None:
    proj = _work_tree(tmp_path)
    (proj / "w.bin").write_bytes(b"one" * 1000)
    ok("add", "w.bin", "--name", "w", cwd=proj)
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "v1")
    (proj / "w.bin").write_bytes(b"two" * 1000)
    ok("add", "w.bin", "--name", "w", cwd=proj)
    git(proj, "commit", "-qam", "v2")
    git(proj, "checkout", "-q", "HEAD~1")  # the lock says v1; the file still holds v2
    paths = jcli("status", cwd=proj)["paths"]
    assert [(p["state"], p["ref"], p["holds"]) for p in paths] == [("modified", "w:v1", "w:v2")]
    line = ok("status", cwd=proj).stdout
    assert "holds w:v2, the lock says w:v1: run `modelkeep checkout`" in line
    ok("checkout", cwd=proj)
    assert (proj / "w.bin").read_bytes() == b"one" * 1000


def test_get_onto_a_tracked_path_moves_the_lock(tmp_path: Path) -> None:
    proj = _work_tree(tmp_path)
    (proj / "m.bin").write_bytes(b"one" * 1000)
    ok("add", "m.bin", "--name", "m", cwd=proj)
    (proj / "m.bin").write_bytes(b"two" * 1000)
    ok("add", "m.bin", "--name", "m", cwd=proj)
    ok("register", "m:v1", "--as", "m", cwd=proj)
    ok("promote", "m:v1", "production", cwd=proj)
    ok("get", "m@production", "-o", "m.bin", "--force", cwd=proj)
    assert "m.bin -> m:v1 (" in (proj / "modelkeep.lock").read_text()
    assert {p["state"] for p in jcli("status", cwd=proj)["paths"]} == {"ok"}
    ok("get", "m:v2", "-o", str(tmp_path / "elsewhere.bin"), cwd=proj)  # untracked: lock stays
    assert "m.bin -> m:v1 (" in (proj / "modelkeep.lock").read_text()


def test_the_hook_says_how_to_finish_when_data_changes_would_be_lost(tmp_path: Path) -> None:
    proj = _work_tree(tmp_path)
    ok("install-hooks", cwd=proj)
    (proj / "d.bin").write_bytes(b"one" * 1000)
    ok("add", "d.bin", "--name", "d", cwd=proj)
    git(proj, "add", "-A")
    git(proj, "commit", "-qm", "v1")
    (proj / "d.bin").write_bytes(b"two" * 1000)
    ok("add", "d.bin", "--name", "d", cwd=proj)
    git(proj, "commit", "-qam", "v2")
    (proj / "d.bin").write_bytes(b"unsaved work" * 100)  # in no version
    switched = subprocess.run(
        ["git", "checkout", "-q", "HEAD~1"], cwd=proj, capture_output=True, text=True, check=False
    )
    assert "modelkeep add PATH --name NAME" in switched.stderr
    assert "modelkeep checkout --force" in switched.stderr
    assert (proj / "d.bin").read_bytes() == b"unsaved work" * 100  # nothing lost


def test_another_store_on_this_host_says_it_did_not_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores on one machine share a database: a version one of them added and did
    not push is named as that store's, not as damage in this one."""
    monkeypatch.setenv("MODELKEEP_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.sqlite'}")
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        ok("init", cwd=root)
    (a / "x.bin").write_bytes(b"x" * 5000)
    ok("add", "x.bin", "--name", "x", cwd=a)
    r = cli("get", "x:v1", "-o", str(tmp_path / "out.bin"), cwd=b)
    line = one_error_line(r)
    assert r.returncode == 1
    assert re.search(
        r"x:v1 was added by tester in store [0-9a-f]{12} on host \S+, not pushed", line
    )
    assert "run `modelkeep push x:v1` there" in line
    assert not (tmp_path / "out.bin").exists()
    assert jcli("fsck", cwd=a)["ok"]
    ok("get", "x:v1", "-o", str(tmp_path / "out.bin"), cwd=a)


def test_adding_an_older_content_again_points_the_lock_back(tmp_path: Path) -> None:
    proj = _work_tree(tmp_path)
    for content in (b"one" * 1000, b"two" * 1000, b"one" * 1000):
        (proj / "d.bin").write_bytes(content)
        ok("add", "d.bin", "--name", "d", cwd=proj)
    assert "d.bin -> d:v1 (" in (proj / "modelkeep.lock").read_text()
    assert [v["number"] for v in jcli("versions", "d", cwd=proj)["versions"]] == [1, 2]
