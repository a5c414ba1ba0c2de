"""Evaluations: metrics measured on a version after it was made, recorded with who measured
them, on which dataset and in which run; promotion gates read them; `show`, `versions
--metric`, the card and the audit log show them; a server's clients record them too."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelkeep as mk
from modelkeep.errors import (
    DatasetNotFound,
    EvaluationInvalid,
    NothingToEvaluate,
    PolicyError,
    PromotionRefused,
    VersionNotFound,
)
from tests import mkserve
from tests.conftest import MODELKEEP, cli, jcli, ok, write
from tests.test_registry import _bytes, fail, policy, produce, sql, stage_of

CHAMPION = """\
[policy.churn.production]
gates = ["eval[holdout].auc >= production.eval[holdout].auc", "holdout_auc >= 0.8"]
"""


def _model(repo: mk.Repo, label: str, metrics: dict[str, float] | None = None) -> str:
    """A registered version of churn: made by a run logging metrics, or a plain add."""
    made = produce(repo, _bytes(label), metrics, name="churn-out")
    return repo.register(made.ref, "churn").ref


def _holdout(repo: mk.Repo, label: str = "rows") -> str:
    data = write(repo.root / "data" / f"{label}.csv", f"x,y\n{label},1\n".encode())
    return repo.add(data, "holdout", type="dataset", track=False).version.ref


def _run_id(stdout: str) -> str:
    """The id in `modelkeep run --json`'s document, printed after the command's output."""
    return str(json.loads(stdout[stdout.rindex('{\n  "run"') :])["run"]["id"])


# -- gates ------------------------------------------------------------------------------------


def test_evaluations_feed_a_champion_gate(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    policy(repo, CHAMPION)
    holdout = _holdout(repo)
    v1 = _model(repo, "one")  # no run: gates read its evaluations only
    repo.evaluate(v1, {"auc": 0.90, "holdout_auc": 0.85}, dataset=holdout)
    first = repo.promote(v1, "production")
    assert first.notes == (
        "gate 'eval[holdout].auc >= production.eval[holdout].auc' passes: no version is in "
        "production yet",
    )

    # A worse model is refused, naming both values; a run metric feeds the bare name.
    v2 = _model(repo, "two", {"holdout_auc": 0.95})
    repo.evaluate(v2, {"auc": 0.80}, dataset=holdout)
    with pytest.raises(PromotionRefused) as info:
        repo.promote(v2, "production")
    assert info.value.unmet == [
        "gate 'eval[holdout].auc >= production.eval[holdout].auc' unmet: eval[holdout].auc "
        "is 0.8, churn:v1 in production has 0.9"
    ]
    line = fail("promote", v2, "production", cwd=repo.root)
    assert "eval[holdout].auc is 0.8, churn:v1 in production has 0.9" in line
    assert stage_of(repo, v1) == "production"

    # Measured again, better: the latest evaluation of a key is the one gates read.
    repo.evaluate(v2, {"auc": 0.93}, dataset=holdout)
    second = repo.promote(v2, "production")
    assert second.displaced is not None and second.displaced.ref == v1
    assert stage_of(repo, v2) == "production"

    # The bare name prefers the producing run's metric over an evaluation of the same key.
    v3 = _model(repo, "three", {"holdout_auc": 0.5})
    repo.evaluate(v3, {"auc": 0.99, "holdout_auc": 0.99}, dataset=holdout)
    with pytest.raises(PromotionRefused) as info:
        repo.promote(v3, "production")
    assert info.value.unmet == ["gate 'holdout_auc >= 0.8' unmet: holdout_auc is 0.5"]


def test_a_gate_naming_an_evaluation_nobody_recorded(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    policy(repo, CHAMPION)
    holdout = _holdout(repo)
    v1 = _model(repo, "one")
    repo.evaluate(v1, {"holdout_auc": 0.9, "f1": 0.7}, dataset=holdout)
    with pytest.raises(PromotionRefused) as info:
        repo.promote(v1, "production")
    assert info.value.unmet == [
        "gate 'eval[holdout].auc >= production.eval[holdout].auc' unmet: churn:v1 has no "
        "evaluation of 'auc' on holdout (no run; evaluations: eval[holdout].holdout_auc, "
        "eval[holdout].f1); record one with `modelkeep eval churn:v1 --metric auc=VALUE "
        "--dataset holdout`"
    ]
    # Overridable: an evaluation not made yet is not a mistake in the policy.
    repo.promote(v1, "production", force=True, reason="first model, no baseline")

    # A champion never evaluated on the dataset cannot be compared with: unmet, named.
    v2 = _model(repo, "two")
    repo.evaluate(v2, {"auc": 0.9, "holdout_auc": 0.9}, dataset=holdout)
    sql(repo, "DELETE FROM evaluations WHERE key = 'f1'")  # irrelevant to the gate
    with pytest.raises(PromotionRefused, match=r"churn:v1 \(production\) has no evaluation"):
        repo.promote(v2, "production")

    # A bare name neither logged nor evaluated on a version a run made: the policy's mistake.
    policy(repo, '[policy.churn.staging]\ngates = ["recall >= 0.5"]\n')
    v3 = _model(repo, "three", {"auc": 0.9})
    repo.evaluate(v3, {"precision": 0.9})
    with pytest.raises(PolicyError) as err:
        repo.promote(v3, "staging")
    assert "'recall'" in str(err.value) and "it logged: auc" in str(err.value)
    assert "evaluations: precision" in str(err.value) and err.value.line == 2
    # And a version without a run, not evaluated on it: unmet, with the next step.
    v4 = _model(repo, "four")
    with pytest.raises(PromotionRefused, match="was not produced by a run") as info:
        repo.promote(v4, "staging")
    assert "modelkeep eval churn:v4 --metric recall=VALUE" in info.value.unmet[0]


def test_gate_syntax_for_evaluations(repo: mk.Repo) -> None:
    _model(repo, "one")
    path = policy(repo, '[policy.default.staging]\ngates = ["eval[Hold out].auc >= 0.9"]\n')
    line = fail("promote", "churn:v1", "staging", cwd=repo.root)
    assert f"{path}, line 2" in line and "eval[DATASET].METRIC" in line
    # A dataset named by version: only evaluations on that version count.
    policy(repo, '[policy.default.staging]\ngates = ["eval[holdout:v2].auc >= 0.9"]\n')
    h1, h2 = _holdout(repo, "a"), _holdout(repo, "b")
    repo.evaluate("churn:v1", {"auc": 0.95}, dataset=h1)
    with pytest.raises(PromotionRefused, match="no evaluation of 'auc' on holdout:v2"):
        repo.promote("churn:v1", "staging")
    repo.evaluate("churn:v1", {"auc": 0.91}, dataset=h2)
    assert repo.promote("churn:v1", "staging").version.stage == "staging"


# -- recording ----------------------------------------------------------------------------------


def test_eval_records_who_what_and_where(repo: mk.Repo) -> None:
    holdout = _holdout(repo)
    v1 = _model(repo, "one")
    doc = jcli(
        "eval", v1, "--metric", "auc=0.93", "-M", "loss=nan", "--dataset", holdout, cwd=repo.root
    )
    rows = doc["evaluations"]
    assert [(r["key"], r["value"], r["dataset"], r["run_id"], r["user"]) for r in rows] == [
        ("auc", 0.93, "holdout:v1", None, "tester"),
        ("loss", "nan", "holdout:v1", None, "tester"),
    ]
    r = ok("eval", "churn", "-M", "auc=0.95", cwd=repo.root)  # any ref form
    assert r.stdout.splitlines()[0] == "recorded 1 evaluation(s) of churn:v1"
    got = repo.evaluations(v1)
    assert [(e.key, e.dataset) for e in got] == [
        ("auc", "holdout:v1"),
        ("loss", "holdout:v1"),
        ("auc", None),
    ]
    assert math.isnan(got[1].value) and got[2].value == 0.95
    # An evaluation is an event in the chain: who measured what is in the audit log.
    events = [e for e in repo.history("churn") if e.action == "evaluate"]
    assert [(e.actor, e.target, e.after["dataset"]) for e in events] == [
        ("tester", "churn:v1", "holdout:v1"),
        ("tester", "churn:v1", None),
    ]
    assert "auc=0.93, loss=nan on holdout:v1" in ok("history", "churn", cwd=repo.root).stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("churn:v1", "-M", "auc"), "--metric 'auc': not KEY=NUMBER"),
        (("churn:v1", "-M", "=0.9"), "not KEY=NUMBER"),
        (("churn:v1", "-M", "auc=high"), "'high' is not a number"),
        (("churn:v1", "-M", "auc=1", "-M", "auc=2"), "'auc' is given twice"),
        (("churn:v1", "-M", "auc=inf"), "evaluation metric 'auc': is inf"),
        (("churn:v1", "-M", "auc=-inf"), "infinity is not"),
        (("churn:v1",), "no metrics given for churn:v1"),
        (("churn:v9", "-M", "auc=1"), "artifact 'churn' has no version 9"),
        (("nothing", "-M", "auc=1"), "no artifact named 'nothing'"),
        (("churn:v1", "-M", "auc=1", "--dataset", "holdout:v7"), "dataset 'holdout:v7'"),
        (("churn:v1", "-M", "auc=1", "--dataset", "hold"), "did you mean 'holdout'"),
        (("churn:v1", "-M", f"{'k' * 256}=1"), "at most 255 characters"),
    ],
)
def test_eval_refuses_bad_input_in_one_line(
    repo: mk.Repo, args: tuple[str, ...], words: str
) -> None:
    _holdout(repo)
    _model(repo, "one")
    line = fail("eval", *args, cwd=repo.root)
    assert words in line, line
    assert repo.evaluations("churn:v1") == []


def test_evaluate_refuses_bad_input_from_python(repo: mk.Repo) -> None:
    v1 = _model(repo, "one")
    with pytest.raises(NothingToEvaluate):
        repo.evaluate(v1, {})
    with pytest.raises(EvaluationInvalid, match="infinity"):
        repo.evaluate(v1, {"auc": float("inf")})
    with pytest.raises(EvaluationInvalid, match="must be a number"):
        repo.evaluate(v1, {"auc": "0.9"})  # type: ignore[dict-item]
    with pytest.raises(EvaluationInvalid, match="non-empty"):
        repo.evaluate(v1, {" ": 0.9})
    with pytest.raises(DatasetNotFound, match="no artifact named 'holdout'"):
        repo.evaluate(v1, {"auc": 0.9}, dataset="holdout:v1")
    with pytest.raises(VersionNotFound):
        repo.evaluate("churn:v2", {"auc": 0.9})
    assert repo.evaluations(v1) == []
    assert repo.evaluate(v1, {"auc": 1, "n": 10**3})[1].value == 1000.0  # ints are numbers


def test_eval_inside_modelkeep_run_belongs_to_the_run(repo: mk.Repo) -> None:
    holdout = _holdout(repo)
    v1 = _model(repo, "one")
    script = write(
        repo.root / "evaluate.py",
        (
            "import subprocess, sys\n"
            "import modelkeep as mk\n"
            "run = mk.current_run()\n"
            f"run.evaluate({v1!r}, {{'f1': 0.7}}, dataset={holdout!r})\n"
            f"subprocess.run([{MODELKEEP!r}, 'eval', {v1!r}, '-M', 'auc=0.91',\n"
            f"                '--dataset', {holdout!r}], check=True)\n"
        ).encode(),
    )
    r = cli("run", "--name", "evaluate", "--json", "--", sys.executable, str(script), cwd=repo.root)
    assert r.returncode == 0, r.stderr
    run_id = _run_id(r.stdout)
    got = repo.evaluations(v1)
    assert [(e.key, e.run_id) for e in got] == [("f1", run_id), ("auc", run_id)]
    run = repo.run(run_id)
    assert holdout in run.inputs and v1 not in run.inputs  # (beside its code snapshot)
    # Outside a run, an ended run is not joined.
    assert repo.evaluate(v1, {"auc": 0.5})[0].run_id is None


# -- shown everywhere -------------------------------------------------------------------------


def test_versions_metric_columns_show_and_card(repo: mk.Repo) -> None:
    holdout = _holdout(repo)
    v1 = _model(repo, "one", {"auc": 0.8})
    v2 = _model(repo, "two")
    repo.evaluate(v1, {"auc": 0.7}, dataset=holdout)
    repo.evaluate(v2, {"auc": 0.9, "f1": float("nan")}, dataset=holdout)

    doc = jcli(
        "versions",
        "churn",
        "--metric",
        "auc",
        "--metric",
        "eval[holdout].auc",
        "--metric",
        "f1",
        cwd=repo.root,
    )
    assert [v["metrics"] for v in doc["versions"]] == [
        {"auc": 0.8, "eval[holdout].auc": 0.7, "f1": None},  # the run's auc first
        {"auc": 0.9, "eval[holdout].auc": 0.9, "f1": "nan"},
    ]
    assert "metrics" not in jcli("versions", "churn", cwd=repo.root)["versions"][0]
    listed = ok(
        "versions", "churn", "--metric", "eval[holdout].auc", "--metric", "f1", cwd=repo.root
    )
    head, first, second = listed.stdout.splitlines()
    assert head.split()[:8] == [
        "VERSION", "CREATED", "USER", "SIZE", "DIGEST", "STAGE", "EVAL[HOLDOUT].AUC", "F1",
    ]  # fmt: skip
    assert "0.7" in first and "nan" not in first and "0.9" in second and "nan" in second
    assert "cannot read metric 'eval[x';" in fail(
        "versions", "churn", "--metric", "eval[x", cwd=repo.root
    )

    shown = jcli("show", v2, cwd=repo.root)
    assert [(e["key"], e["value"], e["dataset"], e["user"]) for e in shown["evaluations"]] == [
        ("auc", 0.9, "holdout:v1", "tester"),
        ("f1", "nan", "holdout:v1", "tester"),
    ]
    text = ok("show", v2, cwd=repo.root).stdout
    assert "evaluations:" in text
    assert any(
        ln.split()[:5] == ["auc", "0.9", "holdout:v1", "-", "tester"] for ln in text.splitlines()
    )

    logged = repo.log_model({"w": [1, 2]}, "carded", format="pickle", message="a model")
    repo.evaluate(logged, {"auc": 0.9, "f1": float("nan")}, dataset=holdout)
    card = repo.card(logged)
    section = card.split("## Evaluations", 1)[1].split("##", 1)[0]
    assert "| auc | 0.9 | `holdout:v1` | — | tester |" in section
    assert "| f1 | nan |" in section
    assert "evaluate" not in card.split("## Stage history", 1)[1].split("##", 1)[0]


# -- the audit chain -----------------------------------------------------------------------------


def test_audit_verify_vouches_for_every_evaluation_row(backend_repo: mk.Repo) -> None:
    """The `evaluate` event holds each row's id, key and value, the dataset, the run and
    the user: verify names a row edited, removed or added behind the log's back."""
    repo = backend_repo
    holdout = _holdout(repo)
    v1 = _model(repo, "one")
    made = repo.evaluate(v1, {"auc": 0.9, "loss": float("nan")}, dataset=holdout)
    assert repo.verify_audit().ok
    assert ok("audit", "--verify", cwd=repo.root).stdout.startswith("ok:")

    auc = made[0].id
    sql(repo, f"UPDATE evaluations SET value = 0.99 WHERE id = {auc}")
    report = repo.verify_audit()
    assert report.problems == (
        f"evaluation {auc} of churn:v1 (auc) value: the events say 0.9, the database says 0.99",
    )
    r = cli("audit", "--verify", cwd=repo.root)
    assert r.returncode == 1 and f"evaluation {auc} of churn:v1 (auc) value" in r.stderr
    sql(
        repo,
        f"UPDATE evaluations SET value = 0.9, user = 'mallory' WHERE id = {auc}"
        if repo.settings.database_url.startswith("sqlite")
        else f"UPDATE evaluations SET value = 0.9, \"user\" = 'mallory' WHERE id = {auc}",
    )
    assert repo.verify_audit().problems == (
        f"evaluation {auc} of churn:v1 (auc) user: the events say tester, the database says "
        "mallory",
    )
    sql(repo, f"DELETE FROM evaluations WHERE id = {auc}")
    assert repo.verify_audit().problems == (
        f"evaluation {auc} of churn:v1 (auc): the events record it, the database has no such row",
    )
    loss = made[1].id
    sql(repo, f"UPDATE evaluations SET dataset_id = NULL WHERE id = {loss}")
    assert (
        "dataset: the events say holdout:v1, the database says None"
        in (repo.verify_audit().problems[-1])
    )


# -- through a server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    base = tmp_path_factory.mktemp("served")
    s = mkserve.start(base / "store")
    mkserve.with_accounts(s, {"eddie": "editor", "vic": "viewer"})
    yield s
    s.stop()


def test_eval_through_a_server(served: mkserve.Served, tmp_path: Path) -> None:
    work = tmp_path / "client"
    work.mkdir()
    env = served.client_env(served.tokens["eddie"])

    def mk_cli(*args: str, who: dict[str, str] = env, code: int = 0) -> str:
        import subprocess

        r = subprocess.run(
            [MODELKEEP, *args], cwd=work, env=who, capture_output=True, text=True, check=False
        )
        assert r.returncode == code, (args, r.stdout, r.stderr)
        return r.stdout if code == 0 else r.stderr

    write(work / "model.bin", b"a served model")
    write(work / "holdout.csv", b"x\n1\n")
    mk_cli("add", "model.bin", "-n", "served-churn")
    mk_cli("add", "holdout.csv", "-n", "served-holdout", "-t", "dataset")
    doc = json.loads(
        mk_cli("eval", "served-churn:v1", "-M", "auc=0.9", "--dataset", "served-holdout", "--json")
    )
    assert [(e["key"], e["value"], e["dataset"], e["user"]) for e in doc["evaluations"]] == [
        ("auc", 0.9, "served-holdout:v1", "eddie")
    ]
    nan = json.loads(mk_cli("eval", "served-churn:v1", "-M", "loss=nan", "--json"))
    assert nan["evaluations"][0]["value"] == "nan"  # NaN crosses the wire as it is
    # Under `modelkeep run` on the client, the run is the client's and the server's record.
    run_doc = mk_cli(
        "run", "--json", "--", MODELKEEP, "eval", "served-churn:v1", "-M", "f1=0.5",
        "--dataset", "served-holdout:v1",
    )  # fmt: skip
    run_id = _run_id(run_doc)
    shown = json.loads(mk_cli("show", "served-churn:v1", "--json"))
    assert [(e["key"], e["value"], e["run_id"]) for e in shown["evaluations"]] == [
        ("auc", 0.9, None),
        ("loss", "nan", None),
        ("f1", 0.5, run_id),
    ]
    run = json.loads(mk_cli("runs", "show", run_id, "--json"))
    assert run["inputs"] == ["served-holdout:v1"]
    cols = json.loads(
        mk_cli("versions", "served-churn", "--metric", "eval[served-holdout].f1", "--json")
    )
    assert cols["versions"][0]["metrics"] == {"eval[served-holdout].f1": 0.5}
    # A viewer reads them, and may not record one.
    viewer = served.client_env(served.tokens["vic"])
    assert "auc" in mk_cli("show", "served-churn:v1", who=viewer)
    refused = mk_cli("eval", "served-churn:v1", "-M", "auc=1", who=viewer, code=1)
    assert "editor" in refused and len(refused.strip().splitlines()) == 1


# -- push and pull ------------------------------------------------------------------------------


def test_evaluations_travel_with_their_version(tmp_path: Path) -> None:
    """Pushed as `evaluate` events beside the version's records; a pull makes the rows
    under its own ids, links the dataset (whose records come along) and the run when it has
    them, and its gates and `audit --verify` see them as local ones."""
    remote = f"file://{tmp_path / 'remote'}"
    alice, bob = mk.init(tmp_path / "alice"), mk.init(tmp_path / "bob")
    try:
        for r in (alice, bob):
            r.add_remote("shared", remote, default=True)
        holdout = _holdout(alice)
        v1 = _model(alice, "one")
        with mk.start_run(name="nightly", repo=alice, capture_code=False) as run:
            run.evaluate(v1, {"auc": 0.9}, dataset=holdout)
        alice.evaluate(v1, {"loss": float("nan")})
        alice.push([holdout, v1])
        alice.evaluate(v1, {"auc": 0.95}, dataset=holdout)  # after the push: not there yet

        bob.pull(["churn:v1"])
        got = bob.evaluations("churn:v1")
        assert [(e.key, e.dataset, e.user) for e in got] == [
            ("auc", "holdout:v1", "tester"),
            ("loss", None, "tester"),
        ]
        assert got[0].run_id is None  # the evaluation run was not pushed: left unlinked
        assert math.isnan(got[1].value)
        assert bob.verify_audit().ok, bob.verify_audit().problems
        event = next(e for e in bob.history("churn") if e.action == "evaluate")
        assert event.after["unlinked"] == {"run": run.id}
        assert event.after["origin"]["remote"] == remote

        policy(bob, '[policy.churn.staging]\ngates = ["eval[holdout].auc >= 0.92"]\n')
        with pytest.raises(PromotionRefused, match=r"eval\[holdout\]\.auc is 0\.9(?!\d)"):
            bob.promote("churn:v1", "staging")
        alice.push([v1])  # the newer evaluation goes up on the next push
        bob.pull(["churn:v1"])
        bob.pull(["churn:v1"])  # once only
        assert [e.value for e in bob.evaluations("churn:v1")][-1] == 0.95
        assert len(bob.evaluations("churn:v1")) == 3
        assert bob.promote("churn:v1", "staging").version.stage == "staging"
        assert bob.verify_audit().ok
    finally:
        alice.close()
        bob.close()
