"""Webhooks: an outbox written with each change, sent by real `modelkeep` processes to a
real HTTP receiver that checks signatures; a dispatcher killed mid-delivery loses
nothing, and a delivery is only ever repeated under its own id."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import modelkeep as mk
from modelkeep.meta import webhooks as outbox
from modelkeep.meta.chain import Write, append, clock
from modelkeep.meta.models import DeliveryRow
from modelkeep.webhooks import sign, verify_signature
from tests.conftest import MODELKEEP, cli, jcli, ok, one_error_line, write

SECRET = "s3cret-for-tests"


# -- a receiver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Got:
    path: str
    delivery: str
    event: str
    signed: bool  # a signature header came
    verified: bool  # ... and verify_signature accepted it
    doc: dict[str, Any]


class Receiver:
    """An HTTP server on 127.0.0.1 in a thread: records every POST, answers `status`, and
    with `hold` set keeps its first request waiting until `release` is set."""

    def __init__(self, port: int = 0, *, hold: bool = False) -> None:
        self.got: list[Got] = []
        self.status = 200
        self.hold = hold
        self.holding = threading.Event()  # the first request arrived and is being held
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                header = self.headers.get("X-Modelkeep-Signature")
                timestamp = self.headers.get("X-Modelkeep-Timestamp", "")
                got = Got(
                    self.path,
                    self.headers.get("X-Modelkeep-Delivery", ""),
                    self.headers.get("X-Modelkeep-Event", ""),
                    header is not None,
                    verify_signature(SECRET, timestamp, body, header),
                    json.loads(body),
                )
                with receiver._lock:
                    receiver.got.append(got)
                    first = len(receiver.got) == 1
                if receiver.hold and first:
                    receiver.holding.set()
                    receiver.release.wait(60)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the dispatcher died while this one was held
                    pass

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def seen(self) -> list[Got]:
        with self._lock:
            return list(self.got)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default SQLite file, or a fresh PostgreSQL database's URL."""
    if request.param == "postgresql":
        yield str(request.getfixturevalue("fresh_postgres_url"))
    else:
        yield None


def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None = None
) -> Path:
    """A repository made by `modelkeep init`; the CLI processes inherit the database URL."""
    if database_url:
        monkeypatch.setenv("MODELKEEP_DATABASE_URL", database_url)
    root = tmp_path / "proj"
    ok("init", str(root), cwd=tmp_path)
    return root


def add_hook(root: Path, url: str, events: str, *more: str) -> int:
    return int(jcli("webhook", "add", url, "--events", events, *more, cwd=root)["id"])


def listed(root: Path, *args: str) -> list[dict[str, Any]]:
    """Deliveries, oldest first."""
    docs: list[dict[str, Any]] = jcli("webhook", "deliveries", *args, cwd=root)["deliveries"]
    return docs[::-1]


def deliver(root: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = cli("webhook", "deliver", "--json", *args, cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def wait_for(what: str, done: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- what is enqueued, and sent ------------------------------------------------------------------


def test_changes_enqueue_for_matching_webhooks_and_are_delivered_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None, receiver: Receiver
) -> None:
    root = project(tmp_path, monkeypatch, database_url)
    every = add_hook(root, receiver.url("/all"), "*", "--secret-env", "HOOK_SECRET")
    stages = add_hook(root, receiver.url("/stages"), "stage.changed", "--model", "fraud")
    others = add_hook(root, receiver.url("/others"), "version.created,alias.moved",
                      "--model", "other*")  # fmt: skip
    write(root / "w1.bin", b"weights one\n" * 100)
    write(root / "w2.bin", b"weights two\n" * 100)
    write(root / "o.csv", b"a,b\n1,2\n")
    steps = [
        ("add", "w1.bin", "--name", "fraud", "--type", "model"),
        ("add", "o.csv", "--name", "other-data", "--type", "dataset"),
        ("register", "fraud:v1", "--as", "fraud"),
        ("promote", "fraud:v1", "staging", "--reason", "try"),
        ("promote", "fraud:v1", "production", "--reason", "ship"),
        ("alias", "set", "fraud@champion", "fraud:v1"),
        ("add", "w2.bin", "--name", "fraud"),
        ("register", "fraud:v2", "--as", "fraud"),
        ("promote", "fraud:v2", "staging", "--reason", "try"),
        ("promote", "fraud:v2", "production", "--reason", "better"),
        ("rollback", "fraud", "--reason", "latency"),
        ("approve", "fraud:v2", "production", "--reason", "looked again"),
        ("alias", "set", "other-data@best", "other-data:v1"),
    ]
    for step in steps:
        ok(*step, cwd=root)

    made = listed(root, "--webhook", str(every))
    assert [d["event"] for d in made] == [
        "version.created", "version.created",
        "stage.changed", "stage.changed", "stage.changed",  # register, staging, production
        "alias.moved",
        "version.created",
        "stage.changed", "stage.changed",  # v2: register, staging
        "stage.changed", "stage.changed",  # v1 archived as v2 enters production
        "stage.changed", "rollback",  # v2 archived, v1 back in production
        "approval",
        "alias.moved",
    ]  # fmt: skip
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in made)
    # Every registry event is delivered to `*`, with what the audit log says of it.
    audit = jcli("audit", cwd=root)["events"]
    sent_events = [d["data"] for d in made if "event" in d["data"]]
    assert [e["event"] for e in sent_events] == [e["id"] for e in audit]
    for sent, event in zip(sent_events, audit, strict=True):
        for key in ("actor", "action", "model", "target", "before", "after", "reason", "hash"):
            assert sent[key] == event[key], key
    v1 = made[0]["data"]
    shown = jcli("show", "fraud:v1", cwd=root)
    assert v1["ref"] == "fraud:v1" and v1["name"] == "fraud" and v1["number"] == 1
    assert v1["digest"] == shown["digest"] and v1["digest"].startswith("b3:")
    assert v1["size"] == 1200 and v1["user"] == "tester" and v1["run_id"] is None

    staged = listed(root, "--webhook", str(stages))
    assert [d["data"]["action"] for d in staged] == [
        "register", "promote", "promote", "register", "promote", "archive", "promote", "archive"
    ]  # fmt: skip
    assert {d["data"]["model"] for d in staged} == {"fraud"}
    other = listed(root, "--webhook", str(others))
    assert [(d["event"], d["data"].get("ref") or d["data"]["target"]) for d in other] == [
        ("version.created", "other-data:v1"),
        ("alias.moved", "other-data@best"),
    ]

    # One dispatcher pass sends them all; the `*` hook's are signed with its secret.
    done = deliver(root, env={"HOOK_SECRET": SECRET})
    assert (done["delivered"], done["pending"], done["failed"]) == (25, 0, 0)
    got = receiver.seen()
    assert len(got) == 25 and len({g.delivery for g in got}) == 25
    by_id = {str(d["id"]): d for d in listed(root, "--limit", "1000")}
    for g in got:
        d = by_id[g.delivery]
        assert g.doc == {
            "delivery": d["id"],
            "event": d["event"],
            "created_at": d["created_at"],
            "data": d["data"],
        }
        assert g.event == d["event"]
        assert g.path == {every: "/all", stages: "/stages", others: "/others"}[d["webhook"]]
        assert g.signed == g.verified == (g.path == "/all")
        assert d["status"] == "delivered" and d["attempts"] == 1
    assert deliver(root)["attempts"] == []  # nothing is sent twice


def test_a_refused_or_rolled_back_change_enqueues_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, monkeypatch)
    add_hook(root, "https://hooks.example.com/x", "*")
    write(root / "w.bin", b"weights\n")
    ok("add", "w.bin", "--name", "fraud", "--type", "model", cwd=root)
    ok("register", "fraud:v1", "--as", "fraud", cwd=root)
    before = listed(root)
    (root / "modelkeep.toml").write_text('[policy.default.production]\nrequire_stage = "staging"\n')
    one_error_line(cli("promote", "fraud:v1", "production", "--reason", "skip it", cwd=root))
    one_error_line(cli("promote", "fraud:v9", "staging", "--reason", "no such", cwd=root))
    r = cli("delete", "fraud:v1", "--reason", "x", cwd=root)  # fine: it is in no stage
    assert r.returncode == 0
    r = cli("rollback", "fraud", "--reason", "nothing in production", cwd=root)
    one_error_line(r)
    after = listed(root)
    assert [d["id"] for d in after[: len(before)]] == [d["id"] for d in before]
    assert [d["event"] for d in after[len(before) :]] == ["version.deleted"]

    # A refusal for want of approvals records the request, and sends only that.
    write(root / "w2.bin", b"weights two\n")
    ok("add", "w2.bin", "--name", "fraud", cwd=root)
    ok("register", "fraud:v2", "--as", "fraud", cwd=root)
    ok("promote", "fraud:v2", "staging", "--reason", "try", cwd=root)
    (root / "modelkeep.toml").write_text("[policy.default.production]\napprovals = 1\n")
    count = len(listed(root))
    one_error_line(cli("promote", "fraud:v2", "production", "--reason", "go", cwd=root))
    asked = listed(root)[count:]
    assert [(d["event"], d["data"]["action"]) for d in asked] == [("approval.requested", "request")]

    # In the library: an event appended in a transaction that then fails leaves nothing.
    with mk.open(root) as repo:
        n = len(outbox.deliveries(repo.db, limit=1000))
        with pytest.raises(RuntimeError), Write(repo.db) as s:
            append(s, "tester", "approve", "fraud", "fraud:v2", {}, {"for": "x"}, "", clock(s))
            assert s.query(DeliveryRow).count() == n + 1  # written, in this transaction
            raise RuntimeError("the change fails after its event")
        assert len(outbox.deliveries(repo.db, limit=1000)) == n
        assert [e.id for e in repo.audit()][-1] == asked[0]["data"]["event"]


def test_a_receiver_that_is_down_or_failing_gets_the_same_delivery_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, monkeypatch)
    first = Receiver()
    port = first.port
    first.stop()  # nothing listens there now
    hook = add_hook(root, f"http://127.0.0.1:{port}/hook", "version.created",
                    "--secret-env", "HOOK_SECRET")  # fmt: skip
    write(root / "w.bin", b"weights\n")
    ok("add", "w.bin", "--name", "fraud", cwd=root)
    env = {"HOOK_SECRET": SECRET}
    options = ("--backoff", "0.2")

    down = deliver(root, *options, env=env)
    assert (down["delivered"], down["pending"]) == (0, 1)
    (d,) = listed(root, "--webhook", str(hook))
    assert d["status"] == "pending" and d["attempts"] == 1
    assert "ConnectError" in d["last_error"] and "\n" not in d["last_error"]
    assert SECRET not in d["last_error"]

    receiver = Receiver(port)
    try:
        receiver.status = 500
        wait_for("a second attempt", lambda: deliver(root, *options, env=env)["attempts"] != [])
        (d,) = listed(root)
        assert d["attempts"] == 2 and d["last_error"] == "HTTP 500 Internal Server Error"
        receiver.status = 204
        wait_for("delivery", lambda: deliver(root, *options, env=env)["delivered"] == 1)
        (d,) = listed(root)
        assert d["status"] == "delivered" and d["attempts"] == 3 and d["last_error"] == ""
        got = receiver.seen()
        assert [g.delivery for g in got] == [str(d["id"])] * 2  # the same id each time
        assert all(g.verified for g in got)
        assert got[0].doc == got[1].doc  # the same body; only the timestamp differs
    finally:
        receiver.stop()


def test_a_missing_secret_holds_deliveries_back_instead_of_sending_them_unsigned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    root = project(tmp_path, monkeypatch)
    add_hook(root, receiver.url(), "*", "--secret-env", "HOOK_SECRET")
    write(root / "w.bin", b"weights\n")
    ok("add", "w.bin", "--name", "fraud", cwd=root)
    env = {k: v for k, v in os.environ.items() if k != "HOOK_SECRET"}
    r = subprocess.run([MODELKEEP, "webhook", "deliver", "--backoff", "0.05"], cwd=root, env=env,
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "HOOK_SECRET" in r.stdout and "to retry 1" in r.stdout
    assert receiver.seen() == []
    (d,) = listed(root)
    assert "environment variable HOOK_SECRET" in d["last_error"]
    env = {"HOOK_SECRET": SECRET}
    wait_for("delivery", lambda: deliver(root, "--backoff", "0.05", env=env)["delivered"] == 1)
    (g,) = receiver.seen()
    assert g.verified


def test_a_removed_webhook_sends_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    root = project(tmp_path, monkeypatch)
    gone = add_hook(root, receiver.url("/gone"), "*")
    kept = add_hook(root, receiver.url("/kept"), "*")
    write(root / "w.bin", b"weights\n")
    ok("add", "w.bin", "--name", "fraud", cwd=root)
    removed = jcli("webhook", "remove", str(gone), cwd=root)
    assert removed["cancelled"] == 1 and removed["removed"]["removed_at"]
    assert [h["id"] for h in jcli("webhook", "list", cwd=root)["webhooks"]] == [kept]
    assert [h["id"] for h in jcli("webhook", "list", "--all", cwd=root)["webhooks"]] == [gone, kept]
    ok("register", "fraud:v1", "--as", "fraud", cwd=root)
    assert deliver(root)["delivered"] == 2
    assert {g.path for g in receiver.seen()} == {"/kept"}
    assert [d["status"] for d in listed(root, "--webhook", str(gone))] == ["cancelled"]
    one_error_line(cli("webhook", "remove", str(gone), cwd=root))  # already removed


# -- a dispatcher killed mid-delivery -------------------------------------------------------------


def test_a_dispatcher_killed_mid_delivery_loses_nothing_and_repeats_only_under_the_same_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, monkeypatch)
    receiver = Receiver(hold=True)
    try:
        add_hook(root, receiver.url(), "*", "--secret-env", "HOOK_SECRET")
        write(root / "w.bin", b"weights\n")
        for step in [
            ("add", "w.bin", "--name", "fraud", "--type", "model"),
            ("register", "fraud:v1", "--as", "fraud"),
            ("promote", "fraud:v1", "staging", "--reason", "try"),
            ("promote", "fraud:v1", "production", "--reason", "ship"),
            ("alias", "set", "fraud@champion", "fraud:v1"),
        ]:
            ok(*step, cwd=root)
        expected = {d["id"] for d in listed(root)}
        assert len(expected) == 5
        env = {**os.environ, "MODELKEEP_USER": "tester", "HOOK_SECRET": SECRET}
        watch = [MODELKEEP, "webhook", "deliver", "--watch", "--lease", "1", "--interval", "0.1",
                 "--backoff", "0.2"]  # fmt: skip

        first = subprocess.Popen(watch, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert receiver.holding.wait(60), "the first delivery never arrived"
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        receiver.release.set()  # its answer goes to a dead process
        assert any(d["status"] == "pending" for d in listed(root))

        second = subprocess.Popen(watch, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
        try:
            wait_for(
                "every delivery",
                lambda: all(d["status"] == "delivered" for d in listed(root)),
            )
        finally:
            second.send_signal(signal.SIGTERM)  # stops after its pass, exit 0
            out, _ = second.communicate(timeout=60)
        assert second.returncode == 0, out
        assert "delivered" in out
    finally:
        receiver.stop()

    got = receiver.seen()
    assert {int(g.delivery) for g in got} == expected  # every one arrived
    assert all(g.verified for g in got)
    # A delivery seen twice came under the same id with the same body; no change was
    # ever sent under two ids.
    ids_of_change: dict[str, set[str]] = {}
    for g in got:
        change = json.dumps(g.doc["data"], sort_keys=True)
        ids_of_change.setdefault(change, set()).add(g.delivery)
    assert all(len(ids) == 1 for ids in ids_of_change.values()), ids_of_change
    assert len(ids_of_change) == 5
    held = got[0].delivery
    assert [g.delivery for g in got].count(held) >= 2  # the held one was sent again


# -- claiming, leases and retries, on both databases --------------------------------------------


@pytest.fixture
def hooked(backend_repo: mk.Repo) -> mk.Repo:
    outbox.add_webhook(backend_repo.db, "https://hooks.example.com/a", ["*"])
    return backend_repo


def _enqueue(repo: mk.Repo, n: int) -> None:
    with Write(repo.db) as s:
        now = clock(s)
        for i in range(n):
            outbox.enqueue(s, "stage.changed", "fraud", {"i": i}, now)


def test_concurrent_claims_never_take_one_delivery_twice(hooked: mk.Repo) -> None:
    _enqueue(hooked, 40)
    now = datetime.now(UTC) + timedelta(seconds=1)
    taken: list[list[int]] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = []
        while batch := outbox.claim(hooked.db, now, limit=3):
            mine += [c.delivery.id for c in batch]
        with lock:
            taken.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [i for mine in taken for i in mine]
    assert len(every) == len(set(every)) == 40


def test_a_lease_holds_a_delivery_until_it_ends_and_retries_back_off(hooked: mk.Repo) -> None:
    _enqueue(hooked, 2)
    db, t0 = hooked.db, datetime.now(UTC) + timedelta(seconds=1)
    lease = timedelta(seconds=60)
    a, b = outbox.claim(db, t0, lease=lease)
    assert (a.delivery.attempts, b.delivery.attempts) == (1, 1)
    assert a.url == "https://hooks.example.com/a" and a.secret_env is None
    assert outbox.claim(db, t0 + timedelta(seconds=59), lease=lease) == []  # leased
    again = outbox.claim(db, t0 + timedelta(seconds=61), lease=lease)  # its sender died
    assert [c.delivery.id for c in again] == [a.delivery.id, b.delivery.id]
    assert again[0].delivery.attempts == 2

    # The first claim's late outcome does not overwrite the second's; a delivery does.
    retry = outbox.Retry(first=timedelta(seconds=10), max_attempts=3)
    t1 = t0 + timedelta(seconds=62)
    assert outbox.mark_failed(db, a.delivery, "late", t1, retry) == "pending"
    assert outbox.deliveries(db)[-1].last_error == ""
    assert outbox.mark_delivered(db, b.delivery.id, t1)
    assert outbox.mark_failed(db, again[0].delivery, "HTTP 502 Bad Gateway", t1, retry)
    d = {x.id: x for x in outbox.deliveries(db)}
    assert d[a.delivery.id].next_at == t1 + timedelta(seconds=20)  # 10 s doubled once
    assert d[a.delivery.id].last_error == "HTTP 502 Bad Gateway"
    assert d[b.delivery.id].status == "delivered" and d[b.delivery.id].delivered_at == t1

    (third,) = outbox.claim(db, t1 + timedelta(seconds=20))
    assert third.delivery.attempts == 3
    assert outbox.mark_failed(db, third.delivery, "HTTP 502", t1, retry) == "failed"
    assert outbox.claim(db, t1 + timedelta(days=1)) == []
    assert [x.status for x in outbox.deliveries(db, status="failed")] == ["failed"]

    assert [retry.delay(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert outbox.Retry().delay(30) == timedelta(hours=1)


def test_a_delivery_left_for_a_removed_webhook_is_cancelled_not_sent(hooked: mk.Repo) -> None:
    """A change whose transaction read the webhooks just before one was removed may still
    enqueue for it (PostgreSQL); the claim cancels such a delivery."""
    (hook,) = outbox.list_webhooks(hooked.db)
    outbox.remove_webhook(hooked.db, hook.id)
    with hooked.db.write() as s:
        now = datetime.now(UTC)
        s.add(DeliveryRow(webhook_id=hook.id, kind="rollback", payload_json="{}",
                          status="pending", attempts=0, next_at=now, last_error="",
                          created_at=now))  # fmt: skip
    assert outbox.claim(hooked.db, datetime.now(UTC) + timedelta(seconds=1)) == []
    assert [d.status for d in outbox.deliveries(hooked.db)] == ["cancelled"]


def test_a_store_without_webhooks_reads_them_once_per_transaction(repo: mk.Repo) -> None:
    statements: list[str] = []
    for _ in range(2):
        with Write(repo.db) as s:
            # The driver's own trace: it sees the plain SQL that bypasses SQLAlchemy too.
            lite = s.connection().connection.driver_connection
            assert isinstance(lite, sqlite3.Connection)
            lite.set_trace_callback(statements.append)
            try:
                now = clock(s)
                for kind in ("stage.changed", "stage.changed", "rollback"):
                    assert outbox.enqueue(s, kind, "fraud", {}, now) == 0
            finally:
                lite.set_trace_callback(None)
    reads = [x for x in statements if "FROM webhooks" in x]
    assert len(reads) == 2  # one per transaction
    assert not [x for x in statements if "deliveries" in x]


# -- signatures and bad input ---------------------------------------------------------------------


def test_verify_signature_accepts_only_the_genuine_recent_delivery() -> None:
    body = b'{"delivery":1,"event":"rollback"}'
    now = 1_800_000_000
    ts = str(now)
    header = sign(SECRET, ts, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_signature(SECRET, ts, body, header, now=now)
    assert verify_signature(SECRET.encode(), now, body.decode(), header, now=now + 299)
    assert not verify_signature("other secret", ts, body, header, now=now)
    assert not verify_signature(SECRET, ts, body + b" ", header, now=now)
    assert not verify_signature(SECRET, str(now + 1), body, header, now=now)  # ts is signed
    assert not verify_signature(SECRET, ts, body, header, now=now + 301)  # a replay, later
    assert not verify_signature(SECRET, ts, body, header, now=now - 301)
    assert not verify_signature(SECRET, ts, body, header.upper(), now=now)
    assert not verify_signature(SECRET, ts, body, None, now=now)
    assert not verify_signature(SECRET, ts, body, "sha256=é", now=now)
    assert not verify_signature(SECRET, "soon", body, header, now=now)


def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, monkeypatch)

    def refused(*args: str) -> str:
        return one_error_line(cli("webhook", *args, cwd=root))

    assert "use http:// or https://" in refused("add", "ftp://x/y", "--events", "*")
    assert "names no host" in refused("add", "https:///path", "--events", "*")
    line = refused("add", "http://hooks.example.com/x", "--events", "*")
    assert "plain http to hooks.example.com" in line and "--insecure" in line
    line = refused("add", "https://me:hunter2@hooks.example.com/x", "--events", "*")
    assert "credentials" in line and "hunter2" not in line
    line = refused("add", "https://hooks.example.com/x", "--events", "stage.changed,stage.moved")
    assert "unknown event kind 'stage.moved'" in line and "alias.moved" in line
    assert "no event kinds given" in refused("add", "https://h.example.com", "--events", ",")
    line = refused("add", "https://h.example.com", "--events", "*", "--secret-env", "not a name!")
    assert "not a name" not in line and "NAME of the environment variable" in line
    assert "no webhook 42 (there are none)" in refused("remove", "42")
    assert "no webhook 42" in refused("deliveries", "--webhook", "42")
    assert "unknown delivery status 'lost'" in refused("deliveries", "--status", "lost")
    assert cli("webhook", "remove", "abc", cwd=root).returncode == 2  # a usage error

    r = cli("webhook", "remove", "42", "--json", cwd=root)
    assert r.returncode == 1 and r.stdout == ""
    doc = json.loads(r.stderr)
    assert doc["error"] == "WebhookNotFound" and doc["webhook_id"] == 42

    # Allowed: plain http to this machine, or anywhere with --insecure; a query is masked.
    add_hook(root, "http://localhost:8080/x", "approval")
    made = jcli("webhook", "add", "http://hooks.example.com/x?token=abc", "--events", "override",
                "--insecure", cwd=root)  # fmt: skip
    assert made["url"] == "http://hooks.example.com/x?***"
    listing = ok("webhook", "list", cwd=root).stdout
    assert "token=abc" not in listing and "localhost:8080" in listing
    assert jcli("webhook", "deliveries", cwd=root) == {"deliveries": []}
