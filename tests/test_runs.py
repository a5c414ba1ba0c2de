"""Runs: mk.start_run, what a run captures unasked, `modelkeep run`, `runs` and `env`.

Real SQLite files and a real PostgreSQL, real Git repositories in tmp_path, real child
processes (killed for real) and the installed `modelkeep` console script.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

import modelkeep as mk
import modelkeep.run as run_module
from modelkeep import meta
from modelkeep.capture import canonical_json, environment, environment_id
from modelkeep.errors import (
    InvalidArgument,
    ParamConflict,
    RunNotActive,
    RunNotFound,
)
from modelkeep.meta.models import EnvironmentRow, RunRow
from tests.conftest import cli, git, jcli, ok, write

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


pytestmark = pytest.mark.usefixtures("run_env")


def git_project(path: Path, files: dict[str, bytes]) -> mk.Repo:
    """A Git work tree with a modelkeep repository inside it, everything committed."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "remote", "add", "origin", "https://alice:s3cret-token@example.com/team/proj.git")
    repo = mk.init(path)
    for rel, data in files.items():
        write(path / rel, data)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return repo


def error_line(r: subprocess.CompletedProcess[str]) -> str:
    """A refused command: exit 1 and exactly one line on stderr."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("modelkeep: error: "), lines[0]
    return lines[0]


def files_under(top: Path) -> dict[str, bytes]:
    return {
        p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()
    }


def proc_start_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])


def raw_run(repo: mk.Repo, run_id: str | None = None, *, name: str = "raw") -> str:
    """A run row as another process would write it: owned by this (live) process."""
    doc = {"python": {"version": "test"}}
    new = meta.NewRun(
        id=run_id or uuid.uuid4().hex,
        name=name,
        user="tester",
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_started=proc_start_ticks(os.getpid()),
        command={},
        code={},
        env_id=environment_id(doc),
        env_json=canonical_json(doc).decode(),
    )
    meta.create_run(repo.db, new, {})
    return new.id


def quick_run(
    repo: mk.Repo,
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    *,
    fail: bool = False,
) -> str:
    """A finished (or, with fail, failed) run made through the public API."""
    run = mk.start_run(name=name, params=params, repo=repo, capture_code=False)
    try:
        with run:
            run.log_metrics(metrics)
            if fail:
                raise RuntimeError("diverged")
    except RuntimeError:
        pass
    return run.id


def env_rows(repo: mk.Repo) -> int:
    with repo.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(EnvironmentRow)) or 0)


# -- runs from Python ---------------------------------------------------------------


def test_run_records_params_metrics_artifact_and_finishes(repo: mk.Repo) -> None:
    write(repo.root / "model.safetensors", b"weights" * 1000)
    with mk.start_run(name="train-fraud", params={"lr": 0.01, "depth": 6}, repo=repo) as run:
        assert mk.current_run() is run
        assert run.info().status == "running"
        assert run.info().ended_at is None
        run.log_param("seed", 7)
        run.log_metric("auc", 0.931)
        v = run.log_artifact(repo.root / "model.safetensors", name="fraud-detector", type="model")
    assert mk.current_run() is None
    r = repo.run(run.id)
    assert r.name == "train-fraud"
    assert r.status == "finished"
    assert r.error == ""
    assert r.exit_code is None
    assert r.params == {"depth": 6, "lr": 0.01, "seed": 7}
    assert r.metrics == {"auc": 0.931}
    assert r.outputs == ("fraud-detector:v1",)
    assert v.ref == "fraud-detector:v1"
    assert v.run_id == run.id
    assert repo.show("fraud-detector:v1").run_id == run.id
    assert r.user == "tester"
    assert r.host == socket.gethostname()
    assert r.ended_at is not None
    assert r.ended_at >= r.started_at
    assert r.duration == (r.ended_at - r.started_at).total_seconds()
    assert r.started_at.tzinfo is not None
    assert r.env_id is not None and len(r.env_id) == 64


def test_start_run_finds_the_repository_from_the_working_directory(
    repo: mk.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo.root / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(repo.root / "src" / "deep")
    with mk.start_run(name="found") as run:
        assert run.repo.root == repo.root
        assert run.repo is not repo
    assert repo.run(run.id).status == "finished"
    assert [r.name for r in repo.runs()] == ["found"]


def test_user_comes_from_modelkeep_user(repo: mk.Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELKEEP_USER", "alice")
    with mk.start_run(name="who", repo=repo.root, capture_code=False) as run:
        pass
    r = repo.run(run.id)
    assert (r.user, r.host) == ("alice", socket.gethostname())


def test_exception_fails_the_run_with_its_text_and_propagates(repo: mk.Repo) -> None:
    with (
        pytest.raises(ValueError, match="bad batch 17"),
        mk.start_run(name="boom", repo=repo) as run,
    ):
        run.log_metric("loss", 0.5)
        raise ValueError("bad batch 17")
    r = repo.run(run.id)
    assert r.status == "failed"
    assert r.error == "ValueError: bad batch 17"
    assert r.ended_at is not None
    assert r.metrics == {"loss": 0.5}  # nothing logged before the error is lost
    assert mk.current_run() is None
    with mk.start_run(name="next", repo=repo) as again:
        pass
    assert repo.run(again.id).status == "finished"


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (KeyboardInterrupt(), "killed", "interrupted (KeyboardInterrupt)"),
        (SystemExit(0), "finished", ""),
        (SystemExit(2), "failed", "SystemExit: 2"),
    ],
)
def test_interrupt_and_sys_exit_decide_the_status(
    repo: mk.Repo, exc: BaseException, status: str, error: str
) -> None:
    with pytest.raises(type(exc)), mk.start_run(repo=repo, capture_code=False) as run:
        raise exc
    r = repo.run(run.id)
    assert (r.status, r.error) == (status, error)


def test_a_second_run_while_one_is_active_is_refused(repo: mk.Repo) -> None:
    """Unless it is a nested run (a name, or nested=True): see tests/test_nested_runs.py."""
    with mk.start_run(name="first", repo=repo, capture_code=False) as run:
        with pytest.raises(InvalidArgument, match=run.id[:8]):
            mk.start_run(repo=repo)
        with pytest.raises(InvalidArgument, match=run.id[:8]):
            mk.start_run(name="second", repo=repo, nested=False)
        assert mk.current_run() is run
    assert [r.name for r in repo.runs()] == ["first"]  # the refused one was never recorded


def test_params_are_written_once(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    with mk.start_run(params={"lr": 0.01, "depth": 6}, repo=repo, capture_code=False) as run:
        run.log_param("seed", 7)
        run.log_param("seed", 7)  # the same value again is fine
        run.log_params({"lr": 0.01, "layers": [64, 32], "opt": {"name": "adam"}, "tag": None})
        with pytest.raises(ParamConflict) as caught:
            run.log_param("seed", 8)
        assert caught.value.key == "seed"
        assert (caught.value.old, caught.value.new) == ("7", "8")
        assert "'seed'" in str(caught.value)
        assert "already 7" in str(caught.value) and "to 8" in str(caught.value)
        with pytest.raises(ParamConflict, match=r"already 0\.01, cannot set it to 0\.02"):
            run.log_params({"fresh": 1, "lr": 0.02})  # all or nothing: fresh is not written
        with pytest.raises(ParamConflict, match='already 6, cannot set it to "6"'):
            run.log_param("depth", "6")  # a string is not the number 6
    assert repo.run(run.id).params == {
        "depth": 6,
        "layers": [64, 32],
        "lr": 0.01,
        "opt": {"name": "adam"},
        "seed": 7,
        "tag": None,
    }


def test_metrics_keep_every_value_with_step_and_time(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    with mk.start_run(repo=repo, capture_code=False) as run:
        run.log_metric("loss", 0.9)
        run.log_metric("loss", 0.5)
        run.log_metrics({"loss": 0.3, "acc": 0.7})
        run.log_metric("acc", 0.8, step=100)
        run.log_metric("loss", 1)  # an int is a number too
        run.log_metrics({"lr": 0.1}, step=5)
        with pytest.raises(InvalidArgument, match="step"):
            run.log_metric("acc", 0.9, step=1.5)  # type: ignore[arg-type]
    r = repo.run(run.id)
    history = repo.metric_history(run.id)
    assert [(m.key, m.value, m.step) for m in history] == [
        ("acc", 0.7, 0),
        ("acc", 0.8, 100),
        ("loss", 0.9, 0),
        ("loss", 0.5, 1),
        ("loss", 0.3, 2),
        ("loss", 1.0, 3),
        ("lr", 0.1, 5),
    ]
    assert r.ended_at is not None
    times = [m.logged_at for m in history if m.key == "loss"]
    assert times == sorted(times)
    assert all(r.started_at <= t <= r.ended_at for t in times)
    assert r.metrics == {"acc": 0.8, "loss": 1.0, "lr": 0.1}  # the last value of each
    shown = jcli("runs", "show", run.id[:10], cwd=repo.root)
    assert [(m["key"], m["value"], m["step"]) for m in shown["metric_history"]] == [
        (m.key, m.value, m.step) for m in history
    ]


def test_nan_and_infinite_metrics_are_stored_and_shown(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    with mk.start_run(name="odd", repo=repo, capture_code=False) as run:
        run.log_metric("nan", float("nan"))
        run.log_metric("pos", math.inf)
        run.log_metric("neg", -math.inf)
        run.log_metric("pos", 1.5)
        run.log_metric("pos", math.inf)
    r = repo.run(run.id)
    assert math.isnan(r.metrics["nan"])
    assert r.metrics["pos"] == math.inf
    assert r.metrics["neg"] == -math.inf
    history = repo.metric_history(run.id)
    assert [m.key for m in history] == ["nan", "neg", "pos", "pos", "pos"]
    assert math.isnan(history[0].value)
    assert [m.value for m in history[1:]] == [-math.inf, math.inf, 1.5, math.inf]

    text = ok("runs", "show", run.id, cwd=repo.root).stdout
    assert "    nan = nan\n" in text
    assert "    neg = -inf\n" in text
    assert "    pos = inf  (3 values)\n" in text
    doc = jcli("runs", "show", run.id, cwd=repo.root)
    assert doc["metrics"] == {"nan": "nan", "neg": "-inf", "pos": "inf"}
    assert [m["value"] for m in doc["metric_history"]] == ["nan", "-inf", "inf", 1.5, "inf"]
    listed = jcli("runs", cwd=repo.root)["runs"]
    assert listed[0]["metrics"] == {"nan": "nan", "neg": "-inf", "pos": "inf"}


def test_bad_metric_and_param_values_are_refused_naming_the_key(repo: mk.Repo) -> None:
    with mk.start_run(name="bad", repo=repo, capture_code=False) as run:
        for value in ("0.9", True, None, [0.9], 10**400):
            with pytest.raises(InvalidArgument, match="'auc'"):
                run.log_metric("auc", value)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="'auc'"):
            run.log_metrics({"ok": 1.0, "auc": "high"})  # type: ignore[dict-item]
        unstorable: list[object] = [object(), float("nan"), math.inf, {1, 2}, b"raw"]
        for param in unstorable:
            with pytest.raises(InvalidArgument, match="param 'weird'"):
                run.log_param("weird", param)
        with pytest.raises(InvalidArgument, match="param key"):
            run.log_param("", 1)
        run.log_metric("auc", 0.9)  # the run still works after refusals; no step was used
        run.log_metric("ok", 1.0)  # refused with auc above, so never written
    r = repo.run(run.id)
    assert r.status == "finished"
    assert r.params == {}
    assert [(m.key, m.value, m.step) for m in repo.metric_history(run.id)] == [
        ("auc", 0.9, 0),
        ("ok", 1.0, 0),
    ]


def test_unserialisable_start_params_create_no_run(repo: mk.Repo) -> None:
    with pytest.raises(InvalidArgument, match="param 'model'"):
        mk.start_run(name="never", params={"lr": 0.1, "model": object()}, repo=repo)
    assert repo.runs() == []
    assert mk.current_run() is None


def test_logging_to_a_finished_run_is_refused(repo: mk.Repo) -> None:
    write(repo.root / "late.bin", b"late")
    repo.add(repo.root / "late.bin", "early")
    with mk.start_run(name="done", repo=repo, capture_code=False) as run:
        run.log_metric("auc", 0.5)
    for act in (
        lambda: run.log_metric("auc", 0.6),
        lambda: run.log_metrics({"x": 1.0}),
        lambda: run.log_param("seed", 1),
        lambda: run.log_artifact(repo.root / "late.bin", name="late"),
        lambda: run.use("early:v1"),
    ):
        with pytest.raises(RunNotActive, match="is finished"):
            act()
    r = repo.run(run.id)
    assert (r.status, r.params, r.metrics, r.inputs, r.outputs) == (
        "finished",
        {},
        {"auc": 0.5},
        (),
        (),
    )
    assert [a.name for a in repo.artifacts()] == ["early"]


def test_unknown_and_ambiguous_run_ids(repo: mk.Repo) -> None:
    with pytest.raises(RunNotFound, match="no run with id 'deadbeef'"):
        repo.run("deadbeef")
    a = raw_run(repo, "abcd" + "1" * 28)
    b = raw_run(repo, "abcd" + "2" * 28)
    with pytest.raises(RunNotFound, match="ambiguous") as caught:
        repo.run("abcd")
    assert sorted(caught.value.matches) == [a[:12], b[:12]]
    assert repo.run("abcd1").id == a
    assert repo.run("ABCD2").id == b

    line = error_line(cli("runs", "show", "deadbeef", cwd=repo.root))
    assert "no run with id 'deadbeef'" in line
    line = error_line(cli("runs", "show", "abcd", cwd=repo.root))
    assert "ambiguous" in line and a[:12] in line and b[:12] in line
    assert jcli("runs", "show", "abcd2", cwd=repo.root)["id"] == b


def test_use_restores_a_version_missing_from_the_work_tree(repo: mk.Repo) -> None:
    data = {"a.csv": b"id,amount\n1,10\n", "sub/b.csv": b"id,amount\n2,20\n"}
    for rel, content in data.items():
        write(repo.root / "transactions" / rel, content)
    repo.add(repo.root / "transactions", "transactions", type="dataset")
    shutil.rmtree(repo.root / "transactions")
    with mk.start_run(name="reader", repo=repo, capture_code=False) as run:
        path = run.use("transactions:v1")
        assert repo.settings.control_dir / "checkouts" in path.parents
        assert path.name == "transactions"
        assert files_under(path) == data
        assert run.use("transactions") == path  # restored once, reused
        elsewhere = run.use("transactions:v1", dest=repo.root / "here")
        assert elsewhere == repo.root / "here"
        assert files_under(elsewhere) == data
    assert repo.run(run.id).inputs == ("transactions:v1",)


@needs_git
def test_use_returns_the_tracked_path_of_the_git_work_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "proj"
    with git_project(top, {"train.py": b"print('train')\n"}) as repo:
        write(top / "models" / "w.bin", b"weights v1")
        repo.add(top / "models" / "w.bin", "weights", type="model")
        assert "models/w.bin -> weights:v1" in (top / "modelkeep.lock").read_text()
        git(top, "add", "-A")
        git(top, "commit", "-q", "-m", "pin weights")
        monkeypatch.chdir(top)
        with mk.start_run(name="eval", repo=repo, capture_code=False) as run:
            assert run.use("weights:v1").resolve() == (top / "models" / "w.bin").resolve()
            assert not (repo.settings.control_dir / "checkouts").exists()
            write(top / "models" / "w.bin", b"edited by hand")  # no longer that version
            copy_path = run.use("weights:v1")
            assert repo.settings.control_dir / "checkouts" in copy_path.parents
            assert copy_path.read_bytes() == b"weights v1"
        assert repo.run(run.id).inputs == ("weights:v1",)


# -- what a run captures ---------------------------------------------------------------


@needs_git
def test_clean_git_tree_records_commit_branch_and_remote_without_patch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "proj"
    with git_project(top, {"train.py": b"print('train')\n"}) as repo:
        monkeypatch.chdir(top)
        with mk.start_run(name="clean", repo=repo) as run:
            pass
        r = repo.run(run.id)
        assert r.code == {
            "git": {
                "root": str(top.resolve()),
                "commit": git(top, "rev-parse", "HEAD"),
                "branch": "main",
                "remote": "https://example.com/team/proj.git",
                "dirty": False,
            }
        }
        assert "s3cret" not in json.dumps(r.to_json())
        assert r.inputs == ()
        assert repo.artifacts() == []  # nothing to store: the commit names the code


@needs_git
def test_dirty_git_tree_stores_a_patch_that_reproduces_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "proj"
    tracked = {
        "train.py": b"lr = 0.1\nprint(lr)\n",
        "lib/util.py": b"def f():\n    return 1\n",
        "lib/old.py": b"gone = True\n",
    }
    with git_project(top, tracked) as repo:
        commit = git(top, "rev-parse", "HEAD")
        write(top / "train.py", b"lr = 0.01  # tuned\nprint(lr)\n")
        (top / "lib" / "old.py").unlink()
        write(top / "lib" / "new_util.py", b"def g():\n    return 2\n")
        write(top / "notes.txt", b"not source\n")
        monkeypatch.chdir(top)
        with mk.start_run(name="dirty", repo=repo) as run:
            pass
        r = repo.run(run.id)
        assert r.code["git"]["commit"] == commit
        assert r.code["git"]["dirty"] is True
        assert r.code["patch"] == "code/proj:v1"
        assert r.inputs == ("code/proj:v1",)
        v = repo.show("code/proj:v1")
        assert (repo.artifacts()[0].name, repo.artifacts()[0].type) == ("code/proj", "code")
        assert commit[:12] in v.message
        shown = ok("runs", "show", run.id, cwd=top).stdout
        assert f"  code       git {commit[:12]} on main (dirty); " in shown
        assert "uncommitted changes in code/proj:v1\n" in shown

        saved = repo.get("code/proj:v1", str(tmp_path / "saved"))
        assert sorted(files_under(saved)) == ["patch.diff", "untracked/lib/new_util.py"]

        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", str(top), str(clone))
        git(clone, "checkout", "-q", commit)
        git(clone, "apply", str(saved / "patch.diff"))
        shutil.copytree(saved / "untracked", clone, dirs_exist_ok=True)
        for rel in ("train.py", "lib/util.py", "lib/new_util.py"):
            assert (clone / rel).read_bytes() == (top / rel).read_bytes(), rel
        assert not (clone / "lib" / "old.py").exists()


def test_outside_git_a_snapshot_of_the_source_files(
    repo: mk.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = {
        "train.py": b"print('train')\n",
        "lib/util.py": b"X = 1\n",
        "conf/params.yaml": b"lr: 0.1\n",
        "data.csv": b"1,2\n",
        ".venv/lib/site.py": b"installed, not written\n",
    }
    for rel, content in source.items():
        write(repo.root / rel, content)
    monkeypatch.chdir(repo.root)

    def snapshot_of(r: mk.Repo, **kwargs: Any) -> dict[str, bytes]:
        with mk.start_run(repo=r, **kwargs) as run:
            pass
        code = r.run(run.id).code
        assert code["git"] is None
        assert code["root"] == str(repo.root)
        assert code["snapshot"] in r.run(run.id).inputs
        assert r.show(code["snapshot"]).name == "code/proj"
        out = r.get(code["snapshot"], str(repo.root.parent / code["snapshot"].replace("/", "-")))
        return files_under(out)

    assert snapshot_of(repo) == {"lib/util.py": b"X = 1\n", "train.py": b"print('train')\n"}
    assert snapshot_of(repo, code_globs=["lib/**"]) == {"lib/util.py": b"X = 1\n"}
    config = repo.settings.control_dir / "config.toml"
    config.write_text('code_globs = ["**/*.py", "conf/*.yaml"]\n')
    with mk.open(repo.root) as configured:
        assert sorted(snapshot_of(configured)) == ["conf/params.yaml", "lib/util.py", "train.py"]
    assert sorted(v.number for v in repo.versions("code/proj")) == [1, 2, 3]
    assert {v.type for v in repo.artifacts()} == {"code"}


def test_command_of_a_script_and_a_crash_without_with_block(tmp_path: Path) -> None:
    """A script that starts a run and dies of an uncaught exception: the run failed."""
    root = tmp_path / "proj"
    mk.init(root).close()
    write(
        root / "crash.py",
        b"import modelkeep as mk\n"
        b"run = mk.start_run(name='crash')\n"
        b"run.log_metric('loss', 0.5)\n"
        b"raise RuntimeError('out of memory')\n",
    )
    proc = subprocess.run(
        [sys.executable, "crash.py", "--epochs", "3"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "RuntimeError: out of memory" in proc.stderr
    with mk.open(root) as repo:
        (r,) = repo.runs()
        assert r.status == "failed"
        assert r.error == "RuntimeError: out of memory"
        assert r.ended_at is not None
        assert r.metrics == {"loss": 0.5}
        assert r.command == {
            "argv": ["crash.py", "--epochs", "3"],
            "script": str(root.resolve() / "crash.py"),
            "cwd": str(root.resolve()),
            "entry": "python",  # `reproduce` runs it with python
        }


def test_environment_is_stored_once_and_diffed(
    repo: mk.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = environment()
    write(repo.root / "m.bin", b"one")
    with mk.start_run(name="a", repo=repo, capture_code=False) as a:
        a.log_artifact(repo.root / "m.bin", name="model")
    with mk.start_run(name="b", repo=repo, capture_code=False) as b:
        pass
    ra, rb = repo.run(a.id), repo.run(b.id)
    assert ra.env_id == rb.env_id == environment_id(real)
    assert env_rows(repo) == 1
    doc = repo.environment(a.id)
    assert doc["python"] == {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
    assert doc["os"]["system"] == platform.system()
    assert doc["os"]["machine"] == platform.machine()
    assert doc["cpu"]["count"] == os.cpu_count()
    assert "sqlalchemy" in doc["packages"]
    # torch is described only when this process imported it already: never imported to ask
    assert (doc["torch"] is None) == ("torch" not in sys.modules)
    assert repo.env_diff(a.id, b.id).same

    changed = copy.deepcopy(real)
    changed["python"]["version"] = "3.99.0"
    old_sqlalchemy = changed["packages"]["sqlalchemy"]
    changed["packages"]["sqlalchemy"] = "0.0.1"
    old_alembic = changed["packages"].pop("alembic")
    changed["packages"]["extra-lib"] = "9.9"
    monkeypatch.setattr(run_module, "environment", lambda: copy.deepcopy(changed))
    write(repo.root / "m.bin", b"two")
    with mk.start_run(name="c", repo=repo, capture_code=False) as c:
        c.log_artifact(repo.root / "m.bin", name="model")
    assert repo.run(c.id).env_id == environment_id(changed)
    assert env_rows(repo) == 2
    d = repo.env_diff(a.id, c.id)
    assert d.packages_added == (("extra-lib", "9.9"),)
    assert d.packages_removed == (("alembic", old_alembic),)
    assert d.packages_changed == (("sqlalchemy", old_sqlalchemy, "0.0.1"),)
    assert d.other == (("python.version", platform.python_version(), "3.99.0"),)

    text = ok("env", "diff", a.id[:8], c.id[:8], cwd=repo.root).stdout.splitlines()
    assert text == [
        "+ extra-lib==9.9",
        f"- alembic=={old_alembic}",
        f"~ sqlalchemy {old_sqlalchemy} -> 0.0.1",
        f'~ python.version: "{platform.python_version()}" -> "3.99.0"',
    ]
    by_version = jcli("env", "diff", "model:v1", "model:v2", cwd=repo.root)
    assert by_version["same"] is False
    assert by_version["packages_changed"] == [
        {"name": "sqlalchemy", "a": old_sqlalchemy, "b": "0.0.1"}
    ]
    assert by_version["packages_added"] == [{"name": "extra-lib", "version": "9.9"}]
    assert by_version["packages_removed"] == [{"name": "alembic", "version": old_alembic}]
    same = ok("env", "diff", "model:v1", b.id, cwd=repo.root).stdout
    assert same.strip() == f"model:v1 and {b.id} ran in the same environment"
    assert jcli("env", "show", "model:v2", cwd=repo.root) == changed
    shown = ok("env", "show", a.id[:8], cwd=repo.root).stdout
    assert f"python    {platform.python_implementation()} {platform.python_version()}" in shown
    assert f"  sqlalchemy=={old_sqlalchemy}\n" in shown

    write(repo.root / "plain.bin", b"no run")
    repo.add(repo.root / "plain.bin", "plain")
    line = error_line(cli("env", "diff", "plain:v1", "model:v1", cwd=repo.root))
    assert "plain:v1 was not produced by a run" in line
    with pytest.raises(InvalidArgument, match="not produced by a run"):
        repo.environment("plain")


# -- `modelkeep run` -------------------------------------------------------------------

CHILD = """\
import json, os, signal, sys
import modelkeep as mk

mode = sys.argv[1]
joined = mk.current_run()
with mk.start_run(params={"seed": 7}) as run:  # no name: joins (a name would nest)
    assert run is joined
    run.log_metric("auc", 0.5)
    with open("weights.bin", "wb") as f:
        f.write(b"weights " + mode.encode())
    version = run.log_artifact("weights.bin", name="weights", type="model")
    if mode == "raise":
        raise RuntimeError("diverged at step 3")
again = mk.current_run()
again.log_metric("auc", 0.75)
print(json.dumps({
    "env": os.environ["MODELKEEP_RUN_ID"],
    "run": again.id,
    "status": again.info().status,
    "version": version.ref,
    "version_run": version.run_id,
}), flush=True)
if mode == "exit3":
    sys.exit(3)
if mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""

_DONE = re.compile(r"modelkeep: run ([0-9a-f]{8}) \((\S+)\) (\w+) in [0-9.]+ s(: .*)?")


def test_modelkeep_run_child_joins_the_run(repo: mk.Repo) -> None:
    write(repo.root / "train.py", CHILD.encode())
    r = cli(
        "run",
        "--name",
        "train",
        "-p",
        "depth=6",
        "--param",
        "model=rf",
        "--",
        sys.executable,
        "train.py",
        "ok",
        cwd=repo.root,
    )
    assert r.returncode == 0, r.stderr
    child = json.loads(r.stdout)
    done = _DONE.fullmatch(r.stderr.strip().splitlines()[-1])
    assert done is not None, r.stderr
    assert done.group(1) == child["env"][:8]
    assert done.group(2, 3) == ("train", "finished")
    assert child["run"] == child["env"]
    assert child["status"] == "running"  # the child's `with` block did not end the run
    assert child["version"] == "weights:v1"
    assert child["version_run"] == child["env"]

    run = repo.run(child["env"])
    assert run.name == "train"
    assert run.status == "finished"
    assert run.exit_code == 0
    assert run.params == {"depth": 6, "model": "rf", "seed": 7}
    assert run.metrics == {"auc": 0.75}
    assert [(m.value, m.step) for m in repo.metric_history(run.id)] == [(0.5, 0), (0.75, 1)]
    assert run.outputs == ("weights:v1",)
    assert repo.show("weights:v1").run_id == run.id
    assert run.command == {
        "argv": [sys.executable, "train.py", "ok"],
        "script": str(repo.root.resolve() / "train.py"),
        "cwd": str(repo.root.resolve()),
        "entry": "command",  # how `reproduce` runs it again, with the params given
        "params": {"depth": 6, "model": "rf"},
    }
    assert run.code == {"git": None, "root": str(repo.root.resolve()), "snapshot": "code/proj:v1"}
    assert run.inputs == ("code/proj:v1",)
    assert run.env_id is not None
    assert repo.environment(run.id)["python"]["version"] == platform.python_version()


def test_modelkeep_run_exit_status_decides_failed_or_killed(repo: mk.Repo) -> None:
    write(repo.root / "train.py", CHILD.encode())
    outcomes = {}
    for mode in ("exit3", "kill", "raise"):
        r = cli("run", "--", sys.executable, "train.py", mode, cwd=repo.root)
        done = _DONE.fullmatch(r.stderr.strip().splitlines()[-1])
        assert done is not None, r.stderr
        (found,) = [x for x in repo.runs() if x.short_id == done.group(1)]
        outcomes[mode] = (r.returncode, found.status, found.exit_code, found.error)
        assert found.ended_at is not None
        assert found.name == "train"  # named after the script
        assert found.metrics["auc"] == (0.5 if mode == "raise" else 0.75)
    assert outcomes == {
        "exit3": (3, "failed", 3, "exited with status 3"),
        "kill": (128 + signal.SIGKILL, "killed", -signal.SIGKILL, "killed by SIGKILL"),
        "raise": (1, "failed", 1, "RuntimeError: diverged at step 3"),
    }
    assert {x.status for x in repo.runs(status="running")} == set()


def test_modelkeep_run_of_a_missing_command_records_a_failed_run(repo: mk.Repo) -> None:
    r = cli("run", "--name", "ghost", "--", "no-such-command-xyz", "--flag", cwd=repo.root)
    line = error_line(r)
    assert "'no-such-command-xyz'" in line and "no such command" in line
    (run,) = repo.runs(name="ghost")
    assert line.endswith(f"run {run.short_id} is recorded as failed")
    assert run.status == "failed"
    assert run.error == "cannot start 'no-such-command-xyz': no such command"
    assert run.ended_at is not None
    assert run.command["argv"] == ["no-such-command-xyz", "--flag"]
    failed = jcli("runs", "--status", "failed", cwd=repo.root)["runs"]
    assert [x["id"] for x in failed] == [run.id]


# -- runs whose process died -------------------------------------------------------------

SLEEPER = """\
import time
import modelkeep as mk
run = mk.start_run(name="doomed", params={"lr": 0.1})
run.log_metric("loss", 0.5)
print(run.id, flush=True)
time.sleep(120)
"""


def test_a_sigkilled_run_shows_as_killed(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    write(repo.root / "sleeper.py", SLEEPER.encode())
    child = subprocess.Popen(
        [sys.executable, "sleeper.py"],
        cwd=repo.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        assert run_id, child.stderr.read() if child.stderr else ""
        assert repo.run(run_id).status == "running"  # its process is alive
        assert [r.id for r in repo.runs(status="running")] == [run_id]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    (r,) = repo.runs()
    assert r.id == run_id
    assert r.status == "killed"
    assert r.ended_at is not None and r.ended_at >= r.started_at
    assert r.duration is not None and r.duration >= 0
    assert "process ended" in r.error
    assert (r.params, r.metrics) == ({"lr": 0.1}, {"loss": 0.5})  # nothing lost
    assert repo.runs(status="running") == []
    listed = jcli("runs", cwd=repo.root)["runs"]
    assert [(x["id"], x["status"]) for x in listed] == [(run_id, "killed")]
    assert listed[0]["ended_at"] is not None


def test_stale_heartbeat_on_another_host_is_killed_a_fresh_one_is_not(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    stale, fresh, reused = raw_run(repo), raw_run(repo), raw_run(repo)
    now = datetime.now(UTC)
    beat = now - timedelta(hours=1)
    with repo.db.write() as s:
        s.execute(update(RunRow).where(RunRow.id == stale).values(host="gpu-7", heartbeat_at=beat))
        s.execute(
            update(RunRow)
            .where(RunRow.id == fresh)
            .values(host="gpu-7", heartbeat_at=now - timedelta(minutes=2))
        )
        # this host, a live pid, but another process's start time: the pid was reused
        s.execute(
            update(RunRow).where(RunRow.id == reused).values(pid_started=RunRow.pid_started - 1)
        )
    status = {r.id: r for r in repo.runs()}
    assert status[stale].status == "killed"
    assert status[stale].ended_at == beat
    assert status[fresh].status == "running"
    assert status[fresh].ended_at is None
    assert status[reused].status == "killed"
    assert status[reused].ended_at is not None
    assert [r.id for r in repo.runs(status="running")] == [fresh]
    with mk.start_run(repo=repo, capture_code=False) as live:
        pass  # a run of this very process is never taken for dead
    assert repo.run(live.id).status == "finished"


# -- listing, showing, comparing -----------------------------------------------------------


def make_runs(repo: mk.Repo) -> dict[str, str]:
    return {
        "rf6": quick_run(repo, "train", {"depth": 6, "model": "rf"}, {"auc": 0.95, "loss": 0.2}),
        "rf8": quick_run(repo, "train", {"depth": 8, "model": "rf"}, {"auc": 0.85}),
        "eval": quick_run(repo, "eval", {"depth": 6}, {"auc": 0.91}, fail=True),
        "gb6": quick_run(repo, "train", {"depth": 6, "model": "gb"}, {"loss": 0.4}),
    }


def test_runs_list_and_filters(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    ids = make_runs(repo)

    def names(**kwargs: Any) -> list[str]:
        by_id = {v: k for k, v in ids.items()}
        return [by_id[r.id] for r in repo.runs(**kwargs)]

    assert names() == ["gb6", "eval", "rf8", "rf6"]  # newest first
    assert names(limit=2) == ["gb6", "eval"]
    assert names(name="train") == ["gb6", "rf8", "rf6"]
    assert names(status="failed") == ["eval"]
    assert names(status="running") == []
    assert names(where=["metrics.auc > 0.9"]) == ["eval", "rf6"]
    assert names(where=["metrics.auc>=0.85"]) == ["eval", "rf8", "rf6"]
    assert names(where=["params.depth = 6"]) == ["gb6", "eval", "rf6"]
    assert names(where=["params.model = rf"]) == ["rf8", "rf6"]
    assert names(where=['params.model != "rf"']) == ["gb6"]
    assert names(where=["metrics.auc > 0.9", "params.depth = 6"]) == ["eval", "rf6"]
    assert names(name="train", where=["metrics.auc > 0.9", "params.depth == 6"]) == ["rf6"]
    assert names(where=["metrics.loss < 0.3"]) == ["rf6"]
    for bad in ("auc > 0.9", "metrics.auc > high", "metrics.auc >", "params.depth ~ 6", ""):
        with pytest.raises(InvalidArgument):
            repo.runs(where=[bad])
    with pytest.raises(InvalidArgument, match="unknown run status 'done'"):
        repo.runs(status="done")

    listed = jcli(
        "runs", "--where", "metrics.auc > 0.9", "--where", "params.depth=6", cwd=repo.root
    )
    assert [r["id"] for r in listed["runs"]] == [ids["eval"], ids["rf6"]]
    assert listed["runs"][0]["status"] == "failed"
    assert listed["runs"][0]["error"] == "RuntimeError: diverged"


def test_runs_command_text_and_bad_filters(repo: mk.Repo) -> None:
    ids = make_runs(repo)
    lines = ok("runs", cwd=repo.root).stdout.splitlines()
    assert lines[0].split() == ["RUN", "NAME", "STATUS", "STARTED", "DURATION", "USER", "METRICS"]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == [ids[k][:8] for k in ("gb6", "eval", "rf8", "rf6")]
    assert [row[2] for row in rows] == ["finished", "failed", "finished", "finished"]
    assert all(re.fullmatch(r"\d+\.\ds", row[5]) for row in rows)
    assert [row[6] for row in rows] == ["tester"] * 4
    assert [row[7:] for row in rows] == [
        ["loss=0.4"],
        ["auc=0.91"],
        ["auc=0.85"],
        ["auc=0.95", "loss=0.2"],
    ]

    found = jcli(
        "runs",
        "--name",
        "train",
        "--status",
        "finished",
        "--where",
        "metrics.auc > 0.9",
        cwd=repo.root,
    )
    assert [r["id"] for r in found["runs"]] == [ids["rf6"]]
    none = ok("runs", "--name", "nobody", cwd=repo.root).stdout
    assert none.startswith("no runs match")

    line = error_line(cli("runs", "--where", "auc > 0.9", cwd=repo.root))
    assert "cannot read condition 'auc > 0.9'" in line
    line = error_line(cli("runs", "--where", "metrics.auc > high", cwd=repo.root))
    assert "a metric compares with a number" in line
    line = error_line(cli("runs", "--status", "done", cwd=repo.root))
    assert "unknown run status 'done'" in line


def test_runs_show_and_compare(repo: mk.Repo) -> None:
    ids = make_runs(repo)
    rf6, rf8 = ids["rf6"], ids["rf8"]
    with mk.start_run(name="curve", repo=repo, capture_code=False) as run:
        for loss in (0.9, 0.5, 0.3):
            run.log_metric("loss", loss)

    text = ok("runs", "show", rf6[:6], cwd=repo.root).stdout
    assert text.splitlines()[0] == f"run {rf6}  train  (finished)"
    assert f"  user       tester on {socket.gethostname()}\n" in text
    assert '    model = "rf"\n' in text
    assert "    depth = 6\n" in text
    assert "    auc = 0.95\n" in text
    curve = ok("runs", "show", run.id[:8], cwd=repo.root).stdout
    assert "    loss = 0.3  (3 values)\n" in curve
    doc = jcli("runs", "show", rf6[:6], cwd=repo.root)
    assert doc["id"] == rf6
    assert doc["params"] == {"depth": 6, "model": "rf"}
    assert doc["metrics"] == {"auc": 0.95, "loss": 0.2}
    assert doc["status"] == "finished"
    assert doc["duration"] > 0
    assert [m["key"] for m in doc["metric_history"]] == ["auc", "loss"]

    lines = ok("runs", "compare", rf6[:8], rf8[:8], cwd=repo.root).stdout.splitlines()
    assert lines[0].split() == ["KEY", rf6[:8].upper(), "TRAIN", rf8[:8].upper(), "TRAIN"]
    cells = {line[3:].split()[0]: (line[0], line[3:].split()[1:]) for line in lines[1:]}
    assert cells == {
        "params.depth": ("*", ["6", "8"]),
        "params.model": (" ", ['"rf"', '"rf"']),
        "metrics.auc": ("*", ["0.95", "0.85"]),
        "metrics.loss": ("*", ["0.2", "-"]),
    }
    compared = jcli("runs", "compare", rf6, rf8, ids["gb6"][:8], cwd=repo.root)
    assert compared["runs"] == [rf6, rf8, ids["gb6"]]
    assert compared["rows"] == [
        {"key": "params.depth", "values": [6, 8, 6], "differs": True},
        {"key": "params.model", "values": ["rf", "rf", "gb"], "differs": True},
        {"key": "metrics.auc", "values": [0.95, 0.85, None], "differs": True},
        {"key": "metrics.loss", "values": [0.2, None, 0.4], "differs": True},
    ]
    line = error_line(cli("runs", "compare", rf6, "0000", cwd=repo.root))
    assert "no run with id '0000'" in line


def test_repo_add_and_get_inside_a_run_link_to_it(repo: mk.Repo, tmp_path: Path) -> None:
    """Plain repo.add / repo.get while a run is active are its outputs and inputs."""
    source = repo.add(write(tmp_path / "in.csv", b"a,b\n"), "raw").version
    with mk.start_run(repo=repo, capture_code=False) as run:
        repo.get("raw", tmp_path / "got.csv")
        made = repo.add(write(tmp_path / "out.bin", b"model"), "model").version
    assert made.run_id == run.id
    record = repo.run(run.id)
    assert (record.inputs, record.outputs) == ((source.ref,), ("model:v1",))
    after = repo.add(write(tmp_path / "later.bin", b"later"), "model").version
    assert after.run_id is None  # the run has ended: nothing links to it any more


def test_env_of_an_ambiguous_run_prefix_says_so(repo: mk.Repo) -> None:
    raw_run(repo, "abcd" + "1" * 28)
    raw_run(repo, "abcd" + "2" * 28)
    with pytest.raises(RunNotFound, match="ambiguous"):
        repo.environment("abcd")
