"""Property tests: every serialisation and every store path round-trips exactly."""

from __future__ import annotations

import io
import itertools
import os
import random
import tempfile
from pathlib import Path
from typing import Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelkeep as mk
from modelkeep.errors import InvalidName, InvalidRef
from modelkeep.refs import DigestRef, VersionRef, parse_ref, validate_name
from modelkeep.store import Kind, ObjectStore, put
from modelkeep.store.chunking import BLOCK, chunk_bytes, digest, iter_blocks
from modelkeep.store.limits import MAX_CHUNK
from modelkeep.store.packs import PackEntry, decode_index, encode_index
from modelkeep.store.restore import restore
from modelkeep.store.trees import (
    BadTree,
    Manifest,
    ManifestBuilder,
    Tree,
    TreeEntry,
    decode_manifest,
    decode_tree,
)

FAST = settings(max_examples=50, deadline=None)
SLOW = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies -----------------------------------------------------------------

# Up to ~300 KiB so that a good share of examples span several chunks (max 256 KiB).
contents = st.one_of(
    st.binary(max_size=2048),
    st.integers(min_value=0, max_value=300 * 1024).map(lambda n: random.Random(n).randbytes(n)),
    st.tuples(st.binary(min_size=1, max_size=64), st.integers(1, 6000)).map(lambda t: t[0] * t[1]),
)

# Any bytes a POSIX file name may hold (no '/', no NUL, not '.' or '..'), incl. non-UTF-8.
entry_names = (
    st.binary(min_size=1, max_size=40)
    .map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))
    .filter(lambda b: b not in (b".", b".."))
)

FileTree = dict[bytes, Union[bytes, "FileTree"]]


def _trees(max_leaves: int = 12) -> st.SearchStrategy[FileTree]:
    small = st.binary(max_size=3000)
    return st.recursive(
        st.dictionaries(entry_names, small, max_size=4),
        lambda children: st.dictionaries(entry_names, st.one_of(small, children), max_size=4),
        max_leaves=max_leaves,
    )


digests32 = st.binary(min_size=32, max_size=32)

# Entries as add writes them: files 0o644 or 0o755, folders and links 0, links short.
tree_entries = st.one_of(
    st.builds(
        TreeEntry,
        name=entry_names,
        kind=st.just(Kind.FILE),
        mode=st.sampled_from([0o644, 0o755]),
        size=st.integers(0, 2**64 - 1),
        id=digests32,
    ),
    st.builds(
        TreeEntry,
        name=entry_names,
        kind=st.just(Kind.DIR),
        mode=st.just(0),
        size=st.integers(0, 2**64 - 1),
        id=digests32,
    ),
    st.builds(
        TreeEntry,
        name=entry_names,
        kind=st.just(Kind.LINK),
        mode=st.just(0),
        size=st.integers(0, MAX_CHUNK),
        id=digests32,
    ),
)

SEGMENT_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._-"
segments = st.text(SEGMENT_ALPHABET, min_size=1, max_size=20).filter(
    lambda s: s not in (".", "..") and not s.startswith("-")  # '-x' reads as an option
)
valid_names = (
    st.lists(segments, min_size=1, max_size=6).map("/".join).filter(lambda n: len(n) <= 128)
)


# -- helpers --------------------------------------------------------------------


def _write_tree(root: bytes, tree: FileTree) -> None:
    os.mkdir(root)
    for name, value in tree.items():
        path = os.path.join(root, name)
        if isinstance(value, dict):
            _write_tree(path, value)
        else:
            with open(path, "wb") as f:
                f.write(value)


def _read_tree(root: bytes) -> FileTree:
    out: FileTree = {}
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path):
            out[name] = _read_tree(path)
        else:
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


def _leaves(tree: FileTree, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
    found: list[tuple[bytes, bytes]] = []
    for name, value in tree.items():
        if isinstance(value, dict):
            found += _leaves(value, prefix + name + b"/")
        else:
            found.append((prefix + name, value))
    return found


_counter = itertools.count()


def _fresh_name() -> str:
    return f"art-{next(_counter)}"


# -- chunking -------------------------------------------------------------------


@FAST
@given(contents)
def test_chunk_bytes_joins_back(data: bytes) -> None:
    chunks = chunk_bytes(data)
    assert b"".join(chunks) == data
    assert all(chunks) or chunks == [b""]
    assert all(len(c) <= 256 * 1024 for c in chunks)


def _blocks_chunks(data: bytes) -> list[bytes]:
    pieces: list[bytes] = []
    flags: list[bool] = []
    for block, spans, whole in iter_blocks(io.BytesIO(data)):
        flags.append(whole)
        expected = 0
        for start, length in spans:
            assert start == expected, "spans must tile the block"
            pieces.append(bytes(block[start : start + length]))
            expected += length
        assert expected == len(block), "spans must cover the whole block"
    assert flags[0] == (len(flags) == 1), "whole_file is True only for a one-block stream"
    assert not any(flags[1:])
    return pieces


@FAST
@given(contents)
def test_iter_blocks_matches_chunk_bytes(data: bytes) -> None:
    pieces = _blocks_chunks(data)
    assert b"".join(pieces) == data
    assert (pieces or [b""]) == chunk_bytes(data)


@pytest.mark.parametrize(
    "size",
    [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 12345, 3 * BLOCK - 7],
    ids=["block-1", "block", "block+1", "2block+", "3block-7"],
)
@pytest.mark.parametrize("pattern", ["random", "zeros", "mixed"])
def test_iter_blocks_large_streams_same_boundaries(size: int, pattern: str) -> None:
    rng = random.Random(size)
    if pattern == "random":
        data = rng.randbytes(size)
    elif pattern == "zeros":
        data = bytes(size)
    else:  # random stretches between runs of zeros: boundaries land near block edges
        parts: list[bytes] = []
        total = 0
        while total < size:
            n = rng.randint(1, 3 * 1024 * 1024)
            parts.append(rng.randbytes(n) if len(parts) % 2 else bytes(n))
            total += n
        data = b"".join(parts)[:size]
    pieces = _blocks_chunks(data)
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces] == [len(c) for c in chunk_bytes(data)]


@FAST
@given(contents)
def test_digest_is_deterministic(data: bytes) -> None:
    assert digest(data) == digest(bytes(data)) == digest(memoryview(data))
    assert len(digest(data)) == 32


# -- store round trips ----------------------------------------------------------


@SLOW
@given(data=contents)
def test_store_put_restore_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "in.bin"
        src.write_bytes(data)
        store = ObjectStore(base / "store")
        try:
            with store.writing():
                result = put(store, src)
            assert result.root.kind == Kind.FILE
            assert result.root.id == digest(data)
            assert result.size == len(data)
            dest = base / "out.bin"
            restore(store, result.root, dest, size=result.size, mode=result.mode)
            assert dest.read_bytes() == data
            with store.open_blob(result.root.id) as f:
                assert f.read() == data
            assert b"".join(bytes(p) for p in store.iter_blob(result.root.id)) == data
        finally:
            store.close()


@SLOW
@given(tree=_trees())
def test_store_put_restore_tree(tree: FileTree) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = os.fsencode(tmp)
        src = os.path.join(base, b"src")
        _write_tree(src, tree)
        store = ObjectStore(Path(tmp) / "store")
        try:
            with store.writing():
                result = put(store, Path(os.fsdecode(src)))
                again = put(store, Path(os.fsdecode(src)))
            assert again.root == result.root, "same folder, same tree id"
            assert again.new_bytes == 0
            assert result.root.kind == Kind.DIR
            assert result.size == sum(len(v) for _, v in _leaves(tree))
            assert result.file_count == len(_leaves(tree))
            dest = Path(tmp) / "out"
            restore(store, result.root, dest, size=result.size)
            assert _read_tree(os.fsencode(dest)) == tree
        finally:
            store.close()


@SLOW
@given(data=contents)
def test_repo_add_get_open_file(
    repo: mk.Repo, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    base = tmp_path_factory.mktemp("file")
    src = base / "weights.bin"
    src.write_bytes(data)
    name = _fresh_name()
    v = repo.add(src, name).version
    assert v.digest == "b3:" + digest(data).hex()
    assert v.size == len(data)
    out = repo.get(v.ref, base / "restored.bin")
    assert out.read_bytes() == data
    with repo.open(name) as f:
        assert f.read() == data
    with repo.open(f"b3:{v.digest[3:19]}") as f:
        assert f.read() == data


@SLOW
@given(tree=_trees())
def test_repo_add_get_open_tree(
    repo: mk.Repo, tmp_path_factory: pytest.TempPathFactory, tree: FileTree
) -> None:
    base = os.fsencode(tmp_path_factory.mktemp("tree"))
    src = os.path.join(base, b"folder")
    _write_tree(src, tree)
    name = _fresh_name()
    v = repo.add(os.fsdecode(src), name).version
    assert v.kind == "dir"
    assert v.file_count == len(_leaves(tree))
    out = repo.get(v.ref, os.fsdecode(os.path.join(base, b"restored")))
    assert _read_tree(os.fsencode(out)) == tree
    listed = {os.fsencode(fi.path): fi for fi in repo.files(v.ref) if fi.kind == "file"}
    for rel, content in _leaves(tree):
        with repo.open(v.ref, os.fsdecode(rel)) as f:
            assert f.read() == content
        assert listed[rel].size == len(content)
        assert listed[rel].digest == "b3:" + digest(content).hex()


@SLOW
@given(data=contents, a=entry_names, b=entry_names)
def test_same_bytes_same_id_stored_once(
    repo: mk.Repo, tmp_path_factory: pytest.TempPathFactory, data: bytes, a: bytes, b: bytes
) -> None:
    base = os.fsencode(tmp_path_factory.mktemp("same"))
    one: FileTree = {b"x": {a: data}, b"y": {b"deeper": {b: data}}}
    src = os.path.join(base, b"src")
    _write_tree(src, one)
    first = repo.add(os.fsdecode(src), _fresh_name())
    ids = {fi.digest for fi in repo.files(first.version.ref) if fi.kind == "file"}
    assert ids == {"b3:" + digest(data).hex()}
    usage = repo.du()
    # The same content again, as a lone file of another artifact: nothing new is stored.
    lone = os.path.join(base, b"lone.bin")
    with open(lone, "wb") as f:
        f.write(data)
    second = repo.add(os.fsdecode(lone), _fresh_name())
    assert second.version.digest == "b3:" + digest(data).hex()
    assert second.new_bytes == 0
    after = repo.du()
    assert after.unique_bytes == usage.unique_bytes
    assert after.chunks == usage.chunks


def test_add_lone_file_with_non_utf8_name(repo: mk.Repo, tmp_path: Path) -> None:
    """A file name need not be UTF-8 (inside folders such names already work)."""
    raw_name = b"caf\xe9-\x80\xff.bin"
    src = os.path.join(os.fsencode(tmp_path), raw_name)
    with open(src, "wb") as f:
        f.write(b"weights")
    v = repo.add(os.fsdecode(src), "lone").version
    assert v.size == 7
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    restored = repo.get("lone", str(out_dir) + "/")
    assert os.listdir(os.fsencode(out_dir)) == [raw_name]
    assert restored.read_bytes() == b"weights"


# -- serialisations -------------------------------------------------------------


@FAST
@given(st.lists(tree_entries, max_size=20, unique_by=lambda e: e.name), st.randoms())
def test_tree_encode_decode(entries: list[TreeEntry], rnd: random.Random) -> None:
    tree = Tree(tuple(entries))
    encoded = tree.encode()
    decoded = decode_tree(encoded)
    assert decoded == Tree(tuple(sorted(entries, key=lambda e: e.name)))
    assert decoded.encode() == encoded
    assert decoded.id == tree.id == digest(encoded)
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert Tree(tuple(shuffled)).id == tree.id, "the id does not depend on entry order"
    for e in entries:
        assert decoded.get(e.name) == e


@FAST
@given(entry_names, st.sampled_from(list(Kind)), st.integers(0, 2**32 - 1))
def test_a_tree_entry_mode_add_never_writes_is_refused(name: bytes, kind: Kind, mode: int) -> None:
    """Only 0o644 and 0o755 files, and mode 0 folders and links, are ever read back."""
    encoded = Tree((TreeEntry(name, kind, mode, 0, bytes(32)),)).encode()
    if (kind == Kind.FILE and mode in (0o644, 0o755)) or (kind != Kind.FILE and mode == 0):
        assert decode_tree(encoded).entries[0].mode == mode
    else:
        with pytest.raises(BadTree):
            decode_tree(encoded)


@FAST
@given(st.lists(st.tuples(digests32, st.integers(1, MAX_CHUNK)), min_size=1, max_size=50))
def test_manifest_encode_decode(chunks: list[tuple[bytes, int]]) -> None:
    manifest = Manifest(sum(n for _, n in chunks), tuple(chunks))
    encoded = manifest.encode()
    assert decode_manifest(encoded) == manifest
    assert decode_manifest(encoded).encode() == encoded


@FAST
@given(
    st.lists(
        st.lists(st.tuples(digests32, st.integers(1, MAX_CHUNK)), max_size=20),
        min_size=1,
        max_size=5,
    )
)
def test_a_manifest_built_block_by_block_is_the_encoded_one(
    blocks: list[list[tuple[bytes, int]]],
) -> None:
    """add writes a file's manifest as its blocks come (no list of pairs, no copy at the
    end): byte for byte what Manifest.encode gives, and its chunks read back as pairs."""
    builder = ManifestBuilder()
    for block in blocks:
        builder.add([cid for cid, _ in block], [n for _, n in block])
    chunks = [pair for block in blocks for pair in block]
    manifest = Manifest(sum(n for _, n in chunks), tuple(chunks))
    assert (builder.count, builder.size) == (len(chunks), manifest.size)
    encoded = bytes(builder.finish())
    assert encoded == manifest.encode()
    if chunks:
        decoded = decode_manifest(encoded).chunks
        assert list(decoded) == chunks and len(decoded) == len(chunks)
        assert decoded[-1] == chunks[-1] and list(decoded[1:3]) == chunks[1:3]


pack_entries = st.builds(
    PackEntry,
    key=digests32,
    kind=st.integers(0, 255),
    codec=st.integers(0, 255),
    offset=st.integers(0, 2**64 - 1),
    length=st.integers(0, 2**32 - 1),
    raw_length=st.integers(0, 2**32 - 1),
)


@FAST
@given(st.lists(pack_entries, max_size=50, unique_by=lambda e: e.key))
def test_pack_index_encode_decode(entries: list[PackEntry]) -> None:
    encoded = encode_index(entries)
    assert decode_index(encoded) == sorted(entries, key=lambda e: e.key)
    assert encode_index(decode_index(encoded)) == encoded


# -- names and refs -------------------------------------------------------------


@FAST
@given(valid_names, st.integers(1, 10**18 - 1))
def test_valid_names_and_refs_accepted(name: str, number: int) -> None:
    assert validate_name(name) == name
    assert parse_ref(name) == VersionRef(name)
    assert parse_ref(f"{name}:latest") == VersionRef(name)
    assert parse_ref(f"{name}:v{number}") == VersionRef(name, number)
    assert str(VersionRef(name, number)) == f"{name}:v{number}"


def test_name_length_limit() -> None:
    assert validate_name("a" * 128) == "a" * 128
    with pytest.raises(InvalidName):
        validate_name("a" * 129)
    with pytest.raises(InvalidRef):
        parse_ref("a" * 129)


BAD_CHARS = "ABCZ !#$%&*+,;<=>?[]^`{|}~\\\"'éß\t\u00a0"


@st.composite
def invalid_names(draw: st.DrawFn) -> str:
    name = draw(valid_names)
    how = draw(st.sampled_from(["char", "empty", "dot", "dash", "slash", "long", "nothing"]))
    parts = name.split("/")
    if how == "char":
        i = draw(st.integers(0, len(parts) - 1))
        seg = parts[i]
        j = draw(st.integers(0, len(seg)))
        parts[i] = seg[:j] + draw(st.sampled_from(BAD_CHARS)) + seg[j:]
        return "/".join(parts)
    if how == "empty":
        i = draw(st.integers(1, len(parts)))
        parts.insert(i, "")
        return "/".join(parts)
    if how == "dot":
        i = draw(st.integers(0, len(parts)))
        parts.insert(i, draw(st.sampled_from([".", ".."])))
        return "/".join(parts)
    if how == "dash":
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = "-" + parts[i]
        return "/".join(parts)
    if how == "slash":
        return "/" + name
    if how == "long":
        return (name + "/" + "x" * 128)[:129] if len(name) < 127 else name + "y" * 129
    return ""


@FAST
@given(invalid_names())
def test_invalid_names_rejected(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)
    text = name.strip()
    if text == name and ":" not in name and not name.startswith("b3:"):
        with pytest.raises(InvalidRef):
            parse_ref(name)
        with pytest.raises(InvalidRef):
            parse_ref(f"{name}:v1")


@FAST
@given(
    valid_names,
    st.sampled_from(["v0", "v01", "V1", "1", "v", "v-1", "vx", "v1.0", "latest2", "v" + "9" * 19]),
)
def test_invalid_versions_rejected(name: str, version: str) -> None:
    with pytest.raises(InvalidRef):
        parse_ref(f"{name}:{version}")


@FAST
@given(st.text("0123456789abcdefABCDEF", min_size=8, max_size=64))
def test_digest_refs_accepted(hexpart: str) -> None:
    assert parse_ref(f"b3:{hexpart}") == DigestRef(hexpart.lower())


@FAST
@given(
    st.one_of(
        st.text("0123456789abcdef", max_size=7),
        st.text("0123456789abcdef", min_size=65, max_size=80),
        st.text("0123456789abcdef", min_size=4, max_size=30).map(lambda h: h + "g" + h),
    )
)
def test_bad_digest_refs_rejected(hexpart: str) -> None:
    with pytest.raises(InvalidRef):
        parse_ref(f"b3:{hexpart}")
