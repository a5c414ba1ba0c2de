"""Trust in the store under attack: every object is bound to
its id, whatever a remote's index says, and every length is bounded before allocating.

The attacks are crafted as an attacker with write access to a bucket would: a new pack
and index published beside the good ones, an index rewritten and re-sealed, a zstd bomb,
a sparse pack. The victim is a fresh store fetching from that remote.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkeep as mk
from modelkeep.errors import CorruptObject, ModelkeepError, ObjectError, TooLarge
from modelkeep.store import Kind, ObjectStore, Root, trees
from modelkeep.store.chunking import MIN_SIZE, digest
from modelkeep.store.limits import MAX_CHUNK
from modelkeep.store.packs import (
    CODEC_RAW,
    CODEC_ZSTD,
    KIND_BLOB,
    KIND_CHUNK,
    KIND_TREE,
    PackEntry,
    decode_index,
    encode_index,
)
from modelkeep.store.restore import restore
from modelkeep.store.trees import (
    TREE_MAGIC,
    BadTree,
    Manifest,
    Tree,
    TreeEntry,
    decode_manifest,
    decode_tree,
)
from tests.conftest import cli, write
from tests.s3 import S3Server
from tests.test_memory import MEASURED

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SIZE = 300_000  # several chunks
FORGED = "pack-" + "0" * 32  # sorts before every uuid4 name: its index is read first
RSS_LIMIT = 200 * 1000 * 1000


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


Put = Callable[[str, bytes], None]  # (file name under the remote's packs/, bytes)
Delete = Callable[[str], None]


def forged_pack(file_id: bytes, size: int, pieces: int = 2) -> tuple[bytes, bytes]:
    """A pack and its index holding attacker chunks and a manifest of them under file_id:
    intact by its own checksum, of the file's exact size, two chunks or more."""
    body, entries, chunks = b"", [], []
    lengths = [size // pieces] * (pieces - 1)
    lengths.append(size - sum(lengths))
    for i, n in enumerate(lengths):
        evil = (b"EVIL%d" % i) * (n // 5 + 1)
        evil = evil[:n]
        cid = digest(evil)
        entries.append(PackEntry(cid, KIND_CHUNK, CODEC_RAW, len(body), n, n))
        chunks.append((cid, n))
        body += evil
    manifest = Manifest(size, tuple(chunks)).encode()
    entries.append(
        PackEntry(file_id, KIND_BLOB, CODEC_RAW, len(body), len(manifest), len(manifest))
    )
    body += manifest
    return body, encode_index(entries)


def folder_remote(path: Path) -> tuple[str, Put, Delete]:
    packs = path / "packs"

    def put(name: str, data: bytes) -> None:
        packs.mkdir(parents=True, exist_ok=True)
        (packs / name).write_bytes(data)

    def delete(name: str) -> None:
        (packs / name).unlink()

    return str(path), put, delete


def machines(
    tmp_path: Path, url: str, *names: str
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Machines sharing one metadata database and one default remote; run(who, *args)."""
    env = {"MODELKEEP_DATABASE_URL": f"sqlite:///{tmp_path}/team.db"}
    for who in names:
        (tmp_path / who).mkdir()
        for args in (("init",), ("remote", "add", "origin", url, "--default")):
            r = cli(*args, cwd=tmp_path / who, env={**env, "MODELKEEP_HOST": who})
            assert r.returncode == 0, r.stderr

    def run(who: str, *args: str, fails: bool = False) -> subprocess.CompletedProcess[str]:
        r = cli(*args, cwd=tmp_path / who, env={**env, "MODELKEEP_HOST": who})
        assert r.returncode == (1 if fails else 0), r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        return r

    return run


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr


def only_control_folder(folder: Path) -> None:
    """A failed get leaves nothing behind: no file, no temporary sibling."""
    assert sorted(p.name for p in folder.iterdir()) == [".modelkeep"]


def forged_manifest_attack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, put: Put, delete: Delete
) -> None:
    monkeypatch.setenv("MODELKEEP_DATABASE_URL", f"sqlite:///{tmp_path}/team.db")
    run = machines(tmp_path, url, "b", "c")
    data = rand(SIZE, 1)
    with mk.init(tmp_path / "a") as a:  # the honest machine: through the Python API
        a.add_remote("origin", url, default=True)
        a.add(write(tmp_path / "data.bin", data), "data", track=False)
        a.push()
    file_id = digest(data)
    pack, index = forged_pack(file_id, SIZE)
    put(f"{FORGED}.pack", pack)
    put(f"{FORGED}.idx", index)

    # A fresh store refuses the forged bytes, names the file, and writes nothing.
    err = one_line_error(run("b", "get", "data:v1", "-o", "out.bin", fails=True))
    assert f"b3:{file_id.hex()}" in err and "data:v1" in err
    only_control_folder(tmp_path / "b")
    # pull hashes whole every file whose manifest it fetched: it refuses the forgery too.
    err = one_line_error(run("c", "pull", "data:v1", fails=True))
    assert f"b3:{file_id.hex()}" in err
    # A store that fetched the forged manifest without reading the file (the store's own
    # prefetch, below pull's check): fsck re-hashes the file and reports it.
    with mk.open(tmp_path / "c") as c:
        c.store.prefetch(c.root_of(c.show("data:v1")))
    checked = run("c", "fsck", fails=True)
    assert file_id.hex() in checked.stdout + checked.stderr
    # Once the forged pack is gone from the remote, the good copy comes back to both.
    delete(f"{FORGED}.idx")
    delete(f"{FORGED}.pack")
    for who in ("b", "c"):
        run(who, "get", "data:v1", "-o", "out.bin")
        assert (tmp_path / who / "out.bin").read_bytes() == data


def test_a_forged_manifest_on_a_folder_remote_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, put, delete = folder_remote(tmp_path / "remote")
    forged_manifest_attack(tmp_path, monkeypatch, url, put, delete)


def test_a_forged_manifest_in_an_s3_bucket_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, s3_bucket: str
) -> None:
    client = s3_server.client()

    def put(name: str, data: bytes) -> None:
        client.put_object(Bucket=s3_bucket, Key=f"team/packs/{name}", Body=data)

    def delete(name: str) -> None:
        client.delete_object(Bucket=s3_bucket, Key=f"team/packs/{name}")

    forged_manifest_attack(tmp_path, monkeypatch, f"s3://{s3_bucket}/team", put, delete)


# -- the Python API: fresh stores over a tampered folder remote -----------------------


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[mk.Repo, str]]:
    """Machine a with a folder remote; yields (a, url). fresh() opens a new machine."""
    monkeypatch.setenv("MODELKEEP_DATABASE_URL", f"sqlite:///{tmp_path}/team.db")
    url = str(tmp_path / "remote")
    a = mk.init(tmp_path / "a")
    a.add_remote("origin", url, default=True)
    yield a, url
    a.close()


def fresh(tmp_path: Path, url: str, name: str) -> mk.Repo:
    b = mk.init(tmp_path / name)
    b.add_remote("origin", url, default=True)
    return b


def rewrite_indexes(url: str, change: Callable[[PackEntry], PackEntry]) -> None:
    """Rewrite every index of a folder remote, re-sealed, as an attacker can."""
    packs = Path(url) / "packs"
    for idx in packs.glob("pack-*.idx"):
        entries = [change(e) for e in decode_index(idx.read_bytes())]
        idx.chmod(0o644)
        idx.write_bytes(encode_index(entries))


def folder_with_link(root: Path) -> Path:
    write(root / "small.txt", b"small file\n")
    write(root / "big.bin", rand(SIZE, 2))
    os.symlink("small.txt", root / "link")
    return root


def same_tree(a: Path, b: Path) -> None:
    for p in sorted(a.rglob("*")):
        q = b / p.relative_to(a)
        if p.is_symlink():
            assert os.readlink(p) == os.readlink(q)
        elif p.is_file():
            assert p.read_bytes() == q.read_bytes()


def test_an_index_relabelling_objects_never_changes_the_bytes(
    tmp_path: Path, pair: tuple[mk.Repo, str]
) -> None:
    a, url = pair
    src = folder_with_link(tmp_path / "src")
    a.add(src, "tree", track=False)
    a.push()
    # Chunks and trees labelled as trees (or chunks): read as what the tree names them.
    rewrite_indexes(url, lambda e: e if e.kind == KIND_BLOB else _relabel(e, KIND_TREE))
    b = fresh(tmp_path, url, "b")
    same_tree(src, b.get("tree:v1", tmp_path / "out-b"))
    b.close()
    # A forged pack calls the big file's first chunk a manifest (intact by its checksum):
    # the tree names it as a chunk, so it is read as one, and refused.
    big = digest(rand(SIZE, 2))
    first = _first_chunk(url, big)
    manifest = Manifest(2 * MIN_SIZE, ((bytes(32), MIN_SIZE), (bytes(32), MIN_SIZE))).encode()
    _, put, _ = folder_remote(Path(url))
    put(f"{FORGED}.pack", manifest)
    put(
        f"{FORGED}.idx",
        encode_index([PackEntry(first, KIND_BLOB, 0, 0, len(manifest), len(manifest))]),
    )
    c = fresh(tmp_path, url, "c")
    with pytest.raises(ModelkeepError, match=first.hex()[:16]):
        c.get("tree:v1", tmp_path / "out-c")
    assert not (tmp_path / "out-c").exists()
    c.close()


def _first_chunk(url: str, file_id: bytes) -> bytes:
    """The first chunk id in the manifest of file_id, read from a folder remote."""
    for idx in (Path(url) / "packs").glob("pack-*.idx"):
        for e in decode_index(idx.read_bytes()):
            if e.key == file_id:
                with open(idx.with_suffix(".pack"), "rb") as f:
                    f.seek(e.offset)
                    return decode_manifest(f.read(e.length)).chunks[0][0]
    raise AssertionError("no manifest")


def _relabel(e: PackEntry, kind: int) -> PackEntry:
    return PackEntry(e.key, kind, e.codec, e.offset, e.length, e.raw_length)


def test_a_full_read_through_open_verifies_the_whole_file(
    tmp_path: Path, pair: tuple[mk.Repo, str]
) -> None:
    a, url = pair
    data = rand(SIZE, 3)
    a.add(write(tmp_path / "d.bin", data), "data", track=False)
    a.push()
    _, put, _ = folder_remote(Path(url))
    pack, index = forged_pack(digest(data), SIZE, pieces=3)
    put(f"{FORGED}.pack", pack)
    put(f"{FORGED}.idx", index)
    b = fresh(tmp_path, url, "b")
    with b.open("data:v1") as f:
        head = f.read(1000)  # a random read sees verified chunks where the manifest says
        with pytest.raises(ObjectError, match="do not hash to the file's id"):
            f.read()  # the last bytes are never handed out unverified
    assert head != data[:1000]
    # The forged manifest was dropped; with it gone from the remote, the good one returns.
    for ext in ("idx", "pack"):
        (Path(url) / "packs" / f"{FORGED}.{ext}").unlink()
    with b.open("data:v1") as f:
        assert f.read() == data
    b.close()


def test_a_one_chunk_forged_manifest_is_dropped(tmp_path: Path, pair: tuple[mk.Repo, str]) -> None:
    """The shape of the original report: a 300 KB file came back as 36 bytes."""
    a, url = pair
    data = rand(SIZE, 4)
    a.add(write(tmp_path / "d.bin", data), "data", track=False)
    a.push()
    _, put, _ = folder_remote(Path(url))
    evil = b"you have been owned, 36 bytes long!!"
    cid = digest(evil)
    manifest = Manifest(len(evil), ((cid, len(evil)),)).encode()
    entries = [
        PackEntry(cid, KIND_CHUNK, CODEC_RAW, 0, len(evil), len(evil)),
        PackEntry(digest(data), KIND_BLOB, CODEC_RAW, len(evil), len(manifest), len(manifest)),
    ]
    put(f"{FORGED}.pack", evil + manifest)
    put(f"{FORGED}.idx", encode_index(entries))
    b = fresh(tmp_path, url, "b")
    with pytest.raises(CorruptObject, match="dropped"):
        b.get("data:v1", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not b.store.has(digest(data))
    b.close()


# -- bounded lengths: memory ------------------------------------------------------------


@functools.cache
def _bomb(content_size: bool) -> bytes:
    """1 GiB of zeros in about 32 KiB of zstd, its size stated in the frame or not."""
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    chunk = bytes(16 * MiB)
    obj = cctx.compressobj(size=GiB if content_size else -1)
    return b"".join([*(obj.compress(chunk) for _ in range(GiB // len(chunk))), obj.flush()])


def _measured_get(folder: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """`modelkeep get data:v1` in a subprocess: its result and its peak resident set."""
    peak = folder.parent / "peak-rss"
    r = subprocess.run(
        [sys.executable, "-c", MEASURED, str(peak), "get", "data:v1", "-o", "out.bin"],
        cwd=folder,
        env={**os.environ, "MODELKEEP_USER": "tester"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return r, int(peak.read_text())


@pytest.mark.parametrize(
    "attack", ["bomb-claims-1GiB", "bomb-lies-in-frame", "bomb-no-size", "sparse"]
)
def test_a_crafted_huge_object_on_a_remote_is_refused_in_bounded_memory(
    tmp_path: Path, pair: tuple[mk.Repo, str], attack: str
) -> None:
    a, url = pair
    _, put, _ = folder_remote(Path(url))
    data = rand(5000, 5)  # one chunk: its id is the chunk's
    a.add(write(tmp_path / "d.bin", data), "data", track=False)
    file_id = digest(data)
    if attack == "sparse":
        put(f"{FORGED}.pack", b"")
        os.truncate(Path(url) / "packs" / f"{FORGED}.pack", GiB)
        entry = PackEntry(file_id, KIND_CHUNK, CODEC_RAW, 0, GiB, GiB)
    else:
        bomb = _bomb(content_size=attack != "bomb-no-size")
        raw = GiB if attack == "bomb-claims-1GiB" else MAX_CHUNK
        entry = PackEntry(file_id, KIND_CHUNK, CODEC_ZSTD, 0, len(bomb), raw)
        put(f"{FORGED}.pack", bomb)
    put(f"{FORGED}.idx", encode_index([entry]))
    fresh(tmp_path, url, "b").close()
    r, rss = _measured_get(tmp_path / "b")
    one_line_error(r)
    assert file_id.hex()[:16] in r.stderr
    assert rss < RSS_LIMIT, f"peak RSS {rss / MiB:.0f} MiB"
    only_control_folder(tmp_path / "b")


def test_a_sparse_local_pack_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """The store's own index edited to claim a 1 GiB object in a sparse pack."""
    folder = tmp_path / "p"
    with mk.init(folder) as repo:
        repo.add(write(tmp_path / "d.bin", rand(5000, 6)), "data", track=False)
    store = folder / ".modelkeep" / "store"
    with sqlite3.connect(store / "index.sqlite") as db:
        db.execute("UPDATE entries SET length = ?, raw_length = ?", (GiB, GiB))
    for pack in (store / "packs").glob("*.pack"):
        pack.chmod(0o644)
        os.truncate(pack, GiB + 4096)
    r, rss = _measured_get(folder)
    one_line_error(r)
    assert rss < RSS_LIMIT, f"peak RSS {rss / MiB:.0f} MiB"
    only_control_folder(folder)


# -- bounded lengths and checked fields: trees and manifests ----------------------------


def _stored(store: ObjectStore, kind: int, data: bytes) -> bytes:
    key = digest(data)
    store.add_stored([(PackEntry(key, kind, CODEC_RAW, 0, len(data), len(data)), data)])
    return key


def _tree_bytes(
    entries: list[tuple[int, int, int, bytes, bytes]], count: int | None = None
) -> bytes:
    import struct

    parts = [TREE_MAGIC, struct.pack("<I", len(entries) if count is None else count)]
    for kind, mode, size, oid, name in entries:
        parts.append(struct.pack("<BIQ32sH", kind, mode, size, oid, len(name)) + name)
    return b"".join(parts)


@pytest.mark.parametrize(
    ("kind", "mode", "size"),
    [
        (Kind.FILE, 0o4755, 5),  # setuid
        (Kind.FILE, 0o777, 5),
        (Kind.FILE, 0o644, 6),  # a size other than the file's
        (Kind.DIR, 0o755, 0),
        (Kind.LINK, 0o777, 5),
    ],
)
def test_a_tree_with_a_bad_mode_or_size_is_refused(
    tmp_path: Path, kind: Kind, mode: int, size: int
) -> None:
    store = ObjectStore(tmp_path / "store")
    body = b"hello"
    oid = _stored(store, KIND_CHUNK, body)
    if kind == Kind.DIR:
        oid = _stored(store, KIND_TREE, Tree(()).encode())
    tree = _tree_bytes([(kind, mode, size, oid, b"x")])
    tid = _stored(store, KIND_TREE, tree)
    with pytest.raises(CorruptObject):
        restore(store, Root(Kind.DIR, tid), tmp_path / "out", size=size)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    store.close()


def test_tree_and_manifest_lengths_are_checked_before_allocating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(BadTree, match="claims"):
        decode_tree(_tree_bytes([], count=0xFFFFFFFF))
    with pytest.raises(BadTree):
        decode_tree(_tree_bytes([(0, 0o644, 1, bytes(32), b"a")])[:-1])  # truncated
    with pytest.raises(BadTree):
        decode_tree(TREE_MAGIC)  # no count
    import struct

    body = b"MKBLOB01" + struct.pack("<QI", 10, 0xFFFFFFFF)
    with pytest.raises(ValueError, match="length"):
        decode_manifest(body + digest(body))
    body = b"MKBLOB01" + struct.pack("<QI", 2 * GiB, 2) + (bytes(32) + struct.pack("<I", GiB)) * 2
    with pytest.raises(ValueError, match="length"):
        decode_manifest(body + digest(body))  # chunks longer than the chunker cuts
    monkeypatch.setattr(trees, "MAX_MANIFEST_CHUNKS", 3)
    monkeypatch.setattr(trees, "MAX_TREE_ENTRIES", 3)
    with pytest.raises(TooLarge, match="file of 4 chunks"):
        Manifest(4, ((bytes(32), 1),) * 4).encode()
    with pytest.raises(TooLarge, match="folder of 4 entries"):
        Tree(tuple(TreeEntry(b"%d" % i, Kind.DIR, 0, 0, bytes(32)) for i in range(4))).encode()


def test_a_manifest_longer_than_its_file_needs_is_refused(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "store")
    chunks = tuple((digest(b"%d" % i), MIN_SIZE) for i in range(40))
    key = bytes(range(32))
    manifest = Manifest(40 * MIN_SIZE, chunks).encode()
    store.add_stored(
        [(PackEntry(key, KIND_BLOB, CODEC_RAW, 0, len(manifest), len(manifest)), manifest)]
    )
    with pytest.raises(CorruptObject, match="too long"):
        store.manifest(key, size=MIN_SIZE * 2)
    store.close()


def test_remote_listing_sees_a_removed_shadowing_pack(
    tmp_path: Path, pair: tuple[mk.Repo, str]
) -> None:
    """A key first indexed from a pack since removed is found again in the packs left,
    by a store whose cache of the remote's indexes still lists the removed one."""
    a, url = pair
    data = rand(SIZE, 7)
    a.add(write(tmp_path / "d.bin", data), "data", track=False)
    a.push()
    packs = Path(url) / "packs"
    for f in list(packs.iterdir()):  # a copy of that pack under a name read first
        (packs / f"{FORGED}{f.suffix}").write_bytes(f.read_bytes())
    a.add(write(tmp_path / "o.bin", rand(1000, 8)), "other", track=False)
    a.push()
    b = fresh(tmp_path, url, "b")
    b.get("other:v1", tmp_path / "other")  # caches the remote's indexes, the copy first
    b.close()
    for ext in ("idx", "pack"):
        (packs / f"{FORGED}.{ext}").unlink()
    with mk.open(tmp_path / "b") as b:
        assert b.get("data:v1", tmp_path / "one").read_bytes() == data


# -- property: any one byte changed on a remote -----------------------------------------


@dataclass
class Template:
    """A remote holding a file and a folder version, and a fresh store (never fetched)
    whose default remote is `live`: each example copies both and changes one byte."""

    root: Path
    good: Path  # the remote as pushed
    live: Path  # the remote a fresh store reads
    store: Path  # the fresh store, as made
    files: list[str]  # the remote's pack and index files
    data: bytes  # data:v1
    tree: Path  # tree:v1


@pytest.fixture
def template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Template:
    monkeypatch.setenv("MODELKEEP_DATABASE_URL", f"sqlite:///{tmp_path}/team.db")
    good, live = tmp_path / "remote-good", tmp_path / "remote-live"
    data = rand(SIZE, 9)
    src = tmp_path / "src"
    write(src / "small.txt", b"a small file\n")
    write(src / "text.txt", b"compressible line of text\n" * 12_000)  # zstd chunks
    write(src / "sub" / "big.bin", rand(SIZE, 10))
    os.symlink("../small.txt", src / "sub" / "link")
    with mk.init(tmp_path / "a") as a:
        a.add_remote("origin", str(good), default=True)
        a.add(write(tmp_path / "data.bin", data), "data", track=False)
        a.add(src, "tree", track=False)
        a.push()
    with mk.init(tmp_path / "b") as b:
        b.add_remote("origin", str(live), default=True)
    files = sorted(p.name for p in (good / "packs").iterdir())
    return Template(tmp_path, good, live, tmp_path / "b", files, data, src)


def _same_tree(a: Path, b: Path) -> bool:
    for p in sorted(a.rglob("*")):
        q = b / p.relative_to(a)
        if p.is_symlink():
            if not q.is_symlink() or os.readlink(p) != os.readlink(q):
                return False
        elif p.is_file():
            if q.is_symlink() or q.read_bytes() != p.read_bytes():
                return False
            if (p.stat().st_mode & 0o777) != (q.stat().st_mode & 0o777):
                return False
    return len(list(a.rglob("*"))) == len(list(b.rglob("*")))


def _reseal(content: bytearray, target: Path) -> None:
    """Re-seal an index's checksum, or that of a manifest the changed byte lies in."""
    if target.suffix == ".idx":
        content[-32:] = digest(bytes(content[:-32]))
        return
    for e in decode_index(target.with_suffix(".idx").read_bytes()):
        if e.kind == KIND_BLOB and e.codec == CODEC_RAW:
            end = e.offset + e.length
            content[end - 32 : end] = digest(bytes(content[e.offset : end - 32]))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.integers(min_value=0),
    where=st.integers(min_value=0),
    xor=st.integers(min_value=1, max_value=255),
    reseal=st.booleans(),
)
def test_any_byte_changed_on_a_remote_gives_the_bytes_or_a_clear_error(
    template: Template, which: int, where: int, xor: int, reseal: bool
) -> None:
    t = template
    shutil.rmtree(t.live, ignore_errors=True)
    shutil.copytree(t.good, t.live)
    target = t.live / "packs" / t.files[which % len(t.files)]
    target.chmod(0o644)
    content = bytearray(target.read_bytes())
    content[where % len(content)] ^= xor
    if reseal:  # an attacker re-seals the checksum of what was changed
        _reseal(content, target)
    target.write_bytes(bytes(content))
    store = t.root / "b-live"
    out = t.root / "out"
    for folder in (store, out):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(t.store, store, symlinks=True)
    with mk.open(store) as b:
        for ref in ("data:v1", "tree:v1"):
            dest = out / ref.replace(":", "-")
            try:
                got = b.get(ref, dest)
            except ModelkeepError as exc:
                assert "\n" not in str(exc)
                assert not dest.exists()
                continue
            if ref == "data:v1":
                assert got.read_bytes() == t.data
            else:
                assert _same_tree(t.tree, got)
