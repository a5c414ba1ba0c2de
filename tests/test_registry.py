"""The model registry: register, stages, aliases, --at, policy, rollback, audit, deletion.

Everything that touches the registry tables runs on both metadata backends (SQLite and a
real PostgreSQL); commands run through the installed `modelkeep` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import pytest
from sqlalchemy import create_engine, text

import modelkeep as mk
from modelkeep import meta
from modelkeep.errors import (
    AliasNotFound,
    ArtifactNotFound,
    InvalidAlias,
    InvalidArgument,
    InvalidRef,
    NothingAtTime,
    PolicyError,
    PromotionRefused,
    RegistryRefused,
    VersionDeleted,
    VersionNotFound,
)
from modelkeep.meta import Version
from modelkeep.meta.registry import StaleCheck
from tests.conftest import MODELKEEP, cli, jcli, ok, one_error_line, write

PREFIX = "modelkeep: error: "


# -- helpers ---------------------------------------------------------------------------


def _bytes(label: str, size: int = 4096) -> bytes:
    return blake3.blake3(label.encode()).digest(length=size)


def produce(
    repo: mk.Repo,
    data: bytes,
    metrics: Mapping[str, float] | None = None,
    *,
    name: str = "run-artifact",
) -> Version:
    """A version of name made by a run that logged metrics (or a plain add without them)."""
    src = write(repo.root / "work" / f"{blake3.blake3(data).hexdigest()[:12]}.bin", data)
    if metrics is None:
        return repo.add(src, name).version
    with mk.start_run(name=f"train-{name}", repo=repo, capture_code=False) as run:
        run.log_metrics(dict(metrics))
        return run.log_artifact(src, name)


def candidate(
    repo: mk.Repo, label: str, metrics: Mapping[str, float] | None = None, model: str = "fraud"
) -> Version:
    """A run artifact registered as the next version of model."""
    return repo.register(produce(repo, _bytes(label), metrics).ref, model)


def to_production(repo: mk.Repo, ref: str, reason: str = "ship it") -> None:
    if repo.show(ref).stage != "staging":
        repo.promote(ref, "staging", reason="try it")
    repo.promote(ref, "production", reason=reason)


def policy(repo: mk.Repo, toml: str) -> Path:
    path = repo.root / "modelkeep.toml"
    path.write_text(toml, "utf-8")
    return path


def fail(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command that must be refused (exit 1, one line on stderr); return that line."""
    r = cli(*args, cwd=cwd, env=env)
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    assert r.stdout == "", r.stdout
    return lines[0]


def as_user(user: str) -> dict[str, str]:
    return {"MODELKEEP_USER": user}


def state(repo: mk.Repo) -> tuple[Any, ...]:
    """Everything the registry holds: models, every version's stage, and the event log."""
    models = [m.to_json() for m in repo.models()]
    versions = {
        m["name"]: [
            (v.number, v.registered, v.stage, v.deleted_at) for v in repo.versions(m["name"])
        ]
        for m in models
    }
    return models, versions, [e.to_json() for e in repo.audit()]


def stage_of(repo: mk.Repo, ref: str) -> str:
    return repo.show(ref).stage


def tick() -> datetime:
    """A moment strictly between two registry changes."""
    time.sleep(0.02)
    moment = datetime.now(UTC)
    time.sleep(0.02)
    return moment


def sql(repo: mk.Repo, *statements: str) -> None:
    """Change the database behind modelkeep's back, as someone with database access could."""
    engine = create_engine(repo.settings.database_url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


# -- registering -------------------------------------------------------------------------


def test_register_a_run_artifact_copies_no_bytes_and_keeps_its_run(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    src = produce(repo, _bytes("weights", 300_000), {"auc": 0.93})
    before = repo.du()

    v = repo.register(src.ref, "fraud")

    assert (v.name, v.number, v.type, v.registered, v.stage) == ("fraud", 1, "model", True, "none")
    assert v.digest == src.digest and v.size == src.size
    assert v.run_id == src.run_id is not None
    after = repo.du()
    assert after.stored_bytes == before.stored_bytes
    assert after.unique_bytes == before.unique_bytes
    assert after.versions == before.versions + 1
    # Lineage and metrics flow from the run that made the bytes.
    graph = repo.lineage("fraud:v1")
    assert f"run:{src.run_id}" in graph.upstream_of("fraud:v1")
    assert repo.run(src.run_id or "").metrics == {"auc": 0.93}
    # The source is untouched.
    assert repo.show(src.ref).registered is False


def test_register_by_digest_and_numbering(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    a = produce(repo, _bytes("a"), {"auc": 0.8})
    b = produce(repo, _bytes("b"), {"auc": 0.9})
    assert repo.register(a.ref, "fraud").number == 1
    v2 = repo.register(b.digest, "fraud")  # a full b3: content id
    assert (v2.number, v2.digest, v2.run_id) == (2, b.digest, b.run_id)
    c = produce(repo, _bytes("c"))
    v3 = repo.register(c.digest[:14], "fraud")  # a unique prefix
    assert (v3.number, v3.digest, v3.run_id) == (3, c.digest, None)
    assert [v.number for v in repo.versions("fraud")] == [1, 2, 3]
    with repo.open("fraud:v2") as f:
        assert f.read() == _bytes("b")


def test_register_a_version_of_the_model_itself_marks_it_without_a_new_number(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    plain = produce(repo, _bytes("own"), name="fraud")
    assert (plain.number, plain.registered) == (1, False)
    before_versions = len(repo.versions("fraud"))

    v = repo.register("fraud:v1", "fraud")

    assert (v.ref, v.registered, v.stage) == ("fraud:v1", True, "none")
    assert len(repo.versions("fraud")) == before_versions
    events = repo.audit("fraud")
    assert [(e.action, e.target) for e in events] == [("register", "fraud:v1")]


def test_registering_again_is_a_no_op(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    src = produce(repo, _bytes("w"), {"auc": 0.9})
    first = repo.register(src.ref, "fraud")
    snapshot = state(repo)
    again = repo.register(src.ref, "fraud")  # the same source
    again_digest = repo.register(src.digest, "fraud")  # the same content, named otherwise
    itself = repo.register("fraud:v1", "fraud")  # the registered version itself
    assert again == again_digest == itself == first
    assert state(repo) == snapshot


def test_register_cli(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    src = produce(repo, _bytes("w"), {"auc": 0.9})
    out = ok("register", src.ref, "--as", "fraud", "--reason", "first", cwd=repo.root).stdout
    assert "registered fraud:v1" in out and "stage none" in out
    doc = jcli("register", src.ref, "--as", "fraud", cwd=repo.root)
    assert (doc["ref"], doc["registered"], doc["run_id"]) == ("fraud:v1", True, src.run_id)
    [event] = repo.audit("fraud")
    assert (event.action, event.reason, event.after["source"]) == ("register", "first", src.ref)


# -- stages ------------------------------------------------------------------------------


def test_stages_move_none_staging_production_archived(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    candidate(repo, "one", {"auc": 0.9})
    assert stage_of(repo, "fraud:v1") == "none"
    p = repo.promote("fraud:v1", "staging", reason="try")
    assert (p.version.stage, p.stage, p.displaced) == ("staging", "staging", None)
    assert stage_of(repo, "fraud:v1") == "staging"
    p = repo.promote("fraud:v1", "production", reason="ship")
    assert stage_of(repo, "fraud:v1") == "production"
    archived = repo.archive("fraud:v1", reason="retired")
    assert archived.stage == stage_of(repo, "fraud:v1") == "archived"
    moves = [
        (e.action, e.before.get("stage"), e.after.get("stage"), e.reason)
        for e in repo.history("fraud")
    ]
    assert moves == [
        ("register", None, "none", ""),
        ("promote", "none", "staging", "try"),
        ("promote", "staging", "production", "ship"),
        ("archive", "production", "archived", "retired"),
    ]
    with pytest.raises(AliasNotFound, match="no version of 'fraud' is in production"):
        repo.show("fraud@production")


def test_one_production_version_per_model(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    candidate(repo, "one", {"auc": 0.9})
    candidate(repo, "two", {"auc": 0.95})
    other = candidate(repo, "other", {"auc": 0.5}, model="other")
    to_production(repo, "fraud:v1")
    to_production(repo, other.ref)
    repo.promote("fraud:v2", "staging")
    p = repo.promote("fraud:v2", "production", reason="better")

    assert p.displaced is not None and p.displaced.ref == "fraud:v1"
    assert stage_of(repo, "fraud:v1") == "archived"
    assert stage_of(repo, "fraud:v2") == "production"
    assert stage_of(repo, "other:v1") == "production"  # another model is not touched
    last = repo.history("fraud")[-2:]
    assert [(e.action, e.target, e.before, e.after) for e in last] == [
        ("archive", "fraud:v1", {"stage": "production"}, {"stage": "archived"}),
        ("promote", "fraud:v2", {"stage": "staging"}, {"stage": "production"}),
    ]
    assert "replaced in production by fraud:v2" in last[0].reason
    productions = [
        v for m in ("fraud", "other") for v in repo.versions(m) if v.stage == "production"
    ]
    assert [v.ref for v in productions] == ["fraud:v2", "other:v1"]


def test_stage_refs_resolve_in_show_get_lineage_and_diff(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    repo = backend_repo
    v1 = candidate(repo, "one", {"auc": 0.9})
    v2 = candidate(repo, "two", {"auc": 0.95})
    to_production(repo, "fraud:v1")
    repo.promote("fraud:v2", "staging")

    assert repo.show("fraud@production").ref == "fraud:v1"
    assert repo.show("fraud@staging").ref == "fraud:v2"
    assert repo.get("fraud@production", tmp_path / "prod.bin").read_bytes() == _bytes("one")
    assert repo.get("fraud@staging", tmp_path / "stag.bin").read_bytes() == _bytes("two")
    graph = repo.lineage("fraud@production")
    assert graph.root == "fraud:v1"
    assert graph.upstream_of("fraud:v1") == [f"run:{v1.run_id}"]
    assert repo.diff("fraud@production", "fraud@staging").old.ref == "fraud:v1"
    with repo.open("fraud@staging") as f:
        assert f.read() == _bytes("two")

    root = repo.root
    assert jcli("show", "fraud@production", cwd=root)["ref"] == "fraud:v1"
    assert jcli("show", "fraud@staging", cwd=root)["stage"] == "staging"
    out = tmp_path / "cli.bin"
    got = jcli("get", "fraud@production", "-o", str(out), cwd=root)
    assert got["ref"] == "fraud:v1" and out.read_bytes() == _bytes("one")
    lineage = jcli("lineage", "fraud@staging", cwd=root)
    assert lineage["root"] == "fraud:v2"
    assert {n.get("id") for n in lineage["nodes"]} >= {v2.run_id}


def test_models_and_history_cli(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    root = repo.root
    assert "no registered models" in ok("models", cwd=root).stdout
    candidate(repo, "one", {"auc": 0.9})
    candidate(repo, "two", {"auc": 0.95})
    candidate(repo, "three", {"auc": 0.97})
    candidate(repo, "x", model="other")
    to_production(repo, "fraud:v1")
    repo.promote("fraud:v2", "staging")
    repo.promote("fraud:v3", "staging")
    repo.set_alias("fraud@champion", "fraud:v1")

    doc = jcli("models", cwd=root)
    assert doc["models"] == [
        {
            "name": "fraud",
            "latest": 3,
            "registered": 3,
            "production": [1],
            "staging": [2, 3],
            "archived": [],
            "aliases": {"champion": 1},
        },
        {
            "name": "other",
            "latest": 1,
            "registered": 1,
            "production": [],
            "staging": [],
            "archived": [],
            "aliases": {},
        },
    ]
    text_lines = ok("models", cwd=root).stdout.splitlines()
    fraud = next(line for line in text_lines if line.startswith("fraud"))
    assert fraud.split() == ["fraud", "v1", "v2,v3", "-", "champion=v1", "3/3"]
    assert any(line.split()[:2] == ["other", "-"] for line in text_lines)

    hist = ok("history", "fraud", cwd=root).stdout.splitlines()
    assert len(hist) == len(repo.history("fraud")) == 8
    promote_line = next(h for h in hist if "staging -> production" in h)
    assert "tester" in promote_line and "fraud:v1" in promote_line and "(ship it)" in promote_line
    assert any("alias-set" in h and "fraud@champion" in h and "- -> v1" in h for h in hist)
    events = jcli("history", "fraud", cwd=root)["events"]
    assert [e["action"] for e in events] == [
        "register", "register", "register",
        "promote", "promote", "promote", "promote",
        "alias-set",
    ]  # fmt: skip
    assert all(e["model"] == "fraud" and e["actor"] == "tester" for e in events)
    assert fail("history", "nope", cwd=root).startswith(PREFIX + "no artifact")


# -- aliases -----------------------------------------------------------------------------


def test_alias_set_move_and_remove(backend_repo: mk.Repo, tmp_path: Path) -> None:
    repo = backend_repo
    candidate(repo, "one", {"auc": 0.9})
    candidate(repo, "two", {"auc": 0.95})
    root = repo.root

    ok("alias", "set", "fraud@champion", "fraud:v1", "--reason", "best so far", cwd=root)
    assert repo.show("fraud@champion").ref == "fraud:v1"
    out = ok("alias", "set", "fraud@champion", "fraud:v2", "--reason", "better", cwd=root).stdout
    assert out.strip() == "fraud@champion -> fraud:v2"
    assert repo.show("fraud@champion").ref == "fraud:v2"
    assert repo.models()[0].aliases == {"champion": 2}  # unique: it moved, not copied
    set_again = state(repo)
    repo.set_alias("fraud@champion", "fraud:v2")  # already there: nothing to record
    assert state(repo) == set_again

    # Resolves everywhere a ref is accepted.
    assert jcli("show", "fraud@champion", cwd=root)["ref"] == "fraud:v2"
    got = jcli("get", "fraud@champion", "-o", str(tmp_path / "c.bin"), cwd=root)
    assert got["ref"] == "fraud:v2" and (tmp_path / "c.bin").read_bytes() == _bytes("two")
    assert jcli("lineage", "fraud@champion", cwd=root)["root"] == "fraud:v2"
    assert jcli("diff", "fraud:v1", "fraud@champion", cwd=root)["new"] == "fraud:v2"

    assert (
        "removed fraud@champion"
        in ok("alias", "rm", "fraud@champion", "--reason", "x", cwd=root).stdout
    )
    with pytest.raises(AliasNotFound):
        repo.show("fraud@champion")
    line = fail("show", "fraud@champion", cwd=root)
    assert "fraud@champion does not name a version" in line

    events = [e for e in repo.history("fraud") if e.action.startswith("alias")]
    assert [(e.action, e.target, e.before, e.after, e.reason) for e in events] == [
        ("alias-set", "fraud@champion", {"version": None}, {"version": 1}, "best so far"),
        ("alias-set", "fraud@champion", {"version": 1}, {"version": 2}, "better"),
        ("alias-remove", "fraud@champion", {"version": 2}, {"version": None}, "x"),
    ]
    # Removing it again: a clear error, nothing recorded.
    before = state(repo)
    assert "fraud@champion does not name a version" in fail(
        "alias", "rm", "fraud@champion", cwd=root
    )
    assert state(repo) == before


def test_aliases_are_per_model(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    candidate(repo, "one")
    candidate(repo, "x", model="other")
    repo.set_alias("fraud@champion", "fraud:v1")
    repo.set_alias("other@champion", "other:v1")
    assert repo.show("fraud@champion").ref == "fraud:v1"
    assert repo.show("other@champion").ref == "other:v1"
    with pytest.raises(InvalidArgument, match="must point at a version of 'fraud'"):
        repo.set_alias("fraud@champion", "other:v1")
    assert repo.show("fraud@champion").ref == "fraud:v1"


def test_alias_named_like_a_stage_or_version_is_refused(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    candidate(repo, "one")
    before = state(repo)
    for alias in ("production", "staging", "archived", "none", "v2", "v10", "latest", "Bad"):
        with pytest.raises((InvalidAlias, InvalidRef)):
            repo.set_alias(f"fraud@{alias}", "fraud:v1")
        assert state(repo) == before
    for alias in ("production", "v3", "latest"):
        line = fail("alias", "set", f"fraud@{alias}", "fraud:v1", cwd=repo.root)
        assert alias in line
    assert "it is a stage" in fail("alias", "set", "fraud@staging", "fraud:v1", cwd=repo.root)
    assert "reads as a version" in fail("alias", "rm", "fraud@v1", cwd=repo.root)
    assert state(repo) == before


# -- --at: the registry as it was --------------------------------------------------------


def test_at_resolves_stages_and_aliases_as_they_were(backend_repo: mk.Repo, tmp_path: Path) -> None:
    repo = backend_repo
    root = repo.root
    before_anything = tick()
    candidate(repo, "one", {"auc": 0.9})
    candidate(repo, "two", {"auc": 0.95})
    t_registered = tick()
    to_production(repo, "fraud:v1")
    repo.set_alias("fraud@champion", "fraud:v1")
    t_v1 = tick()
    to_production(repo, "fraud:v2")
    repo.set_alias("fraud@champion", "fraud:v2")
    t_v2 = tick()
    repo.rollback("fraud", reason="v2 misbehaves")
    repo.remove_alias("fraud@champion")
    t_rolled_back = tick()

    def at(ref: str, moment: datetime) -> Version:
        return repo.show(ref, at=moment)

    assert at("fraud@production", t_v1).ref == "fraud:v1"
    assert at("fraud@production", t_v2).ref == "fraud:v2"
    assert at("fraud@production", t_rolled_back).ref == "fraud:v1"
    assert at("fraud@champion", t_v1).ref == "fraud:v1"
    assert at("fraud@champion", t_v2).ref == "fraud:v2"
    with pytest.raises(NothingAtTime, match="no version held 'staging' then"):
        at("fraud@staging", t_v1)
    # Each version shows the stage it had then.
    assert at("fraud:v1", t_registered).stage == "none"
    assert at("fraud:v1", t_v1).stage == "production"
    assert at("fraud:v1", t_v2).stage == "archived"
    with pytest.raises(NothingAtTime, match="no version held 'production' then"):
        at("fraud@production", t_registered)
    with pytest.raises(NothingAtTime, match="no version held 'champion' then"):
        at("fraud@champion", t_rolled_back)
    with pytest.raises(NothingAtTime, match="did not exist yet"):
        at("fraud@production", before_anything)

    # The same through the CLI: show, get, history.
    def iso(moment: datetime) -> str:
        return moment.isoformat()

    shown = jcli("show", "fraud@production", "--at", iso(t_v2), cwd=root)
    assert (shown["ref"], shown["stage"]) == ("fraud:v2", "production")
    assert jcli("show", "fraud@production", "--at", iso(t_v1), cwd=root)["ref"] == "fraud:v1"
    text_out = ok("show", "fraud@champion", "--at", iso(t_v2), cwd=root).stdout
    assert text_out.startswith("fraud:v2")
    out = tmp_path / "then.bin"
    got = jcli("get", "fraud@production", "--at", iso(t_v2), "-o", str(out), cwd=root)
    assert got["ref"] == "fraud:v2" and out.read_bytes() == _bytes("two")
    local = t_v1.astimezone().replace(tzinfo=None).isoformat()  # no zone: local time
    assert jcli("show", "fraud@production", "--at", local, cwd=root)["ref"] == "fraud:v1"

    upto = jcli("history", "fraud", "--at", iso(t_v1), cwd=root)["events"]
    assert upto == [e.to_json() for e in repo.history("fraud", at=t_v1)]
    assert [e["action"] for e in upto] == [
        "register",
        "register",
        "promote",
        "promote",
        "alias-set",
    ]
    full = jcli("history", "fraud", cwd=root)["events"]
    assert len(full) > len(upto) and full[: len(upto)] == upto

    for command in ("show", "get", "history"):
        ref = "fraud" if command == "history" else "fraud@production"
        line = fail(command, ref, "--at", iso(before_anything), cwd=root)
        assert "did not exist yet" in line, line
    with pytest.raises(NothingAtTime):
        repo.history("fraud", at=before_anything)
    assert "cannot read time" in fail("show", "fraud@production", "--at", "yesterday", cwd=root)


# -- promotion policy --------------------------------------------------------------------

GATED = """\
[policy.default.production]
require_stage = "staging"
gates = ["auc >= 0.90", "auc >= production.auc", "latency_ms <= 50"]
"""


def test_gates_read_the_producing_runs_metrics_and_note_a_missing_holder(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    policy(repo, GATED)
    src = produce(repo, _bytes("one"), {"auc": 0.5, "latency_ms": 20})
    with mk.start_run(name="more", repo=repo, capture_code=False) as other:
        other.log_metric("auc", 0.1)  # another run's metrics never count
    # The run logged auc twice: the last value is the one gates read.
    with mk.start_run(name="train", repo=repo, capture_code=False) as run:
        run.log_metrics({"auc": 0.5, "latency_ms": 30})
        run.log_metrics({"auc": 0.95})
        made = run.log_artifact(write(repo.root / "m.bin", _bytes("two")), "run-artifact")
    assert src.number == 1
    repo.register(made.ref, "fraud")
    repo.promote("fraud:v1", "staging")

    p = repo.promote("fraud:v1", "production", reason="first")
    assert p.notes == ("gate 'auc >= production.auc' passes: no version is in production yet",)
    assert p.overridden == ()
    assert stage_of(repo, "fraud:v1") == "production"

    # The CLI prints the note too.
    candidate(repo, "other", {"auc": 0.91, "latency_ms": 1}, model="other")
    repo.promote("other:v1", "staging")
    r = cli("promote", "other:v1", "production", cwd=repo.root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "note: gate 'auc >= production.auc' passes: no version is in production yet",
        "other:v1 is now in production",
    ]

    candidate(repo, "three", {"auc": 0.96, "latency_ms": 10})
    repo.promote("fraud:v2", "staging")
    r = cli("promote", "fraud:v2", "production", "--reason", "better", cwd=repo.root)
    assert r.returncode == 0, r.stderr
    assert "note:" not in r.stdout  # there is a holder now, and v2 beats it
    assert "fraud:v2 is now in production" in r.stdout
    assert "fraud:v1 moved from production to archived" in r.stdout


def test_refused_promotion_lists_every_unmet_condition_and_changes_nothing(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    policy(repo, GATED)
    candidate(repo, "one", {"auc": 0.95, "latency_ms": 40})
    to_production(repo, "fraud:v1")
    candidate(repo, "two", {"auc": 0.85, "latency_ms": 70.5})
    before = state(repo)

    with pytest.raises(PromotionRefused) as info:
        repo.promote("fraud:v2", "production", reason="please")
    assert info.value.unmet == [
        "production takes versions from staging only, and fraud:v2 is in none",
        "gate 'auc >= 0.90' unmet: auc is 0.85",
        "gate 'auc >= production.auc' unmet: auc is 0.85, fraud:v1 in production has 0.95",
        "gate 'latency_ms <= 50' unmet: latency_ms is 70.5",
    ]
    line = fail("promote", "fraud:v2", "production", "--reason", "please", cwd=repo.root)
    for unmet in info.value.unmet:
        assert unmet in line
    # Not overridable while the stage order is unmet, even with --force.
    line = fail("promote", "fraud:v2", "production", "--force", "--reason", "x", cwd=repo.root)
    assert "takes versions from staging only" in line
    assert state(repo) == before


def test_force_with_reason_overrides_gates_and_is_recorded(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    policy(repo, GATED)
    candidate(repo, "one", {"auc": 0.95, "latency_ms": 40})
    to_production(repo, "fraud:v1")
    candidate(repo, "two", {"auc": 0.85, "latency_ms": 20})
    repo.promote("fraud:v2", "staging")
    root = repo.root
    before = state(repo)

    line = fail("promote", "fraud:v2", "production", cwd=root)
    assert "--force --reason" in line  # the gates alone are overridable, and it says how
    assert "--force needs --reason" in fail(
        "promote", "fraud:v2", "production", "--force", cwd=root
    )
    with pytest.raises(InvalidArgument, match="--force needs --reason"):
        repo.promote("fraud:v2", "production", force=True, reason="  ")
    assert state(repo) == before

    r = cli(
        "promote",
        "fraud:v2",
        "production",
        "--force",
        "--reason",
        "hotfix for incident 7",
        cwd=root,
    )
    assert r.returncode == 0, r.stderr
    assert "overridden: gate 'auc >= 0.90' unmet: auc is 0.85" in r.stdout
    assert "overridden: gate 'auc >= production.auc' unmet" in r.stdout
    assert stage_of(repo, "fraud:v2") == "production"
    assert stage_of(repo, "fraud:v1") == "archived"
    override, archived, promoted = repo.history("fraud")[-3:]
    assert (override.action, override.target, override.reason) == (
        "override", "fraud:v2", "hotfix for incident 7",
    )  # fmt: skip
    assert override.after == {
        "to": "production",
        "unmet": [
            "gate 'auc >= 0.90' unmet: auc is 0.85",
            "gate 'auc >= production.auc' unmet: auc is 0.85, fraud:v1 in production has 0.95",
        ],
    }
    assert (archived.action, archived.target) == ("archive", "fraud:v1")
    assert (promoted.action, promoted.target, promoted.reason) == (
        "promote", "fraud:v2", "hotfix for incident 7",
    )  # fmt: skip
    doc = jcli("audit", "fraud", cwd=root)["events"]
    assert any(e["action"] == "override" for e in doc)


def test_a_version_without_a_run_fails_metric_gates(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    policy(repo, '[policy.default.staging]\ngates = ["auc >= 0.5"]\n')
    candidate(repo, "plain")  # added, not made by a run
    with pytest.raises(PromotionRefused, match="was not produced by a run"):
        repo.promote("fraud:v1", "staging")
    assert stage_of(repo, "fraud:v1") == "none"


def test_model_table_wins_over_default_key_by_key(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    policy(
        repo,
        """\
[policy.default.production]
require_stage = "staging"
gates = ["auc >= 0.90"]

[policy."fraud".production]
gates = ["auc >= 0.5"]

[policy."fraud".staging]
gates = ["latency_ms <= 50"]
""",
    )
    candidate(repo, "f1", {"auc": 0.6, "latency_ms": 80})
    candidate(repo, "o1", {"auc": 0.6, "latency_ms": 80}, model="other")
    candidate(repo, "f2", {"auc": 0.6, "latency_ms": 10})

    # fraud's own gate replaces default's, but default's require_stage still holds.
    with pytest.raises(PromotionRefused) as info:
        repo.promote("fraud:v1", "production")
    assert info.value.unmet == [
        "production takes versions from staging only, and fraud:v1 is in none"
    ]
    with pytest.raises(PromotionRefused, match="gate 'latency_ms <= 50' unmet: latency_ms is 80"):
        repo.promote("fraud:v1", "staging")
    repo.promote("fraud:v2", "staging")
    repo.promote("fraud:v2", "production")
    # Another model gets default's rules whole: no staging gate, the production gate.
    repo.promote("other:v1", "staging")
    with pytest.raises(PromotionRefused) as info:
        repo.promote("other:v1", "production")
    assert info.value.unmet == ["gate 'auc >= 0.90' unmet: auc is 0.6"]


def test_movers_limit_who_may_move_a_stage(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    policy(repo, '[policy.default.production]\nmovers = ["alice", "bob"]\n')
    candidate(repo, "one", {"auc": 0.9})
    repo.promote("fraud:v1", "staging")  # no movers for staging
    before = state(repo)
    with pytest.raises(RegistryRefused, match=r"only alice, bob may move .*you are 'tester'"):
        repo.promote("fraud:v1", "production")
    line = fail("promote", "fraud:v1", "production", "--force", "--reason", "x", cwd=repo.root)
    assert "only alice, bob may move" in line
    assert "only alice, bob" in fail(
        "promote", "fraud:v1", "production", cwd=repo.root, env=as_user("mallory")
    )
    assert state(repo) == before
    r = cli(
        "promote", "fraud:v1", "production", "--reason", "ok", cwd=repo.root, env=as_user("bob")
    )
    assert r.returncode == 0, r.stderr
    assert repo.history("fraud")[-1].actor == "bob"
    assert stage_of(repo, "fraud:v1") == "production"


def test_movers_apply_to_archive_and_rollback_too(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    root = repo.root
    candidate(repo, "one")
    candidate(repo, "two")
    to_production(repo, "fraud:v1")
    to_production(repo, "fraud:v2")
    policy(
        repo,
        '[policy.default.production]\nmovers = ["alice"]\n'
        '[policy.default.archived]\nmovers = ["alice"]\n',
    )
    before = state(repo)
    assert "only alice may move versions of 'fraud' to archived" in fail(
        "archive", "fraud:v2", cwd=root
    )
    assert "only alice may move versions of 'fraud' to production" in fail(
        "rollback", "fraud", "--reason", "x", cwd=root
    )
    with pytest.raises(RegistryRefused, match="only alice"):
        repo.rollback("fraud", reason="x")
    assert state(repo) == before
    assert cli("rollback", "fraud", "--reason", "x", cwd=root, env=as_user("alice")).returncode == 0
    assert cli("archive", "fraud:v1", cwd=root, env=as_user("alice")).returncode == 0
    assert [(e.action, e.actor) for e in repo.history("fraud")[-3:]] == [
        ("archive", "alice"),
        ("rollback", "alice"),
        ("archive", "alice"),
    ]


def test_a_move_checked_against_a_stage_that_changed_is_not_made(backend_repo: mk.Repo) -> None:
    """The policy check and the move are two transactions: if the version left the stage
    the check saw (say, someone archived it), the move must not happen on that check."""
    repo = backend_repo
    candidate(repo, "one")
    repo.promote("fraud:v1", "staging")
    repo.archive("fraud:v1")
    before = state(repo)
    with pytest.raises(StaleCheck):
        meta.move(repo.db, "fraud", 1, "production", "tester", "", from_stage="staging")
    assert state(repo) == before
    moved, _ = meta.move(repo.db, "fraud", 1, "production", "tester", "", from_stage="archived")
    assert moved.stage == "production"


def test_approvals_come_from_someone_other_than_the_requester(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    root = repo.root
    policy(repo, "[policy.default.production]\napprovals = 1\n")
    candidate(repo, "one", {"auc": 0.9})
    repo.promote("fraud:v1", "staging")
    n = len(repo.history("fraud"))

    line = fail("promote", "fraud:v1", "production", "--reason", "ship", cwd=root)
    assert "needs 1 approval(s) from users other than 'tester', has 0" in line
    assert "modelkeep approve fraud:v1 production" in line
    assert stage_of(repo, "fraud:v1") == "staging"
    history = repo.history("fraud")
    assert len(history) == n + 1  # only the request is recorded
    assert (history[-1].action, history[-1].actor, history[-1].after) == (
        "request", "tester", {"for": "production"},
    )  # fmt: skip
    fail("promote", "fraud:v1", "production", "--reason", "ship", cwd=root)
    assert len(repo.history("fraud")) == n + 1  # asking again records nothing new

    before = state(repo)
    line = fail("approve", "fraud:v1", "production", cwd=root)
    assert "an approval must come from another user" in line
    with pytest.raises(RegistryRefused, match="another user"):
        repo.approve("fraud:v1", "production")
    assert state(repo) == before
    # An approval for another stage does not count.
    ok_bob = cli("approve", "fraud:v1", "archived", cwd=root, env=as_user("bob"))
    assert ok_bob.returncode == 0, ok_bob.stderr
    fail("promote", "fraud:v1", "production", cwd=root)

    r = cli(
        "approve", "fraud:v1", "production", "--reason", "looks good", cwd=root, env=as_user("bob")
    )
    assert r.returncode == 0, r.stderr
    assert "1 approval(s)" in r.stdout
    assert "already approved" in fail(
        "approve", "fraud:v1", "production", cwd=root, env=as_user("bob")
    )
    approval = repo.history("fraud")[-1]
    assert (approval.action, approval.actor, approval.reason) == ("approve", "bob", "looks good")

    p = repo.promote("fraud:v1", "production", reason="approved")
    assert p.version.stage == "production"


def test_an_approver_cannot_count_for_their_own_promotion(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    policy(repo, "[policy.default.staging]\napprovals = 1\n")
    candidate(repo, "one")
    assert cli("approve", "fraud:v1", "staging", cwd=repo.root, env=as_user("bob")).returncode == 0
    line = fail("promote", "fraud:v1", "staging", cwd=repo.root, env=as_user("bob"))
    assert "other than 'bob', has 0" in line
    repo.promote("fraud:v1", "staging")  # tester: bob's approval counts
    assert stage_of(repo, "fraud:v1") == "staging"


def test_policy_syntax_error_names_the_line(repo: mk.Repo) -> None:
    # Reading modelkeep.toml happens before any row is read: SQLite alone, like the
    # other policy-mistake tests below.
    candidate(repo, "one", {"auc": 0.9})
    path = policy(repo, "# policy\n[policy.default.staging]\nrequire_stage = none\ngates = []\n")
    before = state(repo)
    with pytest.raises(PolicyError) as info:
        repo.promote("fraud:v1", "staging")
    assert info.value.line == 3
    line = fail("promote", "fraud:v1", "staging", cwd=repo.root)
    assert f"{path}, line 3: not valid TOML" in line
    assert state(repo) == before


def test_unknown_metric_in_a_gate_names_the_metric_and_line(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    candidate(repo, "one", {"auc": 0.95})
    candidate(repo, "two", {"auc": 0.97})
    to_production(repo, "fraud:v1")
    repo.promote("fraud:v2", "staging")
    path = policy(
        repo,
        '[policy.default.production]\napprovals = 1\ngates = [\n  "auc >= 0.9",\n'
        '  "f1_score >= 0.8",\n]\n',
    )
    before = state(repo)
    with pytest.raises(PolicyError) as info:
        repo.promote("fraud:v2", "production")
    assert info.value.line == 5
    assert "'f1_score'" in str(info.value) and "it logged: auc" in str(info.value)
    line = fail("promote", "fraud:v2", "production", "--force", "--reason", "x", cwd=repo.root)
    assert f"{path}, line 5" in line and "'f1_score'" in line
    assert state(repo) == before  # not even an approval request

    # The line in the model's own table, not the same gate in default's table above it.
    path.write_text(
        '[policy.default.production]\ngates = ["f1_score >= 0.8"]\n\n'
        '[policy.fraud.production]\ngates = ["auc >= 0.9", "f1_score >= 0.8"]\n'
    )
    line = fail("promote", "fraud:v2", "production", cwd=repo.root)
    assert f"{path}, line 5" in line and "'f1_score'" in line
    # The same for the metric of the holder a gate compares with.
    path.write_text('[policy.default.production]\ngates = ["auc >= production.recall"]\n')
    line = fail("promote", "fraud:v2", "production", cwd=repo.root)
    assert "line 2" in line and "'recall'" in line
    assert state(repo) == before


@pytest.mark.parametrize(
    ("toml", "line", "words"),
    [
        ("[policy.default.prod]\ngates = []\n", 1, "a stage table is one of"),
        ("[policy.default.staging]\ngate = []\n", 2, "unknown key 'gate'"),
        ('[policy.default.staging]\nrequire_stage = "qa"\n', 2, "'qa' is not a stage"),
        ('[policy.default.staging]\ngates = ["auc ~ 0.9"]\n', 2, "cannot read gate 'auc ~ 0.9'"),
        ("[policy.default.staging]\napprovals = -1\n", 2, "approvals must be a whole number"),
        ('[policy.default.staging]\nmovers = "alice"\n', 2, "movers must be a list"),
        ("[policy]\ndefault = 3\n", None, "policy.default must be a table"),
        # The line of the table at fault, not of the same key in a table above it.
        (
            "[policy.default.production]\napprovals = 1\ngates = []\n\n"
            '[policy."fraud".production]\n"approvals" = -1\n',
            6,
            "[policy.fraud.production]: approvals must be a whole number",
        ),
        ("[policy.default.staging]\ngates = []\ngate = 1\n", 3, "unknown key 'gate'"),
        (
            '[policy.default.staging]\ngates = ["x >= 1"]\n[policy.fraud.staging]\n'
            'gates = ["y >= 0.95", "x >= 1", "x >= 1 1"]\n',
            4,
            "cannot read gate 'x >= 1 1'",
        ),
    ],
)
def test_policy_mistakes_are_clear_errors(
    repo: mk.Repo, toml: str, line: int | None, words: str
) -> None:
    candidate(repo, "one", {"auc": 0.9})
    path = policy(repo, toml)
    before = state(repo)
    err = fail("promote", "fraud:v1", "staging", cwd=repo.root)
    assert words in err
    if line is not None:
        assert f"{path}, line {line}:" in err
    assert state(repo) == before


def test_policy_outside_the_repository_and_its_git_work_tree_is_ignored(repo: mk.Repo) -> None:
    # Where the policy file is looked for is a question of folders: SQLite alone.
    stray = repo.root.parent / "modelkeep.toml"
    stray.write_text('[policy.default.staging]\nmovers = ["nobody"]\n')
    candidate(repo, "one")
    repo.promote("fraud:v1", "staging")
    assert stage_of(repo, "fraud:v1") == "staging"


def test_policy_at_the_top_of_the_git_work_tree_applies(tmp_path: Path) -> None:
    top = tmp_path / "project"
    top.mkdir()
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    (top / "modelkeep.toml").write_text('[policy.default.staging]\nmovers = ["nobody"]\n')
    with mk.init(top / "models") as repo:
        candidate(repo, "one")
        with pytest.raises(RegistryRefused, match="only nobody may move"):
            repo.promote("fraud:v1", "staging")
        (repo.root / "modelkeep.toml").write_text("")  # the repository's own file wins
        repo.promote("fraud:v1", "staging")


# -- rollback ----------------------------------------------------------------------------


def _three_in_production(repo: mk.Repo) -> None:
    """fraud v1, v2, v3 entered production in that order; v3 holds it."""
    for i, label in enumerate(("one", "two", "three"), 1):
        candidate(repo, label, {"auc": 0.9 + i / 100})
        to_production(repo, f"fraud:v{i}")


def _store_files(repo: mk.Repo) -> dict[str, int]:
    store = repo.settings.store_dir
    return {
        p.relative_to(store).as_posix(): p.stat().st_size for p in store.rglob("*") if p.is_file()
    }


def test_rollback_puts_back_the_previous_production_version(
    backend_repo: mk.Repo, tmp_path: Path
) -> None:
    repo = backend_repo
    _three_in_production(repo)
    files = _store_files(repo)
    n = len(repo.history("fraud"))

    r = cli("rollback", "fraud", "--reason", "v3 misbehaves", cwd=repo.root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fraud:v2 is back in production; fraud:v3 is archived"
    assert repo.show("fraud@production").ref == "fraud:v2"
    assert stage_of(repo, "fraud:v3") == "archived"
    assert repo.get("fraud@production", tmp_path / "now.bin").read_bytes() == _bytes("two")
    assert _store_files(repo) == files  # instant: no bytes moved
    archived, rolled = repo.history("fraud")[n:]
    assert (archived.action, archived.target, archived.before, archived.after) == (
        "archive", "fraud:v3", {"stage": "production"}, {"stage": "archived"},
    )  # fmt: skip
    assert archived.reason == "rolled back to v2: v3 misbehaves"
    assert (rolled.action, rolled.target, rolled.before, rolled.after, rolled.reason) == (
        "rollback", "fraud:v2", {"stage": "archived"}, {"stage": "production"}, "v3 misbehaves",
    )  # fmt: skip

    # Reversible: rolling back the rollback returns to where it started.
    assert repo.rollback("fraud", reason="false alarm").version.ref == "fraud:v3"
    assert stage_of(repo, "fraud:v2") == "archived"
    assert repo.rollback("fraud", reason="it was not").version.ref == "fraud:v2"
    productions = [v.ref for v in repo.versions("fraud") if v.stage == "production"]
    assert productions == ["fraud:v2"]


def test_rollback_to_a_named_version(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    _three_in_production(repo)
    candidate(repo, "four", {"auc": 0.99})
    repo.promote("fraud:v4", "staging")
    root = repo.root

    r = cli("rollback", "fraud", "--to", "v1", "--reason", "known good", cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "fraud:v1 is back in production; fraud:v3 is archived"
    assert repo.rollback("fraud", to="fraud:v3", reason="back").version.ref == "fraud:v3"
    before = state(repo)
    line = fail("rollback", "fraud", "--to", "v4", "--reason", "x", cwd=root)
    assert "fraud:v4 has never been in production" in line
    assert "has no version 9" in fail("rollback", "fraud", "--to", "v9", "--reason", "x", cwd=root)
    assert "already in production" in fail(
        "rollback", "fraud", "--to", "v3", "--reason", "x", cwd=root
    )
    line = fail("rollback", "fraud", "--to", "other:v1", "--reason", "x", cwd=root)
    assert "--to takes a version of 'fraud'" in line
    for wrong in ("fraud@staging", "b3:" + repo.show("fraud:v1").digest[3:]):
        assert "--to takes a version" in fail(
            "rollback", "fraud", "--to", wrong, "--reason", "x", cwd=root
        )
    with pytest.raises(RegistryRefused, match="never been in production"):
        repo.rollback("fraud", to="v4", reason="x")
    assert state(repo) == before


def test_rollback_needs_an_earlier_production_version_and_a_reason(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    root = repo.root
    candidate(repo, "one")
    candidate(repo, "two")
    before = state(repo)
    assert "no version of 'fraud' is in production" in fail(
        "rollback", "fraud", "--reason", "x", cwd=root
    )
    with pytest.raises(RegistryRefused, match="nothing to roll back"):
        repo.rollback("fraud", reason="x")
    to_production(repo, "fraud:v1")
    repo.promote("fraud:v2", "staging")
    before = state(repo)
    line = fail("rollback", "fraud", "--reason", "x", cwd=root)
    assert "fraud:v1 is the only version of 'fraud' that has been in production" in line
    with pytest.raises(RegistryRefused, match="nothing earlier to roll back to"):
        repo.rollback("fraud", reason="x")
    # --reason is required: a usage error in the CLI, InvalidArgument in Python.
    r = cli("rollback", "fraud", cwd=root)
    assert r.returncode == 2 and "--reason" in r.stderr, r.stderr
    with pytest.raises(InvalidArgument, match="needs --reason"):
        repo.rollback("fraud", reason=" ")
    assert "no artifact named 'nope'" in fail("rollback", "nope", "--reason", "x", cwd=root)
    assert state(repo) == before


def test_rollback_skips_a_deleted_version(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    _three_in_production(repo)
    repo.delete("fraud:v2", reason="leaked training data")
    assert repo.rollback("fraud", reason="v3 bad").version.ref == "fraud:v1"
    with pytest.raises(VersionDeleted):
        repo.rollback("fraud", to="v2", reason="x")


# -- audit log ---------------------------------------------------------------------------


def _every_kind_of_change(repo: mk.Repo) -> None:
    """register, promote, archive, alias set/rm, request, approve, override, rollback, delete."""
    policy(repo, '[policy.default.production]\ngates = ["auc >= 0.9"]\napprovals = 1\n')
    candidate(repo, "one", {"auc": 0.95})
    candidate(repo, "two", {"auc": 0.5})
    candidate(repo, "three", {"auc": 0.5})
    repo.promote("fraud:v1", "staging", reason="try v1")
    with pytest.raises(PromotionRefused):
        repo.promote("fraud:v1", "production", reason="ship v1")  # records the request
    bob = as_user("bob")
    assert (
        cli(
            "approve", "fraud:v1", "production", "--reason", "ok", cwd=repo.root, env=bob
        ).returncode
        == 0
    )
    repo.promote("fraud:v1", "production", reason="ship v1")
    repo.set_alias("fraud@champion", "fraud:v1", reason="best")
    repo.promote("fraud:v2", "staging")
    assert cli("approve", "fraud:v2", "production", cwd=repo.root, env=bob).returncode == 0
    repo.promote("fraud:v2", "production", force=True, reason="urgent")  # override
    repo.rollback("fraud", reason="v2 is worse")
    repo.remove_alias("fraud@champion", reason="no more")
    repo.promote("fraud:v3", "staging")
    repo.archive("fraud:v3", reason="done with it")
    repo.delete("fraud:v3", reason="never used")


ACTIONS = {
    "register", "promote", "archive", "alias-set", "alias-remove", "request", "approve",
    "override", "rollback", "delete",
}  # fmt: skip


def test_every_change_is_a_chained_event(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    start = datetime.now(UTC)
    _every_kind_of_change(repo)
    events = repo.audit()

    assert {e.action for e in events} == ACTIONS
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    prev = "0" * 64
    for e in events:
        assert e.prev_hash == prev
        assert len(e.hash) == 64 and e.hash != prev
        prev = e.hash
        assert e.model == "fraud"
        assert e.actor in ("tester", "bob")
        assert start <= e.at <= datetime.now(UTC)
    assert [e.at for e in events] == sorted(e.at for e in events)
    by_action = {e.action: e for e in events}
    assert by_action["approve"].actor == "bob"
    assert by_action["request"].after == {"for": "production"}
    assert (by_action["delete"].target, by_action["delete"].reason) == ("fraud:v3", "never used")
    assert by_action["delete"].before == {"stage": "archived"}
    assert by_action["alias-remove"].before == {"version": 1}
    report = repo.verify_audit()
    assert report.ok and report.events == len(events) and report.head == events[-1].hash


def test_audit_cli_lists_filters_and_verifies(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    root = repo.root
    candidate(repo, "x", model="other")
    since = tick()
    _every_kind_of_change(repo)
    every = repo.audit()

    doc = jcli("audit", cwd=root)["events"]
    assert doc == [e.to_json() for e in every]
    assert set(doc[0]) == {
        "id", "at", "actor", "action", "model", "target", "before", "after", "reason",
        "prev_hash", "hash",
    }  # fmt: skip
    assert [e["model"] for e in jcli("audit", "other", cwd=root)["events"]] == ["other"]
    recent = jcli("audit", "--since", since.isoformat(), cwd=root)["events"]
    assert recent == doc[1:]
    assert jcli("audit", "fraud", "--since", datetime.now(UTC).isoformat(), cwd=root) == {
        "events": []
    }
    lines = ok("audit", cwd=root).stdout.splitlines()
    assert len(lines) == len(every)
    assert "override" in lines[[e.action for e in every].index("override")]
    assert "(urgent)" in lines[[e.action for e in every].index("override")]

    r = ok("audit", "--verify", cwd=root)
    assert (
        r.stdout.strip()
        == f"ok: {len(every)} events, chain intact, registry state matches; head {every[-1].hash}"
    )
    report = jcli("audit", "--verify", cwd=root)
    assert report == {"ok": True, "events": len(every), "head": every[-1].hash, "problems": []}


@pytest.mark.parametrize("tamper", ["edit", "delete-middle", "delete-last", "swap"])
def test_audit_verify_detects_tampering(backend_repo: mk.Repo, tamper: str) -> None:
    repo = backend_repo
    _every_kind_of_change(repo)
    events = repo.audit()
    last = events[-1].id
    assert last >= 10
    if tamper == "edit":
        sql(repo, "UPDATE events SET reason = 'nothing to see' WHERE id = 5")
        named = ["event 5"]
    elif tamper == "delete-middle":
        sql(repo, "DELETE FROM events WHERE id = 6")
        named = ["6 removed", "event 7"]
    elif tamper == "delete-last":
        sql(repo, f"DELETE FROM events WHERE id = {last}")
        named = [f"event {last}"]
    else:
        sql(
            repo,
            "UPDATE events SET id = -1 WHERE id = 4",
            "UPDATE events SET id = 4 WHERE id = 5",
            "UPDATE events SET id = 5 WHERE id = -1",
        )
        named = ["event 4", "event 5"]

    report = repo.verify_audit()
    assert not report.ok
    r = cli("audit", "--verify", cwd=repo.root)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    for name in named:
        assert name in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"{len(report.problems)} problem(s)")
    doc = cli("audit", "--verify", "--json", cwd=repo.root)
    assert doc.returncode == 1
    assert json.loads(doc.stdout)["ok"] is False
    assert json.loads(doc.stdout)["problems"] == list(report.problems)
    # An untouched event is not blamed.
    assert not any("event 2 " in p or p.startswith("event 2") for p in report.problems)


def test_actor_is_the_setting_else_git_else_the_os_user(
    repo: mk.Repo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Who the actor is comes from settings and Git, not the database (storing it on both
    # databases is test_every_change_is_a_chained_event's): SQLite alone.
    backend_repo = repo
    root = backend_repo.root
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("LOGNAME", "os-person")
    candidate(backend_repo, "one")
    assert backend_repo.audit()[-1].actor == "tester"  # MODELKEEP_USER

    monkeypatch.delenv("MODELKEEP_USER")
    with mk.open(root) as repo:  # not in a Git work tree: the OS user
        repo.set_alias("fraud@a", "fraud:v1")
        assert repo.audit()[-1].actor == "os-person"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "config", "user.name", "Ada Lovelace"], check=True)
    subprocess.run(["git", "-C", str(root), "config", "user.email", "ada@example.com"], check=True)
    with mk.open(root) as repo:
        repo.set_alias("fraud@b", "fraud:v1")
        assert repo.audit()[-1].actor == "Ada Lovelace <ada@example.com>"
    env = {k: v for k, v in os.environ.items() if k != "MODELKEEP_USER"}
    r = subprocess.run(  # the CLI too; `cli` would set MODELKEEP_USER
        [MODELKEEP, "alias", "set", "fraud@c", "fraud:v1"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    with mk.open(root) as repo:
        assert repo.audit()[-1].actor == "Ada Lovelace <ada@example.com>"
    monkeypatch.setenv("MODELKEEP_USER", "carol")
    with mk.open(root) as repo:  # the setting wins over Git
        repo.remove_alias("fraud@a")
        assert repo.audit()[-1].actor == "carol"


# -- deletion ----------------------------------------------------------------------------


def test_a_version_in_staging_or_production_cannot_be_deleted(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    candidate(repo, "one")
    candidate(repo, "two")
    to_production(repo, "fraud:v1")
    repo.promote("fraud:v2", "staging")
    before = state(repo)
    for ref, stage in (("fraud:v1", "production"), ("fraud:v2", "staging")):
        line = fail("delete", ref, "--reason", "x", cwd=repo.root)
        assert f"{ref} is in {stage} and cannot be deleted" in line and "archive it first" in line
        with pytest.raises(RegistryRefused):
            repo.delete(ref, reason="x")
    line = fail("delete", "fraud@production", "--reason", "x", cwd=repo.root)
    assert "fraud:v1 is in production and cannot be deleted" in line
    assert state(repo) == before


def test_delete_leaves_a_tombstone_and_an_event(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    root = repo.root
    candidate(repo, "one")
    candidate(repo, "two")
    candidate(repo, "three")
    to_production(repo, "fraud:v1")
    to_production(repo, "fraud:v2")  # v1 is archived now
    repo.set_alias("fraud@old", "fraud:v1")
    before = state(repo)
    r = cli("delete", "fraud:v1", cwd=root)
    assert r.returncode == 2 and "--reason" in r.stderr  # a usage error
    with pytest.raises(InvalidArgument, match="needs --reason"):
        repo.delete("fraud:v1", reason="")
    assert state(repo) == before
    t_before = tick()

    out = ok("delete", "fraud:v1", "--reason", "trained on bad labels", cwd=root).stdout
    assert "deleted fraud:v1" in out and "modelkeep gc" in out
    repo.delete("fraud:v3", reason="never staged")

    with pytest.raises(VersionDeleted) as info:
        repo.show("fraud:v1")
    line = fail("show", "fraud:v1", cwd=root)
    [deleted] = [v for v in repo.versions("fraud") if v.number == 1]
    assert deleted.deleted_at is not None
    assert f"fraud:v1 was deleted at {deleted.deleted_at.isoformat()}" in line
    assert str(info.value) in line
    listed = jcli("versions", "fraud", cwd=root)["versions"]
    assert [v["number"] for v in listed] == [1, 2, 3]  # the tombstones stay listed
    assert listed[0]["deleted_at"] == deleted.deleted_at.isoformat()
    assert listed[1]["deleted_at"] is None
    assert repo.show("fraud").ref == "fraud:v2"  # latest skips tombstones
    assert repo.models()[0].aliases == {}  # its alias went with it
    with pytest.raises(AliasNotFound):
        repo.show("fraud@old")
    event = next(e for e in repo.history("fraud") if e.action == "delete")
    assert (event.target, event.reason, event.before, event.after, event.actor) == (
        "fraud:v1", "trained on bad labels", {"stage": "archived"}, {"deleted": True}, "tester",
    )  # fmt: skip
    # As it stood before the deletion, it is still there; deleting it again is an error.
    assert repo.show("fraud:v1", at=t_before).stage == "archived"
    assert repo.show("fraud", at=t_before).ref == "fraud:v3"  # the latest then
    assert repo.show("fraud", at=tick()).ref == "fraud:v2"  # tombstones are not the latest
    assert repo.show("fraud@old", at=t_before).ref == "fraud:v1"
    n = len(repo.audit())
    assert "was deleted" in fail("delete", "fraud:v1", "--reason", "again", cwd=root)
    assert len(repo.audit()) == n
    assert repo.verify_audit().ok


def test_gc_frees_a_deleted_versions_bytes_only_when_nothing_else_needs_them(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    shared, alone = _bytes("shared", 2 << 20), _bytes("alone", 2 << 20)
    src = produce(repo, shared, {"auc": 0.9})
    repo.register(src.ref, "fraud")  # fraud:v1: the same bytes as run-artifact:v1
    repo.register(produce(repo, alone, {"auc": 0.9}).ref, "fraud")  # fraud:v2
    (repo.root / "work").rename(repo.root / "gone")  # the sources are not needed any more
    repo.promote("fraud:v1", "staging")
    repo.archive("fraud:v1")

    # run-artifact:v1 is deleted, but registered fraud:v1 holds the same content.
    repo.delete(src.ref, reason="cleanup")
    assert repo.gc().bytes_freed == 0
    with repo.open("fraud:v1") as f:
        assert f.read() == shared
    # Deleting fraud:v1 too leaves the content unreferenced: gc frees it.
    repo.delete("fraud:v1", reason="cleanup")
    unique = repo.du().unique_bytes
    report = repo.gc()
    assert report.bytes_freed >= len(shared) // 2  # compressed size is what is freed
    assert repo.du().unique_bytes == unique - len(shared)
    with repo.open("fraud:v2") as f:
        assert f.read() == alone
    assert repo.fsck().ok


# -- bad input ---------------------------------------------------------------------------


def test_unknown_model_version_or_stage(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    root = repo.root
    policy(repo, "[policy.default.staging]\napprovals = 1\n")
    candidate(repo, "one", {"auc": 0.9})
    before = state(repo)

    for args in (
        ("promote", "nope:v1", "staging"),
        ("archive", "nope:v1"),
        ("approve", "nope:v1", "staging"),
        ("alias", "set", "nope@best", "nope:v1"),
        ("alias", "rm", "nope@best"),
        ("rollback", "nope", "--reason", "x"),
        ("delete", "nope:v1", "--reason", "x"),
        ("history", "nope"),
        ("audit", "nope"),
        ("show", "nope@production"),
    ):
        assert "no artifact named 'nope'" in fail(*args, cwd=root), args
    for args in (
        ("promote", "fraud:v9", "staging"),
        ("archive", "fraud:v9"),
        ("approve", "fraud:v9", "staging"),
        ("alias", "set", "fraud@best", "fraud:v9"),
        ("delete", "fraud:v9", "--reason", "x"),
    ):
        assert "'fraud' has no version 9" in fail(*args, cwd=root), args
    for args in (("promote", "fraud:v1", "prod"), ("approve", "fraud:v1", "none")):
        r = cli(*args, cwd=root)
        assert r.returncode == 2 and "Invalid value" in r.stderr, r.stderr
    assert state(repo) == before

    with pytest.raises(ArtifactNotFound):
        repo.promote("nope:v1", "staging")
    with pytest.raises(VersionNotFound):
        repo.promote("fraud:v9", "staging")
    for stage in ("prod", "none", ""):
        with pytest.raises(InvalidArgument, match="unknown stage"):
            repo.promote("fraud:v1", stage)
        with pytest.raises(InvalidArgument, match="unknown stage"):
            repo.approve("fraud:v1", stage)
    assert state(repo) == before


def test_promoting_an_unregistered_version_is_refused_and_records_nothing(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    policy(repo, "[policy.default.staging]\napprovals = 1\n")
    candidate(repo, "one", {"auc": 0.9})
    produce(repo, _bytes("plain"), name="fraud")  # fraud:v2, added but never registered
    before = state(repo)
    for args in (("promote", "fraud:v2", "staging"), ("archive", "fraud:v2")):
        line = fail(*args, cwd=repo.root)
        assert "fraud:v2 is not registered" in line and "modelkeep register fraud:v2" in line
    with pytest.raises(RegistryRefused, match="not registered"):
        repo.promote("fraud:v2", "staging")
    with pytest.raises(RegistryRefused, match="not registered"):
        repo.approve("fraud:v2", "staging")
    assert state(repo) == before


def test_archived_straight_to_production_is_refused_when_policy_requires_staging(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    policy(repo, '[policy.default.production]\nrequire_stage = "staging"\n')
    candidate(repo, "one", {"auc": 0.9})
    candidate(repo, "two", {"auc": 0.9})
    to_production(repo, "fraud:v1")
    to_production(repo, "fraud:v2")
    assert stage_of(repo, "fraud:v1") == "archived"
    before = state(repo)
    line = fail("promote", "fraud:v1", "production", "--reason", "back", cwd=repo.root)
    assert line == (
        f"{PREFIX}fraud:v1 cannot move to production: production takes versions from staging "
        "only, and fraud:v1 is in archived"
    )
    with pytest.raises(PromotionRefused):
        repo.promote("fraud:v1", "production", force=True, reason="x")
    assert "already in production" in fail("promote", "fraud:v2", "production", cwd=repo.root)
    assert state(repo) == before
    repo.promote("fraud:v1", "staging")  # the way round
    repo.promote("fraud:v1", "production")
    assert repo.show("fraud@production").ref == "fraud:v1"


# -- a registered model's description, tags and name from the CLI -----------------------


def test_model_describe_tag_untag_rename_and_show(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    ok("init", str(proj), cwd=tmp_path)
    (proj / "w.bin").write_bytes(b"weights")
    ok("add", "w.bin", "--name", "fraud", "--type", "model", cwd=proj)
    ok("register", "fraud:v1", "--as", "fraud", cwd=proj)
    ok("alias", "set", "fraud@champion", "fraud:v1", cwd=proj)
    ok("model", "describe", "fraud", "Scores card payments", "--reason", "docs", cwd=proj)
    ok("model", "tag", "fraud", "team", "risk", cwd=proj)
    ok("model", "tag", "fraud", "tier", "1", cwd=proj)
    ok("model", "untag", "fraud", "tier", cwd=proj)
    doc = jcli("model", "show", "fraud", cwd=proj)
    assert doc["description"] == "Scores card payments"
    assert doc["tags"] == {"team": "risk"}
    assert doc["aliases"] == {"champion": 1}
    assert [v["number"] for v in doc["versions"]] == [1]
    text = ok("model", "show", "fraud", cwd=proj).stdout
    assert "description: Scores card payments" in text and "tag team = risk" in text
    assert jcli("model", "rename", "fraud", "payment-fraud", cwd=proj) == {
        "model": "payment-fraud",
        "was": "fraud",
    }
    renamed = jcli("model", "show", "payment-fraud", cwd=proj)
    assert renamed["tags"] == {"team": "risk"} and renamed["aliases"] == {"champion": 1}
    actions = [e["action"] for e in jcli("history", "payment-fraud", cwd=proj)["events"]]
    assert actions[-4:] == ["tag-set", "tag-set", "tag-remove", "rename"]
    assert "describe" in actions
    assert jcli("audit", "--verify", cwd=proj)["ok"]


def test_model_commands_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    ok("init", str(proj), cwd=tmp_path)
    (proj / "w.bin").write_bytes(b"weights")
    ok("add", "w.bin", "--name", "fraud", "--type", "model", cwd=proj)
    ok("add", "w.bin", "--name", "plain", cwd=proj)
    ok("register", "fraud:v1", "--as", "fraud", cwd=proj)
    ok("register", "fraud:v1", "--as", "other", cwd=proj)
    cases = [
        (("model", "show", "nope"), "nope"),
        (("model", "describe", "plain", "x"), "plain"),  # an artifact, not a registered model
        (("model", "describe", "fraud", "x" * 70_000), "description is at most"),
        (("model", "tag", "fraud", "bad\x01key", "v"), "tag key"),
        (("model", "tag", "fraud", "k", "v" * 6000), "a value is at most"),
        (("model", "untag", "fraud", "absent"), "absent"),
        (("model", "rename", "fraud", "other"), "other"),  # taken
        (("model", "rename", "fraud", "../etc"), "name"),
    ]
    for args, named in cases:
        line = one_error_line(cli(*args, cwd=proj))
        assert named in line, (args, line)
    assert jcli("model", "show", "fraud", cwd=proj)["tags"] == {}  # nothing half-done
