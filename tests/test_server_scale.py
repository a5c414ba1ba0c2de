"""`modelkeep serve` scaled out and under load, with real components only.

Two replicas are two repository folders ("machines") initialised against one PostgreSQL
database and one S3 bucket (the moto server the suite starts) as their default remote, each
served by its own `modelkeep serve` process on its own port; the accounts live in the shared
database. An upload is verified and kept by the replica that received it and published to
the bucket before it is acknowledged; the other replica reads what it lacks from the bucket.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import modelkeep as mk
from modelkeep.client import ServerRepo
from modelkeep.errors import ModelkeepError
from modelkeep.meta import Version
from tests.conftest import write
from tests.mkserve import Served, start, with_accounts
from tests.s3 import S3Server

# No rate limit (--rate-limit 0): these tests count every status, and 429 is not their subject.
SERVE_ARGS = ("--rate-limit", "0")
# Production takes versions from staging only: a direct promotion is a policy refusal (409).
POLICY = """\
[policy.default.production]
require_stage = "staging"
"""


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _statuses(served: Served) -> Counter[int]:
    """The status of every request the server logged (`METHOD PATH STATUS WHO TIME`)."""
    found = re.findall(r"modelkeep\.server \S+ /\S* (\d{3}) ", served.log.read_text())
    return Counter(int(s) for s in found)


@pytest.fixture
def client_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test process's client caches (ServerRepo keeps one per server URL)."""
    cache = tmp_path / "client-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "client-config"))
    return cache


def _machine(root: Path, bucket: str, endpoint: str) -> None:
    """A serving machine's repository, made with the library (quicker than the CLI): the
    shared database comes from MODELKEEP_DATABASE_URL, the bucket is its default remote."""
    with mk.init(root) as repo:
        repo.add_remote(
            "bucket", f"s3://{bucket}/models", default=True, options={"endpoint_url": endpoint}
        )
    (root / "modelkeep.toml").write_text(POLICY)


def _accounts(url: str, roles: dict[str, str]) -> dict[str, str]:
    """Users with a global role each, and a token for each, in the database at url."""
    from modelkeep.meta import Database, accounts

    db = Database(url)
    try:
        tokens = {}
        for user, role in roles.items():
            accounts.add_user(db, user)
            accounts.grant(db, user, role)
            tokens[user] = accounts.create_token(db, user)[0]
        return tokens
    finally:
        db.close()


@pytest.fixture
def replicas(
    tmp_path: Path,
    fresh_postgres_url: str,
    s3_server: S3Server,
    s3_bucket: str,
    client_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Served, Served]]:
    """Two serving machines on one database and one bucket; alice and bob are maintainers."""
    env = {"MODELKEEP_DATABASE_URL": fresh_postgres_url}
    served: list[Served] = []
    try:
        with monkeypatch.context() as m:
            m.setenv("MODELKEEP_DATABASE_URL", fresh_postgres_url)
            for machine in ("a", "b"):
                root = tmp_path / f"machine-{machine}"
                _machine(root, s3_bucket, s3_server.endpoint)
                served.append(start(root, args=SERVE_ARGS, env=env))
        tokens = _accounts(fresh_postgres_url, {"alice": "maintainer", "bob": "maintainer"})
        for s in served:  # one set of accounts: they live in the shared database
            s.tokens.update(tokens)
        yield served[0], served[1]
    finally:
        for s in served:
            s.stop()


@pytest.fixture
def single(tmp_path: Path, client_cache: Path) -> Iterator[Served]:
    """One server on the embedded store (SQLite, no remote); alice is an editor."""
    served = start(tmp_path / "server", args=SERVE_ARGS)
    try:
        yield with_accounts(served, {"alice": "editor"})
    finally:
        served.stop()


# -- 1. two replicas, one database, one bucket ------------------------------------------------


@pytest.mark.slow
def test_a_version_added_through_one_replica_is_read_through_the_other(
    replicas: tuple[Served, Served], s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    a, b = replicas
    data = _data(1, 4 * 1024 * 1024 + 12345)
    src = write(tmp_path / "work" / "weights.bin", data)
    with (
        mk.open(a.url, token=a.tokens["alice"]) as via_a,
        mk.open(b.url, token=b.tokens["bob"]) as via_b,
    ):
        added = via_a.add(src, "fraud-weights", type="model", message="first")
        assert (added.version.ref, added.created) == ("fraud-weights:v1", True)

        shown = via_b.show("fraud-weights:v1")
        assert (shown.digest, shown.size, shown.user) == (added.version.digest, len(data), "alice")
        assert [v.ref for v in via_b.versions("fraud-weights")] == ["fraud-weights:v1"]
        assert [x.name for x in via_b.artifacts()] == ["fraud-weights"]
        # B's store never received the bytes, but A published them to the bucket before it
        # acknowledged the upload: B does not ask for them again.
        root = added.version.digest.removeprefix("b3:")
        listed = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="models/")
        assert listed.get("KeyCount", 0) > 0
        with b.http("bob") as http:
            lacks = http.post("/api/v1/objects/missing", json={"keys": [root]}).json()
            assert lacks["missing"] == []
        copy = via_b.add(src, "fraud-copy")  # the same bytes, through B: nothing is sent
        assert copy.stored_bytes == 0 and copy.version.digest == added.version.digest
        again = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="models/")
        assert again.get("KeyCount") == listed.get("KeyCount")
        # So B reads them from the bucket, each object verified, and keeps them.
        restored = via_b.restore("fraud-weights:v1", tmp_path / "restored.bin")
        assert restored.read_bytes() == data
        with via_b.open("fraud-weights:v1") as f:
            assert f.read() == data
        with b.http("bob") as http:
            assert http.post("/api/v1/objects/missing", json={"keys": [root]}).json() == {
                "missing": []
            }

        # Registry changes through B are A's too.
        registered = via_b.register("fraud-weights:v1", "fraud", reason="candidate")
        via_b.promote(registered.ref, "staging", reason="try it")
        via_b.set_alias("fraud@champion", registered.ref, reason="best so far")
        assert via_a.show("fraud@staging").ref == "fraud:v1"
        assert via_a.show("fraud@champion").ref == "fraud:v1"
        moved = via_a.promote("fraud:v1", "production", reason="ship it")
        assert moved.version.stage == "production"
        assert via_b.show("fraud@production").ref == "fraud:v1"
        assert [e.action for e in via_a.history("fraud")][-1] == "promote"

        # And the other way round: a version added through B is restored through A.
        more = _data(2, 1024 * 1024)
        added_b = via_b.add(write(tmp_path / "work" / "more.bin", more), "fraud-weights")
        assert added_b.version.ref == "fraud-weights:v2"
        assert via_a.restore("fraud-weights:v2", tmp_path / "more.bin").read_bytes() == more
        # B has read from the bucket before: a pack A publishes later is found there too.
        third = _data(3, 1024 * 1024)
        added_a = via_a.add(write(tmp_path / "work" / "third.bin", third), "fraud-weights")
        assert via_b.restore(added_a.version.ref, tmp_path / "third.bin").read_bytes() == third
        assert via_a.verify_audit().ok

    for s in (a, b):
        assert not [c for c in _statuses(s) if c >= 500], s.log.read_text()


# -- 2. fifty clients at once, over both replicas ----------------------------------------------

CLIENTS = 50


@dataclass
class Outcome:
    """What one client did and was told."""

    weights: Version | None = None  # its version of fraud-weights
    fraud: Version | None = None  # that version registered as the next fraud
    promoted: bool = False
    refused: list[str] = field(default_factory=list)
    production: str | None = None  # what fraud@production named at the end of its turn


def _client(i: int, repo: ServerRepo, src: Path, go: threading.Barrier, out: Outcome) -> None:
    """One client: add a version of fraud-weights, register it as the next fraud, point an
    alias at it, promote it (a fifth of them straight to production, which the policy
    refuses), and resolve fraud@production."""
    go.wait()
    out.weights = repo.add(src, "fraud-weights", type="model", message=f"client {i}").version
    out.fraud = repo.register(out.weights.ref, "fraud", reason=f"client {i}")
    repo.set_alias(f"fraud@team{i % 5}", out.fraud.ref, reason=f"client {i}")
    try:
        if i % 5:
            repo.promote(out.fraud.ref, "staging", reason="try it")
        repo.promote(out.fraud.ref, "production", reason="ship it")
        out.promoted = True
    except ModelkeepError as exc:  # the policy, or a concurrent promotion: a 409
        out.refused.append(f"{type(exc).__name__}: {exc}")
    try:
        out.production = repo.show("fraud@production").ref
    except LookupError:  # nothing in production yet: a 404
        out.production = None


@pytest.mark.slow
def test_fifty_clients_add_promote_and_resolve_at_once(
    replicas: tuple[Served, Served], tmp_path: Path
) -> None:
    a, b = replicas
    statuses: list[int] = []
    users = ("alice", "bob")

    def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    # Each client its own ServerRepo (its own connection), made here: the first one of a
    # URL makes that URL's cache, which concurrent first opens would race to create.
    repos: list[ServerRepo] = []
    for i in range(CLIENTS):
        served = (a, b)[i % 2]
        repo = mk.open(served.url, token=served.tokens[users[(i // 2) % 2]])
        assert isinstance(repo, ServerRepo)
        repo.conn.http.event_hooks = {"response": [record]}
        repos.append(repo)
    sources = [
        write(tmp_path / "work" / f"model-{i}.bin", _data(100 + i, 200_000 + i))
        for i in range(CLIENTS)
    ]
    go = threading.Barrier(CLIENTS)
    out = [Outcome() for _ in range(CLIENTS)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            _client(i, repos[i], sources[i], go, out[i])
        except BaseException as exc:
            errors.append(exc)
            go.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    finally:
        for repo in repos:
            repo.close()
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
    assert all(not t.is_alive() for t in threads)

    with a.http("alice") as http_a, b.http("bob") as http_b:
        for http in (http_a, http_b):
            http.event_hooks = {"response": [record]}
        weights = http_a.get("/api/v1/artifacts/fraud-weights/versions").json()
        fraud = http_b.get("/api/v1/artifacts/fraud/versions").json()
        # Version numbers 1..N with no gap and no repeat, on both names.
        assert sorted(v["number"] for v in weights) == list(range(1, CLIENTS + 1))
        assert sorted(v["number"] for v in fraud) == list(range(1, CLIENTS + 1))
        # Each upload is one version, with its own content.
        expected = {o.weights.digest for o in out if o.weights is not None}
        assert {v["digest"] for v in weights} == expected
        # Exactly one production version, and both replicas resolve fraud@production to it.
        production = [v["number"] for v in fraud if v["stage"] == "production"]
        assert len(production) == 1, production
        for http in (http_a, http_b):
            resolved = http.get("/api/v1/versions/fraud@production").json()
            assert (resolved["name"], resolved["number"]) == ("fraud", production[0])
        # A fifth went straight to production: the policy refused every one of them.
        for o in out[::5]:
            assert not o.promoted and len(o.refused) == 1, o
            assert "from staging only" in o.refused[0], o
        assert any(o.promoted for o in out)
        resolved_by = [o.production for o in out if o.production is not None]
        assert resolved_by and all(r.startswith("fraud:v") for r in resolved_by), out
        # Each alias names a version one of the clients that set it registered.
        for team in range(5):
            got = http_a.get(f"/api/v1/versions/fraud@team{team}").json()["number"]
            setters = {o.fraud.number for o in out[team::5] if o.fraud is not None}
            assert got in setters, (team, got, setters)
        # The audit chain written by both replicas at once is intact.
        for http in (http_a, http_b):
            verified = http.get("/api/v1/audit/verify")
            assert verified.status_code == 200
            assert verified.json()["problems"] == [], verified.json()
            assert verified.json()["events"] > 3 * CLIENTS
    # No 5xx anywhere: not in what the clients received, not in what the servers logged.
    assert statuses and not [s for s in statuses if s >= 500], Counter(statuses)
    assert Counter(statuses)[409] >= CLIENTS // 5  # the refusals reached the clients as 409
    for s in (a, b):
        logged = _statuses(s)
        assert sum(logged.values()) > CLIENTS and not [c for c in logged if c >= 500], logged


# -- 3. a client killed in the middle of an upload ----------------------------------------------

ADD = """
import json, sys
import modelkeep as mk
url, path = sys.argv[1], sys.argv[2]
with mk.open(url) as repo:
    r = repo.add(path, "big", message="weights")
print(json.dumps({"ref": r.version.ref, "sent": r.stored_bytes}))
"""
# A client that dies half-way through sending a pack: the request line, headers, half the body.
HANG_UP = """
import socket, sys, time
port, token, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(
    f"POST /api/v1/objects HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nAuthorization: Bearer {token}"
    f"\\r\\nContent-Type: application/octet-stream\\r\\nContent-Length: {size}\\r\\n\\r\\n".encode()
)
s.sendall(bytes(size // 2))
print("half", flush=True)
time.sleep(600)
"""
BIG = 200 * 1024 * 1024
UPLOADED = re.compile(r"POST /api/v1/objects 200 ")


def _pack_bytes(served: Served) -> int:
    """Bytes of the packs the server kept: those in a store's packs/ folder. A pack still
    being received (or abandoned by a killed client) lies in tmp/ until it is kept or
    removed, and is not counted."""
    return sum(
        p.stat().st_size
        for p in (served.root / ".modelkeep").rglob("*.pack")
        if p.parent.name == "packs"
    )


def _add_process(served: Served, src: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", ADD, served.url, str(src)],
        env=served.client_env(served.tokens["alice"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_client_killed_mid_upload_leaves_no_version_and_the_retry_sends_the_rest(
    single: Served, tmp_path: Path
) -> None:
    src = tmp_path / "work" / "big.bin"
    src.parent.mkdir()
    with src.open("wb") as f:  # incompressible, so what crosses the wire is the file's size
        for _ in range(BIG // (8 * 1024 * 1024)):
            f.write(random.randbytes(8 * 1024 * 1024))
    before = _pack_bytes(single)

    # Killed while the server reads its body: the server keeps nothing, and it is not a 5xx.
    port, token = str(single.port), single.tokens["alice"]
    hang_up = subprocess.Popen(
        [sys.executable, "-c", HANG_UP, port, token, str(32 * 1024 * 1024)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert hang_up.stdout is not None and hang_up.stdout.readline() == "half\n"
    hang_up.kill()
    hang_up.communicate()
    deadline = time.monotonic() + 60
    while not re.search(r"POST /api/v1/objects \d{3} alice", single.log.read_text()):
        assert time.monotonic() < deadline, single.log.read_text()
        time.sleep(0.01)
    assert _statuses(single)[499] == 1, single.log.read_text()
    assert _pack_bytes(single) == before

    # Killed between two packs of a real upload: the server kept the packs it acknowledged.
    proc = _add_process(single, src)
    deadline = time.monotonic() + 300
    while not UPLOADED.search(single.log.read_text()):  # the server has kept a first pack
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no upload reached the server"
        time.sleep(0.005)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -9
    first = len(UPLOADED.findall(single.log.read_text()))
    received = _pack_bytes(single) - before
    assert 0 < received < BIG

    with single.http("alice") as http:
        assert http.get("/api/v1/artifacts/big/versions").status_code == 404
        assert [a["name"] for a in http.get("/api/v1/artifacts").json()] == []

    proc = _add_process(single, src)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    done = json.loads(stdout)
    assert done["ref"] == "big:v1"
    # Only what the server still lacked went up: nothing it kept from the first try again.
    assert done["sent"] + received == _pack_bytes(single) - before
    assert 0 < done["sent"] < BIG - received + 1024 * 1024
    second = len(UPLOADED.findall(single.log.read_text())) - first
    assert second >= 1
    with single.http("alice") as http:
        shown = http.get("/api/v1/versions/big:v1").json()
        assert (shown["size"], shown["user"]) == (BIG, "alice")
    with mk.open(single.url, token=single.tokens["alice"]) as repo:
        restored = repo.restore("big:v1", tmp_path / "restored.bin")
    assert restored.stat().st_size == BIG
    assert _same_file(restored, src)
    statuses = _statuses(single)
    assert not [c for c in statuses if c >= 500], single.log.read_text()


def _same_file(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 22), fb.read(1 << 22)
            if x != y:
                return False
            if not x:
                return True


# -- 4. a corrupt upload, and a commit of objects the server lacks ------------------------------


def _upload_body(items: list[tuple[bytes, bytes]]) -> bytes:
    """An upload as the client builds it: 8 bytes of big-endian index length, a pack index
    in the store's format, then the pack: (key, bytes) items as raw chunks."""
    from modelkeep.store.packs import CODEC_RAW, KIND_CHUNK, PackEntry, encode_index

    entries, offset = [], 0
    for key, data in items:
        entries.append(PackEntry(key, KIND_CHUNK, CODEC_RAW, offset, len(data), len(data)))
        offset += len(data)
    index = encode_index(entries)
    return len(index).to_bytes(8, "big") + index + b"".join(data for _, data in items)


def test_a_corrupt_upload_keeps_nothing_and_a_commit_needs_every_object(
    single: Served, tmp_path: Path
) -> None:
    from modelkeep.store.chunking import digest

    chunks = [_data(seed, 5000 + seed) for seed in (7, 8, 9)]
    keys = [digest(c) for c in chunks]
    hexes = sorted(k.hex() for k in keys)
    forged = bytearray(chunks[1])
    forged[100] ^= 0x01  # one bit: the middle object's bytes no longer hash to its key
    octets = {"Content-Type": "application/octet-stream"}
    before = _pack_bytes(single)
    with single.http("alice") as http:
        r = http.post(
            "/api/v1/objects",
            content=_upload_body(
                [(keys[0], chunks[0]), (keys[1], bytes(forged)), (keys[2], chunks[2])]
            ),
            headers=octets,
        )
        assert r.status_code == 422, r.text
        assert keys[1].hex() in r.json()["message"] and "does not match" in r.json()["message"]
        # One bad object refuses the lot: not even the two good ones were kept.
        missing = http.post("/api/v1/objects/missing", json={"keys": hexes})
        assert (missing.status_code, sorted(missing.json()["missing"])) == (200, hexes)
        assert _pack_bytes(single) == before

        # A version of content the server never received: 409, naming what it lacks.
        r = http.post(
            "/api/v1/versions", json={"name": "chunk", "digest": keys[0].hex(), "kind": "file"}
        )
        assert r.status_code == 409, r.text
        assert (r.json()["error"], r.json()["missing"]) == ("missing_objects", [keys[0].hex()])

        # The same upload with honest bytes is kept, and then the commit succeeds.
        honest = _upload_body(list(zip(keys, chunks, strict=True)))
        r = http.post("/api/v1/objects", content=honest, headers=octets)
        assert (r.status_code, r.json()["objects"]) == (200, 3), r.text
        assert http.post("/api/v1/objects/missing", json={"keys": hexes}).json()["missing"] == []
        r = http.post(
            "/api/v1/versions", json={"name": "chunk", "digest": keys[0].hex(), "kind": "file"}
        )
        assert r.status_code == 200, r.text
        assert http.get("/api/v1/versions/chunk:v1").json()["size"] == len(chunks[0])

    # A file of many chunks whose manifest went up but whose chunks did not: 409 naming them.
    from modelkeep.store.add import put

    src = write(tmp_path / "work" / "weights.bin", _data(10, 2 * 1024 * 1024))
    with mk.open(single.url, token=single.tokens["alice"]) as client:
        assert isinstance(client, ServerRepo)
        with client.store.writing():
            root = put(client.store, src).root
        needed = list(dict.fromkeys(client.store.closure(root)))
        assert len(needed) > 4
        client.upload([root.id])  # the manifest only
        with single.http("alice") as http:
            commit = {"name": "weights", "digest": root.id.hex(), "kind": "file"}
            r = http.post("/api/v1/versions", json=commit)
            assert r.status_code == 409, r.text
            assert sorted(r.json()["missing"]) == sorted(k.hex() for k in needed[1:])
            assert http.get("/api/v1/artifacts/weights/versions").status_code == 404
            client.upload(needed)
            assert http.post("/api/v1/versions", json=commit).status_code == 200
        assert client.restore("weights:v1", tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert not [c for c in _statuses(single) if c >= 500], single.log.read_text()
