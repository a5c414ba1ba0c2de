"""Nested runs, sweeps and run attachments, through real subprocesses and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelkeep as mk
import modelkeep.run as run_module
from modelkeep.errors import AttachmentExists, InvalidArgument, ParamConflict, RunNotActive
from tests.conftest import cli, git, jcli, ok, write

pytestmark = pytest.mark.usefixtures("run_env")


def error_line(r: subprocess.CompletedProcess[str]) -> str:
    """A refused command: exit 1 and exactly one `modelkeep: error:` line on stderr."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("modelkeep: error: "), lines[0]
    return lines[0]


# -- nested runs ---------------------------------------------------------------------------

THREE_MODELS = """\
import modelkeep as mk

for i, name in enumerate(["logreg", "rf", "gb"]):
    with mk.start_run(name=f"train-{name}", params={"model": name}) as run:
        run.log_metric("auc", 0.7 + i / 10)
        with open(f"{name}.bin", "wb") as f:
            f.write(name.encode())
        run.log_artifact(f"{name}.bin", name=f"model-{name}", type="model")
mk.current_run().log_metric("best_auc", 0.9)
"""


def test_three_models_in_a_loop_under_modelkeep_run_are_three_child_runs(repo: mk.Repo) -> None:
    """The issue's repro: every start_run joined the outer run, so the second `model`
    param was a ParamConflict and the names were lost."""
    write(repo.root / "train.py", THREE_MODELS.encode())
    r = cli("run", "--name", "compare", "--", sys.executable, "train.py", cwd=repo.root)
    assert r.returncode == 0, r.stderr
    (parent,) = repo.runs(name="compare")
    assert parent.status == "finished"
    assert parent.params == {}
    assert parent.metrics == {"best_auc": 0.9}
    children = [repo.run(c) for c in parent.children]
    assert [c.name for c in children] == ["train-logreg", "train-rf", "train-gb"]
    assert [c.params for c in children] == [{"model": m} for m in ("logreg", "rf", "gb")]
    assert [c.metrics["auc"] for c in children] == pytest.approx([0.7, 0.8, 0.9])
    assert {c.parent_id for c in children} == {parent.id}
    assert {c.status for c in children} == {"finished"}
    assert [c.outputs for c in children] == [
        ("model-logreg:v1",),
        ("model-rf:v1",),
        ("model-gb:v1",),
    ]
    assert parent.outputs == ()
    assert children[0].code == parent.code  # one process, one code state

    tree = ok("runs", "--tree", cwd=repo.root).stdout.splitlines()
    names = [line.split()[1:3] for line in tree[1:]]
    assert names == [["compare", "finished"]] + [
        ["└", f"train-{m}"] for m in ("logreg", "rf", "gb")
    ]
    shown = ok("runs", "show", parent.short_id, cwd=repo.root).stdout
    assert "  children:\n" in shown
    for c in children:
        assert f"    {c.short_id}  {c.name}  (finished)  auc=" in shown
    assert f"  parent     {parent.id}" in ok("runs", "show", children[1].id, cwd=repo.root).stdout
    doc = jcli("runs", "show", parent.id, cwd=repo.root)
    assert doc["children"] == [c.id for c in children] and doc["parent_id"] is None
    where = jcli("runs", "--where", "params.model = rf", cwd=repo.root)["runs"]
    assert [(w["name"], w["parent_id"]) for w in where] == [("train-rf", parent.id)]


def test_a_run_without_a_name_under_modelkeep_run_joins_it(repo: mk.Repo) -> None:
    write(
        repo.root / "train.py",
        b"import modelkeep as mk\n"
        b"with mk.start_run(params={'seed': 1}) as run:\n"
        b"    assert run is mk.current_run() and not run.owner\n"
        b"    run.log_metric('loss', 0.5)\n"
        b"with mk.start_run(nested=False, name='ignored') as run:\n"
        b"    run.log_metric('loss', 0.25)\n",
    )
    ok("run", "--name", "outer", "--", sys.executable, "train.py", cwd=repo.root)
    (run,) = repo.runs()
    assert (run.name, run.params, run.metrics, run.children) == (
        "outer",
        {"seed": 1},
        {"loss": 0.25},
        (),
    )


def test_nested_runs_in_one_process(repo: mk.Repo) -> None:
    write(repo.root / "w.bin", b"weights")
    with mk.start_run("outer", {"model": "a"}, repo=repo, capture_code=False) as outer:
        with pytest.raises(InvalidArgument, match="nested=True"):
            mk.start_run(repo=repo)
        with mk.start_run("inner", {"model": "b"}) as inner:  # no conflict: another run
            assert mk.current_run() is inner
            assert inner.parent_id == outer.id
            inner.log_artifact(repo.root / "w.bin", name="w")
            with pytest.raises(ParamConflict):
                inner.log_param("model", "c")  # a conflict within one run stays one
            with mk.start_run(nested=True) as deeper:
                assert deeper.name == "inner/child"
        assert mk.current_run() is outer
        outer.log_metric("auc", 0.5)
    assert mk.current_run() is None
    o, i, d = repo.run(outer.id), repo.run(inner.id), repo.run(deeper.id)
    assert (o.children, i.children, d.parent_id) == ((i.id,), (d.id,), i.id)
    assert (o.params, i.params) == ({"model": "a"}, {"model": "b"})
    assert (o.outputs, i.outputs) == ((), ("w:v1",))
    assert o.metrics == {"auc": 0.5} and i.metrics == {}


def test_ending_a_parent_ends_the_runs_still_open_inside_it(repo: mk.Repo) -> None:
    outer = mk.start_run("outer", repo=repo, capture_code=False)
    inner = mk.start_run("inner")
    outer.end("failed", "stopped")
    assert mk.current_run() is None
    assert repo.run(inner.id).status == "failed"
    assert repo.run(outer.id).status == "failed"


def test_a_nested_run_needs_a_running_parent_of_ones_own(repo: mk.Repo) -> None:
    with mk.start_run("done", repo=repo, capture_code=False) as done:
        pass
    new = run_module._new_run(repo, "orphan", {}, {}, parent_id=done.id)
    with pytest.raises(RunNotActive):
        repo.create_run(new, {})


# -- sweeps ----------------------------------------------------------------------------------

SWEEP = """\
import os, sys
import modelkeep as mk

lr = float(os.environ["MODELKEEP_PARAM_LR"])
depth = int(sys.argv[1])
run = mk.start_run()
assert run.info().params["lr"] == lr and run.info().params["depth"] == depth
run.log_metric("score", lr * depth)
print(f"trained lr={lr} depth={depth}")
if depth == int(os.environ.get("FAIL_AT", "0")):
    sys.exit(3)
if depth == int(os.environ.get("KILL_AT", "0")):
    import signal
    os.kill(os.getpid(), signal.SIGTERM)
"""


def test_a_sweep_runs_every_point_in_a_child_run(repo: mk.Repo) -> None:
    write(repo.root / "train.py", SWEEP.encode())
    args = ["--sweep", "lr=0.01,0.1", "--sweep", "depth=4,8", "-p", "seed=7"]
    r = cli("run", "-n", "grid", *args, "--", sys.executable, "train.py", "{depth}", cwd=repo.root)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:4] == [
        f"trained lr={lr} depth={d}" for lr in (0.01, 0.1) for d in (4, 8)
    ]  # live, in grid order
    assert out[4].split() == ["RUN", "STATUS", "LR", "DEPTH", "SCORE"]
    rows = [line.split() for line in out[5:]]
    assert [row[1:] for row in rows] == [
        ["finished", "0.01", "4", "0.04"],
        ["finished", "0.01", "8", "0.08"],
        ["finished", "0.1", "4", "0.4"],
        ["finished", "0.1", "8", "0.8"],
    ]
    (parent,) = repo.runs(name="grid")
    assert parent.status == "finished" and parent.params == {"seed": 7}
    children = [repo.run(c) for c in parent.children]
    assert [c.short_id for c in children] == [row[0] for row in rows]
    assert [c.name for c in children] == [
        "grid lr=0.01 depth=4",
        "grid lr=0.01 depth=8",
        "grid lr=0.1 depth=4",
        "grid lr=0.1 depth=8",
    ]
    assert children[3].params == {"seed": 7, "lr": 0.1, "depth": 8}
    assert children[3].command["argv"][-1] == "8"
    assert repo.attachments(children[0].id)[0].name == "stdout.txt"


def test_a_sweep_in_parallel_and_a_failing_point(repo: mk.Repo, tmp_path: Path) -> None:
    write(repo.root / "train.py", SWEEP.encode())
    args = ["--sweep", "lr=0.01,0.1", "--sweep", "depth=4,8", "--jobs", "2", "--json"]
    env = {"FAIL_AT": "8"}
    r = cli("run", *args, "--", sys.executable, "train.py", "{depth}", cwd=repo.root, env=env)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout[r.stdout.index("{\n") :])
    assert doc["exit_code"] == 1
    assert doc["run"]["status"] == "failed"
    assert doc["run"]["error"] == "2 of 4 sweep runs failed"
    got = [  # in the grid's order, whichever started first
        (c["params"]["lr"], c["params"]["depth"], c["status"], c["exit_code"], c["metrics"])
        for c in doc["children"]
    ]
    assert got == [
        (0.01, 4, "finished", 0, {"score": 0.04}),
        (0.01, 8, "failed", 3, {"score": 0.08}),
        (0.1, 4, "finished", 0, {"score": 0.4}),
        (0.1, 8, "failed", 3, {"score": 0.8}),
    ]


def test_a_point_stopped_by_a_signal_stops_the_sweep(repo: mk.Repo) -> None:
    write(repo.root / "train.py", SWEEP.encode())
    args = ["--sweep", "lr=0.01,0.1", "--sweep", "depth=8,4"]
    r = cli(
        "run",
        *args,
        "--",
        sys.executable,
        "train.py",
        "{depth}",
        cwd=repo.root,
        env={"KILL_AT": "8"},
    )
    assert r.returncode == 1, r.stderr
    (parent,) = [x for x in repo.runs() if x.parent_id is None]
    assert parent.status == "killed"
    assert parent.error == "interrupted: 3 of 4 sweep runs not started"
    (child,) = [repo.run(c) for c in parent.children]
    assert (child.status, child.error) == ("killed", "killed by SIGTERM")


# -- attachments ---------------------------------------------------------------------------


@pytest.fixture
def work(repo: mk.Repo) -> mk.Repo:
    """repo inside a Git work tree, so a lock file or .gitignore line would show."""
    git(repo.root, "init", "-q", "-b", "main")
    return repo


def test_attachments_of_zero_bytes_and_a_large_file(work: mk.Repo, tmp_path: Path) -> None:
    repo = work
    big = os.urandom(3 * 1024 * 1024 + 17)
    write(repo.root / "report.bin", big)
    with mk.start_run("eval", repo=repo, capture_code=False) as run:
        empty = run.attach(b"", name="empty.txt")
        large = run.attach(repo.root / "report.bin")
        again = run.attach(big, name="plots/copy.bin")  # the same bytes: stored once
        assert run.attach(b"", name="empty.txt") == empty  # same content: a no-op
        with pytest.raises(AttachmentExists):
            run.attach(b"other", name="empty.txt")
    assert (empty.size, large.size, large.name) == (0, len(big), "report.bin")
    assert again.content_id == large.content_id
    usage = repo.du()
    assert usage.versions == 0 and usage.unique_bytes < len(big) + 4096
    assert not (repo.root / "modelkeep.lock").exists()
    assert not (repo.root / ".gitignore").exists()
    assert repo.artifacts() == []

    shown = ok("runs", "show", run.id, cwd=repo.root).stdout
    assert "  attachments:\n    empty.txt  0 B  b3:" in shown
    assert "    plots/copy.bin  3.0 MiB" in shown and "    report.bin  3.0 MiB" in shown
    names = [a["name"] for a in jcli("runs", "show", run.id, cwd=repo.root)["attachments"]]
    assert names == ["empty.txt", "plots/copy.bin", "report.bin"]
    ok(
        "runs",
        "get",
        run.id[:8],
        "plots/copy.bin",
        "-o",
        str(tmp_path / "out.bin"),
        cwd=repo.root,
    )
    assert (tmp_path / "out.bin").read_bytes() == big
    ok("runs", "get", run.id[:8], "empty.txt", "-o", str(tmp_path) + "/", cwd=repo.root)
    assert (tmp_path / "empty.txt").read_bytes() == b""

    write(repo.root / "notes.md", b"# notes\n")
    added = jcli("runs", "attach", run.id[:8], "notes.md", "--name", "NOTES.md", cwd=repo.root)
    assert (added["name"], added["size"]) == ("NOTES.md", 8)
    assert not (repo.root / "modelkeep.lock").exists()
    assert git(repo.root, "status", "--porcelain", "--ignored").count("!!") == 0


def test_modelkeep_run_attaches_its_output(repo: mk.Repo, tmp_path: Path) -> None:
    code = "import sys\nprint('hello out')\nprint('hello err', file=sys.stderr)\n"
    r = cli("run", "--", sys.executable, "-c", code, cwd=repo.root)
    assert r.returncode == 0
    assert r.stdout == "hello out\n"  # passed through as it came
    assert r.stderr.startswith("hello err\n")
    (run,) = repo.runs()
    assert [a.name for a in repo.attachments(run.id)] == ["stderr.txt", "stdout.txt"]
    ok("runs", "get", run.id, "stdout.txt", "-o", str(tmp_path / "o.txt"), cwd=repo.root)
    assert (tmp_path / "o.txt").read_text() == "hello out\n"

    long = "import sys\nfor i in range(1000):\n    print(f'line {i:04}')\n"
    ok("run", "--capture-limit", "20", "--", sys.executable, "-c", long, cwd=repo.root)
    latest = repo.runs()[0]
    ok("runs", "get", latest.id, "stdout.txt", "-o", str(tmp_path / "t.txt"), cwd=repo.root)
    kept = (tmp_path / "t.txt").read_text()
    assert kept == (
        "[modelkeep: the first 9980 bytes were dropped; the last 20 follow]\nline 0998\nline 0999\n"
    )

    r = ok("run", "--capture-limit", "0", "--", sys.executable, "-c", code, cwd=repo.root)
    assert r.stdout == "hello out\n"
    assert repo.attachments(repo.runs()[0].id) == []


def test_gc_keeps_attached_content(repo: mk.Repo, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    with mk.start_run("keep", repo=repo, capture_code=False) as run:
        run.attach(data, name="weights.bin")
    write(repo.root / "tmp.bin", os.urandom(200_000))
    repo.add(repo.root / "tmp.bin", "scratch")
    repo.delete("scratch:v1", reason="garbage")
    before = repo.du().stored_bytes
    report = repo.gc()
    assert report.bytes_freed > 0 and repo.du().stored_bytes < before  # gc did collect
    assert repo.fsck().ok
    path = repo.get_attachment(run.id, "weights.bin", tmp_path / "back.bin")
    assert path.read_bytes() == data


def test_fsck_checks_attached_content(repo: mk.Repo) -> None:
    with mk.start_run("keep", repo=repo, capture_code=False) as run:
        a = run.attach(os.urandom(1000), name="small.bin")
    assert repo.fsck().ok
    with repo.store.writing():
        repo.store.drop(bytes.fromhex(a.digest))
    (problem,) = repo.fsck().problems
    assert problem.roots == (f"run {run.id[:8]} attachment small.bin",)


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_exit_1(repo: mk.Repo, tmp_path: Path) -> None:
    write(repo.root / "f.txt", b"x")
    (repo.root / "folder").mkdir()
    with mk.start_run("r", repo=repo, capture_code=False) as run:
        run.attach(b"1", name="one.txt")
    rid = run.id[:8]
    py = [sys.executable, "-c", "pass"]
    cases = {
        ("run", "--sweep", "lr", "--", *py): "cannot read sweep 'lr'",
        ("run", "--sweep", "lr=", "--", *py): "cannot read sweep 'lr='",
        ("run", "--sweep", "lr=1,,2", "--", *py): "KEY=V1,V2",
        ("run", "--sweep", "lr=1,1", "--", *py): "names a value twice",
        ("run", "--sweep", "a=1", "--sweep", "a=2", "--", *py): "'a' is given twice",
        ("run", "--sweep", "a-b=1", "--sweep", "a_b=2", "--", *py): "environment variable",
        ("run", "-p", "a=1", "--sweep", "a=1,2", "--", *py): "both fixed",
        ("run", "--sweep", "a=1", "--jobs", "0", "--", *py): "--jobs must be",
        ("run", "--sweep", "a=1", "--jobs", "two", "--", *py): "--jobs must be",
        ("run", "--jobs", "2", "--", *py): "give --sweep",
        ("run", "--capture-limit", "lots", "--", *py): "cannot read size 'lots'",
        ("run", "--capture-limit", "-1", "--", *py): "cannot read size '-1'",
        ("runs", "attach", "ffff0000", "f.txt"): "no run with id 'ffff0000'",
        ("runs", "attach", rid, "missing.txt"): "missing.txt",
        ("runs", "attach", rid, "folder"): "is not a file",
        ("runs", "attach", rid, "f.txt", "--name", "../x"): "attachment name '../x'",
        ("runs", "attach", rid, "f.txt", "--name", "one.txt"): "already has an attachment",
        ("runs", "get", rid, "nothing.txt"): "has no attachment 'nothing.txt' (it has: one.txt)",
        ("runs", "get", "ffff0000", "one.txt"): "no run with id",
    }
    for args, expected in cases.items():
        line = error_line(cli(*args, cwd=repo.root))
        assert expected in line, (args, line)
    write(tmp_path / "there.txt", b"keep")
    line = error_line(
        cli("runs", "get", rid, "one.txt", "-o", str(tmp_path / "there.txt"), cwd=repo.root)
    )
    assert "there.txt" in line
    assert (tmp_path / "there.txt").read_bytes() == b"keep"
    assert [r.name for r in repo.runs()] == ["r"]  # no refused sweep left a run behind
    with pytest.raises(InvalidArgument, match="needs a name"):
        repo.attach(run.id, b"bytes")
    with pytest.raises(InvalidArgument, match="capture limit"):
        run_module.run_command(repo, py, capture_limit=-1)


# -- through a server ------------------------------------------------------------------------


def test_nested_runs_and_attachments_through_a_server(tmp_path: Path) -> None:
    from tests import mkserve

    served = mkserve.start(tmp_path / "served" / "store")
    try:
        mkserve.with_accounts(served, {"eddie": "editor", "ed2": "editor", "vic": "viewer"})
        work = tmp_path / "client"
        work.mkdir()
        write(
            work / "train.py",
            b"import modelkeep as mk\n"
            b"with mk.start_run(name='child', params={'k': 1}) as run:\n"
            b"    run.attach(b'report ' * 1000, name='reports/r.txt')\n"
            b"print('done')\n",
        )
        env = served.client_env(served.tokens["eddie"])

        def mk_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(Path(sys.executable).with_name("modelkeep")), *args],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        r = mk_cli(env, "run", "--name", "outer", "--", sys.executable, "train.py")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "done\n"
        (outer,) = json.loads(mk_cli(env, "runs", "--name", "outer", "--json").stdout)["runs"]
        (child_id,) = outer["children"]
        shown = json.loads(mk_cli(env, "runs", "show", outer["id"], "--json").stdout)
        assert [a["name"] for a in shown["attachments"]] == ["stdout.txt"]
        child = json.loads(mk_cli(env, "runs", "show", child_id, "--json").stdout)
        assert (child["name"], child["parent_id"], child["params"]) == (
            "child",
            outer["id"],
            {"k": 1},
        )
        assert [(a["name"], a["size"]) for a in child["attachments"]] == [("reports/r.txt", 7000)]
        got = mk_cli(env, "runs", "get", child_id, "reports/r.txt", "-o", str(tmp_path / "r.txt"))
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "r.txt").read_bytes() == b"report " * 1000
        assert not (served.root / "modelkeep.lock").exists()

        write(work / "plot.png", b"\x89PNG fake")
        for user in ("vic", "ed2"):  # a viewer, and another account's run: refused
            other = mk_cli(
                served.client_env(served.tokens[user]), "runs", "attach", child_id, "plot.png"
            )
            assert other.returncode == 1 and len(other.stderr.strip().splitlines()) == 1, (
                other.stderr
            )
        mine = mk_cli(env, "runs", "attach", child_id, "plot.png", "--json")
        assert json.loads(mine.stdout)["size"] == 9
    finally:
        served.stop()
