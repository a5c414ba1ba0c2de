"""The paged reads behind the web UI (modelkeep.meta.pages, Repo.*_page, the `/pages` API
operations) and the dedup figures of a version page: one bounded slice with its total,
filters applied by the server, and a bad page asked for is a clear 400."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import modelkeep as mk
from modelkeep.errors import InvalidArgument
from tests import mkserve

KIB = 1024


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[mk.Repo]:
    with mk.init(tmp_path / "store") as r:
        yield r


def _files(folder: Path, contents: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_dedup_counts_the_bytes_a_successor_changed(repo: mk.Repo, tmp_path: Path) -> None:
    parts = {f"part{i}.bin": os.urandom(256 * KIB) for i in range(4)}
    w = _files(tmp_path / "w", parts)
    repo.add(w, "weights")
    first = repo.dedup("weights:v1")
    assert (first.previous, first.new, first.reused) == (None, 1024 * KIB, 0)
    # one file of four replaced: exactly a quarter of the bytes is new
    _files(w, {"part2.bin": os.urandom(256 * KIB)})
    repo.add(w, "weights")
    second = repo.dedup("weights:v2")
    assert second.previous == "weights:v1" and second.complete
    assert (second.new, second.reused, second.changed_files) == (256 * KIB, 768 * KIB, 1)
    assert second.new + second.reused == second.size
    # the second half of one file rewritten: that half is new, give or take the chunk
    # that straddles the change (chunks are 64 KiB on average, 256 KiB at most)
    old = (w / "part0.bin").read_bytes()
    _files(w, {"part0.bin": old[: 128 * KIB] + os.urandom(128 * KIB)})
    repo.add(w, "weights")
    third = repo.dedup("weights:v3")
    assert 128 * KIB <= third.new <= 256 * KIB and third.reused == third.size - third.new
    # an unchanged successor reuses everything
    (w / "note.txt").write_text("", "utf-8")
    repo.add(w, "weights")
    assert repo.dedup("weights:v4").new == 0


def test_dedup_of_a_lone_file_and_past_a_deleted_version(repo: mk.Repo, tmp_path: Path) -> None:
    data = os.urandom(512 * KIB)
    (tmp_path / "m.bin").write_bytes(data)
    repo.add(tmp_path / "m.bin", "m")
    (tmp_path / "m.bin").write_bytes(os.urandom(10 * KIB))
    repo.add(tmp_path / "m.bin", "m")
    repo.delete("m:v2", reason="bad")
    (tmp_path / "m.bin").write_bytes(data + b"!")  # v1's bytes and one more
    repo.add(tmp_path / "m.bin", "m")
    found = repo.dedup("m:v3")  # against v1: v2 is deleted
    assert found.previous == "m:v1" and found.new + found.reused == 512 * KIB + 1
    assert found.reused >= 256 * KIB  # all but the chunk the new byte joined


def test_version_model_and_event_pages(repo: mk.Repo, tmp_path: Path) -> None:
    for i in range(7):
        (tmp_path / "f").write_text(str(i), "utf-8")
        repo.add(tmp_path / "f", "many")
    for name in ("team/alpha", "beta", "alpha_2"):
        (tmp_path / "g").write_text(name, "utf-8")
        repo.add(tmp_path / "g", name + "-src")
        repo.register(name + "-src:v1", name)
    page = repo.version_page("many", limit=3, offset=3)
    assert [v.number for v in page.items] == [4, 3, 2] and page.total == 7
    assert [v.number for v in repo.version_page("many", limit=2, descending=False).items] == [1, 2]
    found = repo.model_page(search="ALPHA")
    assert [s.model.name for s in found.items] == ["alpha_2", "team/alpha"] and found.total == 2
    assert repo.model_page(search="_").total == 1  # a LIKE wildcard is a plain character
    assert repo.model_page(limit=1, offset=1).items[0].model.name == "beta"
    assert repo.model_summary("beta").last_change is not None
    repo.promote("beta:v1", "staging", reason="r1")
    events = repo.audit_page(limit=2)
    assert events.total == 4 and [e.action for e in events.items] == ["promote", "register"]
    assert repo.audit_page("beta").total == 2
    assert repo.audit_page(kind="register", offset=1, limit=5).total == 3
    assert len(repo.audit_page(kind="register", offset=1, limit=5).items) == 2
    assert repo.audit_page(until=datetime.now(UTC) - timedelta(days=1)).total == 0
    later = datetime.now(UTC)
    assert repo.stages_at(["beta"], later) == {"beta": {"production": None, "staging": 1}}
    assert repo.version_metrics("many", ["auc"], numbers=[5, 2]) == [{"auc": None}] * 2


@pytest.mark.parametrize(
    ("limit", "offset", "message"),
    [(0, 0, "limit must be 1 to 500"), (501, 0, "limit must be 1 to 500"), (5, -1, "offset")],
)
def test_a_bad_page_is_refused(repo: mk.Repo, limit: int, offset: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        repo.model_page(limit=limit, offset=offset)


def test_a_folder_page_and_a_thinned_metric_series(repo: mk.Repo, tmp_path: Path) -> None:
    w = _files(tmp_path / "d", {f"shards/s{i:03}.bin": b"x" * i for i in range(30)})
    (w / "top.txt").write_text("t", "utf-8")
    repo.add(w, "ds")
    top = repo.file_page("ds:v1")
    assert [(f.path, f.kind) for f in top.items] == [("shards", "dir"), ("top.txt", "file")]
    inner = repo.file_page("ds:v1", path="shards/", limit=10, offset=20)
    assert inner.total == 30 and inner.items[0].path == "shards/s020.bin"
    with pytest.raises(InvalidArgument, match="is a file"):
        repo.file_page("ds:v1", path="top.txt")
    with mk.start_run(repo=repo, capture_code=False) as run:
        run.log_metrics({"short": 1.0}, step=0)
        for step in range(0, 5000, 2):
            run.log_metrics({"loss": 1 / (step + 1)}, step=step)
    series = {s.key: s for s in repo.metric_series(run.id, max_points=100)}
    loss = series["loss"]
    assert loss.points == 2500 and len(loss.steps) <= 101 and loss.steps[-1] == 4998
    assert loss.steps == sorted(loss.steps) and loss.steps[0] == 0
    assert series["short"].steps == [0] and series["short"].values == [1.0]
    assert [s.key for s in repo.metric_series(run.id, keys=["short"])] == ["short"]


def test_the_lineage_next_to_a_hub_is_bounded(repo: mk.Repo, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x\n1\n", "utf-8")
    ds = repo.add(tmp_path / "data.csv", "ds").version
    for i in range(6):
        with mk.start_run(repo=repo, name=f"r{i}", capture_code=False) as run:
            run.use(ds.ref, tmp_path / f"use{i}")
            (tmp_path / f"m{i}").write_text(str(i), "utf-8")
            run.log_artifact(tmp_path / f"m{i}", "model")
    near = repo.lineage_neighbours("ds:v1", limit=4)
    assert (near.users, near.shown) == (6, 4)
    runs = [k for k in near.graph.nodes if k.startswith("run:")]
    assert len(runs) == 4 and "model:v6" in near.graph.nodes  # the newest runs, and outputs
    up = repo.lineage_neighbours("model:v1")
    assert "ds:v1" in up.graph.nodes and up.users == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    base = tmp_path_factory.mktemp("pages")
    s = mkserve.start(base / "store")
    try:
        mkserve.with_accounts(s, {"vic": "viewer"})
        with mk.open(s.root) as repo:
            (base / "f").write_text("x", "utf-8")
            repo.add(base / "f", "src")
            repo.register("src:v1", "fraud")
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/pages/models", {"limit": "0"}, "limit must be 1 to 500"),
        ("/pages/models", {"offset": "-3"}, "offset must be 0 or more"),
        ("/pages/models", {"limit": "ten"}, "argument 'limit' of model_page"),
        ("/pages/audit", {"since": "yesterday"}, "argument 'since' of audit_page"),
        ("/pages/versions/fraud", {"limit": "100000"}, "limit must be 1 to 500"),
        ("/pages/files/fraud:v1", {"offset": "-1"}, "offset must be 0 or more"),
        ("/pages/models", {"page": "2"}, "model_page takes no argument 'page'"),
    ],
)
def test_bad_page_arguments_are_a_clear_refusal(
    served: mkserve.Served, path: str, params: dict[str, str], message: str
) -> None:
    with served.http("vic") as h:
        r = h.get("/api/v1" + path, params=params)
    assert r.status_code == 422, r.text  # as every invalid argument of the API
    assert message in r.json()["message"]


def test_the_pages_over_http(served: mkserve.Served) -> None:
    with served.http("vic") as h:
        models = h.get("/api/v1/pages/models", params={"search": "FRA", "limit": 5}).json()
        assert models["total"] == 1 and models["items"][0]["model"]["name"] == "fraud"
        versions = h.get("/api/v1/pages/versions/fraud", params={"limit": 1}).json()
        assert versions["total"] == 1 and versions["items"][0]["number"] == 1
        events = h.get("/api/v1/pages/audit", params={"kind": "register"}).json()
        assert events["total"] == 1 and events["items"][0]["target"] == "fraud:v1"
        at = datetime.now(UTC).isoformat()
        held = h.get("/api/v1/pages/stages-at", params={"names": ["fraud"], "at": at}).json()
        assert held == {"fraud": {"production": None, "staging": None}}
        dedup = h.get("/api/v1/pages/dedup/fraud:v1").json()
        assert dedup["new"] == 1 and dedup["previous"] is None


def test_pages_show_an_account_only_the_models_its_grants_reach(tmp_path: Path) -> None:
    """A viewer granted `fraud*` only: no page lists, counts or opens another model."""
    from modelkeep.meta import accounts

    s = mkserve.start(tmp_path / "store")
    try:
        mkserve.with_accounts(s, {"gina": None})
        with mk.open(s.root) as repo:
            for name in ("fraud-eu", "churn"):
                (tmp_path / name).write_text(name, "utf-8")
                repo.add(tmp_path / name, f"{name}-src")
                repo.register(f"{name}-src:v1", name)
            accounts.grant(repo.db, "gina", "viewer", model="fraud*")
        with s.http("gina") as h:
            models = h.get("/api/v1/pages/models", params={"limit": 50}).json()
            assert [m["model"]["name"] for m in models["items"]] == ["fraud-eu"]
            events = h.get("/api/v1/pages/audit", params={"limit": 50}).json()
            assert events["items"] and all("churn" not in e["target"] for e in events["items"])
            for path in ("versions/churn", "files/churn:v1", "dedup/churn:v1"):
                r = h.get(f"/api/v1/pages/{path}")
                assert r.status_code in (403, 404), (path, r.status_code, r.text)
            assert h.get("/api/v1/pages/versions/fraud-eu").status_code == 200
    finally:
        s.stop()
