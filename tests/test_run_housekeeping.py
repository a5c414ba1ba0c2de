"""Run housekeeping: tags, notes, rename, soft delete and restore, sorting, and the
environment summary of `runs show`.

Real SQLite and PostgreSQL stores, the installed `modelkeep` console script, and one real
`modelkeep serve` for who may change a run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelkeep as mk
import modelkeep.run as run_module
from modelkeep.capture.environment import summarize
from modelkeep.errors import (
    InvalidArgument,
    InvalidRunName,
    InvalidTag,
    RunDeleted,
    RunNotDeleted,
    RunNotFound,
    RunStillRunning,
)
from tests import mkserve
from tests.conftest import MODELKEEP, cli, isolate_git, jcli, ok, one_error_line


@pytest.fixture(autouse=True)
def _run_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate_git(tmp_path, monkeypatch)
    monkeypatch.delenv("MODELKEEP_RUN_ID", raising=False)
    monkeypatch.delenv("MODELKEEP_REPO", raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    left = mk.current_run()
    if left is not None:
        left.end()


def finished_run(
    repo: mk.Repo,
    name: str,
    params: dict[str, object] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    with mk.start_run(name, params or {}, repo=repo, capture_code=False) as run:
        if metrics:
            run.log_metrics(metrics)
        if tags:
            run.set_tags(tags)
        return run.id


# -- tags --------------------------------------------------------------------------------------


def test_tags_are_set_inside_a_run_changed_later_and_filtered_on(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    with mk.start_run("train", repo=repo, capture_code=False) as run:
        run.set_tag("team", "fraud")
        run.set_tags({"prio": 3, "reviewed": False})
        first = run.id
    second = finished_run(repo, "train", tags={"team": "risk", "prio": "10"})
    third = finished_run(repo, "train")
    assert repo.run(first).tags == {"prio": "3", "reviewed": "false", "team": "fraud"}
    # after the run ended: a value replaces the old one, --remove removes
    r = repo.tag_run(first[:8], {"team": "fraud-ops", "stage": "candidate"}, remove=["reviewed"])
    assert r.tags == {"prio": "3", "stage": "candidate", "team": "fraud-ops"}
    repo.tag_run(first, {}, remove=["not-there"])  # removing a missing tag is no error

    def ids(*where: str) -> list[str]:
        return [x.id for x in repo.runs(where=list(where))]

    assert ids("tags.team=fraud-ops") == [first]
    assert ids('tags.team = "risk"') == [second]
    assert ids("tags.team != risk") == [first]  # a run without the tag matches neither
    assert ids("tags.prio > 5") == [second]  # numeric text compares as numbers
    assert ids("tags.prio >= 3", "tags.team = fraud-ops") == [first]
    assert third not in ids("tags.prio < 100")
    with pytest.raises(InvalidArgument, match="compares numbers"):
        repo.runs(where=["tags.team > fraud"])
    assert repo.run(first).to_json()["tags"]["team"] == "fraud-ops"


def test_bad_tags_are_refused_with_the_reason(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    rid = finished_run(repo, "t")
    repo.tag_run(rid, {"long": "v" * 5000})  # the limit itself is fine
    with pytest.raises(InvalidTag, match="5001 characters; the limit is 5000"):
        repo.tag_run(rid, {"long": "v" * 5001})
    for key in ("", "has space", "a=b", "x<y", "k" * 256):
        with pytest.raises(InvalidTag):
            repo.tag_run(rid, {key: "v"})
    with pytest.raises(InvalidTag, match="modelkeep's own"):
        repo.tag_run(rid, {"modelkeep.deleted_by": "me"})
    with pytest.raises(InvalidArgument, match="both set and removed"):
        repo.tag_run(rid, {"a": "1"}, remove=["a"])
    with (
        pytest.raises(InvalidArgument, match="tag value is text"),
        mk.start_run("t2", repo=repo, capture_code=False) as run,
    ):
        run.set_tag("obj", [1, 2])  # type: ignore[arg-type]
    assert repo.run(rid).tags == {"long": "v" * 5000}


# -- note and rename ---------------------------------------------------------------------------


def test_note_replaces_and_rename_validates_like_start_run(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    rid = finished_run(repo, "train")
    assert repo.set_run_note(rid, "first thoughts").note == "first thoughts"
    assert repo.set_run_note(rid, "line 1\nline 2").note == "line 1\nline 2"
    assert repo.set_run_note(rid, "").note == ""
    with pytest.raises(InvalidArgument, match="limit is 100000"):
        repo.set_run_note(rid, "x" * 100_001)
    assert repo.rename_run(rid, "xgb baseline / v2").name == "xgb baseline / v2"
    for bad, why in (
        ("", "empty"),
        ("   ", "empty"),
        ("a\nb", "control character"),
        (" padded", "blank"),
        ("n" * 256, "256 characters"),
    ):
        with pytest.raises(InvalidRunName, match=why):
            repo.rename_run(rid, bad)
    assert repo.run(rid).name == "xgb baseline / v2"
    assert repo.runs(name="xgb baseline / v2")[0].id == rid


def test_unknown_and_ambiguous_run_ids_are_refused(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    for suffix in ("0" * 28, "1" * 28):
        new = run_module._new_run(repo, "twin", {}, {})
        repo.create_run(dataclasses.replace(new, id="abcd" + suffix), {})
        repo.end_run("abcd" + suffix, "finished")
    for call in (
        lambda ref: repo.tag_run(ref, {"a": "1"}),
        lambda ref: repo.set_run_note(ref, "n"),
        lambda ref: repo.rename_run(ref, "n"),
        lambda ref: repo.delete_run(ref),
        lambda ref: repo.restore_run(ref),
    ):
        with pytest.raises(RunNotFound, match="ambiguous"):
            call("abcd")
        with pytest.raises(RunNotFound, match="no run with id"):
            call("ffffffff")
    assert repo.tag_run("abcd0", {"a": "1"}).tags == {"a": "1"}


# -- delete and restore ------------------------------------------------------------------------


def test_a_deleted_run_is_hidden_kept_in_lineage_and_restored(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    repo = backend_repo
    (tmp_path / "w.bin").write_bytes(b"weights" * 100)
    (tmp_path / "plot.txt").write_bytes(b"a plot only this run has")
    with mk.start_run("parent", repo=repo, capture_code=False) as parent:
        with mk.start_run("child", repo=repo, capture_code=False) as child:
            child.log_artifact(tmp_path / "w.bin", "churn-model")
            child_id = child.id
        parent.attach(tmp_path / "plot.txt")
    lonely = finished_run(repo, "lonely", metrics={"auc": 0.5})

    gone = repo.delete_run(parent.id, reason="wrong split")
    assert gone.kept_for == ("churn-model:v1",)  # its child made that version
    assert gone.run.deleted and gone.run.delete_reason == "wrong split"
    assert gone.run.deleted_by == repo.user
    assert repo.delete_run(lonely).kept_for == ()
    assert [r.id for r in repo.runs()] == [child_id]
    assert {r.id for r in repo.runs(deleted="only")} == {parent.id, lonely}
    assert len(repo.runs(deleted="all")) == 3
    assert repo.run(parent.id[:8]).deleted  # still resolvable by id
    with pytest.raises(RunDeleted, match="--deleted"):
        repo.compare_runs([lonely, child_id])
    assert len(repo.compare_runs([lonely, child_id], deleted=True).runs) == 2

    # the child that produced the version stays in lineage; the attachment survives gc
    assert f"run:{child_id}" in repo.lineage("churn-model:v1").nodes
    repo.gc()
    assert repo.get_attachment(parent.id, "plot.txt", tmp_path / "back.txt").read_bytes() == (
        b"a plot only this run has"
    )

    restored = repo.restore_run(parent.id)
    assert not restored.deleted and restored.delete_reason == "" and restored.tags == {}
    assert parent.id in {r.id for r in repo.runs()}
    with pytest.raises(RunNotDeleted, match="nothing to restore"):
        repo.restore_run(parent.id)


def test_a_version_producing_run_stays_in_its_lineage(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    repo = backend_repo
    (tmp_path / "d.csv").write_bytes(b"a,b\n1,2\n")
    data = repo.add(tmp_path / "d.csv", "data").version
    with mk.start_run("train", repo=repo, capture_code=False) as run:
        run.use(data.ref, tmp_path / "in.csv")
        run.log_artifact(tmp_path / "d.csv", "churn-model")
    d = repo.delete_run(run.id)
    assert d.kept_for == ("churn-model:v1", "data:v1")
    graph = repo.lineage("churn-model:v1")
    assert f"run:{run.id}" in graph.nodes
    assert f"run:{run.id}" in repo.lineage("data:v1").nodes


def test_a_running_run_cannot_be_deleted(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    with (
        mk.start_run("live", repo=repo, capture_code=False) as run,
        pytest.raises(RunStillRunning, match="still running"),
    ):
        repo.delete_run(run.id)
    assert repo.delete_run(run.id).run.deleted


# -- sorting -----------------------------------------------------------------------------------


def test_sort_puts_missing_values_last_and_orders_numbers_and_text(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    a = finished_run(repo, "b-run", {"x": 10, "opt": "adam"}, {"auc": 0.8}, {"k": "9"})
    b = finished_run(repo, "a-run", {"x": 2, "opt": "sgd"}, {"auc": 0.95}, {"k": "10"})
    c = finished_run(repo, "c-run", {"x": "big"}, {"auc": math.nan}, {"k": "high"})
    d = finished_run(repo, "d-run", {}, {}, {})

    def order(key: str, descending: bool = False, **kw: object) -> list[str]:
        return [r.id for r in repo.runs(sort=key, descending=descending, **kw)]  # type: ignore[arg-type]

    # NaN and absent last, whichever the direction, newest first among themselves
    assert order("metrics.auc") == [a, b, d, c]
    assert order("metrics.auc", True) == [b, a, d, c]
    assert order("params.x") == [b, a, c, d]  # 2 < 10 (numbers), then text, then absent
    assert order("params.x", True) == [c, a, b, d]
    assert order("tags.k") == [a, b, c, d]  # "9" < "10" read as numbers
    assert order("params.opt", True) == [b, a, d, c]
    assert order("name") == [b, a, c, d]
    assert order("started") == [a, b, c, d]
    assert order("started", True) == [d, c, b, a]
    assert order("duration")[-1] in (a, b, c, d)
    assert order("metrics.auc", True, limit=1) == [b]
    assert order("metrics.auc", False, where=["params.x > 5"]) == [a]
    assert order("name", False, limit=2) == [b, a]
    with pytest.raises(InvalidArgument, match="cannot sort by"):
        repo.runs(sort="metrics")
    with pytest.raises(InvalidArgument, match="cannot sort by"):
        repo.runs(sort="color")


# -- environment summary -----------------------------------------------------------------------


def test_environment_summary_names_the_ml_libraries_and_gpus() -> None:
    doc = {
        "python": {"version": "3.12.1", "implementation": "CPython"},
        "os": {"system": "Linux", "release": "6.8", "machine": "x86_64"},
        "gpu": [{"name": "NVIDIA A100", "driver": "550.54", "memory": "81920 MiB"}],
        "cuda": "12.4",
        "packages": {"torch": "2.3.0", "numpy": "1.26.4", "requests": "2.31", "modelkeep": "0.1"},
    }
    s = summarize(doc)
    assert s["python"] == "CPython 3.12.1" and s["os"] == "Linux 6.8 x86_64"
    assert s["packages"] == {"torch": "2.3.0", "numpy": "1.26.4", "modelkeep": "0.1"}
    assert s["gpus"][0]["driver"] == "550.54" and s["cuda"] == "12.4"
    assert s["package_count"] == 4
    assert summarize({})["packages"] == {} and summarize({})["gpus"] == []


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    top = tmp_path / "proj"
    top.mkdir()
    ok("init", "-q", cwd=top)
    (top / "w.bin").write_bytes(b"w" * 100)
    script = (
        "import modelkeep as mk\n"
        "rows = [('r0', 0.9, 'fraud'), ('r1', 0.7, 'risk'), ('r2', None, 'fraud')]\n"
        "for name, auc, team in rows:\n"
        "    with mk.start_run(name, capture_code=False) as run:\n"
        "        if auc is not None: run.log_metric('auc', auc)\n"
        "        run.set_tag('team', team)\n"
        "        if name == 'r0': run.log_artifact('w.bin', 'churn-model')\n"
    )
    (top / "make.py").write_text(script)
    env = {**os.environ, "MODELKEEP_USER": "tester"}
    r = subprocess.run(
        [str(Path(MODELKEEP).with_name("python")), "make.py"],
        cwd=top, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return top


def _ids(top: Path, *args: str) -> list[str]:
    return [r["name"] for r in jcli("runs", *args, cwd=top)["runs"]]


def test_cli_tags_notes_rename_delete_restore(project: Path, tmp_path: Path) -> None:
    top = project
    runs = {r["name"]: r["id"] for r in jcli("runs", cwd=top)["runs"]}
    r0, r1 = runs["r0"][:8], runs["r1"][:8]

    tagged = jcli("runs", "tag", r1, "owner=ana", "note=a=b", cwd=top)
    assert tagged["tags"] == {"note": "a=b", "owner": "ana", "team": "risk"}
    out = ok("runs", "tag", r1, "--remove", "note", cwd=top).stdout
    assert "owner=ana, team=risk" in out
    assert _ids(top, "--where", "tags.team=fraud") == ["r2", "r0"]
    assert _ids(top, "--where", "tags.team != fraud") == ["r1"]

    assert jcli("runs", "note", r1, "looks overfit", cwd=top)["note"] == "looks overfit"
    (tmp_path / "note.md").write_text("# Review\nfine\n")
    assert jcli("runs", "note", r1, "--file", str(tmp_path / "note.md"), cwd=top)["note"] == (
        "# Review\nfine\n"
    )
    piped = subprocess.run(
        [MODELKEEP, "runs", "note", r1, "-", "--json"], input="from stdin", cwd=top,
        env={**os.environ, "MODELKEEP_USER": "tester"}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert json.loads(piped.stdout)["note"] == "from stdin"
    assert jcli("runs", "rename", r1, "xgb-baseline", cwd=top)["name"] == "xgb-baseline"

    shown = ok("runs", "show", r1, cwd=top).stdout
    assert "owner = ana" in shown and "from stdin" in shown and "xgb-baseline" in shown
    assert "python     CPython" in shown and "modelkeep==" in shown

    gone = ok("runs", "delete", r0, "--reason", "leaky split", cwd=top).stdout
    assert "kept for the lineage of churn-model:v1" in gone
    assert _ids(top) == ["r2", "xgb-baseline"]
    assert _ids(top, "--deleted") == ["r0"]
    assert _ids(top, "--all") == ["r2", "xgb-baseline", "r0"]
    assert "r0" not in ok("runs", "--tree", cwd=top).stdout
    assert "DELETED" in ok("runs", "show", r0, cwd=top).stdout
    assert "leaky split" in ok("runs", "show", r0, cwd=top).stdout
    assert "is deleted" in one_error_line(cli("runs", "compare", r0, r1, cwd=top))
    assert len(jcli("runs", "compare", r0, r1, "--deleted", cwd=top)["runs"]) == 2
    assert "run " + runs["r0"][:8] in ok("lineage", "churn-model:v1", cwd=top).stdout
    restored = jcli("runs", "restore", r0, cwd=top)
    assert restored["deleted_at"] is None
    assert "not deleted" in one_error_line(cli("runs", "restore", r0, cwd=top))
    deleted = jcli("runs", "delete", r0, cwd=top)
    assert deleted["kept_for"] == ["churn-model:v1"] and deleted["run"]["deleted_at"]


def test_cli_bad_input_says_what_is_wrong(project: Path) -> None:
    top = project
    rid = jcli("runs", cwd=top)["runs"][0]["id"][:8]
    assert "KEY=VALUE" in one_error_line(cli("runs", "tag", rid, "novalue", cwd=top))
    assert "limit is 5000" in one_error_line(cli("runs", "tag", rid, "k=" + "v" * 5001, cwd=top))
    assert "no run with id" in one_error_line(cli("runs", "tag", "ffffffff", "a=1", cwd=top))
    assert "invalid run name" in one_error_line(cli("runs", "rename", rid, "", cwd=top))
    assert "no run with id" in one_error_line(cli("runs", "delete", "ffffffff", cwd=top))
    assert cli("runs", "tag", rid, cwd=top).returncode == 2  # nothing to set or remove
    assert cli("runs", "note", rid, cwd=top).returncode == 2
    assert cli("runs", "--desc", cwd=top).returncode == 2
    assert "cannot sort by" in one_error_line(cli("runs", "--sort", "colour", cwd=top))


def test_cli_sort_and_show_env(project: Path) -> None:
    top = project
    assert _ids(top, "--sort", "metrics.auc", "--desc") == ["r0", "r1", "r2"]
    assert _ids(top, "--sort", "metrics.auc") == ["r1", "r0", "r2"]
    assert _ids(top, "--sort", "metrics.auc", "--desc", "--limit", "1") == ["r0"]
    assert _ids(top, "--sort", "name", "--desc") == ["r2", "r1", "r0"]
    assert _ids(top, "--sort", "tags.team") == ["r2", "r0", "r1"]
    rid = jcli("runs", cwd=top)["runs"][0]["id"]
    doc = jcli("runs", "show", rid, cwd=top)
    assert doc["environment_summary"]["packages"]["modelkeep"]
    assert "environment" not in doc
    full = jcli("runs", "show", rid, "--env", cwd=top)
    assert full["environment"]["packages"]["modelkeep"]
    assert "click" in full["environment"]["packages"]
    text = ok("runs", "show", rid, "--env", cwd=top).stdout
    assert "click==" in text and "packages (" in text


# -- through a server: the run's owner may, others may not --------------------------------------


def test_through_a_server_only_the_runs_owner_tags_and_deletes(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    served = mkserve.start(tmp_path_factory.mktemp("hk") / "store")
    try:
        mkserve.with_accounts(served, {"olga": "editor", "otto": "editor", "vera": "viewer"})
        work = tmp_path / "client"
        work.mkdir()

        def as_user(user: str, *args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [MODELKEEP, *args], cwd=work, env=served.client_env(served.tokens[user]),
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip

        made = as_user("olga", "run", "--name", "train", "--json", "--", "true")
        assert made.returncode == 0, made.stderr
        rid = json.loads(made.stdout)["run"]["id"][:8]
        for user in ("vera", "otto"):
            for args in (("tag", rid, "team=x"), ("delete", rid), ("rename", rid, "mine")):
                refused = as_user(user, "runs", *args)
                assert refused.returncode == 1, (user, args, refused.stdout)
                assert "modelkeep: error:" in refused.stderr
        mine = as_user("olga", "runs", "tag", rid, "team=fraud", "--json")
        assert mine.returncode == 0, mine.stderr
        assert json.loads(mine.stdout)["tags"] == {"team": "fraud"}
        seen_r = as_user("vera", "runs", "--where", "tags.team=fraud", "--json")
        assert seen_r.returncode == 0, seen_r.stderr
        seen = json.loads(seen_r.stdout)
        assert [r["id"][:8] for r in seen["runs"]] == [rid]
        assert as_user("olga", "runs", "note", rid, "ok").returncode == 0
        gone = as_user("olga", "runs", "delete", rid, "--reason", "test")
        assert gone.returncode == 0, gone.stderr
        listed = json.loads(as_user("vera", "runs", "--json").stdout)["runs"]
        assert listed == []
        shown = json.loads(as_user("vera", "runs", "show", rid, "--json").stdout)
        assert shown["deleted_by"] == "olga" and shown["delete_reason"] == "test"
        assert shown["note"] == "ok" and shown["environment_summary"]["python"]
        assert as_user("olga", "runs", "restore", rid).returncode == 0
        assert len(json.loads(as_user("vera", "runs", "--json").stdout)["runs"]) == 1
    finally:
        served.stop()


def test_pages_of_a_filtered_or_metric_sorted_search_do_not_overlap(tmp_path: Path) -> None:
    """offset after a filter read in pages (the web UI's runs table): each page holds
    its own runs, never the pages before it too."""
    with mk.init(tmp_path / "r") as repo:
        for i in range(30):
            finished_run(repo, f"r{i}", tags={"team": "a"}, metrics={"auc": i / 100})
        names = [r.name for r in repo.runs(where=["tags.team = a"])]
        first = [r.name for r in repo.runs(where=["tags.team = a"], limit=10)]
        second = [r.name for r in repo.runs(where=["tags.team = a"], limit=10, offset=10)]
        assert first == names[:10] and second == names[10:20]
        by_auc = [r.name for r in repo.runs(sort="metrics.auc", limit=10, offset=20)]
        assert by_auc == [f"r{i}" for i in range(20, 30)]
