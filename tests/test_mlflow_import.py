"""`modelkeep import mlflow`: real MLflow stores, made by the real client, brought in.

The MLflow side is built in a subprocess with MLflow's own client (an SQLite tracking and
registry database, artifacts in a folder beside it; and an `mlruns` file store, which
MLflow 3 still writes when MLFLOW_ALLOW_FILE_STORE is set), and the same client dumps
what it holds: every run, param, tag, metric value with its step and timestamp, artifact
(by BLAKE3), model version and its files. The import is checked against that dump, item
by item, with the artifacts' bytes restored from the store.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import pytest
from sqlalchemy import select

import modelkeep as mk
from modelkeep import content
from modelkeep.meta import experiments, tracking
from modelkeep.meta.models import (
    ArtifactRow,
    EventRow,
    MetricRow,
    MlflowArtifactRow,
    ModelTagRow,
    VersionRow,
    VersionTagRow,
)
from modelkeep.mlflow_import import import_mlflow
from tests import mkserve
from tests.conftest import cli, one_error_line
from tests.mlflow_client import client_run

BUILD = r"""
import json, os, sys
import blake3
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

uri = sys.argv[1]
c = MlflowClient(tracking_uri=uri, registry_uri=uri)
T0 = 1_700_000_000_000


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def run(exp, name, start, tags=None):
    return c.create_run(exp, start_time=start, tags=tags or {}, run_name=name).info.run_id


fraud = c.create_experiment("fraud", tags={"team": "risk"})
churn = c.create_experiment("churn")
base = run(fraud, "base", T0, {"team": "risk"})
c.log_batch(
    base,
    metrics=[Metric("auc", 0.8 + s / 100, T0 + s * 1000, s) for s in range(5)]
    + [Metric("loss", v, T0 + s * 1000, s) for s, v in enumerate([0.5, float("nan"), 0.3])],
    params=[Param("lr", "0.1"), Param("depth", "6")],
)
put("work/model/weights.bin", os.urandom(3 * 1024 * 1024 + 17))
put("work/model/MLmodel", b"flavors: {}\n")
put("work/note.txt", b"a small text file\n")
c.log_artifacts(base, "work/model", "model")
c.log_artifact(base, "work/note.txt")
child = run(fraud, "child", T0 + 10, {"mlflow.parentRunId": base})
c.log_param(child, "model", "gbm")
c.log_metric(child, "auc", 0.95, timestamp=T0 + 20, step=0)
put("work/model2/weights.bin", os.urandom(1024 * 1024))
c.log_artifacts(child, "work/model2", "model")
c.set_terminated(child, "FINISHED", end_time=T0 + 30)
c.set_terminated(base, "FINISHED", end_time=T0 + 60)
other = run(fraud, "other", T0 + 100)
c.log_metric(other, "auc", 0.5, timestamp=T0 + 110, step=3)
c.set_terminated(other, "FAILED", end_time=T0 + 200)
c.delete_run(other)
lost = run(churn, "churn-1", T0 + 300)
c.log_param(lost, "k", "v")
c.set_terminated(lost, "KILLED", end_time=T0 + 310)
c.delete_experiment(churn)
plain = run("0", "in-default", T0 + 400)
c.set_terminated(plain, "FINISHED", end_time=T0 + 410)

c.create_registered_model("fraud-detector", tags={"owner": "risk"}, description="finds fraud")
c.create_model_version("fraud-detector", f"runs:/{base}/model", run_id=base,
                       description="first", tags={"data": "2023"})
c.create_model_version("fraud-detector", f"runs:/{child}/model", run_id=child)
c.transition_model_version_stage("fraud-detector", "1", "Staging")
c.transition_model_version_stage("fraud-detector", "2", "Production")
c.set_registered_model_alias("fraud-detector", "champion", "2")
for name in sys.argv[2:]:  # more models, each one version of base's model
    c.create_registered_model(name)
    c.create_model_version(name, f"runs:/{base}/model", run_id=base)


def b3(path):
    with open(path, "rb") as f:
        return blake3.blake3(f.read()).hexdigest()


def files(folder):
    out = {}
    for top, _, names in os.walk(folder):
        for n in names:
            full = os.path.join(top, n)
            out[os.path.relpath(full, folder).replace(os.sep, "/")] = b3(full)
    return out


out = {"experiments": {}, "runs": {}, "models": {}}
for e in c.search_experiments(view_type=ViewType.ALL):
    out["experiments"][e.experiment_id] = {
        "name": e.name, "stage": e.lifecycle_stage, "tags": e.tags}
    for r in c.search_runs([e.experiment_id], run_view_type=ViewType.ALL):
        i = r.info
        folder = c.download_artifacts(i.run_id, "", f"dl/{i.run_id}")
        out["runs"][i.run_id] = {
            "experiment": e.name, "name": i.run_name, "user": i.user_id, "status": i.status,
            "start": i.start_time, "end": i.end_time, "deleted": i.lifecycle_stage == "deleted",
            "params": r.data.params, "tags": r.data.tags,
            "history": {k: [[m.value if m.value == m.value else "nan", m.step, m.timestamp]
                            for m in c.get_metric_history(i.run_id, k)]
                        for k in r.data.metrics},
            "artifacts": files(folder),
        }
for m in c.search_registered_models():
    vs = {}
    for v in c.search_model_versions(f"name = '{m.name}'"):
        folder = c.download_artifacts(v.run_id, "model", f"dl/v-{m.name}-{v.version}")
        vs[v.version] = {"stage": v.current_stage, "description": v.description,
                         "updated": v.last_updated_timestamp,
                         "tags": v.tags, "run_id": v.run_id, "files": files(folder)}
    out["models"][m.name] = {"description": m.description, "tags": m.tags,
                             "aliases": m.aliases, "versions": vs}
print(json.dumps(out))
"""


def build(folder: Path, uri: str, *extra_models: str, file_store: bool = False) -> dict[str, Any]:
    """An MLflow store written and dumped by the real client, in its own process."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    if file_store:
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    r = subprocess.run(
        [sys.executable, "-c", BUILD, uri, *extra_models],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("mlflow-sqlite")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return uri, build(folder, uri)


def fresh(tmp: Path) -> Path:
    with mk.init(tmp / "proj"):
        pass
    return tmp / "proj"


def run_import(proj: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    r = cli("import", "mlflow", *args, "--json", cwd=proj)
    doc = json.loads(r.stdout) if r.stdout.strip() else {}
    return r.returncode, doc, r.stderr


def b3_of(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def check_imported(repo: mk.Repo, want: dict[str, Any], tmp: Path) -> None:
    """Everything the MLflow dump holds is in repo, as MLflow has it."""
    ids = {}
    for spec in want["experiments"].values():
        found = experiments.by_name(repo.db, spec["name"])
        ids[spec["name"]] = found.id
        assert found.lifecycle_stage == spec["stage"], spec["name"]
        assert {k: found.tags[k] for k in spec["tags"]} == spec["tags"]
    for run_id, spec in want["runs"].items():
        got = tracking.get(repo.db, run_id)
        assert got.name == spec["name"]
        assert got.user == spec["user"]
        assert got.status.upper() == spec["status"], run_id
        assert tracking.ms(got.started_at) == spec["start"]
        assert got.ended_at is not None and tracking.ms(got.ended_at) == spec["end"]
        assert got.deleted == spec["deleted"], spec["name"]
        assert got.experiment_id == ids[spec["experiment"]]
        assert got.params == spec["params"]
        assert got.tags == spec["tags"]
        for key, history in spec["history"].items():
            mine = [
                [m.value if not math.isnan(m.value) else "nan", m.step, m.timestamp]
                for m in tracking.history(repo.db, run_id, key)
            ]
            assert sorted(mine, key=str) == sorted(history, key=str), (spec["name"], key)
        assert set(got.metrics) == set(spec["history"])
        prefix = f"{got.experiment_id}/{run_id}/artifacts/"
        with repo.db.read() as s:
            rows = {
                r.path.removeprefix(prefix): r.digest
                for r in s.scalars(
                    select(MlflowArtifactRow).where(MlflowArtifactRow.path.startswith(prefix))
                )
            }
        assert rows == spec["artifacts"], spec["name"]
        for path, digest in rows.items():  # the bytes themselves, restored
            out = tmp / "restored" / run_id / path
            out.parent.mkdir(parents=True, exist_ok=True)
            content.restore_content(repo.parts, f"b3:{digest}", out, force=True)
            assert b3_of(out) == spec["artifacts"][path]
    runs = {spec["name"]: run_id for run_id, spec in want["runs"].items()}
    assert repo.run(runs["child"]).parent_id == runs["base"]
    for name, model in want["models"].items():
        versions = {v.number: v for v in repo.versions(name)}
        assert sorted(versions) == sorted(int(n) for n in model["versions"])
        for number, spec in model["versions"].items():
            v = versions[int(number)]
            assert v.registered and v.type == "model"
            assert v.metadata["mlflow"]["model"] == name
            assert v.metadata["mlflow"]["version"] == int(number)
            assert v.run_id == spec["run_id"]
            want_stage = spec["stage"].lower()
            assert v.stage == ("none" if want_stage == "none" else want_stage)
            files = {f.path: f.digest for f in repo.files(v) if f.kind == "file"}
            assert files == {p: f"b3:{d}" for p, d in spec["files"].items()}
            with repo.db.read() as s:
                row = s.get(VersionRow, repo_version_id(repo, name, v.number))
                assert row is not None and row.description == (spec["description"] or "")
                own = select(VersionTagRow).where(VersionTagRow.version_id == row.id)
                tags = {t.key: t.value for t in s.scalars(own)}
            assert tags == spec["tags"]
        staged = [v for v in model["versions"].values() if v["stage"] != "None"]
        events = len(model["versions"]) + len(staged) + len(model["aliases"])
        assert len(repo.history(name)) == events  # one register, move, alias-set each
        got_aliases = {m.name: m.aliases for m in repo.models()}[name]
        assert got_aliases == {a: int(n) for a, n in model["aliases"].items()}
        with repo.db.read() as s:
            art = s.scalars(select(ArtifactRow).where(ArtifactRow.name == name)).one()
            assert art.description == (model["description"] or "")
            tags = {
                t.key: t.value
                for t in s.scalars(select(ModelTagRow).where(ModelTagRow.artifact_id == art.id))
            }
        assert tags == model["tags"]
    assert repo.verify_audit().ok, repo.verify_audit().problems


def repo_version_id(repo: mk.Repo, name: str, number: int) -> int:
    with repo.db.read() as s:
        return int(
            s.scalars(
                select(VersionRow.id)
                .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
                .where(ArtifactRow.name == name, VersionRow.number == number)
            ).one()
        )


def counts(repo: mk.Repo) -> dict[str, int]:
    from sqlalchemy import func

    with repo.db.read() as s:
        return {
            table.__tablename__: int(s.scalar(select(func.count()).select_from(table)) or 0)
            for table in (MetricRow, MlflowArtifactRow, VersionRow, EventRow, ArtifactRow)
        } | {"runs": len(repo.runs(deleted="all")), "experiments": len(
            experiments.all_experiments(repo.db))}  # fmt: skip


# -- the story --------------------------------------------------------------------------------


def test_an_sqlite_store_is_brought_whole_and_again_changes_nothing(
    store: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    uri, want = store
    source = Path(uri.removeprefix("sqlite:///"))
    source_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    proj = fresh(tmp_path)
    code, dry, _ = run_import(proj, uri, "--dry-run")
    assert code == 0 and dry["dry_run"]
    assert dry["brought"]["runs"] == len(want["runs"]) == 5
    assert dry["brought"]["versions"] == 2 and dry["brought"]["aliases"] == 1
    with mk.open(proj) as repo:
        assert repo.runs(deleted="all") == [] and repo.models() == []  # a dry run writes nothing

    code, first, err = run_import(proj, uri)
    assert code == 0, err
    brought = first["brought"]
    assert brought["runs"] == 5 and brought["experiments"] == 2  # Default was there
    assert brought["metrics"] == 5 + 3 + 1 + 1
    assert brought["artifacts"] == 4 and brought["artifact_bytes"] > 4 * 1024 * 1024
    assert (brought["models"], brought["versions"], brought["stages"], brought["aliases"]) == (
        1, 2, 2, 1)  # fmt: skip
    assert first["skipped"] == []
    with mk.open(proj) as repo:
        check_imported(repo, want, tmp_path)
        before = counts(repo)
        head = repo.verify_audit().head
        events = repo.history("fraud-detector")
    assert [e.action for e in events] == ["register", "register", "promote", "promote", "alias-set"]
    assert all("imported from MLflow sqlite:///" in e.reason for e in events)
    moved = want["models"]["fraud-detector"]["versions"]["2"]["updated"]
    when = datetime.fromtimestamp(moved / 1000, UTC).isoformat(timespec="milliseconds")
    assert events[3].reason.endswith(f"; Production there since {when}")  # MLflow's time, kept

    code, dry, err = run_import(proj, uri, "--dry-run")
    assert code == 0 and not any(dry["brought"].values()), dry
    code, again, err = run_import(proj, uri)
    assert code == 0, err
    assert not any(again["brought"].values())
    assert again["already"]["runs"] == 5 and again["already"]["versions"] == 2
    with mk.open(proj) as repo:
        assert counts(repo) == before
        assert repo.verify_audit().head == head  # not one event more
        check_imported(repo, want, tmp_path)
    assert cli("audit", "--verify", cwd=proj).returncode == 0
    assert hashlib.sha256(source.read_bytes()).hexdigest() == source_hash  # never written


def test_a_file_store_folder_is_brought(tmp_path: Path) -> None:
    """MLflow 3 writes an `mlruns` folder only with MLFLOW_ALLOW_FILE_STORE; it reads one
    for the import without being told."""
    want = build(tmp_path / "fs", "./mlruns", file_store=True)
    proj = fresh(tmp_path)
    code, doc, err = run_import(proj, str(tmp_path / "fs" / "mlruns"))
    assert code == 0, err
    assert doc["brought"]["runs"] == 5
    with mk.open(proj) as repo:
        check_imported(repo, want, tmp_path)


SERVED = r"""
import json, blake3, mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

c = MlflowClient()
exp = c.get_experiment_by_name("fraud")
out = {}
for r in c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
    run_id = r.info.run_id
    folder = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=f"dl/{run_id}")
    files = {}
    for info in c.list_artifacts(r.info.run_id, "model") + c.list_artifacts(r.info.run_id):
        if not info.is_dir:
            with open(f"{folder}/{info.path}", "rb") as f:
                files[info.path] = blake3.blake3(f.read()).hexdigest()
    out[r.info.run_id] = {
        "name": r.info.run_name, "params": r.data.params, "files": files,
        "auc": [[m.step, m.timestamp] for m in c.get_metric_history(r.info.run_id, "auc")],
    }
print(json.dumps(out))
"""


def test_the_mlflow_client_reads_the_import_from_modelkeep_serve(
    store: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Runs and their artifacts, imported, are what the MLflow client finds on the server;
    and an import whose source is a tracking server (this one) brings them again."""
    uri, want = store
    proj = fresh(tmp_path)
    code, _, err = run_import(proj, uri)
    assert code == 0, err
    served = mkserve.start(proj)
    try:
        mkserve.with_accounts(served, {"boss": "admin"})
        token = served.tokens["boss"]
        got = client_run(served, SERVED, MLFLOW_TRACKING_TOKEN=token)
        other = tmp_path / "other"
        other.mkdir()
        env = {"MLFLOW_TRACKING_TOKEN": token, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        r = cli("import", "mlflow", served.url, "--json", cwd=fresh(other), env=env)
    finally:
        served.stop()
    over_http = json.loads(r.stdout)
    assert over_http["brought"]["runs"] == len(want["runs"]), r.stderr
    assert over_http["brought"]["artifacts"] == 4
    assert over_http["brought"]["metrics"] == 5 + 3 + 1 + 1
    # The registry's MLflow endpoints are not served yet: said, and the rest brought.
    assert r.returncode in (0, 1) and [s["what"] for s in over_http["skipped"]] in (
        [], ["the model registry"])  # fmt: skip
    fraud = {i: r for i, r in want["runs"].items() if r["experiment"] == "fraud"}
    assert set(got) == set(fraud)
    for run_id, spec in fraud.items():
        assert got[run_id]["name"] == spec["name"]
        assert got[run_id]["params"] == spec["params"]
        assert got[run_id]["files"] == spec["artifacts"]  # every byte, through the proxy
        auc = sorted([m[1], m[2]] for m in spec["history"].get("auc", []))
        assert sorted(got[run_id]["auc"]) == auc


# -- stopped half-way ---------------------------------------------------------------------------

# The import in a process that kills itself (SIGKILL: no cleanup of any kind) at the Nth
# call of one of the steps, as a crash or a kill -9 would stop it there.
KILLED_AT = r"""
import os, signal, sys
import modelkeep as mk
from modelkeep import mlflow_import
from modelkeep.meta import mlflow_artifacts, tracking

target, attr, nth = sys.argv[2], sys.argv[3], int(sys.argv[4])
owner = {"tracking": tracking, "mlflow_artifacts": mlflow_artifacts, "Repo": mk.Repo}[target]
real = getattr(owner, attr)
calls = [0]

def dying(*args, **kw):
    calls[0] += 1
    if calls[0] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kw)

setattr(owner, attr, dying)
with mk.open(".") as repo:
    mlflow_import.import_mlflow(repo, sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "where",
    [
        ("tracking", "log_batch", 3),  # some runs filled, others only created
        ("mlflow_artifacts", "put", 2),  # one artifact of four written
        ("Repo", "add_content", 2),  # a model version made, the second not
        ("tracking", "update_run", 2),  # runs ending
    ],
)
def test_an_import_killed_half_way_completes_on_the_next(
    store: tuple[str, dict[str, Any]], tmp_path: Path, where: tuple[str, str, int]
) -> None:
    uri, want = store
    proj = fresh(tmp_path)
    env = {**os.environ, "MODELKEEP_USER": "tester"}
    r = subprocess.run(
        [sys.executable, "-c", KILLED_AT, uri, where[0], where[1], str(where[2])],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == -9, r.stderr[-3000:]
    with mk.open(proj) as repo:
        assert repo.verify_audit().ok
        left_running = [x for x in repo.runs(deleted="all") if x.status == "running"]
    assert left_running  # stopped in the middle indeed
    code, doc, err = run_import(proj, uri)
    assert code == 0, err
    assert doc["already"]["runs"] + doc["brought"]["runs"] == len(want["runs"])
    with mk.open(proj) as repo:
        check_imported(repo, want, tmp_path)  # each item once: the counts are exact


# -- what cannot be brought ------------------------------------------------------------------


def test_a_source_that_is_not_there_or_not_mlflow_is_one_line(tmp_path: Path) -> None:
    proj = fresh(tmp_path)
    missing = one_error_line(cli("import", "mlflow", str(tmp_path / "nothing"), cwd=proj))
    assert "no MLflow store at" in missing
    gone = one_error_line(cli("import", "mlflow", f"sqlite:///{tmp_path}/no.db", cwd=proj))
    assert "no MLflow store at" in gone
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("hello")
    folder = one_error_line(cli("import", "mlflow", str(tmp_path / "folder"), cwd=proj))
    assert "is not an MLflow store" in folder
    # modelkeep's own database has experiments and runs tables too: refused, and unchanged
    own = proj / ".modelkeep" / "meta.sqlite"
    before = hashlib.sha256(own.read_bytes()).hexdigest()
    refused = one_error_line(cli("import", "mlflow", f"sqlite:///{own}", cwd=proj))
    assert "is not an MLflow store" in refused
    assert hashlib.sha256(own.read_bytes()).hexdigest() == before
    scheme = one_error_line(cli("import", "mlflow", "databricks://x", cwd=proj))
    assert "is not an MLflow store" in scheme


def test_without_mlflow_the_error_names_the_extra(tmp_path: Path) -> None:
    """An environment where `import mlflow` fails, as it does without the extra."""
    blocker = tmp_path / "blocker" / "mlflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no mlflow here')\n")
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")
    proj = fresh(tmp_path)
    path = os.pathsep.join([str(tmp_path / "blocker"), os.environ.get("PYTHONPATH", "")])
    r = cli("import", "mlflow", str(tmp_path / "mlruns"), cwd=proj, env={"PYTHONPATH": path})
    assert "pip install 'modelkeep[mlflow]'" in one_error_line(r)


def test_names_modelkeep_refuses_are_reported_and_the_rest_brought(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'src' / 'mlflow.db'}"
    want = build(tmp_path / "src", uri, "Fraud Model", "ok-model")
    proj = fresh(tmp_path)
    r = cli("import", "mlflow", uri, cwd=proj)
    assert r.returncode == 1
    assert "skipped registered model 'Fraud Model' and its versions: invalid name" in r.stdout
    assert "1 item(s) of the MLflow store were not brought" in r.stderr
    with mk.open(proj) as repo:
        assert sorted(m.name for m in repo.models()) == ["fraud-detector", "ok-model"]
        assert len(repo.runs(deleted="all")) == len(want["runs"])
    code, doc, _ = run_import(proj, uri)
    assert code == 1 and [s["what"] for s in doc["skipped"]] == [
        "registered model 'Fraud Model' and its versions"
    ]


def test_an_artifact_that_cannot_be_read_is_reported_and_brought_once_it_can(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'src' / 'mlflow.db'}"
    want = build(tmp_path / "src", uri)
    base = next(i for i, r in want["runs"].items() if r["name"] == "base")
    note = next((tmp_path / "src").glob(f"mlruns/*/{base}/artifacts/note.txt"))
    saved = note.read_bytes()
    note.unlink()
    note.symlink_to(tmp_path / "gone")  # listed, and unreadable
    proj = fresh(tmp_path)
    code, doc, _ = run_import(proj, uri)
    assert code == 1
    assert [s["what"] for s in doc["skipped"]] in (
        [f"artifacts of run {base}"], [f"artifact 'note.txt' of run {base}"])  # fmt: skip
    assert doc["brought"]["runs"] == 5 and doc["brought"]["versions"] == 2
    with mk.open(proj) as repo:
        assert repo.run(base).status == "running"  # held, for the next import to finish
    note.unlink()
    note.write_bytes(saved)
    code, doc, err = run_import(proj, uri)
    assert code == 0, err
    assert doc["brought"]["runs"] == 1 and doc["brought"]["artifacts"] >= 1
    with mk.open(proj) as repo:
        check_imported(repo, want, tmp_path)


# -- PostgreSQL -------------------------------------------------------------------------------


def test_the_import_on_both_databases(
    store: tuple[str, dict[str, Any]], backend_repo: mk.Repo, tmp_path: Path
) -> None:
    uri, want = store
    report = import_mlflow(backend_repo, uri)
    assert report.ok, report.skipped
    check_imported(backend_repo, want, tmp_path)
    before = counts(backend_repo)
    again = import_mlflow(backend_repo, uri)
    assert again.ok and again.runs == 0 and again.versions == 0 and again.metrics == 0
    assert counts(backend_repo) == before


@pytest.fixture(autouse=True)
def _no_mlflow_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    yield
