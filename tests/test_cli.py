"""Every command through the real `modelkeep` console script: output, exit codes, effects."""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import re
import stat
import subprocess
from pathlib import Path

import blake3
import pytest

import modelkeep as mk
from modelkeep.store.add import Writer
from modelkeep.store.chunking import digest
from modelkeep.store.packs import KIND_CHUNK
from tests.conftest import MODELKEEP, cli, jcli, ok, write

MIB = 1024 * 1024


def rand(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def b3(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def new_repo(tmp_path: Path) -> Path:
    """An empty repository, made through the library: `modelkeep init` itself is tested
    by the test_init_* tests; the others are about the commands they run next."""
    root = tmp_path / "proj"
    root.mkdir()
    mk.init(root).close()
    return root


def tree_state(top: Path) -> dict[str, tuple[str, object, bool]]:
    """Relative path -> (kind, bytes or link target, executable) for everything under top."""
    out: dict[str, tuple[str, object, bool]] = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            p = Path(folder) / name
            rel = p.relative_to(top).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p), False)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None, False)
            else:
                out[rel] = ("file", p.read_bytes(), bool(st.st_mode & stat.S_IXUSR))
    return out


# -- init ---------------------------------------------------------------------


def test_init_creates_repository(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    r = ok("init", cwd=root)
    assert (root / ".modelkeep").is_dir()
    assert str(root / ".modelkeep") in r.stdout
    assert r.stderr == ""
    assert jcli("ls", cwd=root) == {"artifacts": []}


def test_init_with_path_argument(tmp_path: Path) -> None:
    ok("init", "fresh/repo", cwd=tmp_path)
    assert (tmp_path / "fresh" / "repo" / ".modelkeep").is_dir()


def test_init_twice_fails(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    before = sorted(p.name for p in (root / ".modelkeep").iterdir())
    r = cli("init", cwd=root)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("modelkeep: error: ")
    assert "already exists" in lines[0]
    assert sorted(p.name for p in (root / ".modelkeep").iterdir()) == before
    ok("fsck", cwd=root)


# -- add ----------------------------------------------------------------------


def test_add_file_prints_version_line(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    data = rand(5_000_000)
    write(root / "model.bin", data)
    r = ok("add", "model.bin", "--name", "fraud-detector", cwd=root)
    assert r.stderr == ""
    short = b3(data)[:11]
    assert r.stdout.strip() == f"fraud-detector:v1  {short}  4.8 MiB  (4.8 MiB new, 0 B reused)"
    assert re.fullmatch(
        r"fraud-detector:v1  b3:[0-9a-f]{8}  4\.8 MiB  \(4\.8 MiB new, 0 B reused\)",
        r.stdout.strip(),
    )
    v = jcli("show", "fraud-detector", cwd=root)
    assert v["ref"] == "fraud-detector:v1"
    assert v["kind"] == "file"
    assert v["type"] == "other"
    assert v["size"] == 5_000_000
    assert v["digest"] == b3(data)
    assert v["source_name"] == "model.bin"
    assert v["user"] == "tester"


def test_add_with_type_message_and_metadata(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    write(root / "m.bin", b"weights" * 100)
    ok(
        "add",
        "m.bin",
        "--name",
        "team/fraud",
        "--type",
        "model",
        "-m",
        "first try",
        "--meta",
        "lr=0.01",
        "--meta",
        "name=abc",
        "--meta",
        "epochs=3",
        "--meta",
        "layers=[1, 2]",
        "--meta",
        "final=true",
        "--meta",
        "note=a=b",
        cwd=root,
    )
    v = jcli("show", "team/fraud:v1", cwd=root)
    assert v["type"] == "model"
    assert v["message"] == "first try"
    meta = v["metadata"]
    assert meta == {
        "lr": 0.01,
        "name": "abc",
        "epochs": 3,
        "layers": [1, 2],
        "final": True,
        "note": "a=b",
    }
    assert isinstance(meta["lr"], float)
    assert isinstance(meta["name"], str)
    text = ok("show", "team/fraud:v1", cwd=root).stdout
    assert "team/fraud:v1  (model, file)" in text
    assert re.search(r"^\s+meta\.lr\s+0\.01$", text, re.M)
    assert re.search(r'^\s+meta\.name\s+"abc"$', text, re.M)
    assert re.search(r"^\s+message\s+first try$", text, re.M)
    # A later version of the same artifact keeps the type without --type.
    write(root / "m.bin", b"weights2" * 100)
    ok("add", "m.bin", "--name", "team/fraud", cwd=root)
    assert jcli("show", "team/fraud", cwd=root)["type"] == "model"


def test_add_json(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    data = rand(300_000, 1)
    write(root / "m.bin", data)
    doc = jcli("add", "m.bin", "--name", "m", cwd=root)
    assert doc["created"] is True
    assert doc["version"]["ref"] == "m:v1"
    assert doc["version"]["digest"] == b3(data)
    assert doc["new_bytes"] == len(data)
    assert doc["reused_bytes"] == 0
    assert doc["same_as"] is None


def test_readd_identical_creates_no_version(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    write(root / "model.bin", rand(200_000, 2))
    ok("add", "model.bin", "--name", "fraud-detector", cwd=root)
    r = ok("add", "model.bin", "--name", "fraud-detector", cwd=root)
    assert "fraud-detector:v1" in r.stdout
    assert "unchanged" in r.stdout
    assert "v2" not in r.stdout
    doc = jcli("versions", "fraud-detector", cwd=root)
    assert [v["ref"] for v in doc["versions"]] == ["fraud-detector:v1"]
    again = jcli("add", "model.bin", "--name", "fraud-detector", cwd=root)
    assert again["created"] is False
    assert again["version"]["ref"] == "fraud-detector:v1"


def test_readd_older_content_returns_the_older_version(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    a, b = rand(100_000, 3), rand(100_000, 4)
    write(root / "m.bin", a)
    ok("add", "m.bin", "--name", "m", cwd=root)
    write(root / "m.bin", b)
    r2 = ok("add", "m.bin", "--name", "m", cwd=root)
    assert r2.stdout.startswith("m:v2  ")
    write(root / "m.bin", a)
    r3 = ok("add", "m.bin", "--name", "m", cwd=root)
    assert r3.stdout.startswith("m:v1  ")
    assert "same content as m:v1, an older version: no new number" in r3.stdout
    assert jcli("versions", "m", cwd=root)["versions"][-1]["number"] == 2


def test_add_folder(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    src = root / "ckpt"
    write(src / "weights.bin", rand(150_000, 5))
    write(src / "config.json", b'{"a": 1}')
    write(src / "sub" / "tokenizer.txt", b"tok\n" * 10)
    r = ok("add", "ckpt", "--name", "ckpt", "--type", "model", cwd=root)
    assert re.fullmatch(
        r"ckpt:v1  b3:[0-9a-f]{8}  146\.5 KiB  \(146\.5 KiB new, 0 B reused\)", r.stdout.strip()
    )
    v = jcli("show", "ckpt", cwd=root)
    assert v["kind"] == "dir"
    assert v["file_count"] == 3
    assert v["size"] == 150_000 + 8 + 40
    files = {f["path"]: f for f in v["files"]}
    assert files["weights.bin"]["kind"] == "file"
    assert files["weights.bin"]["size"] == 150_000
    assert files["sub"]["kind"] == "dir"
    assert files["sub/tokenizer.txt"]["digest"] == b3(b"tok\n" * 10)
    text = ok("show", "ckpt", cwd=root).stdout
    assert "ckpt:v1  (model, dir)" in text
    assert "in 3 file(s)" in text
    assert "sub/tokenizer.txt" in text
    assert "config.json" in text


# -- listing ------------------------------------------------------------------


def test_ls_versions_show_text_and_json(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    assert "no artifacts yet" in ok("ls", cwd=root).stdout
    write(root / "a.bin", b"a" * 3000)
    ok("add", "a.bin", "--name", "alpha", "--type", "dataset", "-m", "one", cwd=root)
    write(root / "a.bin", b"b" * 5000)
    ok("add", "a.bin", "--name", "alpha", "-m", "two", cwd=root)
    write(root / "z.bin", b"z")
    ok("add", "z.bin", "--name", "zeta", cwd=root)

    ls_text = ok("ls", cwd=root).stdout.splitlines()
    assert ls_text[0].split() == ["NAME", "TYPE", "LATEST", "SIZE", "UPDATED"]
    assert ls_text[1].split()[:5] == ["alpha", "dataset", "v2", "4.9", "KiB"]
    assert ls_text[2].split()[:4] == ["zeta", "other", "v1", "1"]

    ls_json = jcli("ls", cwd=root)
    assert [a["name"] for a in ls_json["artifacts"]] == ["alpha", "zeta"]
    assert ls_json["artifacts"][0]["type"] == "dataset"
    assert ls_json["artifacts"][0]["versions"] == 2
    assert ls_json["artifacts"][0]["latest"]["ref"] == "alpha:v2"

    vers_text = ok("versions", "alpha", cwd=root).stdout.splitlines()
    assert vers_text[0].split() == [
        "VERSION",
        "CREATED",
        "USER",
        "SIZE",
        "DIGEST",
        "STAGE",
        "MESSAGE",
    ]
    assert vers_text[1].split()[0] == "v1"
    assert vers_text[1].split()[-1] == "one"
    assert "tester" in vers_text[1]
    assert vers_text[2].split()[0] == "v2"
    assert vers_text[2].split()[-1] == "two"

    vers_json = jcli("versions", "alpha", cwd=root)
    assert vers_json["name"] == "alpha"
    assert [v["number"] for v in vers_json["versions"]] == [1, 2]
    assert [v["size"] for v in vers_json["versions"]] == [3000, 5000]
    assert vers_json["versions"][0]["digest"] == b3(b"a" * 3000)

    for ref in ("alpha:v1", b3(b"a" * 3000)[:13], b3(b"a" * 3000)):
        assert jcli("show", ref, cwd=root)["ref"] == "alpha:v1"
    for ref in ("alpha", "alpha:latest", "alpha:v2"):
        shown = jcli("show", ref, cwd=root)
        assert shown["ref"] == "alpha:v2"
        assert shown["files"] == [
            {
                "path": "a.bin",
                "kind": "file",
                "size": 5000,
                "mode": "0o644",
                "digest": b3(b"b" * 5000),
            }
        ]
    show_text = ok("show", "alpha:v1", cwd=root).stdout
    assert show_text.splitlines()[0] == "alpha:v1  (dataset, file)"
    assert f"digest    {b3(b'a' * 3000)}" in show_text
    assert "2.9 KiB (3000 bytes) in 1 file(s)" in show_text


# -- get ----------------------------------------------------------------------


def test_get_file_into_folder(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    data = rand(400_000, 6)
    write(root / "model.bin", data)
    ok("add", "model.bin", "--name", "fraud-detector", cwd=root)
    (root / "model.bin").unlink()
    r = ok("get", "fraud-detector:v1", "-o", "out/", cwd=root)
    assert (root / "out" / "model.bin").read_bytes() == data
    assert os.listdir(root / "out") == ["model.bin"]
    assert "restored fraud-detector:v1" in r.stdout
    # An existing folder without the trailing slash also receives it under its name.
    (root / "other").mkdir()
    ok("get", "fraud-detector", "-o", "other", cwd=root)
    assert (root / "other" / "model.bin").read_bytes() == data
    # No -o: under its own name in the working directory.
    work = tmp_path / "work"
    work.mkdir()
    doc = jcli("--repo", str(root), "get", "fraud-detector", cwd=work)
    assert (work / "model.bin").read_bytes() == data
    assert doc["ref"] == "fraud-detector:v1"
    assert Path(doc["path"]).resolve() == (work / "model.bin").resolve()
    # An explicit file path is used as is.
    ok("get", "fraud-detector", "-o", "renamed.bin", cwd=root)
    assert (root / "renamed.bin").read_bytes() == data


def test_get_executable_file_keeps_mode(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    script = write(root / "run.sh", b"#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    ok("add", "run.sh", "--name", "runner", "--type", "code", cwd=root)
    ok("get", "runner", "-o", "out/", cwd=root)
    assert (root / "out" / "run.sh").stat().st_mode & 0o111
    assert (root / "out" / "run.sh").read_bytes() == b"#!/bin/sh\necho hi\n"


def make_rich_folder(src: Path) -> None:
    write(src / "weights.bin", rand(300_000, 7))
    write(src / "empty.txt", b"")
    write(src / "sub" / "deep" / "notes.md", "héllo\n".encode())
    script = write(src / "bin" / "train.sh", b"#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (src / "empty-dir" / "nested-empty").mkdir(parents=True)
    os.symlink("sub/deep/notes.md", src / "link-to-notes")
    os.symlink("../weights.bin", src / "bin" / "weights-link")
    os.symlink("does/not/exist", src / "dangling")


def test_get_folder_exact(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    src = root / "rich"
    make_rich_folder(src)
    expected = tree_state(src)
    ok("add", "rich", "--name", "rich", cwd=root)
    v = jcli("show", "rich", cwd=root)
    assert v["file_count"] == 7  # files and links
    kinds = {f["path"]: f["kind"] for f in v["files"]}
    assert kinds["link-to-notes"] == "link"
    assert kinds["empty-dir/nested-empty"] == "dir"

    r = ok("get", "rich", "-o", "restored", cwd=root)
    assert "restored rich:v1 to restored" in r.stdout
    dest = root / "restored"
    assert tree_state(dest) == expected
    assert (dest / "link-to-notes").is_symlink()
    assert os.readlink(dest / "dangling") == "does/not/exist"
    assert (dest / "bin" / "train.sh").stat().st_mode & 0o111
    assert not (dest / "weights.bin").stat().st_mode & 0o111
    assert (dest / "empty.txt").stat().st_size == 0
    assert os.listdir(dest / "empty-dir" / "nested-empty") == []
    # Nothing but the destination appeared next to it (no leftover temporary folders).
    assert sorted(p.name for p in root.iterdir()) == [".modelkeep", "restored", "rich"]


def test_get_path_inside_folder(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    src = root / "rich"
    make_rich_folder(src)
    ok("add", "rich", "--name", "rich", cwd=root)
    r = ok("get", "rich:v1", "--path", "sub/deep/notes.md", "-o", "one/", cwd=root)
    assert "sub/deep/notes.md" in r.stdout
    assert os.listdir(root / "one") == ["notes.md"]
    assert (root / "one" / "notes.md").read_bytes() == "héllo\n".encode()
    # A sub-folder, and an executable file with its mode.
    ok("get", "rich", "--path", "bin", "-o", "justbin", cwd=root)
    assert tree_state(root / "justbin") == tree_state(src / "bin")
    ok("get", "rich", "--path", "bin/train.sh", "-o", "t/", cwd=root)
    assert (root / "t" / "train.sh").stat().st_mode & 0o111
    # A link inside a folder version is restored as a link.
    ok("get", "rich", "--path", "link-to-notes", "-o", "l/", cwd=root)
    assert os.readlink(root / "l" / "link-to-notes") == "sub/deep/notes.md"


# -- diff, du, fsck, gc -------------------------------------------------------


def test_diff_text_and_json(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    src = root / "d"
    write(src / "same.txt", b"same")
    write(src / "gone.txt", b"gone!")
    write(src / "changed.bin", b"x" * 100)
    write(src / "sub" / "keep.txt", b"keep")
    ok("add", "d", "--name", "d", cwd=root)
    (src / "gone.txt").unlink()
    write(src / "changed.bin", b"y" * 250)
    write(src / "sub" / "new.txt", b"brand new")
    ok("add", "d", "--name", "d", cwd=root)

    text = ok("diff", "d:v1", "d:v2", cwd=root).stdout.splitlines()
    assert "+ sub/new.txt  (9 B)" in text
    assert "- gone.txt  (5 B)" in text
    assert "M changed.bin  (100 B -> 250 B)" in text
    assert not any("same.txt" in line or "keep.txt" in line for line in text)
    assert text[-1] == "d:v1 -> d:v2: 1 added, 1 removed, 1 modified; +9 B -5 B"

    doc = jcli("diff", "d:v1", "d:v2", cwd=root)
    assert doc["old"] == "d:v1"
    assert doc["new"] == "d:v2"
    assert doc["counts"] == {"added": 1, "removed": 1, "modified": 1}
    assert doc["bytes_added"] == 9
    assert doc["bytes_removed"] == 5
    changes = {c["path"]: c for c in doc["changes"]}
    assert changes["changed.bin"] == {
        "path": "changed.bin",
        "status": "modified",
        "old_size": 100,
        "new_size": 250,
    }
    assert changes["sub/new.txt"]["status"] == "added"
    assert changes["gone.txt"]["status"] == "removed"

    same = jcli("diff", "d:v1", "d:v1", cwd=root)
    assert same["counts"] == {"added": 0, "removed": 0, "modified": 0}
    assert same["changes"] == []


def test_diff_of_file_versions(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    write(root / "m.bin", b"1" * 10)
    ok("add", "m.bin", "--name", "m", cwd=root)
    write(root / "m.bin", b"2" * 20)
    ok("add", "m.bin", "--name", "m", cwd=root)
    doc = jcli("diff", "m:v1", "m:v2", cwd=root)
    assert doc["counts"] == {"added": 0, "removed": 0, "modified": 1}
    assert doc["changes"] == [
        {"path": "m.bin", "status": "modified", "old_size": 10, "new_size": 20}
    ]


def test_diff_file_version_against_folder_version(tmp_path: Path) -> None:
    """A folder's paths are relative to the folder, whatever it is compared with."""
    root = new_repo(tmp_path)
    write(root / "m.bin", b"hi\n")
    write(root / "d" / "a.txt", b"a\n")
    ok("add", "m.bin", "--name", "m", cwd=root)
    ok("add", "d", "--name", "d", cwd=root)
    forward = jcli("diff", "m:v1", "d:v1", cwd=root)
    assert sorted((c["path"], c["status"]) for c in forward["changes"]) == [
        ("a.txt", "added"),
        ("m.bin", "removed"),
    ]
    backward = jcli("diff", "d:v1", "m:v1", cwd=root)
    assert sorted((c["path"], c["status"]) for c in backward["changes"]) == [
        ("a.txt", "removed"),
        ("m.bin", "added"),
    ]


def test_du_shows_deduplication(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    size = 4 * MIB
    base = rand(size, 8)
    write(root / "model.bin", base)
    ok("add", "model.bin", "--name", "model", cwd=root)
    one = jcli("du", cwd=root)
    assert one["artifacts"] == 1
    assert one["versions"] == 1
    assert one["logical_bytes"] == size
    assert one["unique_bytes"] == size
    # The successor: 10% of its bytes (one contiguous region) rewritten.
    changed = bytearray(base)
    start, length = size // 2, size // 10
    changed[start : start + length] = rand(length, 9)
    write(root / "model.bin", bytes(changed))
    r = ok("add", "model.bin", "--name", "model", cwd=root)
    assert "reused" in r.stdout
    two = jcli("du", cwd=root)
    assert two["versions"] == 2
    assert two["logical_bytes"] == 2 * size
    assert 1.05 * size < two["unique_bytes"] < 1.3 * size, two
    assert two["dedup_ratio"] > 1.5
    assert two["stored_bytes"] < 1.35 * size
    assert two["chunks"] > one["chunks"]
    text = ok("du", cwd=root).stdout
    assert "artifacts          1 (2 versions)" in text
    assert "logical bytes      8.0 MiB" in text
    assert re.search(r"dedup ratio\s+1\.[5-9]\dx", text)


def test_fsck_ok(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    write(root / "d" / "a.bin", rand(200_000, 10))
    write(root / "d" / "b.txt", b"b")
    ok("add", "d", "--name", "d", cwd=root)
    r = ok("fsck", cwd=root)
    assert re.fullmatch(r"ok: \d+ objects, .+ verified", r.stdout.strip())
    assert r.stderr == ""
    doc = jcli("fsck", cwd=root)
    assert doc["ok"] is True
    assert doc["problems"] == []
    assert doc["objects"] >= 3
    assert doc["bytes"] >= 200_001


def test_gc_dry_run_then_gc(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    data = rand(100_000, 11)
    write(root / "keep.bin", data)
    ok("add", "keep.bin", "--name", "keep", cwd=root)
    clean = jcli("gc", "--dry-run", cwd=root)
    assert clean["dry_run"] is True
    assert clean["objects_removed"] == 0
    assert clean["bytes_freed"] == 0
    # Store an object that no version references, as an interrupted add would leave.
    orphan = rand(50_000, 12)
    with mk.open(root) as repo:
        writer = Writer(repo.store)
        writer._put(digest(orphan), KIND_CHUNK, orphan)
        writer.commit()
        assert repo.store.has(digest(orphan))

    dry = jcli("gc", "--dry-run", cwd=root)
    assert dry["dry_run"] is True
    assert dry["objects_removed"] == 1
    assert dry["bytes_freed"] >= len(orphan)
    text = ok("gc", "--dry-run", cwd=root).stdout
    assert text.startswith("would free ")
    assert "(1 unreferenced objects)" in text
    with mk.open(root) as repo:
        assert repo.store.has(digest(orphan))  # a dry run removes nothing

    r = ok("gc", cwd=root)
    assert r.stdout.startswith("freed ")
    assert "(1 unreferenced objects)" in r.stdout
    with mk.open(root) as repo:
        assert not repo.store.has(digest(orphan))
    after = jcli("gc", cwd=root)
    assert after["dry_run"] is False
    assert after["objects_removed"] == 0
    assert jcli("fsck", cwd=root)["ok"] is True
    ok("get", "keep", "-o", "out/", cwd=root)
    assert (root / "out" / "keep.bin").read_bytes() == data


# -- finding the repository ---------------------------------------------------


def test_repo_option_from_another_directory(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok("--repo", str(root), "init", cwd=elsewhere)
    assert (root / ".modelkeep").is_dir()
    assert not (elsewhere / ".modelkeep").exists()
    write(elsewhere / "m.bin", b"model bytes")
    ok("--repo", str(root), "add", "m.bin", "--name", "m", cwd=elsewhere)
    doc = jcli("--repo", str(root), "ls", cwd=elsewhere)
    assert [a["name"] for a in doc["artifacts"]] == ["m"]
    ok("--repo", str(root), "get", "m", "-o", "back/", cwd=elsewhere)
    assert (elsewhere / "back" / "m.bin").read_bytes() == b"model bytes"
    assert jcli("--repo", str(root), "fsck", cwd=elsewhere)["ok"] is True


def test_repo_found_from_subdirectory(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    deep = root / "a" / "b" / "c"
    write(deep / "m.bin", b"deep model")
    ok("add", "m.bin", "--name", "deep", cwd=deep)
    assert not (deep / ".modelkeep").exists()
    assert [a["name"] for a in jcli("ls", cwd=root)["artifacts"]] == ["deep"]
    assert [a["name"] for a in jcli("ls", cwd=deep)["artifacts"]] == ["deep"]
    assert jcli("show", "deep", cwd=deep)["source_name"] == "m.bin"


# -- the program itself -------------------------------------------------------


def test_help_and_version(tmp_path: Path) -> None:
    r = ok("--help", cwd=tmp_path)
    for command in ("init", "add", "ls", "versions", "show", "get", "diff", "du", "fsck", "gc"):
        assert re.search(rf"^\s+{command}\s", r.stdout, re.M), command
    assert ok("-h", cwd=tmp_path).stdout == r.stdout
    assert "--name" in ok("add", "--help", cwd=tmp_path).stdout
    v = ok("--version", cwd=tmp_path)
    assert importlib.metadata.version("modelkeep") in v.stdout
    assert "modelkeep" in v.stdout


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    python = Path(MODELKEEP).with_name("python")
    r = subprocess.run(
        [str(python), "-m", "modelkeep", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert importlib.metadata.version("modelkeep") in r.stdout


def test_json_output_is_clean(tmp_path: Path) -> None:
    """Every --json command prints one parseable document and nothing on stderr."""
    root = new_repo(tmp_path)
    write(root / "d" / "a.bin", rand(3 * MIB, 13))
    write(root / "d" / "b.txt", b"b")
    commands: list[tuple[str, ...]] = [
        ("add", "d", "--name", "d"),
        ("ls",),
        ("versions", "d"),
        ("show", "d:v1"),
        ("get", "d", "-o", "out"),
        ("diff", "d:v1", "d:v1"),
        ("du",),
        ("fsck",),
        ("gc", "--dry-run"),
        ("gc",),
    ]
    for args in commands:
        r = cli(*args, "--json", cwd=root)
        assert r.returncode == 0, (args, r.stderr)
        assert r.stderr == "", (args, r.stderr)
        json.loads(r.stdout)
        assert "\r" not in r.stdout


# -- unusual file names -------------------------------------------------------


def test_unusual_names_in_folder_survive(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    src = root / "odd"
    write(src / "with space.txt", b"space")
    write(src / "ünïcødé ✓ 模型.bin", b"unicode")
    write(src / "sub dir" / "a b" / "c d.txt", b"nested spaces")
    raw_name = b"caf\xe9-\xff.bin"  # not valid UTF-8
    fd = os.open(os.path.join(os.fsencode(src), raw_name), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"latin-1 name")
    finally:
        os.close(fd)
    ok("add", "odd", "--name", "odd", cwd=root)
    assert jcli("show", "odd", cwd=root)["file_count"] == 4
    ok("get", "odd", "-o", "back", cwd=root)
    dest = root / "back"
    assert (dest / "with space.txt").read_bytes() == b"space"
    assert (dest / "ünïcødé ✓ 模型.bin").read_bytes() == b"unicode"
    assert (dest / "sub dir" / "a b" / "c d.txt").read_bytes() == b"nested spaces"
    assert raw_name in os.listdir(os.fsencode(dest))
    with open(os.path.join(os.fsencode(dest), raw_name), "rb") as f:
        assert f.read() == b"latin-1 name"
    assert sorted(os.listdir(os.fsencode(dest))) == sorted(os.listdir(os.fsencode(src)))
    # One file out of the folder by its unicode path.
    ok("get", "odd", "--path", "ünïcødé ✓ 模型.bin", "-o", "one/", cwd=root)
    assert (root / "one" / "ünïcødé ✓ 模型.bin").read_bytes() == b"unicode"


def test_unicode_and_space_file_name_survives(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    name = "my model ✓ é.bin"
    write(root / name, b"weights")
    ok("add", name, "--name", "m", cwd=root)
    assert jcli("show", "m", cwd=root)["source_name"] == name
    ok("get", "m", "-o", "out/", cwd=root)
    assert (root / "out" / name).read_bytes() == b"weights"


def test_non_utf8_file_name_survives(tmp_path: Path) -> None:
    root = new_repo(tmp_path)
    raw_name = b"model-\xff\xfe.bin"
    fd = os.open(os.path.join(os.fsencode(root), raw_name), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"odd bytes name")
    finally:
        os.close(fd)
    # Run with bytes output: the name need not decode as UTF-8 on the way back.
    add = subprocess.run(
        [MODELKEEP, "add", os.fsdecode(raw_name), "--name", "odd"],
        cwd=root,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert add.returncode == 0, add.stderr.decode(errors="replace")
    assert b"Traceback" not in add.stderr
    get = subprocess.run(
        [MODELKEEP, "get", "odd", "-o", "out/"],
        cwd=root,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert get.returncode == 0, get.stderr.decode(errors="replace")
    assert os.listdir(os.fsencode(root / "out")) == [raw_name]
    with open(os.path.join(os.fsencode(root / "out"), raw_name), "rb") as f:
        assert f.read() == b"odd bytes name"


@pytest.mark.parametrize("name", ["a", "team/fraud-detector", "x" * 128, "a.b_c-d/e.f/0"])
def test_valid_names_accepted(tmp_path: Path, name: str) -> None:
    root = new_repo(tmp_path)
    write(root / "m.bin", b"m")
    ok("add", "m.bin", "--name", name, cwd=root)
    assert jcli("show", f"{name}:v1", cwd=root)["name"] == name
