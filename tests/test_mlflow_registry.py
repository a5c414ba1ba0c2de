"""MLflow's model registry API on `modelkeep serve`, judged by the unmodified MLflow client.

One real server for the module, with accounts and a policy with a gate; the client runs in
subprocesses. Files a version is made of are put in the store as the artifact proxy does
(a blob and an `mlflow_artifacts` row), through the library, so the mapping is tested on
its own; what the client changed is read back with modelkeep's own commands.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelkeep as mk
from modelkeep import content
from modelkeep.errors import NotRegistered, RegistryRefused
from modelkeep.meta import mlflow_artifacts
from tests import mkserve
from tests.mlflow_client import MLFLOW_2, client_run

POLICY = '[policy.gated.production]\ngates = ["auc >= 0.9"]\n'


def _serve(base: Path) -> mkserve.Served:
    store = base / "store"
    store.mkdir()
    mkserve.admin(store, "init", "-q")
    (store / "modelkeep.toml").write_text(POLICY)
    s = mkserve.start(store)
    mkserve.with_accounts(
        s, {"ann": "editor", "bob": "editor", "val": "viewer", "mo": "maintainer", "boss": "admin"}
    )
    return s


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    s = _serve(tmp_path_factory.mktemp("mlflow-registry"))
    yield s
    s.stop()


def put_artifacts(served: mkserve.Served, prefix: str, files: dict[str, bytes], user: str) -> None:
    """Files as the artifact proxy keeps them: blobs in the store, one row each."""
    with mk.open(served.root) as repo:
        parts = repo.parts
        with parts.store.writing():
            for rel, data in files.items():
                tmp = served.root.parent / "upload.tmp"
                tmp.write_bytes(data)
                digest, size = content.put_file(parts, tmp)
                mlflow_artifacts.put(repo.db, f"{prefix}/{rel}", digest, size, parts.store_id, user)


RUNS = r"""
import json, os
import mlflow
from mlflow import MlflowClient

tokens = json.loads(os.environ.pop("TOKENS"))
def as_(user):
    os.environ["MLFLOW_TRACKING_TOKEN"] = tokens[user]
    return MlflowClient()

ann = as_("ann")
exp = ann.create_experiment("registry")
out = {"experiment": exp}
for name, auc in (("weak", 0.8), ("good", 0.95)):
    run = ann.create_run(exp, run_name=name).info.run_id
    ann.log_metric(run, "auc", auc)
    ann.set_terminated(run)
    out[name] = run
bob = as_("bob")
out["bobs"] = bob.create_run(exp, run_name="bobs").info.run_id
print(json.dumps(out))
"""

PRELUDE = r"""
import json, os
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

tokens = json.loads(os.environ.pop("TOKENS"))
ids = json.loads(os.environ.pop("IDS"))
exp, weak, good, bobs = ids["experiment"], ids["weak"], ids["good"], ids["bobs"]
out = {}

def as_(user):
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)
    os.environ["MLFLOW_TRACKING_TOKEN"] = tokens[user]
    return MlflowClient()

def code(name, call):
    try:
        call()
        out[name] = "ok"
    except MlflowException as exc:
        out[name] = [exc.error_code, str(exc)]
"""

STORY = (
    PRELUDE
    + r"""
ann, mo, boss, val = as_("ann"), None, None, None
m = ann.create_registered_model("gated", tags={"team": "risk"}, description="fraud model")
out["created"] = [m.name, m.description, m.tags]
code("twice", lambda: ann.create_registered_model("gated"))
v1 = ann.create_model_version(
    "gated", f"runs:/{weak}/model", run_id=weak, description="weak one", tags={"k": "v"}
)
v2 = ann.create_model_version("gated", f"mlflow-artifacts:/{exp}/{good}/artifacts/model")
out["v1"] = [v1.version, v1.current_stage, v1.description, v1.tags, v1.run_id, v1.source,
             v1.status]
out["v2"] = [v2.version, v2.run_id]
for i in range(3):
    ann.create_registered_model(f"page-{i}")
pages, token = [], None
while True:
    got = ann.search_registered_models(max_results=2, page_token=token)
    pages.append([m.name for m in got])
    token = got.token
    if not token:
        break
out["model_pages"] = pages
out["like"] = [m.name for m in ann.search_registered_models(filter_string="name LIKE 'page-%'")]
out["ilike"] = [m.name for m in ann.search_registered_models(filter_string="name ILIKE 'PAGE-1'")]
out["by_tag"] = [m.name for m in ann.search_registered_models(filter_string="tags.team = 'risk'")]
out["eq"] = [m.name for m in ann.search_registered_models(filter_string="name = 'gated'")]
out["desc"] = [m.name for m in ann.search_registered_models(order_by=["name DESC"])]
first = ann.search_model_versions("name = 'gated'", max_results=1)
second = ann.search_model_versions("name = 'gated'", max_results=1, page_token=first.token)
out["version_pages"] = [[v.version for v in first], [v.version for v in second], second.token]
out["by_run"] = [v.version for v in ann.search_model_versions(f"run_id = '{good}'")]
out["run_in"] = sorted(
    v.version for v in ann.search_model_versions(f"run_id IN ('{good}', '{weak}')")
)
out["by_vtag"] = [v.version for v in ann.search_model_versions("tags.k = 'v'")]
ann.update_registered_model("gated", description="the fraud model")
ann.update_model_version("gated", "1", description="weak model")
ann.set_registered_model_tag("gated", "owner", "ann")
ann.delete_registered_model_tag("gated", "team")
ann.set_model_version_tag("gated", "2", "checked", "yes")
ann.delete_model_version_tag("gated", "1", "k")
got = ann.get_registered_model("gated")
out["model"] = [got.description, got.tags]
got = ann.get_model_version("gated", "1")
out["version"] = [got.description, got.tags]
out["v2_tags"] = ann.get_model_version("gated", "2").tags
mo = as_("mo")
code("gate", lambda: mo.transition_model_version_stage("gated", "1", "Production"))
code("editor_moves", lambda: as_("ann").transition_model_version_stage("gated", "2", "Staging"))
mo = as_("mo")
mo.transition_model_version_stage("gated", "2", "Staging")
moved = mo.transition_model_version_stage("gated", "2", "Production")
out["moved"] = moved.current_stage
out["latest"] = sorted((v.version, v.current_stage) for v in mo.get_latest_versions("gated"))
out["latest_prod"] = [v.version for v in mo.get_latest_versions("gated", stages=["Production"])]
mo.set_registered_model_alias("gated", "champion", "2")
out["alias"] = mo.get_model_version_by_alias("gated", "champion").version
out["aliases"] = mo.get_registered_model("gated").aliases
out["version_aliases"] = list(mo.get_model_version("gated", "2").aliases)
out["download"] = mo.get_model_version_download_uri("gated", "2")
val = as_("val")
out["viewer_reads"] = val.get_registered_model("gated").name
code("viewer_tags", lambda: val.set_registered_model_tag("gated", "x", "y"))
code("viewer_aliases", lambda: val.set_registered_model_alias("gated", "x", "2"))
code("other_run", lambda: as_("bob").create_model_version(
    "gated", f"runs:/{good}/model", run_id=good))
code("editor_deletes", lambda: as_("ann").delete_registered_model("page-2"))
boss = as_("boss")
boss.rename_registered_model("page-0", "renamed")
out["renamed"] = boss.get_registered_model("renamed").name
code("old_name", lambda: boss.get_registered_model("page-0"))
boss.delete_registered_model("page-1")
code("deleted", lambda: boss.get_registered_model("page-1"))
code("delete_production", lambda: boss.delete_registered_model("gated"))
boss.delete_model_version("gated", "1")
code("deleted_version", lambda: boss.get_model_version("gated", "1"))
as_("mo").delete_registered_model_alias("gated", "champion")
code("no_alias", lambda: as_("mo").get_model_version_by_alias("gated", "champion"))
os.environ.pop("MLFLOW_TRACKING_TOKEN")
os.environ["MLFLOW_TRACKING_USERNAME"] = "mo"
os.environ["MLFLOW_TRACKING_PASSWORD"] = tokens["mo"]
MlflowClient().set_registered_model_alias("gated", "basic", "2")
out["basic"] = MlflowClient().get_model_version_by_alias("gated", "basic").version
print(json.dumps(out))
"""
)


def _ids(served: mkserve.Served, client: str = "3") -> dict[str, Any]:
    found = client_run(served, RUNS, client, TOKENS=json.dumps(served.tokens))
    exp = found["experiment"]
    for name, user in (("weak", "ann"), ("good", "ann"), ("bobs", "bob")):
        prefix = f"{exp}/{found[name]}/artifacts/model"
        files = {"MLmodel": f"flavors: {name}\n".encode(), "model.pkl": name.encode() * 1000}
        put_artifacts(served, prefix, files, user)
    return found


@pytest.fixture(scope="module")
def ids(served: mkserve.Served) -> dict[str, Any]:
    return _ids(served)


@pytest.fixture(scope="module")
def story(served: mkserve.Served, ids: dict[str, Any]) -> dict[str, Any]:
    return client_run(served, STORY, TOKENS=json.dumps(served.tokens), IDS=json.dumps(ids))


@pytest.fixture(scope="module")
def told_2(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The same story told by the 2.22 client, to a server of its own: (story, ids)."""
    s = _serve(tmp_path_factory.mktemp("mlflow-registry-2"))
    try:
        found = _ids(s, MLFLOW_2)
        env = {"TOKENS": json.dumps(s.tokens), "IDS": json.dumps(found)}
        yield client_run(s, STORY, MLFLOW_2, **env), found
    finally:
        s.stop()


@pytest.fixture(params=["3", MLFLOW_2], ids=lambda c: f"mlflow{c}")
def told(request: pytest.FixtureRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    if request.param == "3":
        return request.getfixturevalue("story"), request.getfixturevalue("ids")
    return request.getfixturevalue("told_2")  # type: ignore[no-any-return]


def test_models_and_versions_are_created_and_searched(
    told: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    story, ids = told
    assert story["created"] == ["gated", "fraud model", {"team": "risk"}]
    assert story["twice"][0] == "RESOURCE_ALREADY_EXISTS"
    assert story["v1"] == [
        "1", "None", "weak one", {"k": "v"}, ids["weak"], f"runs:/{ids['weak']}/model", "READY",
    ]  # fmt: skip
    assert story["v2"] == ["2", ids["good"]]  # the run is found from the artifact path
    assert story["model_pages"] == [["gated", "page-0"], ["page-1", "page-2"]]
    assert story["like"] == ["page-0", "page-1", "page-2"]
    assert story["ilike"] == ["page-1"]
    assert story["by_tag"] == ["gated"] and story["eq"] == ["gated"]
    assert story["desc"] == ["page-2", "page-1", "page-0", "gated"]
    assert story["version_pages"][:2] == [["2"], ["1"]] and not story["version_pages"][2]
    assert story["by_run"] == ["2"] and story["run_in"] == ["1", "2"]
    assert story["by_vtag"] == ["1"]


def test_descriptions_tags_stages_and_aliases(
    told: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    story = told[0]
    assert story["model"] == ["the fraud model", {"owner": "ann"}]
    assert story["version"] == ["weak model", {}]
    assert story["v2_tags"] == {"checked": "yes"}
    assert story["moved"] == "Production"
    assert story["latest"] == [["1", "None"], ["2", "Production"]]
    assert story["latest_prod"] == ["2"]
    assert story["alias"] == "2" and story["aliases"] == {"champion": "2"}
    assert story["version_aliases"] == ["champion"]
    assert story["download"] == "mlflow-artifacts:/_modelkeep/versions/gated/2"
    assert story["viewer_reads"] == "gated"
    assert story["renamed"] == "renamed"
    assert story["basic"] == "2"  # basic credentials: user and token


def test_a_gate_refuses_with_its_reason(story: dict[str, Any]) -> None:
    code, message = story["gate"]
    assert code == "INVALID_PARAMETER_VALUE"
    assert "auc >= 0.9" in message and "0.8" in message and "gated:v1" in message


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("editor_moves", "PERMISSION_DENIED"),
        ("viewer_tags", "PERMISSION_DENIED"),
        ("viewer_aliases", "PERMISSION_DENIED"),
        ("other_run", "PERMISSION_DENIED"),
        ("editor_deletes", "PERMISSION_DENIED"),
        ("old_name", "RESOURCE_DOES_NOT_EXIST"),
        ("deleted", "RESOURCE_DOES_NOT_EXIST"),
        ("delete_production", "INVALID_PARAMETER_VALUE"),
        ("deleted_version", "RESOURCE_DOES_NOT_EXIST"),
        ("no_alias", "RESOURCE_DOES_NOT_EXIST"),
    ],
)
def test_refusals_are_mlflow_errors(story: dict[str, Any], case: str, code: str) -> None:
    got = story[case]
    assert got != "ok", f"{case} was allowed"
    assert got[0] == code, got
    assert len(got[1].splitlines()[0]) > len(code) + 20


def test_modelkeep_sees_the_clients_changes(served: mkserve.Served, story: dict[str, Any]) -> None:
    events = json.loads(mkserve.admin(served.root, "history", "gated", "--json"))
    events = events["events"] if isinstance(events, dict) else events
    by_action: dict[str, set[str]] = {}
    for e in events:
        by_action.setdefault(e["action"], set()).add(e["actor"])
    assert by_action["model-create"] == {"ann"}
    assert by_action["register"] == {"ann"}
    assert by_action["describe"] == {"ann"} and by_action["tag-set"] == {"ann"}
    assert by_action["promote"] == {"mo"} and by_action["alias-set"] == {"mo"}
    assert by_action["delete"] == {"boss"}
    renamed = json.loads(mkserve.admin(served.root, "history", "renamed", "--json"))
    renamed = renamed["events"] if isinstance(renamed, dict) else renamed
    assert [e["action"] for e in renamed] == ["model-create", "rename"]
    verified = json.loads(mkserve.admin(served.root, "audit", "--verify", "--json"))
    assert verified["ok"], verified
    with mk.open(served.root) as repo:
        v2 = repo.show("gated:v2")
        assert v2.stage == "production" and v2.registered and v2.kind == "dir"
        assert v2.metadata["mlflow"]["source"].startswith("mlflow-artifacts:/")
        assert {f.path for f in repo.files(v2) if f.kind == "file"} == {"MLmodel", "model.pkl"}
        assert repo.open("gated:v2", "model.pkl").read() == b"good" * 1000


ADVERSARIAL = (
    PRELUDE
    + r"""
ann = as_("ann")
ann.create_registered_model("target")
for i, name in enumerate(["a/../b", "Bad Name", "x\x01y", "/abs", "a" * 300, ""]):
    code(f"name{i}", lambda name=name: ann.create_registered_model(name))
code("huge_description", lambda: ann.create_registered_model("huge", description="d" * 30000))
code("huge_tag", lambda: ann.set_registered_model_tag("target", "k", "v" * 6000))
code("control_tag", lambda: ann.set_registered_model_tag("target", "k\x02", "v"))
for i, source in enumerate([
    f"mlflow-artifacts:/{exp}/../{exp}/{good}/artifacts/model",
    "file:///etc/passwd",
    "mlflow-artifacts:/nothing/here",
    "s3://bucket/model",
    "models:/m-00000000000000000000000000000000",
    f"mlflow-artifacts:/{exp}/{good}/artifacts/model\x00",
]):
    code(f"source{i}", lambda source=source: ann.create_model_version("target", source))
code("unknown_run", lambda: ann.create_model_version("target", f"runs:/{'0' * 32}/model"))
code("bobs_run", lambda: ann.create_model_version(
    "target", f"runs:/{bobs}/model", run_id=bobs))
code("not_a_number", lambda: ann.get_model_version("target", "abc"))
code("negative", lambda: ann.get_model_version("target", "-1"))
code("forged_token", lambda: ann.search_registered_models(page_token="Zm9yZ2Vk"))
code("wrong_kind_token", lambda: ann.search_model_versions(
    "name = 'target'", page_token=__import__("base64").urlsafe_b64encode(
        b'{"for": "runs", "offset": 1}').decode()))
code("bad_filter", lambda: ann.search_registered_models(filter_string="metrics.x > 1"))
code("bad_order", lambda: ann.search_registered_models(order_by=["nonsense DESC"]))
code("unknown_model", lambda: ann.get_registered_model("nobody"))
code("stage_none", lambda: as_("mo").transition_model_version_stage("target", "1", "None"))
code("bad_alias", lambda: as_("mo").set_registered_model_alias("target", "Bad Alias", "1"))
out["versions"] = [v.version for v in ann.search_model_versions("name = 'target'")]
print(json.dumps(out))
"""
)


@pytest.fixture(scope="module")
def adversarial(served: mkserve.Served, ids: dict[str, Any]) -> dict[str, Any]:
    return client_run(served, ADVERSARIAL, TOKENS=json.dumps(served.tokens), IDS=json.dumps(ids))


@pytest.mark.parametrize(
    ("case", "code", "says"),
    [
        *((f"name{i}", "INVALID_PARAMETER_VALUE", "names use lowercase") for i in range(5)),
        ("name5", "INVALID_PARAMETER_VALUE", "name"),
        ("huge_description", "INVALID_PARAMETER_VALUE", "description"),
        ("huge_tag", "INVALID_PARAMETER_VALUE", "at most"),
        ("control_tag", "INVALID_PARAMETER_VALUE", "control"),
        ("source0", "INVALID_PARAMETER_VALUE", "'..'"),
        ("source1", "INVALID_PARAMETER_VALUE", "not an artifact URI"),
        ("source2", "INVALID_PARAMETER_VALUE", "holds no file"),
        ("source3", "INVALID_PARAMETER_VALUE", "not an artifact URI"),
        ("source4", "INVALID_PARAMETER_VALUE", "no logged model"),
        ("source5", "INVALID_PARAMETER_VALUE", "control"),
        ("unknown_run", "RESOURCE_DOES_NOT_EXIST", "run"),
        ("bobs_run", "PERMISSION_DENIED", "another account's run"),
        ("not_a_number", "INVALID_PARAMETER_VALUE", "whole number"),
        ("negative", "INVALID_PARAMETER_VALUE", "whole number"),
        ("forged_token", "INVALID_PARAMETER_VALUE", "page_token"),
        ("wrong_kind_token", "INVALID_PARAMETER_VALUE", "page_token"),
        ("bad_filter", "INVALID_PARAMETER_VALUE", "cannot search by"),
        ("bad_order", "INVALID_PARAMETER_VALUE", "cannot order by"),
        ("unknown_model", "RESOURCE_DOES_NOT_EXIST", "nobody"),
        ("stage_none", "INVALID_PARAMETER_VALUE", "None"),
        ("bad_alias", "INVALID_PARAMETER_VALUE", "alias"),
    ],
)
def test_bad_input_is_a_clear_mlflow_error(
    adversarial: dict[str, Any], case: str, code: str, says: str
) -> None:
    got = adversarial[case]
    assert got != "ok", f"{case} was allowed"
    assert got[0] == code, got
    assert says in got[1], got


def test_nothing_is_half_written(adversarial: dict[str, Any], served: mkserve.Served) -> None:
    assert adversarial["versions"] == []
    with mk.open(served.root) as repo:
        assert [v.number for v in repo.versions("target")] == []
        assert repo.verify_audit().ok


def test_a_per_model_grant_sees_and_changes_its_model_only(
    served: mkserve.Served, story: dict[str, Any], tmp_path: Path
) -> None:
    from modelkeep.meta import accounts

    with mk.open(served.root) as repo:
        accounts.add_user(repo.db, "gina")
        accounts.grant(repo.db, "gina", "editor", "gated")
        served.tokens["gina"] = accounts.create_token(repo.db, "gina")[0]
    got = client_run(
        served,
        PRELUDE
        + r"""
gina = as_("gina")
out["seen"] = [m.name for m in gina.search_registered_models()]
gina.set_registered_model_tag("gated", "by", "gina")
code("other_model", lambda: gina.set_registered_model_tag("renamed", "by", "gina"))
print(json.dumps(out))
""",
        TOKENS=json.dumps(served.tokens),
        IDS=json.dumps({"experiment": "", "weak": "", "good": "", "bobs": ""}),
    )
    assert got["seen"] == ["gated"]
    assert got["other_model"][0] == "PERMISSION_DENIED"


END_TO_END = r"""
import json, os, warnings
warnings.simplefilter("ignore")
import mlflow, mlflow.sklearn, mlflow.pyfunc
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

tokens = json.loads(os.environ.pop("TOKENS"))
os.environ["MLFLOW_TRACKING_TOKEN"] = tokens["ann"]
X, y = load_iris(return_X_y=True)
clf = LogisticRegression(max_iter=500).fit(X, y)
mlflow.set_experiment("iris")
with mlflow.start_run() as run:
    mlflow.log_metric("auc", 0.97)
    info = mlflow.sklearn.log_model(clf, name="model", registered_model_name="iris")
out = {"version": info.registered_model_version, "model_id": info.model_id, "run": run.info.run_id}
os.environ["MLFLOW_TRACKING_TOKEN"] = tokens["mo"]
MlflowClient().set_registered_model_alias("iris", "champion", info.registered_model_version)
MlflowClient().transition_model_version_stage("iris", "1", "Production")
expected = clf.predict(X).tolist()
os.environ["MLFLOW_TRACKING_TOKEN"] = tokens["val"]
for uri in ("models:/iris@champion", "models:/iris/1", "models:/iris/Production"):
    out[uri] = mlflow.pyfunc.load_model(uri).predict(X).tolist() == expected
got = MlflowClient().get_model_version("iris", "1")
out["mv"] = [got.run_id, got.model_id, got.source]
print(json.dumps(out))
"""


def test_log_model_registers_and_models_uris_load_it(served: mkserve.Served) -> None:
    got = client_run(served, END_TO_END, TOKENS=json.dumps(served.tokens))
    assert got["version"] in ("1", 1)
    assert got["models:/iris@champion"] and got["models:/iris/1"]
    assert got["models:/iris/Production"]
    # (the client's ModelVersion.from_proto drops model_id; the server sends it)
    assert got["mv"] == [got["run"], None, f"models:/{got['model_id']}"]
    with mk.open(served.root) as repo:
        v1 = repo.show("iris@production")
        assert v1.run_id == got["run"] and v1.metadata["mlflow"]["model_id"] == got["model_id"]
        names = {f.path for f in repo.files(v1) if f.kind == "file"}
        assert "MLmodel" in names and any(n.startswith("model.") for n in names)


# -- the library under the API, on SQLite and PostgreSQL ----------------------------------------


def _files(repo: mk.Repo, tmp: Path, files: dict[str, bytes]) -> list[tuple[str, str, int]]:
    out = []
    with repo.store.writing():
        for rel, data in files.items():
            (tmp / "f").write_bytes(data)
            digest, size = content.put_file(repo.parts, tmp / "f")
            out.append((rel, digest, size))
    return out


def test_a_version_of_stored_files_is_a_tree_of_them(backend_repo: mk.Repo, tmp_path: Path) -> None:
    from modelkeep import registry

    files = {"MLmodel": b"flavors: {}\n", "data/model.pkl": b"w" * 100_000, "data/x/y": b"y"}
    listed = _files(backend_repo, tmp_path, files)
    registry.create_model(backend_repo.parts, "m", description="d", tags={"a": "b"})
    v, created = registry.register_files(
        backend_repo.parts, "m", listed, origin="mlflow-artifacts:/1/r/artifacts/model",
        metadata={"mlflow": {"source": "s"}}, run_id=None, tags={"t": "1"},
    )  # fmt: skip
    assert created and v.number == 1 and v.registered and v.kind == "dir"
    assert v.file_count == 3 and v.size == sum(len(b) for b in files.values())
    for rel, data in files.items():
        assert backend_repo.open("m:v1", rel).read() == data
    again, created = registry.register_files(
        backend_repo.parts, "m", listed, origin="x", metadata={}, run_id=None
    )
    assert (again.number, created) == (1, False)  # the same files: the same version
    backend_repo.fsck()
    assert backend_repo.verify_audit().ok


def test_a_rename_keeps_history_and_a_new_model_may_take_the_old_name(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    from modelkeep import registry
    from modelkeep.meta import model_tags

    parts = backend_repo.parts
    listed = _files(backend_repo, tmp_path, {"MLmodel": b"one"})
    registry.create_model(parts, "old")
    registry.register_files(parts, "old", listed, origin="o", metadata={}, run_id=None)
    backend_repo.set_alias("old@champion", "old:v1")
    model_tags.set_version_tag(backend_repo.db, "old", 1, "k", "v", "ann")
    registry.rename_model(parts, "old", "new")
    registry.create_model(parts, "old")  # another model, under the freed name
    assert [e.action for e in backend_repo.history("new")] == [
        "model-create", "register", "alias-set", "tag-set", "rename",
    ]  # fmt: skip
    assert [e.action for e in backend_repo.history("old")] == ["model-create"]
    assert backend_repo.show("new@champion").number == 1
    assert model_tags.one(backend_repo.db, "new").versions[0].tags == {"k": "v"}
    assert backend_repo.verify_audit().ok
    backend_repo.promote("new:v1", "staging")
    with pytest.raises(RegistryRefused, match="archive"):
        registry.delete_model(parts, "new", "gone")
    assert backend_repo.show("new:v1").deleted_at is None  # refused: nothing deleted
    backend_repo.archive("new:v1")
    registry.delete_model(parts, "new", "gone")
    with pytest.raises(NotRegistered):
        model_tags.one(backend_repo.db, "new")
    assert backend_repo.verify_audit().ok


_FAIL_UNREGISTER = {  # a trigger that makes the last step of a model's deletion fail
    "sqlite": [
        "CREATE TRIGGER boom BEFORE UPDATE OF registered ON artifacts "
        "WHEN NEW.registered = 0 BEGIN SELECT RAISE(ABORT, 'boom'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER boom BEFORE UPDATE OF registered ON artifacts FOR EACH ROW "
        "WHEN (NOT NEW.registered) EXECUTE FUNCTION boom()",
    ],
}


def test_deleting_a_model_is_one_transaction(backend_repo: mk.Repo, tmp_path: Path) -> None:
    """A failure at the last step (unregistering) leaves every version as it was: no model
    half deleted, no event for what did not happen."""
    from sqlalchemy import text

    from modelkeep import registry
    from modelkeep.errors import ModelkeepError

    parts = backend_repo.parts
    registry.create_model(parts, "whole")
    for i in range(3):
        listed = _files(backend_repo, tmp_path, {"MLmodel": f"v{i}".encode()})
        registry.register_files(parts, "whole", listed, origin="o", metadata={}, run_id=None)
    events = len(backend_repo.history("whole"))
    with backend_repo.db.write() as s:
        for statement in _FAIL_UNREGISTER[s.get_bind().dialect.name]:
            s.execute(text(statement))
    with pytest.raises(ModelkeepError, match="boom"):
        registry.delete_model(parts, "whole", "gone")
    with pytest.raises(ModelkeepError, match="needs a reason"):
        registry.delete_model(parts, "whole", "  ")
    assert [v.deleted_at for v in backend_repo.versions("whole")] == [None, None, None]
    assert len(backend_repo.history("whole")) == events
    with backend_repo.db.write() as s:
        on = " ON artifacts" if s.get_bind().dialect.name == "postgresql" else ""
        s.execute(text(f"DROP TRIGGER boom{on}"))
    gone = registry.delete_model(parts, "whole", "gone")
    assert [v.number for v in gone] == [1, 2, 3]
    assert all(v.deleted_at is not None for v in backend_repo.versions("whole"))
    assert backend_repo.verify_audit().ok


def test_an_unregistered_version_is_not_mlflows(
    served: mkserve.Served, story: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "w.bin").write_bytes(b"added, never registered")
    with mk.open(served.root) as repo:
        number = repo.add(tmp_path / "w.bin", "gated", type="model", track=False).version.number
    with served.http("ann") as http:
        got = http.get(
            "/api/2.0/mlflow/model-versions/get", params={"name": "gated", "version": number}
        )
        assert got.status_code == 404
        assert got.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert "not a registered version" in got.json()["message"]
        found = http.get(
            "/api/2.0/mlflow/model-versions/search", params={"filter": "name = 'gated'"}
        ).json()
        assert [v["version"] for v in found["model_versions"]] == ["2"]


def test_archive_existing_versions_archives_the_others_in_that_stage(
    served: mkserve.Served, tmp_path: Path
) -> None:
    """transition-stage with archive_existing_versions: the version moves, and every other
    version in that stage is archived after it (each through the policy, checked first)."""
    with mk.open(served.root) as repo:
        for i in range(3):
            (tmp_path / f"w{i}.bin").write_bytes(b"w" * (i + 1))
            repo.add(tmp_path / f"w{i}.bin", "stacked-files")
            repo.register(f"stacked-files:v{i + 1}", "stacked")
        repo.acting_as("mo").promote("stacked:v1", "staging")
        repo.acting_as("mo").promote("stacked:v2", "staging")
    api = "/api/2.0/mlflow/model-versions/transition-stage"
    body = {"name": "stacked", "version": "3", "stage": "Staging"}
    with served.http("mo") as mo:
        r = mo.post(api, json={**body, "archive_existing_versions": True})
        assert r.status_code == 200, r.text
        assert r.json()["model_version"]["current_stage"] == "Staging"
    with mk.open(served.root) as repo:
        stages = {v.number: v.stage for v in repo.versions("stacked")}
    assert stages == {1: "archived", 2: "archived", 3: "staging"}
