"""MLflow's artifact proxy and logged models on `modelkeep serve`, judged by the real client.

Files the client logs go into the store as chunks (deduplicated, verified on read), in a
run's or a logged model's folder that only its owner writes; large files go up in parts.
What the client cannot send is sent by hand: traversal paths, forged upload ids, another
account's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import modelkeep as mk
from modelkeep import artifact_proxy
from modelkeep.errors import ArtifactPathConflict, InvalidArgument
from modelkeep.meta import mlflow_artifacts
from tests import mkserve
from tests.mlflow_client import MLFLOW_2, client_run

ART = "/api/2.0/mlflow-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    s = mkserve.start(tmp_path_factory.mktemp("mlflow-artifacts") / "store")
    mkserve.with_accounts(s, {"ann": "editor", "bob": "editor", "val": "viewer", "boss": "admin"})
    yield s
    s.stop()


STORY = r"""
import json, os, hashlib, tempfile
import mlflow
from mlflow import MlflowClient

def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()

out = {}
work = tempfile.mkdtemp()
mlflow.set_experiment("files")
with mlflow.start_run() as run:
    notes = os.path.join(work, "notes.txt")
    open(notes, "w").write("hello\n")
    weights = os.path.join(work, "weights.bin")
    open(weights, "wb").write(os.urandom(3 << 20))
    mlflow.log_artifact(notes)
    mlflow.log_artifact(weights, artifact_path="ckpt")
    folder = os.path.join(work, "plots")
    os.makedirs(os.path.join(folder, "deep"))
    open(os.path.join(folder, "a.csv"), "w").write("x,y\n1,2\n")
    open(os.path.join(folder, "deep", "b.csv"), "w").write("x\n3\n")
    mlflow.log_artifacts(folder, artifact_path="plots")
    mlflow.log_text("again", "notes.txt")  # a path written again is replaced, as in MLflow
    mlflow.log_dict({"k": 1}, "meta/config.json")
    out["run_id"] = run.info.run_id
    out["artifact_uri"] = run.info.artifact_uri
client = MlflowClient()
out["top"] = sorted((f.path, f.is_dir, f.file_size) for f in client.list_artifacts(out["run_id"]))
out["plots"] = sorted(f.path for f in client.list_artifacts(out["run_id"], "plots"))
back = mlflow.artifacts.download_artifacts(
    run_id=out["run_id"], dst_path=os.path.join(work, "back")
)
out["same_weights"] = digest(weights) == digest(os.path.join(back, "ckpt", "weights.bin"))
out["notes"] = open(os.path.join(back, "notes.txt")).read()
out["deep"] = open(os.path.join(back, "plots", "deep", "b.csv")).read()
out["config"] = mlflow.artifacts.load_dict(out["artifact_uri"] + "/meta/config.json")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def story(served: mkserve.Served) -> dict[str, Any]:
    return client_run(served, STORY, MLFLOW_TRACKING_TOKEN=served.tokens["ann"])


@pytest.fixture(scope="module")
def story_2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same story told by the 2.22 client, to a server of its own."""
    s = mkserve.start(tmp_path_factory.mktemp("mlflow-artifacts-2") / "store")
    mkserve.with_accounts(s, {"ann": "editor"})
    try:
        yield client_run(s, STORY, MLFLOW_2, MLFLOW_TRACKING_TOKEN=s.tokens["ann"])
    finally:
        s.stop()


@pytest.mark.parametrize("told_by", ["story", "story_2"])
def test_the_client_logs_lists_and_downloads_files(
    request: pytest.FixtureRequest, told_by: str
) -> None:
    story: dict[str, Any] = request.getfixturevalue(told_by)
    assert story["artifact_uri"] == f"mlflow-artifacts:/1/{story['run_id']}/artifacts"
    assert story["top"] == [
        ["ckpt", True, None],
        ["meta", True, None],
        ["notes.txt", False, 5],
        ["plots", True, None],
    ]
    assert story["plots"] == ["plots/a.csv", "plots/deep"]
    assert story["same_weights"] is True
    assert story["notes"] == "again"
    assert story["deep"] == "x\n3\n"
    assert story["config"] == {"k": 1}


def test_the_files_are_in_the_store_and_kept_by_gc(
    served: mkserve.Served, story: dict[str, Any]
) -> None:
    run = story["run_id"]
    with mk.open(served.root) as repo:
        rows = {f.path: f for f in mlflow_artifacts.files_under(repo.db, f"1/{run}/artifacts")}
        assert sorted(rows) == [
            "ckpt/weights.bin", "meta/config.json", "notes.txt", "plots/a.csv", "plots/deep/b.csv",
        ]  # fmt: skip
        assert rows["notes.txt"].user == "ann" and rows["ckpt/weights.bin"].size == 3 << 20
        repo.gc()
        assert not repo.fsck().problems
        reader, size = artifact_proxy.open_file(repo.parts, f"1/{run}/artifacts/ckpt/weights.bin")
        with reader:
            assert len(reader.read()) == size == 3 << 20


def test_runs_show_lists_the_files_the_client_logged(
    served: mkserve.Served, story: dict[str, Any]
) -> None:
    run = story["run_id"]
    text = mkserve.admin(served.root, "runs", "show", run)
    assert "MLflow artifacts:" in text and "ckpt/weights.bin  3.0 MiB" in text
    doc = json.loads(mkserve.admin(served.root, "runs", "show", run, "--json"))
    assert [f["path"] for f in doc["mlflow_artifacts"]][:2] == [
        "ckpt/weights.bin",
        "meta/config.json",
    ]
    with served.http("val") as http:  # the same over the server's own API, for its clients
        files = http.get(f"/api/v1/runs/{run}/files").json()
    assert len(files) == 5


def test_a_viewer_reads_but_does_not_write(served: mkserve.Served, story: dict[str, Any]) -> None:
    path = f"1/{story['run_id']}/artifacts/notes.txt"
    with served.http("val") as http:
        assert http.get(f"{ART}/artifacts/{path}").content == b"again"
        refused = http.put(f"{ART}/artifacts/{path}", content=b"mine now")
        assert refused.status_code == 403
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
    with served.http("bob") as http:  # an editor, but not the run's owner
        refused = http.put(f"{ART}/artifacts/{path}", content=b"mine now")
        assert refused.status_code == 403 and "another account" in refused.json()["message"]
        assert http.delete(f"{ART}/artifacts/{path}").status_code == 403
    with served.http("ann") as http:
        assert http.get(f"{ART}/artifacts/{path}").content == b"again"


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "1/../../x",
        "1/%2e%2e/x",
        "1//x",
        "1/x\\..\\y",
        "a" * 2000,
        "1/abc/artifacts/x",  # not a run id
        "_modelkeep/versions/m/1/x",
    ],
)
def test_uploads_outside_an_owned_folder_are_refused(
    served: mkserve.Served, story: dict[str, Any], path: str
) -> None:
    with served.http("boss") as http:  # even an admin
        r = http.put(f"{ART}/artifacts/{path}", content=b"x")
    assert r.status_code in (400, 404), r.text
    if r.status_code == 400:
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    with mk.open(served.root) as repo:
        assert all(".." not in f.path for f in mlflow_artifacts.files_under(repo.db, ""))


def test_a_file_and_a_folder_never_share_a_path(
    served: mkserve.Served, story: dict[str, Any]
) -> None:
    base = f"1/{story['run_id']}/artifacts"
    with served.http("ann") as http:
        r = http.put(f"{ART}/artifacts/{base}/notes.txt/inner", content=b"x")
        assert r.status_code == 400 and r.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
        r = http.put(f"{ART}/artifacts/{base}/plots", content=b"x")
        assert r.status_code == 400 and "clashes" in r.json()["message"]
        assert http.get(f"{ART}/artifacts/{base}/missing.txt").status_code == 404
        assert http.get(f"{ART}/artifacts", params={"path": f"{base}/nothing"}).json() == {}
        # a file lists as nothing, as MLflow's server answers: how the client tells the two
        assert http.get(f"{ART}/artifacts", params={"path": f"{base}/notes.txt"}).json() == {}
        odd = f'{base}/caf\u00e9 "x";.txt'
        assert http.put(f"{ART}/artifacts/{odd}", content=b"odd").status_code == 200
        back = http.get(f"{ART}/artifacts/{odd}")
        assert back.content == b"odd"
        assert back.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")


def test_a_forged_row_or_a_damaged_file_never_serves_bytes(
    served: mkserve.Served, story: dict[str, Any]
) -> None:
    """A row pointing at content the store lacks is a 404 naming the object; a flipped byte
    in the stored file is an error, never the changed bytes: the reader verifies them."""
    base = f"1/{story['run_id']}/artifacts"
    with mk.open(served.root) as repo:
        mlflow_artifacts.put(repo.db, f"{base}/forged.bin", "ab" * 32, 10, None, "ann")
    with served.http("ann") as http:
        r = http.get(f"{ART}/artifacts/{base}/forged.bin")
        assert r.status_code == 404 and "missing from the store" in r.json()["message"]
        data = os.urandom(5000)
        assert http.put(f"{ART}/artifacts/{base}/small.bin", content=data).status_code == 200
    with mk.open(served.root) as repo:
        mlflow_artifacts.remove(repo.db, f"{base}/forged.bin")
        row = mlflow_artifacts.get(repo.db, f"{base}/small.bin")
        assert row is not None
        located = repo.store.index.locate(bytes.fromhex(row.digest))
        assert located is not None
        pack = repo.store.packs_dir / f"{located.pack}.pack"
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(located.entry.offset + 100)
        byte = f.read(1)
        f.seek(located.entry.offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with served.http("ann") as http:
        r = http.get(f"{ART}/artifacts/{base}/small.bin")
    assert r.status_code >= 400 and r.content != data
    assert "does not match" in r.text or "damaged" in r.text or "corrupt" in r.text.lower()
    with served.http("ann") as http:  # written again, it reads back whole
        mlflow_artifacts_path = f"{ART}/artifacts/{base}/small2.bin"
        assert http.put(mlflow_artifacts_path, content=b"fresh").status_code == 200
        assert http.get(mlflow_artifacts_path).content == b"fresh"


MULTIPART = r"""
import json, os, hashlib, tempfile
import mlflow
size = int(os.environ["SIZE"])
work = tempfile.mkdtemp()
big = os.path.join(work, "big.bin")
h = hashlib.sha256()
with open(big, "wb") as f:
    block = os.urandom(1 << 20)
    for i in range(size >> 20):
        piece = block[:-8] + i.to_bytes(8, "big")
        h.update(piece); f.write(piece)
with mlflow.start_run() as run:
    mlflow.log_artifact(big)
back = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="big.bin",
                                           dst_path=os.path.join(work, "back"))
h2 = hashlib.sha256()
with open(back, "rb") as f:
    while data := f.read(1 << 20):
        h2.update(data)
os.remove(big); os.remove(back)
print(json.dumps({"run_id": run.info.run_id, "same": h.hexdigest() == h2.hexdigest()}))
"""


def _multipart(served: mkserve.Served, size: int) -> dict[str, Any]:
    return client_run(
        served,
        MULTIPART,
        MLFLOW_TRACKING_TOKEN=served.tokens["ann"],
        SIZE=str(size),
        MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=str(4 << 20),
        MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE=str(8 << 20),
    )


def test_a_large_file_goes_up_in_parts(served: mkserve.Served) -> None:
    done = _multipart(served, 40 << 20)
    assert done["same"] is True
    log = served.log.read_text()
    assert log.count("/mpu/part/") >= 5 and "/mpu/complete/" in log
    with mk.open(served.root) as repo:
        row = mlflow_artifacts.get(repo.db, f"0/{done['run_id']}/artifacts/big.bin")
        assert row is not None and row.size == 40 << 20
        assert not (repo.settings.control_dir / "uploads").exists() or not any(
            (repo.settings.control_dir / "uploads").iterdir()
        )


@pytest.mark.slow
def test_a_2_gb_file_goes_up_in_parts_and_comes_back_byte_exact(served: mkserve.Served) -> None:
    assert _multipart(served, 2 << 30)["same"] is True


def _start_upload(http: httpx.Client, folder: str, parts: int) -> dict[str, Any]:
    r = http.post(f"{ART}/mpu/create/{folder}", json={"path": "f.bin", "num_parts": parts})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_multipart_uploads_refuse_forged_ids_and_foreign_completions(
    served: mkserve.Served, story: dict[str, Any]
) -> None:
    folder = f"1/{story['run_id']}/artifacts/mp"
    anon = httpx.Client(base_url=served.url, timeout=30)
    with served.http("ann") as ann, served.http("bob") as bob, anon:
        made = _start_upload(ann, folder, 2)
        urls = [c["url"] for c in made["credentials"]]
        assert [c["part_number"] for c in made["credentials"]] == [1, 2]
        forged = urls[0].replace(made["upload_id"], "A" * len(made["upload_id"]))
        assert anon.put(forged, content=b"x").status_code == 404
        out_of_range = urls[1].rsplit("/", 1)[0] + "/3"
        assert anon.put(out_of_range, content=b"x").status_code == 400
        assert anon.put(urls[0], content=b"a" * 10).status_code == 200  # the url is the credential
        body = {"path": "f.bin", "upload_id": made["upload_id"], "parts": [{"part_number": 1}]}
        assert bob.post(f"{ART}/mpu/complete/{folder}", json=body).status_code == 403
        with served.http("boss") as boss:  # may write the folder, but did not start it
            assert boss.post(f"{ART}/mpu/complete/{folder}", json=body).status_code == 404
        missing = {**body, "parts": [{"part_number": 1}, {"part_number": 2}]}
        r = ann.post(f"{ART}/mpu/complete/{folder}", json=missing)
        assert r.status_code == 400 and "never uploaded" in r.json()["message"]
        elsewhere = f"1/{story['run_id']}/artifacts/other"
        r = ann.post(f"{ART}/mpu/complete/{elsewhere}", json=missing)
        assert r.status_code == 400 and "is for" in r.json()["message"]
        assert anon.put(urls[1], content=b"b" * 5).status_code == 200
        assert ann.post(f"{ART}/mpu/complete/{folder}", json=missing).status_code == 200
        assert ann.get(f"{ART}/artifacts/{folder}/f.bin").content == b"a" * 10 + b"b" * 5
        assert anon.put(urls[0], content=b"late").status_code == 404  # finished: gone
        aborted = _start_upload(ann, folder, 1)
        body = {"path": "f.bin", "upload_id": aborted["upload_id"]}
        assert ann.post(f"{ART}/mpu/abort/{folder}", json=body).status_code == 200
        assert anon.put(aborted["credentials"][0]["url"], content=b"x").status_code == 404
        r = ann.post(f"{ART}/mpu/create/{folder}", json={"path": "f.bin", "num_parts": 10**6})
        assert r.status_code == 400


def test_server_info_advertises_multipart_uploads(served: mkserve.Served) -> None:
    info = httpx.get(served.url + "/api/3.0/mlflow/server-info").json()
    assert info["multipart_uploads_enabled"] is True
    assert info["artifact_serving_enabled"] is True


LOGGED = r"""
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
out = {}
mlflow.set_experiment("models")
client = MlflowClient()
exp = mlflow.get_experiment_by_name("models").experiment_id
with mlflow.start_run() as run:
    m = mlflow.create_external_model(name="scorer", params={"depth": "3"}, model_type="rf")
    out["id"] = m.model_id
    out["uri"] = m.artifact_location
    out["status"] = str(client.get_logged_model(m.model_id).status)
    client.set_logged_model_tags(m.model_id, {"team": "risk", "x": "1"})
    client.delete_logged_model_tag(m.model_id, "x")
    got = client.get_logged_model(m.model_id)
    out["tags"] = {k: v for k, v in got.tags.items() if not k.startswith("mlflow.")}
    out["params"] = got.params
    out["source_run"] = got.source_run_id == run.info.run_id
    found = mlflow.search_logged_models(experiment_ids=[exp], filter_string="name = 'scorer'",
                                        output_format="list")
    out["found"] = [x.model_id for x in found]
    client.delete_logged_model(m.model_id)
    left = mlflow.search_logged_models(experiment_ids=[exp], output_format="list")
    out["after_delete"] = len(left)
print(json.dumps(out))
"""


def test_logged_models_round_trip(served: mkserve.Served) -> None:
    out = client_run(served, LOGGED, MLFLOW_TRACKING_TOKEN=served.tokens["ann"])
    assert out["id"].startswith("m-") and out["uri"].endswith(f"/models/{out['id']}/artifacts")
    assert out["status"] == "READY"
    assert out["tags"] == {"team": "risk"}
    assert out["params"] == {"depth": "3"}
    assert out["source_run"] is True
    assert out["found"] == [out["id"]]
    assert out["after_delete"] == 0


def test_logged_model_writes_are_the_owners(served: mkserve.Served) -> None:
    with served.http("ann") as ann, served.http("bob") as bob:
        made = ann.post("/api/2.0/mlflow/logged-models", json={"experiment_id": "0", "name": "m"})
        model_id = made.json()["model"]["info"]["model_id"]
        r = bob.patch(
            f"/api/2.0/mlflow/logged-models/{model_id}", json={"status": "LOGGED_MODEL_READY"}
        )
        assert r.status_code == 403
        path = f"0/models/{model_id}/artifacts/model.pkl"
        assert bob.put(f"{ART}/artifacts/{path}", content=b"x").status_code == 403
        assert ann.put(f"{ART}/artifacts/{path}", content=b"x").status_code == 200
        assert ann.get("/api/2.0/mlflow/logged-models/m-" + "0" * 32).status_code == 404
        bad = ann.post(
            "/api/2.0/mlflow/logged-models/search",
            json={"experiment_ids": ["0"], "filter": "metrics.auc > 1"},
        )
        assert bad.status_code == 400 and "supported" in bad.json()["message"]


def test_paths_are_checked_in_the_library(tmp_path: Path) -> None:
    repo = mk.init(tmp_path / "r")
    for bad in ("", "/abs", "a/../b", "a\x00b", "a\\b", "./a", "a/"):
        with pytest.raises(InvalidArgument):
            mlflow_artifacts.check_path(bad)
    mlflow_artifacts.put(repo.db, "0/r/artifacts/a", "00" * 32, 1, None, "me")
    with pytest.raises(ArtifactPathConflict):
        mlflow_artifacts.put(repo.db, "0/r/artifacts/a/b", "00" * 32, 1, None, "me")
    with pytest.raises(ArtifactPathConflict):
        mlflow_artifacts.put(repo.db, "0/r", "00" * 32, 1, None, "me")
    # a LIKE wildcard in a folder name matches only itself
    mlflow_artifacts.put(repo.db, "0/r_x/artifacts/z", "00" * 32, 1, None, "me")
    assert [f.path for f in mlflow_artifacts.files_under(repo.db, "0/r%")] == []
    assert mlflow_artifacts.remove(repo.db, "0/r") == 1
    repo.close()


def test_a_registered_versions_files_are_read_only_and_per_model(
    served: mkserve.Served, tmp_path: Path
) -> None:
    """`_modelkeep/versions/<name>/<n>/…` serves a version's own tree (where a model
    version's download URI points); a grant on another model does not read it."""
    from modelkeep.meta import accounts

    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x01" * 1000)
    with mk.open(served.root) as repo:
        repo.add(folder, "churn-files")
        repo.register("churn-files", "churn")
        accounts.add_user(repo.db, "other")
        accounts.grant(repo.db, "other", "viewer", "fraud*")
        served.tokens["other"] = accounts.create_token(repo.db, "other")[0]
    base = f"{ART}/artifacts/_modelkeep/versions/churn/1"
    with served.http("val") as http:
        assert http.get(f"{base}/sub/w.bin").content == b"\x00\x01" * 1000
        listed = http.get(f"{ART}/artifacts", params={"path": "_modelkeep/versions/churn/1"})
        assert listed.json()["files"] == [
            {"path": "MLmodel", "is_dir": False, "file_size": 12},
            {"path": "sub", "is_dir": True},
        ]
        assert http.get(f"{ART}/artifacts/_modelkeep/versions/churn/9/MLmodel").status_code == 404
        assert http.get(f"{ART}/artifacts/_modelkeep/versions/churn/x/MLmodel").status_code == 404
    with served.http("boss") as http:
        r = http.put(f"{base}/MLmodel", content=b"changed")
        assert r.status_code == 400 and "never change" in r.json()["message"]
        assert http.delete(f"{base}/MLmodel").status_code == 400
    with served.http("other") as http:
        assert http.get(f"{base}/MLmodel").status_code == 403
    # a name with '/' in it: its grant is the one checked, not that of its first segment
    with mk.open(served.root) as repo:
        repo.add(folder, "team/fraud-files")
        repo.register("team/fraud-files", "team/fraud")
        accounts.add_user(repo.db, "teamer")
        accounts.grant(repo.db, "teamer", "viewer", "team")
        served.tokens["teamer"] = accounts.create_token(repo.db, "teamer")[0]
    nested = f"{ART}/artifacts/_modelkeep/versions/team/fraud/1/MLmodel"
    with served.http("val") as http:
        assert http.get(nested).content == b"flavors: {}\n"
    with served.http("teamer") as http:  # a grant on the model "team" only
        assert http.get(nested).status_code == 403


def test_a_folder_named_like_anothers_inside_a_run_is_still_the_runs(
    served: mkserve.Served, story: dict[str, Any]
) -> None:
    """bob's logged model id, written inside ann's run folder, does not make the path
    bob's; nor can bob register ann's files as made by his own run."""
    run = story["run_id"]
    api = "/api/2.0/mlflow"
    with served.http("bob") as bob:
        made = bob.post(f"{api}/logged-models", json={"experiment_id": "0", "name": "b"})
        model_id = made.json()["model"]["info"]["model_id"]
        inside = f"1/{run}/artifacts/models/{model_id}/artifacts/evil.pkl"
        r = bob.put(f"{ART}/artifacts/{inside}", content=b"evil")
        assert r.status_code == 403 and "another account's run" in r.json()["message"]
        assert bob.put(f"{ART}/artifacts/0/models/{model_id}/artifacts/ok.pkl", content=b"ok")
        own = bob.post(f"{api}/runs/create", json={"experiment_id": "0"}).json()
        own_run = own["run"]["info"]["run_id"]
        assert bob.post(f"{api}/registered-models/create", json={"name": "bobs"}).status_code == 200
        claim = {"name": "bobs", "source": f"runs:/{run}/ckpt", "run_id": own_run}
        r = bob.post(f"{api}/model-versions/create", json=claim)
        assert r.status_code == 400 and "were made by run" in r.json()["message"]
        r = bob.post(f"{api}/model-versions/create", json={**claim, "run_id": None})
        assert r.status_code == 403
    with served.http("ann") as ann:
        listed = ann.get(f"{ART}/artifacts", params={"path": f"1/{run}/artifacts"}).json()
        assert "models" not in [f["path"] for f in listed["files"]]


def test_racing_uploads_never_make_a_path_both_file_and_folder(backend_repo: mk.Repo) -> None:
    """Two servers (threads here) writing `a/b` and `a/b/c` at once: one wins, the other
    is refused; on PostgreSQL as on SQLite. Two first writes of one path: one row."""
    import threading

    db = backend_repo.db
    for i in range(10):
        outcomes: list[str] = []

        def put(path: str, outcomes: list[str] = outcomes) -> None:
            try:
                mlflow_artifacts.put(db, path, "00" * 32, 1, None, "me")
                outcomes.append("ok")
            except ArtifactPathConflict:
                outcomes.append("clash")

        base = f"0/{'a' * 32}/artifacts/x{i}"
        threads = [
            threading.Thread(target=put, args=(p,))
            for p in (f"{base}/b", f"{base}/b/c", f"{base}/d", f"{base}/d")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("ok") == 3 and outcomes.count("clash") == 1, outcomes
        paths = [f.path for f in mlflow_artifacts.files_under(db, base)]
        assert paths in (["b", "d"], ["b/c", "d"])
