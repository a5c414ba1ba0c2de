"""Remotes: one contract every backend passes, the faults, team mode, and the CLI.

The contract runs against a local folder and against emulators the suite starts on
127.0.0.1: S3 on a real moto server (tests/s3.py), GCS on gcp-storage-emulator
(tests/gcs.py), Azure Blob Storage on Azurite (tests/azure.py). The faults (server stopped
mid-push, credentials, missing bucket, unreachable endpoint) and team mode run on S3 only.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelkeep as mk
from modelkeep import sync
from modelkeep.errors import (
    CorruptObject,
    CorruptRemoteObject,
    InvalidArgument,
    InvalidRemoteUrl,
    MissingObject,
    NotPushed,
    PushedElsewhere,
    RemoteAccessDenied,
    RemoteExists,
    RemoteMissing,
    RemoteNotFound,
    RemoteUnavailable,
    UnsupportedScheme,
)
from modelkeep.remotes import Remote, parse_url
from modelkeep.store import add as store_add
from modelkeep.store.packs import KIND_CHUNK, decode_index
from tests.azure import AzureServer
from tests.conftest import cli, downgrade, jcli, ok, write
from tests.gcs import GCSServer
from tests.s3 import S3Server

MiB = 1 << 20
Damage = Callable[[str, str, int], None]  # (remote url, pack name, offset): flip a byte


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def make_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, database_url: str | None = None
) -> tuple[mk.Repo, mk.Repo]:
    """Two machines: separate stores, one metadata database, one default remote."""
    monkeypatch.setenv("MODELKEEP_DATABASE_URL", database_url or f"sqlite:///{tmp_path}/team.db")
    monkeypatch.setenv("MODELKEEP_HOST", "host-a")
    a = mk.init(tmp_path / "a")
    monkeypatch.setenv("MODELKEEP_HOST", "host-b")
    b = mk.init(tmp_path / "b")
    monkeypatch.delenv("MODELKEEP_HOST")
    for repo in (a, b):
        repo.add_remote("origin", url, default=True)
    return a, b


def remote_packs(url: str) -> dict[str, list[Any]]:
    """Every published pack of a remote, with its index entries."""
    remote = Remote(url, {})
    return {name: decode_index(remote.read_index(name)) for name in remote.list_packs()}


def biggest_chunk(url: str) -> tuple[str, int, bytes]:
    pack, entry = max(
        ((name, e) for name, entries in remote_packs(url).items() for e in entries),
        key=lambda item: item[1].length if item[1].kind == KIND_CHUNK else -1,
    )
    return pack, entry.offset + entry.length // 2, entry.key


def model_folder(root: Path, seed: int = 1) -> Path:
    write(root / "weights.bin", rand(3 * MiB, seed))
    write(root / "config.json", b'{"layers": 12}')
    run = write(root / "bin" / "serve.sh", b"#!/bin/sh\necho serve\n")
    run.chmod(0o755)
    (root / "latest").symlink_to("weights.bin")
    return root


def many_files(root: Path, n: int, seed: int) -> Path:
    """n files of 256 KiB: with a small pack target, one local pack each."""
    for i in range(n):
        write(root / f"part-{i:03d}.bin", rand(256 * 1024, seed * 1000 + i))
    return root


def same_tree(a: Path, b: Path) -> None:
    for path in sorted(a.rglob("*")):
        other = b / path.relative_to(a)
        if path.is_symlink():
            assert os.readlink(other) == os.readlink(path)
        elif path.is_file():
            assert other.read_bytes() == path.read_bytes(), path
            assert os.access(other, os.X_OK) == os.access(path, os.X_OK)


class RemoteContract:
    """What every backend does. Subclasses give `remote_url` and `damage` fixtures."""

    @pytest.fixture
    def pair(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote_url: str
    ) -> Iterator[tuple[mk.Repo, mk.Repo]]:
        a, b = make_pair(tmp_path, monkeypatch, remote_url)
        yield a, b
        a.close()
        b.close()

    def test_a_pushed_version_is_gotten_on_another_store(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, b = pair
        src = model_folder(tmp_path / "model")
        v = a.add(src, "fraud", track=False).version
        pushed = a.push()
        assert pushed.versions == ("fraud:v1",) and pushed.objects > 0 and pushed.packs >= 1
        assert a.pushed_to("fraud:v1") == (pushed.remote,)
        assert [x.ref for x in b.versions("fraud")] == [v.ref]
        out = b.get("fraud:v1", tmp_path / "out")
        same_tree(src, out)
        assert b.fsck().ok

    def test_run_use_and_restore_fetch_on_their_own(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, b = pair
        src = model_folder(tmp_path / "data")
        a.add(src, "data", type="dataset", track=False)
        a.push()
        with mk.start_run(repo=b, capture_code=False) as run:
            same_tree(src, run.use("data:v1"))
        assert list(b.run(run.id).inputs) == ["data:v1"]
        same_tree(src, b.restore("data:v1", tmp_path / "restored"))
        with pytest.raises(MissingObject):  # what no remote has is still an error
            b.store.ensure([b"\x01" * 32])

    def test_load_model_fetches_on_its_own(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, b = pair
        weights = {"w": np.arange(12.0).reshape(3, 4), "b": np.ones(4)}
        a.log_model(weights, "tiny", input_example=np.zeros((2, 3)))
        a.push()
        assert b.du().chunks == 0
        loaded = b.load_model("tiny:v1")  # on the other store, from the remote
        assert all(np.array_equal(loaded[k], weights[k]) for k in weights)
        assert np.array_equal(b.input_example("tiny:v1"), np.zeros((2, 3)))
        b.log_model(np.ones(2), "local")  # never pushed: the other machine says so
        with pytest.raises(NotPushed, match=r"added by \S+ in store [0-9a-f]{12} on host host-b"):
            a.load_model("local:v1")

    def test_a_second_push_uploads_nothing(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, _ = pair
        a.add(model_folder(tmp_path / "m"), "m", track=False)
        assert a.push().bytes > 0
        again = a.push()
        assert (again.versions, again.objects, again.bytes) == ((), 0, 0)
        explicit = a.push(["m:v1"])  # named again: checked, nothing missing, nothing sent
        assert (explicit.versions, explicit.bytes) == (("m:v1",), 0)

    def test_pushing_a_successor_moves_about_what_changed(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, _ = pair
        data = bytearray(rand(8 * MiB, 7))
        path = write(tmp_path / "ckpt.bin", bytes(data))
        a.add(path, "ckpt", track=False)
        first = a.push().bytes
        data[3 * MiB : 3 * MiB + len(data) // 10] = rand(len(data) // 10, 8)  # 10% changed
        write(path, bytes(data))
        a.add(path, "ckpt", track=False)
        second = a.push().bytes
        assert second < 0.2 * first, (first, second)

    def test_reading_one_file_fetches_only_its_chunks(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, b = pair
        write(tmp_path / "v" / "a.bin", rand(4 * MiB, 1))
        write(tmp_path / "v" / "b.bin", rand(4 * MiB, 2))
        write(tmp_path / "big.bin", rand(12 * MiB, 3))
        a.add(tmp_path / "v", "data", track=False)
        a.add(tmp_path / "big.bin", "big", track=False)
        a.push()
        with b.open("data:v1", "a.bin") as f:
            assert f.read() == rand(4 * MiB, 1)
        assert 4 * MiB <= b.du().stored_bytes < 5 * MiB
        with b.open("big:v1") as f:
            assert f.read(100) == rand(12 * MiB, 3)[:100]  # a header: a window, not the file
        assert b.du().stored_bytes < 10 * MiB

    def test_pull_brings_everything_a_version_needs(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, b = pair
        src = model_folder(tmp_path / "model")
        a.add(src, "m", track=False)
        a.push()
        pulled = b.pull(["m:v1"])
        assert pulled.objects > 0 and pulled.bytes >= 3 * MiB
        assert b.pull(["m"]).objects == 0  # all here now
        b.remove_remote("origin")  # offline from now on
        same_tree(src, b.get("m:v1", tmp_path / "out"))

    def test_a_damaged_remote_object_is_named_and_not_stored(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path, remote_url: str, damage: Damage
    ) -> None:
        a, b = pair
        a.add(write(tmp_path / "w.bin", rand(2 * MiB, 5)), "w", track=False)
        a.push()
        pack, offset, key = biggest_chunk(remote_url)
        damage(remote_url, pack, offset)
        with pytest.raises(CorruptRemoteObject) as info:
            b.get("w:v1", tmp_path / "out")
        assert key.hex() in str(info.value) and pack in str(info.value)
        assert not (tmp_path / "out").exists()
        assert not b.store.has(key)
        assert b.fsck().ok  # nothing damaged entered the local store

    def test_cache_prune_drops_only_what_a_remote_holds(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, _ = pair
        a.add(write(tmp_path / "p.bin", rand(3 * MiB, 11)), "pushed", track=False)
        a.push()
        a.add(write(tmp_path / "l.bin", rand(2 * MiB, 12)), "local", track=False)
        report = a.prune_cache(0)
        assert report.size_before > 5 * MiB
        assert 2 * MiB <= report.size_after < 3 * MiB  # the unpushed version stays
        assert report.kept_only_copy == 1
        assert a.fsck().ok  # what was dropped is on the remote: not a problem
        assert a.gc().objects_removed == 0
        a.remove_remote("origin")
        assert a.open("local:v1").read() == rand(2 * MiB, 12)  # no remote needed
        with pytest.raises(PushedElsewhere, match="add that remote"):
            a.open("pushed:v1").read()

    def test_cache_prune_drops_the_least_recently_used_first(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path
    ) -> None:
        a, _ = pair
        a.add(write(tmp_path / "x.bin", rand(2 * MiB, 13)), "x", track=False)
        a.add(write(tmp_path / "y.bin", rand(2 * MiB, 14)), "y", track=False)
        a.push()
        with mk.open(a.root) as reader:  # a new process's first read marks x's pack used
            assert reader.open("x:v1").read() == rand(2 * MiB, 13)
        before = a.du().stored_bytes
        dry = a.prune_cache(3 * MiB, dry_run=True)
        assert dry.dry_run and dry.packs_dropped == 1 and a.du().stored_bytes == before
        report = a.prune_cache(3 * MiB)
        assert report.packs_dropped == 1 and report.size_after <= 3 * MiB
        a.remove_remote("origin")
        assert a.open("x:v1").read() == rand(2 * MiB, 13)  # kept: used last
        with pytest.raises(PushedElsewhere):
            a.open("y:v1").read()

    def test_listing_reads_only_new_indexes(
        self, pair: tuple[mk.Repo, mk.Repo], tmp_path: Path, remote_url: str
    ) -> None:
        a, _ = pair
        a.add(write(tmp_path / "1.bin", rand(MiB, 1)), "x", track=False)
        a.push()
        remote = Remote(remote_url, {})
        cached = sync.RemoteIndex(remote, tmp_path / "cache")
        cached.refresh()
        first = remote.bytes_received
        assert first > 0
        cached.refresh()
        assert remote.bytes_received == first  # nothing new: nothing read
        a.add(write(tmp_path / "2.bin", rand(MiB, 2)), "x", track=False)
        a.push()
        cached.refresh()
        assert 0 < remote.bytes_received - first < first * 2
        cached.close()


class TestFolderRemote(RemoteContract):
    @pytest.fixture
    def remote_url(self, tmp_path: Path) -> str:
        return str(tmp_path / "remote")

    @pytest.fixture
    def damage(self) -> Damage:
        def flip(url: str, pack: str, offset: int) -> None:
            path = Path(parse_url(url).root) / "packs" / f"{pack}.pack"
            data = bytearray(path.read_bytes())
            data[offset] ^= 0xFF
            path.chmod(0o644)
            path.write_bytes(bytes(data))

        return flip


class TestS3Remote(RemoteContract):
    @pytest.fixture
    def remote_url(self, s3_bucket: str) -> str:
        return f"s3://{s3_bucket}/team/store"

    @pytest.fixture
    def damage(self, s3_server: S3Server) -> Damage:
        def flip(url: str, pack: str, offset: int) -> None:
            root = parse_url(url).root
            bucket, _, prefix = root.partition("/")
            key = f"{prefix}/packs/{pack}.pack"
            client = s3_server.client()
            data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            data[offset] ^= 0xFF
            client.put_object(Bucket=bucket, Key=key, Body=bytes(data))

        return flip


class TestGCSRemote(RemoteContract):
    @pytest.fixture
    def remote_url(self, gcs_bucket: str) -> str:
        return f"gs://{gcs_bucket}/team/store"

    @pytest.fixture
    def damage(self, gcs_server: GCSServer) -> Damage:
        def flip(url: str, pack: str, offset: int) -> None:
            path = f"{parse_url(url).root}/packs/{pack}.pack"
            fs = gcs_server.fs()
            data = bytearray(fs.cat_file(path))
            data[offset] ^= 0xFF
            fs.pipe_file(path, bytes(data))

        return flip


class TestAzureRemote(RemoteContract):
    @pytest.fixture
    def remote_url(self, azure_container: str) -> str:
        return f"az://{azure_container}/team/store"

    @pytest.fixture
    def damage(self, azure_server: AzureServer) -> Damage:
        def flip(url: str, pack: str, offset: int) -> None:
            container, _, prefix = parse_url(url).root.partition("/")
            blob = azure_server.client().get_blob_client(container, f"{prefix}/packs/{pack}.pack")
            data = bytearray(blob.download_blob().readall())
            data[offset] ^= 0xFF
            blob.upload_blob(bytes(data), overwrite=True)

        return flip


# -- faults -----------------------------------------------------------------------------


class _StopServerAfter:
    """A progress callback that cuts the network once n packs are published."""

    def __init__(self, server: S3Server, n: int) -> None:
        self.server = server
        self.n = n
        self.seen = 0

    def start(self, total: int | None, label: str) -> None:
        pass

    def advance(self, n: int) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.server.stop()

    def finish(self) -> None:
        pass


def test_s3_server_stopped_mid_push_then_restarted_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    url = f"s3://{s3_bucket}/p"
    monkeypatch.setattr(sync, "REMOTE_PACK_TARGET", 256 * 1024)
    monkeypatch.setattr(store_add, "PACK_TARGET", 256 * 1024)  # many local packs, too
    a, b = make_pair(tmp_path, monkeypatch, url)
    src = many_files(tmp_path / "w", 24, 21)
    a.add(src, "w", track=False)
    with pytest.raises(RemoteUnavailable, match="run the command again"):
        a.push(progress=_StopServerAfter(s3_server, 3))
    s3_server.start()
    assert a.pushed_to("w:v1") == ()  # not recorded: not every object is there
    published = remote_packs(url)
    assert 3 <= len(published) < 24  # complete packs only (list_packs checked their sizes)
    sync.RemoteIndex(Remote(url, {}), tmp_path / "check").refresh()  # every index is sound
    resumed = a.push()
    assert resumed.versions == ("w:v1",)
    total = sum(e.length for entries in remote_packs(url).values() for e in entries)
    assert resumed.bytes < total  # what was published before was not sent again
    same_tree(src, b.get("w:v1", tmp_path / "out"))
    a.close()
    b.close()


_KILLED_PUSH = """
import os, signal, sys
import modelkeep as mk
from modelkeep import sync
sync.REMOTE_PACK_TARGET = 128 * 1024
sync.TRANSFERS = 1

class Die:
    seen = 0
    def start(self, total, label): pass
    def advance(self, n):
        Die.seen += 1
        if Die.seen == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    def finish(self): pass

repo = mk.open(sys.argv[1])
repo.push(progress=Die())
"""


def test_a_killed_push_to_a_folder_leaves_only_complete_packs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "remote")
    a, b = make_pair(tmp_path, monkeypatch, url)
    monkeypatch.setattr(store_add, "PACK_TARGET", 128 * 1024)
    src = many_files(tmp_path / "w", 12, 31)
    a.add(src, "w", track=False)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_PUSH, str(a.root)], capture_output=True, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    packs = Path(url) / "packs"
    names = {p.stem for p in packs.iterdir()}
    for idx in packs.glob("*.idx"):  # every visible index promises a complete pack
        entries = decode_index(idx.read_bytes())
        assert idx.with_suffix(".pack").stat().st_size >= max(e.offset + e.length for e in entries)
    assert len(list(packs.glob("*.idx"))) >= 2 and names
    assert a.pushed_to("w:v1") == ()
    assert a.push().versions == ("w:v1",)
    same_tree(src, b.get("w:v1", tmp_path / "out"))
    a.close()
    b.close()


def test_a_damaged_local_pack_is_never_pushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Push verifies every object of a local pack before it uploads that pack (several packs
    at once): a flipped byte stops the push, no published pack holds the damaged object,
    and the version is not recorded as pushed."""
    url = str(tmp_path / "remote")
    a, _ = make_pair(tmp_path, monkeypatch, url)
    monkeypatch.setattr(store_add, "PACK_TARGET", 128 * 1024)
    a.add(many_files(tmp_path / "w", 12, 41), "w", track=False)
    packs = sorted((tmp_path / "a" / ".modelkeep").rglob("packs/*.pack"))
    assert len(packs) >= 12
    victim = packs[len(packs) // 2]
    entries = decode_index(victim.with_suffix(".idx").read_bytes())
    chunk = max(entries, key=lambda e: e.length)
    victim.chmod(0o644)
    with victim.open("r+b") as f:
        f.seek(chunk.offset + chunk.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(CorruptObject, match=chunk.key.hex()):
        a.push()
    published = [e.key for entries in remote_packs(url).values() for e in entries]
    assert chunk.key not in published and victim.stem not in remote_packs(url)
    assert a.pushed_to("w:v1") == ()
    a.close()


def test_wrong_credentials_and_no_permission_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, s3_bucket: str
) -> None:
    a, _ = make_pair(tmp_path, monkeypatch, f"s3://{s3_bucket}")
    a.add(write(tmp_path / "w.bin", rand(MiB, 1)), "w", track=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(RemoteAccessDenied, match=r"access denied .*check the credentials"):
        a.push()
    for key, value in s3_server.env(s3_server.denied).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RemoteAccessDenied, match="Access Denied"):
        a.push()
    assert a.pushed_to("w:v1") == ()
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    assert a.push().versions == ("w:v1",)  # nothing was left half-done
    a.close()


def test_no_credentials_at_all_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_bucket: str
) -> None:
    a, _ = make_pair(tmp_path, monkeypatch, f"s3://{s3_bucket}")
    a.add(write(tmp_path / "w.bin", b"w" * 1000), "w", track=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(RemoteAccessDenied, match="check the credentials"):
        a.push()
    a.close()


def test_a_bucket_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_bucket: str
) -> None:
    a, b = make_pair(tmp_path, monkeypatch, "s3://mk-no-such-bucket-here/x")
    a.add(write(tmp_path / "w.bin", b"w" * 1000), "w", track=False)
    with pytest.raises(RemoteMissing, match="bucket 'mk-no-such-bucket-here' does not exist"):
        a.push()
    with pytest.raises(RemoteMissing, match="modelkeep never creates buckets"):
        b.pull(["w:v1"])
    assert a.pushed_to("w:v1") == ()
    a.close()
    b.close()


def test_an_unreachable_endpoint_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_bucket: str
) -> None:
    a, _ = make_pair(tmp_path, monkeypatch, f"s3://{s3_bucket}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    a.add(write(tmp_path / "w.bin", b"w" * 1000), "w", track=False)
    with pytest.raises(RemoteUnavailable, match="cannot be reached"):
        a.push()
    a.close()


# -- team mode ----------------------------------------------------------------------


def test_team_mode_postgres_and_s3_end_to_end(
    tmp_path: Path, fresh_postgres_url: str, s3_bucket: str
) -> None:
    """Two machines through the real CLI: one PostgreSQL, one S3 bucket, two stores."""
    url = f"s3://{s3_bucket}/team"
    alice = {"MODELKEEP_DATABASE_URL": fresh_postgres_url, "MODELKEEP_HOST": "laptop-a"}
    bob = {"MODELKEEP_DATABASE_URL": fresh_postgres_url, "MODELKEEP_HOST": "laptop-b"}
    alice["MODELKEEP_USER"], bob["MODELKEEP_USER"] = "alice", "bob"
    machines = {"a": (tmp_path / "a", alice), "b": (tmp_path / "b", bob)}

    def run(who: str, *args: str, fails: bool = False) -> subprocess.CompletedProcess[str]:
        folder, env = machines[who]
        r = cli(*args, cwd=folder, env=env)
        assert (r.returncode == 1) if fails else (r.returncode == 0), r.stderr
        return r

    for who, (folder, _) in machines.items():
        folder.mkdir()
        run(who, "init")
        run(who, "remote", "add", "origin", url, "--default")
    weights = rand(3 * MiB, 41)
    write(machines["a"][0] / "model.bin", weights)
    run("a", "add", "model.bin", "--name", "fraud", "--type", "model")
    assert "pushed 1 version(s)" in run("a", "push").stdout
    listed = run("b", "ls", "--json").stdout
    assert '"name": "fraud"' in listed
    run("b", "get", "fraud:v1", "-o", "got.bin")
    assert (machines["b"][0] / "got.bin").read_bytes() == weights
    shown = run("b", "show", "fraud:v1").stdout
    assert "laptop-a" in shown and url in shown
    write(machines["b"][0] / "mine.bin", rand(MiB, 42))
    run("b", "add", "mine.bin", "--name", "experiment")
    failed = run("a", "get", "experiment:v1", "-o", "x.bin", fails=True)
    assert re.search(
        r"added by bob in store [0-9a-f]{12} on host laptop-b, not pushed", failed.stderr
    )
    assert "run `modelkeep push experiment:v1` there" in failed.stderr
    assert failed.stderr.count("\n") == 1
    assert not (machines["a"][0] / "x.bin").exists()
    run("b", "push", "experiment:v1")
    run("a", "get", "experiment:v1", "-o", "x.bin")
    assert (machines["a"][0] / "x.bin").read_bytes() == rand(MiB, 42)


def test_a_version_pushed_to_another_remote_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_pair(tmp_path, monkeypatch, str(tmp_path / "one"))
    a.add(write(tmp_path / "w.bin", rand(MiB, 3)), "w", track=False)
    pushed = a.push()
    a.add(write(tmp_path / "u.bin", rand(MiB, 4)), "u", track=False)
    b.remove_remote("origin")
    with pytest.raises(PushedElsewhere, match="add that remote"):
        b.get("w:v1", tmp_path / "o")
    with pytest.raises(
        NotPushed, match=r"by tester in store \w+ on host host-a, not pushed.*no def"
    ):
        b.get("u:v1", tmp_path / "o")
    b.add_remote("other", str(tmp_path / "two"), default=True)
    with pytest.raises(PushedElsewhere, match=pushed.remote):
        b.get("w:v1", tmp_path / "o")
    a.close()
    b.close()


# -- URLs, configuration and the CLI ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("s3://bucket/a/b/", "s3://bucket/a/b"),
        ("S3://bucket", "s3://bucket"),
        ("gs://my_bucket/x", "gs://my_bucket/x"),
        ("gcs://bucket/x", "gs://bucket/x"),
        ("az://container/models", "az://container/models"),
        ("file:///srv/models/", "file:///srv/models"),
        ("/srv/models/../shared", "file:///srv/shared"),
    ],
)
def test_urls_have_one_canonical_form(url: str, canonical: str) -> None:
    assert parse_url(url).url == canonical


@pytest.mark.parametrize(
    ("url", "error", "words"),
    [
        ("", InvalidRemoteUrl, "empty"),
        ("s3://", InvalidRemoteUrl, "no bucket"),
        ("s3:/bucket/x", InvalidRemoteUrl, "'s3://'"),
        ("s3://Bad_Bucket!/x", InvalidRemoteUrl, "not a valid bucket"),
        ("s3://bucket/a//b", InvalidRemoteUrl, "empty"),
        ("s3://bucket/a/../b", InvalidRemoteUrl, "'..'"),
        ("s3://bucket/x?versionId=3", InvalidRemoteUrl, "query"),
        ("file://relative/path", InvalidRemoteUrl, "absolute path"),
        ("ftp://host/path", UnsupportedScheme, "unsupported scheme 'ftp'"),
        ("hdfs://nn/path", UnsupportedScheme, "s3://"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words if "?" not in words else None) as info:
        parse_url(url)
    assert words in str(info.value)


def test_options_are_checked_per_scheme() -> None:
    with pytest.raises(InvalidArgument, match=r"no option 'colour'.*endpoint_url, region"):
        parse_url("s3://bucket", {"colour": "red"})
    with pytest.raises(InvalidArgument, match="file:// remotes take no option"):
        parse_url("/tmp/x", {"region": "eu"})
    with pytest.raises(InvalidRemoteUrl, match="endpoint_url"):
        parse_url("s3://bucket", {"endpoint_url": "localhost:9000"})
    spec = parse_url("s3://bucket", {"endpoint_url": "http://127.0.0.1:9000", "region": "eu"})
    assert dict(spec.options) == {"endpoint_url": "http://127.0.0.1:9000", "region": "eu"}


@pytest.mark.parametrize(
    ("scheme", "module", "extra"), [("gs", "gcsfs", "gcs"), ("az", "adlfs", "azure")]
)
def test_a_scheme_without_its_package_names_the_extra(
    repo: mk.Repo, scheme: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: imports fail
    assert importlib.util.find_spec(module) is None
    with pytest.raises(UnsupportedScheme, match=rf"pip install 'modelkeep\[{extra}\]'"):
        repo.add_remote("cloud", f"{scheme}://bucket/models")
    assert repo.remotes() == []


def test_remote_configuration_round_trip(repo: mk.Repo, tmp_path: Path) -> None:
    repo.add_remote("one", str(tmp_path / "r1"))
    repo.add_remote(
        "two", "s3://bucket/p", default=True, options={"endpoint_url": "http://127.0.0.1:1"}
    )
    repo.add_remote("three", str(tmp_path / "r3"), default=True)  # takes over the default
    with pytest.raises(RemoteExists):
        repo.add_remote("one", str(tmp_path / "elsewhere"))
    with pytest.raises(InvalidArgument, match="invalid remote name"):
        repo.add_remote("no spaces", str(tmp_path / "r"))
    with mk.open(repo.root) as again:
        got = {r.name: r for r in again.remotes()}
        assert [r.name for r in again.remotes()] == ["one", "two", "three"]
        assert got["two"].options == (("endpoint_url", "http://127.0.0.1:1"),)
        assert [r.name for r in again.remotes() if r.default] == ["three"]
        again.remove_remote("three")
        assert again.settings.default_remote is None
        with pytest.raises(RemoteNotFound, match="see `modelkeep remote list`"):
            again.remove_remote("three")
        with pytest.raises(RemoteNotFound, match="no default remote"):
            again.push()


def _one_error_line(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("modelkeep: error: ") and r.stderr.count("\n") == 1, r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


def test_cli_remotes_push_pull_and_prune(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    ok("init", str(proj), cwd=tmp_path)
    write(proj / "w.bin", rand(2 * MiB, 51))
    ok("add", "w.bin", "--name", "w", cwd=proj)
    assert "no remotes" in ok("remote", "list", cwd=proj).stdout
    _one_error_line(cli("push", cwd=proj), "no default remote is configured")
    added = jcli("remote", "add", "origin", str(tmp_path / "remote"), "--default", cwd=proj)
    assert added == {
        "name": "origin",
        "url": f"file://{tmp_path / 'remote'}",
        "options": {},
        "default": True,
        "scope": "local",
    }
    assert jcli("remote", "list", cwd=proj)["remotes"] == [added]
    pushed = jcli("push", cwd=proj)
    assert pushed["versions"] == ["w:v1"] and pushed["bytes"] > 2 * MiB
    assert "nothing to push" in ok("push", cwd=proj).stdout
    _one_error_line(cli("push", "--remote", "nope", cwd=proj), "no remote named 'nope'")
    _one_error_line(cli("cache", "prune", "--max-size", "lots", cwd=proj), "cannot read size")
    pruned = jcli("cache", "prune", "--max-size", "0", cwd=proj)
    assert pruned["size_after"] < 64 * 1024 and pruned["chunks_dropped"] > 0
    assert jcli("pull", "w:v1", cwd=proj)["objects"] > 0
    assert cli("pull", cwd=proj).returncode == 2  # a REF is required: usage error
    ok("get", "w:v1", "-o", "out.bin", cwd=proj)
    assert (proj / "out.bin").read_bytes() == rand(2 * MiB, 51)
    assert "removed remote origin" in ok("remote", "remove", "origin", cwd=proj).stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("remote", "add", "x", "ftp://host/p"), ("unsupported scheme 'ftp'",)),
        (("remote", "add", "x", "s3://"), ("no bucket",)),
        (("remote", "add", "x", "s3:/bucket"), ("'s3://'",)),
        (("remote", "add", "x", "s3://b_b!"), ("not a valid bucket",)),
        (("remote", "add", "x", "s3://bucket", "--option", "colour=red"), ("no option",)),
        (("remote", "add", "x", "s3://bucket", "--option", "oops"), ("KEY=VALUE",)),
        (("remote", "remove", "ghost"), ("no remote named 'ghost'",)),
        (("pull", "w:v1", "--remote", "ghost"), ("no remote named 'ghost'",)),
    ],
)
def test_cli_bad_remote_input(
    tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    ok("init", str(tmp_path / "p"), cwd=tmp_path)
    write(tmp_path / "p" / "w.bin", b"w")
    ok("add", "w.bin", "--name", "w", cwd=tmp_path / "p")
    _one_error_line(cli(*args, cwd=tmp_path / "p"), *words)
    assert not (tmp_path / "p" / ".modelkeep" / "remotes.toml").exists()


def test_cli_s3_wrong_credentials_exit_1(tmp_path: Path, s3_bucket: str) -> None:
    ok("init", str(tmp_path / "p"), cwd=tmp_path)
    proj = tmp_path / "p"
    write(proj / "w.bin", b"w" * 5000)
    ok("add", "w.bin", "--name", "w", cwd=proj)
    ok("remote", "add", "origin", f"s3://{s3_bucket}/x", "--default", cwd=proj)
    r = cli("push", cwd=proj, env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    _one_error_line(r, "access denied", "check the credentials")
    assert jcli("push", cwd=proj)["versions"] == ["w:v1"]


# -- metadata -------------------------------------------------------------------------


def test_a_0003_database_is_upgraded_and_keeps_its_versions(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    from modelkeep.meta.db import HEAD

    old = backend_repo.add(write(tmp_path / "a.bin", b"before"), "m", track=False).version
    assert old.host is not None
    downgrade(backend_repo.settings.database_url, "0003")
    backend_repo.close()
    with mk.open(backend_repo.root) as upgraded:
        assert upgraded.db.current_revision() == HEAD == "0012"
        again = upgraded.show("m:v1")
        assert (again.digest, again.host) == (old.digest, None)  # unknown before 0004
        upgraded.add_remote("origin", str(tmp_path / "remote"), default=True)
        assert upgraded.push().versions == ("m:v1",)
        assert upgraded.pushed_to("m:v1") == (f"file://{tmp_path / 'remote'}",)
        new = upgraded.add(write(tmp_path / "b.bin", b"after"), "m", track=False).version
        assert new.host == upgraded.settings.host
