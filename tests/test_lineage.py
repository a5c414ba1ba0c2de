"""Lineage of a real multi-step pipeline, on SQLite and PostgreSQL, from Python and the CLI.

The pipeline is built with `mk.start_run(repo=...)` exactly as a user's scripts would:

    transactions:v3 -> prep -> features:v1 -> train-a -> fraud:v1 -> evaluate -> report:v1
    code/proj:v1 ---------------------------^          \\
                                  features:v1 -> train-b -> fraud:v2

plus a diamond (raw:v1 -> split -> left:v1, right:v1 -> merge -> merged:v1).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import modelkeep as mk
from modelkeep.errors import ArtifactNotFound, VersionNotFound
from modelkeep.meta import Lineage, RunNode, VersionNode
from tests.conftest import cli, isolate_git, jcli, ok, write

Edges = set[tuple[str, str, str]]


@pytest.fixture(autouse=True)
def _outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs capture code from the working directory: make it a plain folder, not this project."""
    isolate_git(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)


@dataclass(frozen=True)
class Pipeline:
    prep: str  # run keys, "run:<id>"
    train_a: str
    train_b: str
    evaluate: str
    split: str
    merge: str


def run_key(run: mk.Run) -> str:
    return f"run:{run.id}"


def build(repo: mk.Repo) -> Pipeline:
    root = repo.root
    for n in (1, 2, 3):
        write(root / "transactions.csv", f"id,amount\n{n},{n * 10}\n".encode())
        repo.add(root / "transactions.csv", "transactions", type="dataset")
    write(root / "train.py", b"print('training')\n")  # what the training run's code snapshot holds

    with mk.start_run("prep", repo=repo, capture_code=False) as run:
        run.use("transactions:v3")
        write(root / "features.parquet", b"features from v3")
        run.log_artifact(root / "features.parquet", "features", type="dataset")
        prep = run_key(run)
    with pytest.MonkeyPatch.context() as mp:
        # as if started by `python train.py`: the entry point's folder (no Git here) is
        # snapshot as code/proj:v1, not the project that runs the tests
        mp.setattr(sys.modules["__main__"], "__file__", str(root / "train.py"), raising=False)
        with mk.start_run("train-a", {"lr": 0.1}, repo=repo) as run:
            run.use("features:v1")
            write(root / "model.bin", b"weights a")
            run.log_artifact(root / "model.bin", "fraud", type="model")
            train_a = run_key(run)
    with mk.start_run("train-b", {"lr": 0.01}, repo=repo, capture_code=False) as run:
        run.use("features:v1")
        write(root / "model.bin", b"weights b")
        run.log_artifact(root / "model.bin", "fraud", type="model")
        train_b = run_key(run)
    with mk.start_run('évaluer "holdout"', repo=repo, capture_code=False) as run:
        run.use("fraud:v1")
        write(root / "report.json", b'{"auc": 0.93}')
        run.log_artifact(root / "report.json", "report", type="other")
        evaluate = run_key(run)

    write(root / "raw.csv", b"raw")
    repo.add(root / "raw.csv", "raw", type="dataset")
    with mk.start_run("split", repo=repo, capture_code=False) as run:
        run.use("raw:v1")
        for side in ("left", "right"):
            write(root / f"{side}.csv", side.encode())
            run.log_artifact(root / f"{side}.csv", side, type="dataset")
        split = run_key(run)
    with mk.start_run("merge", repo=repo, capture_code=False) as run:
        run.use("left:v1")
        run.use("right:v1")
        write(root / "merged.csv", b"left+right")
        run.log_artifact(root / "merged.csv", "merged", type="dataset")
        merge = run_key(run)
    return Pipeline(prep, train_a, train_b, evaluate, split, merge)


def edge_set(g: Lineage) -> Edges:
    found = {(e.source, e.target, e.kind) for e in g.edges}
    assert len(found) == len(g.edges), "an edge is listed twice"
    return found


def pipeline_edges(p: Pipeline) -> Edges:
    return {
        ("transactions:v3", p.prep, "input"),
        (p.prep, "features:v1", "output"),
        ("features:v1", p.train_a, "input"),
        ("code/proj:v1", p.train_a, "input"),
        (p.train_a, "fraud:v1", "output"),
        ("features:v1", p.train_b, "input"),
        (p.train_b, "fraud:v2", "output"),
        ("fraud:v1", p.evaluate, "input"),
        (p.evaluate, "report:v1", "output"),
    }


def nodes_of(edges: Edges, root: str) -> set[str]:
    return {root} | {e[0] for e in edges} | {e[1] for e in edges}


def same(a: Lineage, b: Lineage) -> bool:
    return (a.root, a.nodes, a.edges) == (b.root, b.nodes, b.edges)


def check(g: Lineage, root: str, edges: Edges) -> None:
    assert g.root == root
    assert next(iter(g.nodes)) == root  # the root comes first
    assert edge_set(g) == edges
    assert set(g.nodes) == nodes_of(edges, root)
    for key, node in g.nodes.items():
        assert node.key == key


@pytest.fixture
def pipeline(backend_repo: mk.Repo) -> Pipeline:
    return build(backend_repo)


# -- repo.lineage, both backends -------------------------------------------------------


def test_upstream_of_the_last_step_walks_back_to_the_dataset(
    backend_repo: mk.Repo, pipeline: Pipeline
) -> None:
    p = pipeline
    g = backend_repo.lineage("report:v1")
    everything = pipeline_edges(p)
    upstream = everything - {
        ("features:v1", p.train_b, "input"),
        (p.train_b, "fraud:v2", "output"),
    }
    check(g, "report:v1", upstream)
    assert same(backend_repo.lineage("report:v1", upstream=True, downstream=False), g)
    only_down = backend_repo.lineage("report:v1", upstream=False)
    check(only_down, "report:v1", set())

    report, train = g.nodes["report:v1"], g.nodes[p.train_a]
    assert isinstance(report, VersionNode) and isinstance(train, RunNode)
    assert (report.type, report.digest) == ("other", backend_repo.show("report:v1").digest)
    assert (train.name, train.status, train.user) == ("train-a", "finished", "tester")
    assert train.id == p.train_a.removeprefix("run:")
    types = {k: n.type for k, n in g.nodes.items() if isinstance(n, VersionNode)}
    assert types == {
        "report:v1": "other",
        "fraud:v1": "model",
        "features:v1": "dataset",
        "code/proj:v1": "code",
        "transactions:v3": "dataset",
    }
    assert g.upstream_of(p.train_a) == ["code/proj:v1", "features:v1"]
    assert g.downstream_of("features:v1") == [p.train_a]


def test_downstream_of_the_dataset_reaches_every_model_and_the_report(
    backend_repo: mk.Repo, pipeline: Pipeline
) -> None:
    p = pipeline
    g = backend_repo.lineage("transactions:v3")
    downstream = pipeline_edges(p) - {("code/proj:v1", p.train_a, "input")}
    check(g, "transactions:v3", downstream)
    assert same(backend_repo.lineage("transactions:v3", upstream=False), g)
    check(backend_repo.lineage("transactions:v3", downstream=False), "transactions:v3", set())
    # the other versions of the dataset were never used
    for ref in ("transactions:v1", "transactions:v2"):
        check(backend_repo.lineage(ref), ref, set())


def test_from_the_middle_both_ways_and_each_limit(
    backend_repo: mk.Repo, pipeline: Pipeline
) -> None:
    p = pipeline
    up = {("transactions:v3", p.prep, "input"), (p.prep, "features:v1", "output")}
    down = pipeline_edges(p) - up - {("code/proj:v1", p.train_a, "input")}
    check(backend_repo.lineage("features:v1"), "features:v1", up | down)
    check(backend_repo.lineage("features:v1", downstream=False), "features:v1", up)
    check(backend_repo.lineage("features:v1", upstream=False), "features:v1", down)
    check(backend_repo.lineage("features", upstream=False), "features:v1", down)  # latest
    # fan-out: one version, two runs, two models
    g = backend_repo.lineage("features:v1", upstream=False)
    assert sorted(g.downstream_of("features:v1")) == sorted([p.train_a, p.train_b])
    assert {g.downstream_of(p.train_a)[0], g.downstream_of(p.train_b)[0]} == {
        "fraud:v1",
        "fraud:v2",
    }
    # the model's lineage: data and code up, the evaluation down; not its sibling model
    g = backend_repo.lineage("fraud:v1")
    assert "fraud:v2" not in g.nodes and p.train_b not in g.nodes
    assert {"transactions:v3", "code/proj:v1", "report:v1"} <= set(g.nodes)


def test_diamond_shows_each_node_once(backend_repo: mk.Repo, pipeline: Pipeline) -> None:
    p = pipeline
    diamond = {
        ("raw:v1", p.split, "input"),
        (p.split, "left:v1", "output"),
        (p.split, "right:v1", "output"),
        ("left:v1", p.merge, "input"),
        ("right:v1", p.merge, "input"),
        (p.merge, "merged:v1", "output"),
    }
    down = backend_repo.lineage("raw:v1")
    check(down, "raw:v1", diamond)
    assert len(down.nodes) == 6
    up = backend_repo.lineage("merged:v1")
    check(up, "merged:v1", diamond)
    text = up.to_text().splitlines()
    assert text[0] == "merged:v1 (dataset)"
    assert text[1] == "upstream:"
    assert sum("raw:v1" in line for line in text) == 1
    assert sum(p.split[4:12] in line for line in text) == 2  # once, then "(see above)"
    assert sum(line.endswith("(see above)") for line in text) == 1
    # from one side of the diamond: the other side is neither upstream nor downstream
    check(
        backend_repo.lineage("left:v1"),
        "left:v1",
        {
            ("raw:v1", p.split, "input"),
            (p.split, "left:v1", "output"),
            ("left:v1", p.merge, "input"),
            (p.merge, "merged:v1", "output"),
        },
    )


def test_a_version_with_no_lineage(backend_repo: mk.Repo, pipeline: Pipeline) -> None:
    g = backend_repo.lineage("transactions:v1")
    assert list(g.nodes) == ["transactions:v1"]
    assert g.edges == ()
    assert g.to_json()["edges"] == []
    assert g.to_text() == (
        "transactions:v1 (dataset)\nno recorded lineage: not produced by a run, and used by no run"
    )
    # one direction asked, and empty: the text says only what is known
    down = backend_repo.lineage("fraud:v2", upstream=False)
    assert (list(down.nodes), down.edges) == (["fraud:v2"], ())
    assert down.to_text() == "fraud:v2 (model)\nno recorded lineage: used by no run"
    up = backend_repo.lineage("transactions:v3", downstream=False)
    assert up.to_text() == "transactions:v3 (dataset)\nno recorded lineage: not produced by a run"
    both = backend_repo.lineage("fraud:v2").to_text().splitlines()
    assert both[1] == "upstream:" and "downstream:" not in both


def test_unknown_refs_raise(backend_repo: mk.Repo, pipeline: Pipeline) -> None:
    with pytest.raises(ArtifactNotFound, match="no artifact named 'nosuch'"):
        backend_repo.lineage("nosuch")
    with pytest.raises(VersionNotFound, match="latest is v3"):
        backend_repo.lineage("transactions:v9")


def test_a_long_chain_and_small_batches_give_the_same_graph(
    backend_repo: mk.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight levels deep, and every query split into batches of one row."""
    root = backend_repo.root
    write(root / "step.bin", b"step 0")
    backend_repo.add(root / "step.bin", "step0")
    runs = []
    for i in range(1, 9):
        with mk.start_run(f"s{i}", repo=backend_repo, capture_code=False) as run:
            run.use(f"step{i - 1}:v1")
            write(root / "step.bin", f"step {i}".encode())
            run.log_artifact(root / "step.bin", f"step{i}")
            runs.append(run_key(run))
    chain = set()
    for i, key in enumerate(runs, 1):
        chain |= {(f"step{i - 1}:v1", key, "input"), (key, f"step{i}:v1", "output")}
    check(backend_repo.lineage("step8"), "step8:v1", chain)
    check(backend_repo.lineage("step0"), "step0:v1", chain)
    middle = backend_repo.lineage("step4:v1")
    check(middle, "step4:v1", chain)
    monkeypatch.setattr(importlib.import_module("modelkeep.meta.lineage"), "_BATCH", 1)
    assert backend_repo.lineage("step4:v1") == middle
    assert same(backend_repo.lineage("step0", upstream=False), backend_repo.lineage("step0"))


def test_text_of_the_model_is_a_tree_each_way(repo: mk.Repo) -> None:
    p = build(repo)
    g = repo.lineage("fraud:v1")
    short = {k: k[4:12] for k in (p.prep, p.train_a, p.evaluate)}
    assert g.to_text() == "\n".join(
        [
            "fraud:v1 (model)",
            "upstream:",
            f"   <- run {short[p.train_a]} train-a (finished)",
            "      <- code/proj:v1 (code)",
            "      <- features:v1 (dataset)",
            f"         <- run {short[p.prep]} prep (finished)",
            "            <- transactions:v3 (dataset)",
            "downstream:",
            f'   -> run {short[p.evaluate]} évaluer "holdout" (finished)',
            "      -> report:v1 (other)",
        ]
    )


# -- the CLI ---------------------------------------------------------------------------


def test_cli_formats(repo: mk.Repo) -> None:
    p = build(repo)
    cwd = repo.root
    expected = repo.lineage("features:v1").to_json()

    as_json = jcli("lineage", "features:v1", cwd=cwd)
    assert as_json == json.loads(ok("lineage", "features:v1", "--format", "json", cwd=cwd).stdout)
    assert as_json == json.loads(json.dumps(expected))
    assert as_json["root"] == "features:v1"
    assert {n["key"] for n in as_json["nodes"]} == {
        "features:v1",
        "transactions:v3",
        "fraud:v1",
        "fraud:v2",
        "report:v1",
        p.prep,
        p.train_a,
        p.train_b,
        p.evaluate,
    }
    assert len(as_json["edges"]) == 8
    kinds = {n["key"]: n["kind"] for n in as_json["nodes"]}
    assert kinds[p.prep] == "run" and kinds["fraud:v1"] == "version"

    text = ok("lineage", "features:v1", cwd=cwd).stdout
    assert text == ok("lineage", "features:v1", "--format", "text", cwd=cwd).stdout
    lines = text.splitlines()
    assert lines[0] == "features:v1 (dataset)"
    up, down = lines.index("upstream:"), lines.index("downstream:")
    assert 0 < up < down
    assert any("transactions:v3" in line for line in lines[up:down])
    assert all("fraud:v" not in line for line in lines[up:down])
    assert sum("fraud:v" in line for line in lines[down:]) == 2

    mermaid = ok("lineage", "features:v1", "--format", "mermaid", cwd=cwd).stdout
    assert mermaid.startswith("flowchart")
    body = mermaid.splitlines()
    assert sum("-->" in line for line in body) == 8
    assert any("évaluer 'holdout'" in line for line in body)  # no '"' inside a label
    node_ids = {m[1] for line in body if (m := re.match(r"    (n\d+)[\[(]", line))}
    assert len(node_ids) == 9
    for line in body:
        if "-->" in line:
            a, b = line.split("-->")
            assert {a.strip(), b.strip()} <= node_ids

    dot = ok("lineage", "features:v1", "--format", "dot", cwd=cwd).stdout
    assert dot.startswith("digraph")
    assert dot.rstrip().endswith("}")
    arrows = [line for line in dot.splitlines() if " -> " in line]
    assert len(arrows) == 8
    assert f'    "features:v1" -> "{p.train_b}";' in arrows
    assert 'évaluer \\"holdout\\"' in dot  # readable text, a DOT-escaped quote


def test_cli_answers_the_two_questions(repo: mk.Repo) -> None:
    p = build(repo)
    cwd = repo.root

    # which models were trained on the bad dataset?
    r = ok("lineage", "transactions:v3", "--downstream", cwd=cwd)
    assert "fraud:v1 (model)" in r.stdout and "fraud:v2 (model)" in r.stdout
    assert "upstream:" not in r.stdout
    doc = jcli("lineage", "transactions:v3", "--downstream", cwd=cwd)
    models = sorted(n["ref"] for n in doc["nodes"] if n.get("type") == "model")
    assert models == ["fraud:v1", "fraud:v2"]

    # which data and code made the model?
    r = ok("lineage", "fraud:v1", "--upstream", cwd=cwd)
    assert "transactions:v3 (dataset)" in r.stdout and "code/proj:v1 (code)" in r.stdout
    assert "downstream:" not in r.stdout and "report:v1" not in r.stdout
    doc = jcli("lineage", "fraud:v1", "--upstream", cwd=cwd)
    inputs = sorted(n["ref"] for n in doc["nodes"] if n["kind"] == "version")
    assert inputs == ["code/proj:v1", "features:v1", "fraud:v1", "transactions:v3"]
    assert {n["key"] for n in doc["nodes"] if n["kind"] == "run"} == {p.prep, p.train_a}

    r = cli("lineage", "transactions:v1", cwd=cwd)
    assert r.returncode == 0 and "no recorded lineage" in r.stdout
    r = ok("lineage", "report:v1", "--downstream", cwd=cwd)
    assert r.stdout == "report:v1 (other)\nno recorded lineage: used by no run\n"

    for bad in ("nosuch:v1", "transactions:v7"):
        r = cli("lineage", bad, cwd=cwd)
        assert r.returncode == 1
        assert r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("modelkeep: error: ")
    r = cli("lineage", "fraud:v1", "--format", "svg", cwd=cwd)
    assert r.returncode == 2

    # both flags: both directions, as with neither
    both = jcli("lineage", "features:v1", "--upstream", "--downstream", cwd=cwd)
    assert both == jcli("lineage", "features:v1", cwd=cwd)
    assert {"transactions:v3", "fraud:v1"} <= {n["key"] for n in both["nodes"]}
