"""`modelkeep reproduce`: real Git repositories, real `modelkeep run` subprocesses, the real CLI."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import modelkeep as mk
from modelkeep.errors import EnvironmentDrift, InvalidArgument, NotReproducible
from modelkeep.meta import RunRecord
from modelkeep.reproduce import reproduce
from tests.conftest import cli, git, ok, one_error_line, write

# Deterministic training: a model folder from the data, the seed and an external file.
TRAIN = """\
import os, sys
import modelkeep as mk

seed = int(os.environ.get("MODELKEEP_PARAM_SEED", "7"))
data = open("data/train.csv").read()
extra = open(sys.argv[1]).read() if len(sys.argv) > 1 else ""
with mk.start_run() as run:
    run.log_params({"seed": seed})
    os.makedirs("out", exist_ok=True)
    open("out/weights.txt", "w").write(f"weights {seed} {len(data)}")
    open("out/notes.txt", "w").write(f"notes {extra}")
    run.log_artifact("out", name="churn-model", type="model")
    run.log_metric("auc", 0.5 + seed / 100)
    run.log_metric("loss", 1.0 / (seed + 1))
"""


pytestmark = pytest.mark.usefixtures("run_env")


@pytest.fixture
def project(repo: mk.Repo) -> mk.Repo:
    """repo's folder as a Git work tree: train.py committed, data tracked by modelkeep."""
    top = repo.root
    git(top, "init", "-q", "-b", "main")
    write(top / "train.py", TRAIN.encode())
    write(top / "data" / "train.csv", b"a,b\n1,2\n3,4\n")
    ok("add", "data/train.csv", "--name", "train-data", cwd=top)
    git(top, "add", "train.py", "modelkeep.lock", ".gitignore")
    git(top, "commit", "-q", "-m", "code")
    return repo


def train(repo: mk.Repo, *args: str, env: dict[str, str] | None = None) -> mk.Version:
    r = cli("run", "--", sys.executable, "train.py", *args, cwd=repo.root, env=env)
    assert r.returncode == 0, r.stderr
    return repo.show("churn-model")


def made_by(repo: mk.Repo, version: mk.Version) -> RunRecord:
    assert version.run_id is not None
    return repo.run(version.run_id)


def again(repo: mk.Repo, *args: str, env: dict[str, str] | None = None) -> Any:
    r = cli("reproduce", *args, "--json", cwd=repo.root, env=env)
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    assert (r.returncode == 0) == doc["reproduced"]
    return doc


def test_a_deterministic_training_is_reproduced_bit_for_bit(project: mk.Repo) -> None:
    made = train(project)
    doc = again(project, made.ref)
    assert doc["verdict"] == "reproduced"
    assert doc["exit_code"] == 0
    assert doc["outputs"] == [
        {
            "run": "train",
            "artifact": "churn-model",
            "original": "churn-model:v1",
            "rerun": "churn-model:v1",  # equal bytes: the same version, no new number
            "identical": True,
            "files": [],
        }
    ]
    assert {m["key"]: m["ok"] for m in doc["metrics"]} == {"auc": True, "loss": True}
    assert [v.number for v in project.versions("churn-model")] == [1]
    rerun = project.run(doc["rerun_id"])
    assert rerun.outputs == ("churn-model:v1",)  # it made those bytes again: recorded
    assert rerun.inputs == made_by(project, made).inputs  # the data, from the lock
    assert rerun.params == {"seed": 7}
    assert rerun.tags == {"reproduces": made.run_id}
    # The text form says so, and exits 0.
    r = ok("reproduce", doc["run_id"][:8], cwd=project.root)
    assert r.stdout.strip().splitlines()[-1].startswith("reproduced (run ")


def test_a_changed_input_is_reported_with_the_files_that_differ(
    project: mk.Repo, tmp_path: Path
) -> None:
    outside = write(tmp_path / "extra.txt", b"first")
    made = train(project, str(outside))
    outside.write_bytes(b"second: what the run read has changed since")
    doc = again(project, made.ref)
    assert doc["verdict"] == "differs"
    (out,) = doc["outputs"]
    assert out["identical"] is False
    assert out["original"] == "churn-model:v1"
    assert out["rerun"] == "churn-model:v2"  # the different bytes are kept, to be diffed
    assert out["files"] == ["modified notes.txt"]  # weights.txt is the same
    assert project.show("churn-model:v2").run_id == doc["rerun_id"]
    r = cli("reproduce", made.ref, cwd=project.root)
    assert r.returncode == 1
    assert "modified notes.txt" in r.stdout
    assert "not reproduced: the results differ" in r.stdout


def test_a_run_from_a_dirty_tree_gets_its_patch_applied(project: mk.Repo) -> None:
    # An uncommitted change (seed 7 -> 11) and an untracked helper the script reads.
    script = (project.root / "train.py").read_text().replace('"7"', '"11"')
    script = script.replace("import modelkeep as mk\n", "import modelkeep as mk\nimport helper\n")
    (project.root / "train.py").write_text(script)
    write(project.root / "helper.py", b"VALUE = 1\n")
    made = train(project)
    assert made_by(project, made).code["git"]["dirty"] is True
    git(project.root, "checkout", "--", "train.py")  # the work tree moves on
    (project.root / "helper.py").unlink()
    doc = again(project, made.ref)
    assert doc["verdict"] == "reproduced", doc
    assert any("applied the uncommitted changes" in n for n in doc["notes"])
    assert project.run(doc["rerun_id"]).params == {"seed": 11}


def test_a_drifted_environment_is_refused_then_allowed(project: mk.Repo, tmp_path: Path) -> None:
    # The original run saw one more installed distribution than this process does.
    extra = tmp_path / "site"
    write(
        extra / "fakepkg-1.0.dist-info" / "METADATA",
        b"Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n",
    )
    path = os.pathsep.join(p for p in (str(extra), os.environ.get("PYTHONPATH", "")) if p)
    made = train(project, env={"PYTHONPATH": path})
    r = cli("reproduce", made.ref, cwd=project.root)
    line = one_error_line(r)
    assert "the environment differs from the one run" in line
    assert "fakepkg 1.0 was not installed" in line
    assert "--allow-env-drift" in line
    with mk.open(project.root) as repo, pytest.raises(EnvironmentDrift) as refused:
        reproduce(repo, made.ref)
    assert refused.value.changes == ["fakepkg 1.0 was not installed"]
    assert [v.number for v in project.versions("churn-model")] == [1]
    assert len(project.runs()) == 1  # nothing ran
    doc = again(project, made.ref, "--allow-env-drift")
    assert doc["verdict"] == "reproduced"
    assert "fakepkg 1.0 was not installed" in doc["environment_drift"]


def test_metrics_compare_within_rtol(project: mk.Repo) -> None:
    # The second run's loss moves by a few parts in a million: the clock in the metric.
    script = (
        (project.root / "train.py")
        .read_text()
        .replace(
            'run.log_metric("loss", 1.0 / (seed + 1))',
            'import time; run.log_metric("loss", 1.0 + (time.time_ns() % 1000) * 1e-9)',
        )
    )
    (project.root / "train.py").write_text(script)
    git(project.root, "commit", "-qam", "noisy loss")
    made = train(project)
    strict = again(project, made.ref)
    loose = again(project, made.ref, "--rtol", "1e-4")
    assert loose["verdict"] == "reproduced"
    (loss,) = [m for m in strict["metrics"] if m["key"] == "loss"]
    assert loss["ok"] is (loss["original"] == loss["rerun"])


NESTED = """\
import modelkeep as mk

for i, name in enumerate(["logreg", "rf"]):
    with mk.start_run(name=f"train-{name}", params={"model": name}) as run:
        with open(f"{name}.bin", "w") as f:
            f.write(name * (i + 1))
        run.log_artifact(f"{name}.bin", name=f"model-{name}", type="model")
        run.log_metric("auc", 0.7 + i / 10)
"""


def test_a_nested_run_is_reproduced_by_running_its_script(project: mk.Repo) -> None:
    write(project.root / "loop.py", NESTED.encode())
    git(project.root, "add", "loop.py")
    git(project.root, "commit", "-qm", "loop")
    ok("run", "--name", "loop", "--", sys.executable, "loop.py", cwd=project.root)
    rf = project.show("model-rf")
    doc = again(project, rf.ref)  # the version a nested run made
    assert doc["verdict"] == "reproduced"
    assert doc["run_id"] == rf.run_id
    assert [o["artifact"] for o in doc["outputs"]] == ["model-rf"]
    rerun = project.run(doc["rerun_id"])
    assert rerun.name == "train-rf" and rerun.parent_id is not None
    # The whole loop ran again: the outer run, reproduced, compares both children.
    parent = made_by(project, rf).parent_id
    assert parent is not None
    whole = again(project, parent)
    assert whole["verdict"] == "reproduced"
    assert sorted(o["artifact"] for o in whole["outputs"]) == ["model-logreg", "model-rf"]


def test_a_script_started_with_plain_python_is_run_with_python(project: mk.Repo) -> None:
    r = subprocess.run(
        [sys.executable, "train.py"], cwd=project.root, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    made = project.show("churn-model")
    assert made_by(project, made).command["entry"] == "python"
    with mk.open(project.root) as repo:
        result = reproduce(repo, made.ref)
    assert result.reproduced, result.to_json()


def test_a_sweep_point_is_reproduced_with_its_values(project: mk.Repo) -> None:
    ok("run", "--sweep", "seed=3,5", "--", sys.executable, "train.py", cwd=project.root)
    five = project.show("churn-model:v2")
    assert made_by(project, five).params["seed"] == 5
    doc = again(project, five.ref)
    assert doc["verdict"] == "reproduced"
    assert project.run(doc["rerun_id"]).params == {"seed": 5}
    parent = made_by(project, five).parent_id
    assert parent is not None
    line = one_error_line(cli("reproduce", parent, cwd=project.root))
    assert "is a sweep over seed" in line


def test_a_failing_rerun_is_said(project: mk.Repo) -> None:
    made = train(project)
    (project.root / "data" / "train.csv").unlink()
    # Tracked inputs come from the lock: removing the file here changes nothing there.
    assert again(project, made.ref)["verdict"] == "reproduced"
    git(project.root, "rm", "-q", "--cached", "modelkeep.lock")
    write(project.root / "train.py", b"raise SystemExit(3)\n")
    git(project.root, "commit", "-qam", "broken")
    bad = cli("run", "--", sys.executable, "train.py", cwd=project.root)
    assert bad.returncode == 3
    (failed,) = project.runs(status="failed")
    doc = json.loads(cli("reproduce", failed.id, "--json", cwd=project.root).stdout)
    assert doc["verdict"] == "failed" and doc["exit_code"] == 3


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_is_refused_with_one_line(project: mk.Repo, tmp_path: Path) -> None:
    top = project.root
    line = one_error_line(cli("reproduce", "nothing-here", cwd=top))
    assert "no artifact named 'nothing-here'" in line
    line = one_error_line(cli("reproduce", "abcd1234", cwd=top))
    assert "no run with id 'abcd1234'" in line
    line = one_error_line(cli("reproduce", "train-data", cwd=top))
    assert "was not produced by a run" in line
    made = train(project)
    line = one_error_line(cli("reproduce", made.ref, "--rtol", "2", cwd=top))
    assert "--rtol must be a number from 0" in line
    line = one_error_line(cli("reproduce", made.ref, "--rtol", "-0.1", cwd=top))
    assert "--rtol" in line
    with mk.open(top) as repo, pytest.raises(InvalidArgument, match="rtol"):
        reproduce(repo, made.ref, rtol=float("nan"))


def test_a_run_without_code_or_script_or_still_running_is_refused(project: mk.Repo) -> None:
    with mk.open(project.root) as repo:
        with mk.start_run(repo=repo, capture_code=False) as run:
            run.log_metric("x", 1.0)
        with pytest.raises(NotReproducible, match="recorded no code"):
            reproduce(repo, run.id)
        live = mk.start_run(repo=repo)
        try:
            with pytest.raises(NotReproducible, match="still running"):
                reproduce(repo, live.id)
        finally:
            live.end()


def test_a_commit_that_is_gone_is_refused(project: mk.Repo) -> None:
    top = project.root
    write(top / "train.py", (TRAIN + "\n# v2\n").encode())
    git(top, "commit", "-qam", "v2")
    made = train(project)
    git(top, "reset", "-q", "--hard", "HEAD~1")
    git(top, "reflog", "expire", "--expire=now", "--all")
    git(top, "gc", "-q", "--prune=now")
    line = one_error_line(cli("reproduce", made.ref, cwd=top))
    assert "is not in the Git repository here; `git fetch` it first" in line


def test_a_version_added_again_in_a_run_is_its_output(repo: mk.Repo, tmp_path: Path) -> None:
    src = write(tmp_path / "m.bin", b"weights")
    first = repo.add(src, "m").version
    with mk.start_run(repo=repo, capture_code=False) as run:
        again_ = repo.add(src, "m")
    assert not again_.created and again_.version.ref == first.ref
    assert repo.run(run.id).outputs == ("m:v1",)
    assert repo.show("m:v1").run_id is None  # who made it first is unchanged


# -- records from before `entry`, edited records, a store in a subfolder ----------------------


def _edit_command(repo: mk.Repo, run_id: str, **changes: Any) -> None:
    """Change a run's recorded command in the database, as an older release or an
    attacker with write access to the file would have left it."""
    with sqlite3.connect(repo.root / ".modelkeep" / "meta.sqlite") as db:
        (doc,) = db.execute("SELECT command_json FROM runs WHERE id = ?", (run_id,)).fetchone()
        command = json.loads(doc)
        for key, value in changes.items():
            if value is None:
                command.pop(key, None)
            else:
                command[key] = value
        db.execute("UPDATE runs SET command_json = ? WHERE id = ?", (json.dumps(command), run_id))


def test_a_record_from_before_entry_is_run_as_it_was_started(project: mk.Repo) -> None:
    made = train(project)
    _edit_command(project, made_by(project, made).id, entry=None, params=None)
    assert again(project, made.ref)["verdict"] == "reproduced"  # `python train.py` again
    r = subprocess.run(
        [sys.executable, "train.py"], cwd=project.root, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    by_python = made_by(project, project.show("churn-model"))
    _edit_command(project, by_python.id, entry=None)
    assert again(project, by_python.id)["verdict"] == "reproduced"


def test_an_edited_working_folder_outside_the_code_is_refused(
    project: mk.Repo, tmp_path: Path
) -> None:
    made = train(project)
    victim = tmp_path / "victim"
    victim.mkdir()
    for cwd in (str(victim), str(project.root / ".." / "victim")):
        _edit_command(project, made_by(project, made).id, cwd=cwd)
        line = one_error_line(cli("reproduce", made.ref, cwd=project.root))
        assert "is not inside its code" in line
    assert list(victim.iterdir()) == []  # nothing ran there


def test_a_notebook_kernel_is_not_a_script_to_run_again(project: mk.Repo) -> None:
    made = train(project)
    launcher = str(Path(sys.prefix) / "lib" / "ipykernel_launcher.py")
    _edit_command(project, made_by(project, made).id, entry="python", script=launcher)
    line = one_error_line(cli("reproduce", made.ref, cwd=project.root))
    assert "started from an interactive session, not a script" in line


def test_an_untracked_file_is_never_written_through_a_symlink(
    project: mk.Repo, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (project.root / "linked").symlink_to(outside)
    git(project.root, "add", "linked")
    git(project.root, "commit", "-qm", "a link")
    made = train(project)
    run = made_by(project, made)
    forged = write(tmp_path / "forged" / "untracked" / "linked" / "evil.py", b"print('pwned')\n")
    code = project.add(forged.parent.parent.parent, "code/forged", type="code").version
    with sqlite3.connect(project.root / ".modelkeep" / "meta.sqlite") as db:
        doc = {**run.code, "patch": code.ref}
        db.execute("UPDATE runs SET code_json = ? WHERE id = ?", (json.dumps(doc), run.id))
    line = one_error_line(cli("reproduce", made.ref, cwd=project.root))
    assert "'linked/evil.py' would be written outside the new work tree" in line
    assert list(outside.iterdir()) == []


def test_only_the_params_given_on_the_command_line_are_given_again(repo: mk.Repo) -> None:
    """The script logs where it ran: a value that differs in the new work tree, which a
    replay of every recorded param would have refused as a ParamConflict."""
    top = repo.root
    git(top, "init", "-q", "-b", "main")
    script = (
        "import os, modelkeep as mk\n"
        "run = mk.current_run()\n"
        "run.log_params({'where': os.getcwd()})\n"
        "run.log_metric('lr_seen', float(mk.open().run(run.id).params['lr']))\n"
    )
    write(top / "fit.py", script.encode())
    write(top / ".gitignore", b"/.modelkeep\n")
    git(top, "add", "fit.py", ".gitignore")
    git(top, "commit", "-qm", "fit")
    ok("run", "-p", "lr=0.5", "--", sys.executable, "fit.py", cwd=top)
    (first,) = repo.runs()
    doc = again(repo, first.id)
    assert doc["verdict"] == "reproduced", doc
    rerun = repo.run(doc["rerun_id"])
    assert rerun.params["lr"] == 0.5 and rerun.params["where"] != first.params["where"]


def test_a_store_in_a_subfolder_of_the_git_repository(tmp_path: Path) -> None:
    mono = tmp_path / "mono"
    mono.mkdir()
    git(mono, "init", "-q", "-b", "main")
    with mk.init(mono / "ml") as repo:
        write(repo.root / "train.py", TRAIN.encode())
        write(repo.root / "data" / "train.csv", b"a,b\n1,2\n")
        ok("add", "data/train.csv", "--name", "train-data", cwd=repo.root)
        git(mono, "add", "-A")
        git(mono, "commit", "-qm", "ml")
        made = train(repo)
        doc = again(repo, made.ref)
        assert doc["verdict"] == "reproduced", doc
