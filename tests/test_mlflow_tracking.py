"""The unmodified MLflow client against `modelkeep serve`: the real client is the judge.

One real server for the module, with accounts; the MLflow code runs in subprocesses (so
MLFLOW_* settings are clean and the client's caches are its own), and what it logged is
read back with modelkeep's own commands. Bounds the client would never send are sent by
hand. The search language and the experiment rows are tested on their own too, the rows on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import modelkeep as mk
from modelkeep import meta
from modelkeep.errors import ExperimentExists, ExperimentNotFound, InvalidArgument, RunNotActive
from modelkeep.meta import experiments, tracking, tracking_search
from modelkeep.meta.tracking import LoggedMetric, TrackedRun
from tests import mkserve
from tests.mlflow_client import CLIENTS, client_run

API = "/api/2.0/mlflow"
ACCOUNTS: dict[str, str | None] = {
    "ann": "editor", "bob": "editor", "val": "viewer", "mo": "maintainer", "boss": "admin"
}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    base = tmp_path_factory.mktemp("mlflow")
    s = mkserve.start(base / "store")
    mkserve.with_accounts(s, ACCOUNTS)
    yield s
    s.stop()


@pytest.fixture(scope="module", params=CLIENTS, ids=lambda c: f"mlflow{c}")
def client(request: pytest.FixtureRequest) -> str:
    """Which MLflow client drives the stories: the newest 3.x, or 2.22 in a venv of its own."""
    return str(request.param)


@pytest.fixture(scope="module")
def client_served(
    client: str, served: mkserve.Served, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[mkserve.Served]:
    """A server of its own for each client (the stories name the same experiments)."""
    if client == "3":
        yield served
        return
    s = mkserve.start(tmp_path_factory.mktemp(f"mlflow-{client}") / "store")
    mkserve.with_accounts(s, ACCOUNTS)
    yield s
    s.stop()


STORY = r"""
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

out = {}
exp = mlflow.set_experiment("fraud")
with mlflow.start_run(run_name="base") as run:
    mlflow.log_param("lr", 0.1)
    mlflow.log_params({"depth": 6, "model": "rf"})
    for step in range(3):
        mlflow.log_metric("auc", 0.80 + step / 100, step=step)
    mlflow.log_metrics({"loss": 0.3}, step=2)
    mlflow.set_tag("team", "risk")
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_param("model", "gbm")
        mlflow.log_metric("auc", 0.95)
with mlflow.start_run(run_name="other") as other:
    mlflow.log_param("model", "rf")
    mlflow.log_metric("auc", 0.7)
    mlflow.set_tag("team", "ops")
    mlflow.set_tag("doomed", "yes")
    MlflowClient().delete_tag(other.info.run_id, "doomed")

def names(df):
    return list(df["tags.mlflow.runName"]) if len(df) else []

out["ids"] = {"base": run.info.run_id, "child": child.info.run_id, "other": other.info.run_id}
out["rf"] = names(mlflow.search_runs(
    filter_string="metrics.auc > 0.5 and params.model = 'rf'", order_by=["metrics.auc DESC"]))
out["rf_asc"] = names(mlflow.search_runs(
    filter_string="params.model = 'rf'", order_by=["metrics.auc ASC"]))
out["risk"] = names(mlflow.search_runs(
    filter_string="tags.team = 'risk' and attributes.status = 'FINISHED'"))
out["like"] = names(mlflow.search_runs(filter_string="attributes.run_name LIKE 'ch%'"))
client = MlflowClient()
out["history"] = [[m.step, m.value] for m in client.get_metric_history(run.info.run_id, "auc")]
client.delete_run(child.info.run_id)
out["after_delete"] = sorted(names(mlflow.search_runs()))
out["deleted_only"] = names(mlflow.search_runs(run_view_type=ViewType.DELETED_ONLY))
client.restore_run(child.info.run_id)
out["after_restore"] = sorted(names(mlflow.search_runs()))
first = client.search_runs([exp.experiment_id], max_results=2)
second = client.search_runs([exp.experiment_id], max_results=2, page_token=first.token)
out["pages"] = [len(first), len(second), second.token]
out["experiments"] = sorted(e.name for e in mlflow.search_experiments())
out["found"] = [e.name for e in mlflow.search_experiments(filter_string="name LIKE 'fr%'")]
got = client.get_run(run.info.run_id)
out["run"] = {
    "user": got.info.user_id, "status": got.info.status, "name": got.info.run_name,
    "params": got.data.params, "tags": got.data.tags, "metrics": got.data.metrics,
    "experiment_id": got.info.experiment_id, "ended": got.info.end_time is not None,
}
out["experiment_id"] = exp.experiment_id
out["version"] = mlflow.__version__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def story(client_served: mkserve.Served, client: str) -> dict[str, Any]:
    who = "mallory"  # what the client says its user is; the account is ann
    return client_run(
        client_served,
        STORY,
        client,
        MLFLOW_TRACKING_TOKEN=client_served.tokens["ann"],
        USER=who,
        LOGNAME=who,
        LNAME=who,
        USERNAME=who,
    )


def test_the_client_logs_searches_and_reads_back(story: dict[str, Any], client: str) -> None:
    assert story["version"].split(".")[0] == client.split(".")[0]
    assert story["rf"] == ["base", "other"]  # auc 0.82 then 0.7; the child is gbm
    assert story["rf_asc"] == ["other", "base"]
    assert story["risk"] == ["base"]
    assert story["like"] == ["child"]
    assert story["history"] == [[0, 0.8], [1, 0.81], [2, 0.8 + 2 / 100]]
    assert story["after_delete"] == ["base", "other"]
    assert story["deleted_only"] == ["child"]
    assert story["after_restore"] == ["base", "child", "other"]
    assert story["pages"][:2] == [2, 1] and story["pages"][2] is None
    assert story["experiments"] == ["Default", "fraud"]
    assert story["found"] == ["fraud"]
    run = story["run"]
    assert run["user"] == "ann"  # the account, not the client's user_id
    assert run["tags"]["mlflow.user"] == "mallory"  # kept only as the tag it is
    assert run["status"] == "FINISHED" and run["ended"] and run["name"] == "base"
    assert run["params"] == {"lr": "0.1", "depth": "6", "model": "rf"}
    assert run["metrics"] == {"auc": 0.8 + 2 / 100, "loss": 0.3}
    assert run["tags"]["team"] == "risk"
    assert run["experiment_id"] == story["experiment_id"] != "0"


def test_modelkeep_sees_the_same_runs(client_served: mkserve.Served, story: dict[str, Any]) -> None:
    served = client_served
    ids = story["ids"]
    listed = json.loads(mkserve.admin(served.root, "runs", "--json"))["runs"]
    by_id = {r["id"]: r for r in listed}
    assert set(ids.values()) <= set(by_id)
    base = by_id[ids["base"]]
    assert base["user"] == "ann" and base["status"] == "finished" and base["name"] == "base"
    assert base["params"] == {"depth": "6", "lr": "0.1", "model": "rf"}
    assert base["tags"]["mlflow.user"] == "mallory" and base["tags"]["team"] == "risk"
    assert by_id[ids["child"]]["parent_id"] == ids["base"]  # nested, as modelkeep's own
    assert "doomed" not in by_id[ids["other"]]["tags"]
    where = ("--where", "params.model = rf")
    rf = json.loads(mkserve.admin(served.root, "runs", "--json", *where))["runs"]
    assert {r["id"] for r in rf} == {ids["base"], ids["other"]}
    shown = mkserve.admin(served.root, "runs", "show", ids["base"])
    assert "mlflow" in shown and "ann" in shown
    mkserve.admin(served.root, "runs", "compare", ids["base"], ids["other"])
    mkserve.admin(served.root, "runs", "--tree")
    with mk.open(served.root) as repo:
        metrics = repo.metric_history(ids["base"])
    assert [m.value for m in metrics if m.key == "auc"] == [0.8, 0.81, 0.8 + 2 / 100]


REFUSALS = r"""
import json, os
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

tokens = json.loads(os.environ.pop("TOKENS"))
out = {}

def as_(user):
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    if user:
        os.environ["MLFLOW_TRACKING_TOKEN"] = tokens[user]
    return MlflowClient()

def code(name, call):
    try:
        call()
        out[name] = "ok"
    except MlflowException as exc:
        out[name] = [exc.error_code, str(exc)]

ann = as_("ann")
exp = ann.create_experiment("refusals")
run = ann.create_run(exp).info.run_id
out["run"] = run
code("viewer_reads", lambda: as_("val").get_run(run))
code("viewer_logs", lambda: as_("val").log_metric(run, "x", 1.0))
code("other_logs", lambda: as_("bob").log_metric(run, "x", 1.0))
code("other_tags", lambda: as_("bob").set_tag(run, "x", "y"))
code("other_ends", lambda: as_("bob").set_terminated(run))
code("no_token", lambda: as_(None).search_experiments())
code("unknown_run", lambda: as_("ann").get_run("0" * 32))
code("unknown_experiment", lambda: as_("ann").get_experiment("987654"))
code("bad_filter", lambda: as_("ann").search_runs([exp], filter_string="metrics.auc >> 1"))
code("text_vs_number", lambda: as_("ann").search_runs([exp], filter_string="params.lr > 'a'"))
code("twice", lambda: as_("ann").create_experiment("refusals"))
code("param_changes", lambda: (as_("ann").log_param(run, "p", "1"), ann.log_param(run, "p", "2")))
code("editor_deletes_experiment", lambda: as_("ann").delete_experiment(exp))
code("admin_logs_for_ann", lambda: as_("boss").log_metric(run, "y", 2.0))
ann = as_("ann")
ann.set_terminated(run)
code("log_after_end", lambda: ann.log_metric(run, "x", 1.0))
code("reopen", lambda: mlflow.start_run(run_id=run))
mo = as_("mo")
mo.rename_experiment(exp, "renamed")
mo.set_experiment_tag(exp, "stage", "dev")
mo.delete_experiment(exp)
out["deleted_stage"] = mo.get_experiment(exp).lifecycle_stage
code("run_in_deleted", lambda: as_("ann").create_run(exp))
as_("mo").restore_experiment(exp)  # each request reads the token from the environment
got = as_("mo").get_experiment_by_name("renamed")
out["experiment"] = [got.name, got.lifecycle_stage, got.tags]
os.environ.pop("MLFLOW_TRACKING_TOKEN")
os.environ["MLFLOW_TRACKING_USERNAME"] = "bob"
os.environ["MLFLOW_TRACKING_PASSWORD"] = tokens["bob"]
out["basic_user"] = MlflowClient().create_run("0").info.user_id
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def refusals(client_served: mkserve.Served, client: str) -> dict[str, Any]:
    return client_run(client_served, REFUSALS, client, TOKENS=json.dumps(client_served.tokens))


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("viewer_logs", "PERMISSION_DENIED"),
        ("other_logs", "PERMISSION_DENIED"),
        ("other_tags", "PERMISSION_DENIED"),
        ("other_ends", "PERMISSION_DENIED"),
        ("no_token", "UNAUTHENTICATED"),
        ("unknown_run", "RESOURCE_DOES_NOT_EXIST"),
        ("unknown_experiment", "RESOURCE_DOES_NOT_EXIST"),
        ("bad_filter", "INVALID_PARAMETER_VALUE"),
        ("text_vs_number", "INVALID_PARAMETER_VALUE"),
        ("twice", "RESOURCE_ALREADY_EXISTS"),
        ("param_changes", "INVALID_PARAMETER_VALUE"),
        ("editor_deletes_experiment", "PERMISSION_DENIED"),
        ("log_after_end", "INVALID_STATE"),
        ("reopen", "INVALID_STATE"),
        ("run_in_deleted", "INVALID_PARAMETER_VALUE"),
    ],
)
def test_the_client_is_refused_in_its_own_terms(
    refusals: dict[str, Any], case: str, code: str
) -> None:
    got = refusals[case]
    assert got != "ok", f"{case} was allowed"
    assert got[0] == code, got
    first = got[1].splitlines()[0]  # (the client adds advice after some of them)
    assert first.startswith(f"{code}: ") and len(first) > len(code) + 20


def test_what_the_client_may_do(refusals: dict[str, Any]) -> None:
    assert refusals["viewer_reads"] == "ok"
    assert refusals["admin_logs_for_ann"] == "ok"
    assert refusals["deleted_stage"] == "deleted"
    assert refusals["experiment"] == ["renamed", "active", {"stage": "dev"}]
    assert refusals["basic_user"] == "bob"  # MLFLOW_TRACKING_USERNAME/PASSWORD


def test_bad_filters_say_what_is_wrong(refusals: dict[str, Any]) -> None:
    assert "invalid filter 'metrics.auc >> 1'" in refusals["bad_filter"][1]
    assert "params.lr is text: compare it with = != LIKE or ILIKE" in refusals["text_vs_number"][1]


# -- by hand: what the client would never send -----------------------------------------------


def test_no_token_is_401_in_mlflows_form(served: mkserve.Served) -> None:
    with served.http(None) as http:
        r = http.get(API + "/experiments/get", params={"experiment_id": "0"})
    assert r.status_code == 401
    assert r.json()["error_code"] == "UNAUTHENTICATED" and r.json()["message"]


@pytest.fixture(scope="module")
def running(served: mkserve.Served) -> str:
    with served.http("ann") as http:
        r = http.post(API + "/runs/create", json={"experiment_id": "0", "run_name": "by-hand"})
        assert r.status_code == 200, r.text
        return str(r.json()["run"]["info"]["run_id"])


def _post(served: mkserve.Served, path: str, doc: dict[str, Any]) -> httpx.Response:
    with served.http("ann") as http:
        return http.post(API + path, json=doc)


@pytest.mark.parametrize(("what", "count"), [("metrics", 1001), ("params", 101), ("tags", 101)])
def test_an_oversized_batch_is_refused(
    served: mkserve.Served, running: str, what: str, count: int
) -> None:
    if what == "metrics":
        items: list[dict[str, Any]] = [
            {"key": "m", "value": 1.0, "timestamp": 0, "step": i} for i in range(count)
        ]
    else:
        items = [{"key": f"k{i}", "value": "v"} for i in range(count)]
    r = _post(served, "/runs/log-batch", {"run_id": running, what: items})
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    with served.http("ann") as http:
        got = http.get(API + "/runs/get", params={"run_id": running}).json()["run"]["data"]
    assert not got["metrics"] and not got["params"]  # nothing of a refused batch is kept


@pytest.mark.parametrize(
    "doc",
    [
        {"max_results": 50_001},
        {"max_results": 0},
        {"page_token": "not-ours"},
        {"page_token": base64.urlsafe_b64encode(b'{"for": "experiments", "offset": 1}').decode()},
        {"page_token": base64.urlsafe_b64encode(b'{"for": "runs", "offset": -5}').decode()},
        {"filter": "metrics.auc > 1 or metrics.auc < 0"},
        {"filter": "nonsense.key = 'a'"},
        {"order_by": ["metrics.auc SIDEWAYS"]},
        {"experiment_ids": ["x" * 5000]},
        {"filter": "x" * 5000},
    ],
)
def test_search_bounds(served: mkserve.Served, doc: dict[str, Any]) -> None:
    r = _post(served, "/runs/search", {"experiment_ids": ["0"], **doc})
    assert r.status_code in (400, 404), r.text
    assert r.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")


@pytest.mark.parametrize(
    ("path", "doc", "code"),
    [
        ("/runs/update", {"status": "FINISHED", "end_time": 2**62}, "INVALID_PARAMETER_VALUE"),
        ("/runs/update", {"status": ["FINISHED"]}, "INVALID_PARAMETER_VALUE"),
        ("/runs/update", {"status": {"a": 1}}, "INVALID_PARAMETER_VALUE"),
        ("/runs/search", {"run_view_type": ["ALL"]}, "INVALID_PARAMETER_VALUE"),
        ("/runs/create", {"experiment_id": "9" * 20}, "RESOURCE_DOES_NOT_EXIST"),
        ("/runs/create", {"start_time": -1}, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_odd_values_are_refused_not_crashed_on(
    served: mkserve.Served, running: str, path: str, doc: dict[str, Any], code: str
) -> None:
    r = _post(served, path, {"run_id": running, "experiment_ids": ["0"], **doc})
    assert r.status_code in (400, 404), r.text  # never a 500
    assert r.json()["error_code"] == code, r.text


def test_metric_values_and_long_keys(served: mkserve.Served, running: str) -> None:
    r = _post(
        served,
        "/runs/log-batch",
        {"run_id": running, "metrics": [{"key": "nan", "value": "NaN", "timestamp": 1, "step": 0}]},
    )
    assert r.status_code == 200, r.text
    with served.http("ann") as http:
        got = http.get(API + "/runs/get", params={"run_id": running}).json()
    assert got["run"]["data"]["metrics"] == [
        {"key": "nan", "value": "NaN", "timestamp": 1, "step": 0}
    ]
    r = _post(served, "/runs/log-parameter", {"run_id": running, "key": "k" * 251, "value": "v"})
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = _post(served, "/runs/set-tag", {"run_id": running, "key": "t", "value": "v" * 9000})
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = _post(served, "/runs/log-metric", {"run_id": running, "key": "m", "value": "high"})
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = _post(served, "/runs/log-metric", {"run_id": "f" * 32, "key": "m", "value": 1})
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = _post(
        served, "/runs/set-tag", {"run_id": running, "key": "modelkeep.deleted_by", "value": "x"}
    )
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"  # modelkeep's own tags stay its


@pytest.mark.parametrize(
    ("path", "doc", "message"),
    [
        ("/runs/log-metric", {"run_id": 31, "key": "m", "value": 1}, "Invalid value 31 for "
         "parameter 'run_id' supplied"),
        ("/runs/log-metric", {"key": "m", "value": 1, "step": "foo"}, 'Invalid value "foo" for '
         "parameter 'step' supplied"),
        ("/runs/set-tag", {"key": "t", "value": 41}, "Invalid value 41 for parameter 'value' "
         "supplied"),
        ("/runs/log-parameter", {"value": "v"}, "Missing value for required parameter 'key'"),
        ("/runs/log-batch", {"metrics": "foo"}, 'Invalid value "foo" for parameter \'metrics\''),
        ("/runs/log-batch", {"metrics": [{"key": "mae", "value": 2.5}]}, 'Invalid value [{"key":'
         '"mae","value":2.5}] for parameter \'metrics\' supplied'),
        ("/experiments/create", {"name": 123}, "Invalid value 123 for parameter 'name'"),
        ("/runs/search", {"max_results": 123456789}, "Invalid value 123456789 for parameter "
         "'max_results' supplied"),
    ],
)  # fmt: skip
def test_refusals_use_mlflows_wording(
    served: mkserve.Served, running: str, path: str, doc: dict[str, Any], message: str
) -> None:
    """Scripts (and MLflow's own tests) match on MLflow's wording of a bad parameter."""
    r = _post(served, path, {"run_id": running, "experiment_ids": ["0"], **doc})
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert r.json()["message"].startswith(message), r.json()["message"]


# -- the search language on its own -------------------------------------------------------------


def _run(name: str, auc: float | None, model: str | None, team: str | None, ms: int) -> TrackedRun:
    return TrackedRun(
        id=name * 4,
        name=name,
        experiment_id=0,
        user="ann",
        status="finished",
        started_at=datetime.fromtimestamp(ms / 1000, UTC),
        ended_at=None,
        deleted=False,
        params={"model": model} if model else {},
        metrics={"auc": LoggedMetric("auc", auc, ms, 0)} if auc is not None else {},
        tags={"team": team} if team else {},
    )


RUNS = [
    _run("a", 0.9, "rf", "risk", 1000),
    _run("b", 0.7, "gbm", "ops", 2000),
    _run("c", None, "rf", None, 3000),
    _run("d", float("nan"), None, "Risk desk", 4000),
]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", ["a", "b", "c", "d"]),
        ("metrics.auc > 0.8", ["a"]),
        ("metrics.auc >= 0.7 AND params.model = 'rf'", ["a"]),
        ("metric.auc != 0.9", ["b"]),
        ("params.model != 'rf'", ["b"]),
        ('params."model" = "rf"', ["a", "c"]),
        ("params.`model` LIKE 'r%'", ["a", "c"]),
        ("tags.team ILIKE 'risk%'", ["a", "d"]),
        ("tags.team IS NULL", ["c"]),
        ("tags.team IS NOT NULL", ["a", "b", "d"]),
        ("attributes.run_name IN ('a', 'c')", ["a", "c"]),
        ("attributes.run_name NOT IN ('a', 'c')", ["b", "d"]),
        ("attributes.status = 'finished'", ["a", "b", "c", "d"]),
        ("attributes.start_time > 2500", ["c", "d"]),
        ("run_name = 'b'", ["b"]),
    ],
)
def test_filters(text: str, names: list[str]) -> None:
    match = tracking_search.parse_filter(text)
    assert [r.name for r in RUNS if match(r)] == names


@pytest.mark.parametrize(
    "text",
    [
        "metrics.auc",
        "metrics.auc > 'high'",
        "params.model > 'a'",
        "params.model = rf",
        "metrics.auc > 1 and",
        "metrics.auc > 1 or params.x = 'a'",
        "colour.x = 'a'",
        "attributes.colour = 'a'",
        "tags.t IN 'a'",
        "metrics.auc = 1 metrics.auc = 2",
        "params.model = 'unclosed",
    ],
)
def test_bad_filters_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"filter|order"):
        tracking_search.parse_filter(text)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("r%", "rf", True),
        ("%f", "rf", True),
        ("_f", "rf", True),
        ("%a%b%", "xaxbx", True),
        ("%a%b", "xbxa", False),
        ("a%a", "a", False),  # the end piece may not overlap the start piece
        ("a%%a", "aa", True),
        ("100%", "100% sure", True),
    ],
)
def test_like(pattern: str, text: str, matches: bool) -> None:
    match = tracking_search.parse_filter(f"tags.team LIKE '{pattern}'")
    assert match(_run("x", None, None, text, 0)) is matches


def test_a_like_pattern_that_would_backtrack_is_answered() -> None:
    """`%a%a…%b` as one regex backtracks exponentially on a long value of `a`s: a viewer's
    search could hold a server thread for hours. Answered piece by piece, it is not."""
    many = "%a" * 12 + "%b"
    match = tracking_search.parse_filter(f"tags.team LIKE '{many}'")
    long_run = _run("long", None, None, "a" * 5000, 0)
    assert not match(long_run)
    assert match(_run("yes", None, None, "a" * 12 + "b", 0))


@pytest.mark.parametrize(
    ("order", "names"),
    [
        ([], ["d", "c", "b", "a"]),  # newest first
        (["metrics.auc DESC"], ["a", "b", "d", "c"]),  # without a value (or NaN) last
        (["metrics.auc"], ["b", "a", "d", "c"]),
        (["params.model ASC", "start_time DESC"], ["b", "c", "a", "d"]),
        (["tags.team"], ["d", "b", "a", "c"]),
    ],
)
def test_order(order: list[str], names: list[str]) -> None:
    ranked = tracking_search.sort(RUNS, tracking_search.parse_order(order))
    assert [r.name for r in ranked] == names


# -- the rows, on both databases ----------------------------------------------------------------


def test_experiments_and_runs_on_both_databases(backend_repo: mk.Repo) -> None:
    db = backend_repo.db
    assert experiments.get(db, 0).name == "Default"  # before any row is written
    eid = experiments.create(db, "fraud", tags={"team": "risk"})
    assert eid != 0 and experiments.get(db, 0).name == "Default"
    with pytest.raises(ExperimentExists):
        experiments.create(db, "fraud")
    with pytest.raises(ExperimentExists):
        experiments.create(db, "Default")
    with pytest.raises(ExperimentNotFound):
        experiments.by_name(db, "nope")
    experiments.rename(db, eid, "fraud-2")
    experiments.set_tag(db, eid, "stage", "dev")
    assert experiments.by_name(db, "fraud-2").tags == {"stage": "dev", "team": "risk"}
    now = datetime.now(UTC)
    for run_id, exp in (("a" * 32, eid), ("b" * 32, 0)):
        tracking.create_run(
            db, run_id=run_id, experiment_id=exp, name="r", user="ann", started_at=now, tags={}
        )
    tracking.log_batch(db, "a" * 32, metrics=[LoggedMetric("auc", 0.5, 5, 1)], params={"lr": "0.1"})
    meta.reap(db, lambda *_: False)  # a silence: taken for dead
    assert tracking.get(db, "a" * 32).status == "killed"
    tracking.log_batch(db, "a" * 32, metrics=[LoggedMetric("auc", 0.6, 6, 2)])
    assert tracking.get(db, "a" * 32).status == "running"  # its client wrote: alive
    meta.reap(db, lambda *_: False)
    tracking.update_run(db, "a" * 32, status="running")  # `start_run(run_id=…)` resumes it
    assert tracking.get(db, "a" * 32).status == "running"
    tracking.update_run(db, "a" * 32, status="finished")
    with pytest.raises(RunNotActive):
        tracking.log_batch(db, "a" * 32, params={"x": "1"})
    with pytest.raises(RunNotActive):  # a run that ended is not reopened
        tracking.update_run(db, "a" * 32, status="running")
    assert [r.id for r in tracking.load(db, experiment_ids=[eid])] == ["a" * 32]
    assert [r.id for r in tracking.load(db, experiment_ids=[0])] == ["b" * 32]
    run = tracking.get(db, "a" * 32)
    assert run.params == {"lr": "0.1"} and run.metrics["auc"].step == 2
    assert backend_repo.run("a" * 32).params == {"lr": "0.1"}  # modelkeep's own view
