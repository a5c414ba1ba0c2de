"""One CLI grammar (docs/cli.md): global options anywhere, --json on every command with
errors as JSON too, one meaning per short flag, and the old spellings still accepted."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

import modelkeep as mk
from modelkeep.cli.common import ALIASES, RENAMED_SHORT
from modelkeep.cli.main import cli as root_command
from modelkeep.cli.reference import commands
from tests.conftest import cli, ok

LEAVES = [(path, c) for path, c in commands(root_command) if not isinstance(c, click.Group)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """fraud:v1 registered as fraud-model:v1, made through the library (the tests are about
    the grammar of the commands they run next, not about init, add and register)."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "w.bin").write_bytes(b"weights" * 1000)
    with mk.init(root) as repo:
        repo.add(root / "w.bin", "fraud", type="model")
        repo.register("fraud:v1", "fraud-model")
    return root


def test_every_command_takes_json_and_has_help() -> None:
    for path, command in LEAVES:
        assert any(p.name == "as_json" for p in command.params), f"{path} has no --json"
        assert command.help and command.help.strip(), f"{path} has no help text"


def test_each_short_flag_means_one_thing_everywhere() -> None:
    meaning: dict[str, set[str]] = {}
    for _path, command in LEAVES:
        for p in command.params:
            if isinstance(p, click.Option):
                longs = [o for o in p.opts if o.startswith("--")]
                for short in (o for o in p.opts if len(o) == 2 and o != "--"):
                    meaning.setdefault(short, set()).update(longs)
    clashes = {short: longs for short, longs in meaning.items() if len(longs) > 1}
    assert not clashes
    assert meaning["-m"] == {"--message"} and meaning["-o"] == {"--output"}
    assert meaning["-f"] == {"--force"}
    for short, paths in RENAMED_SHORT.items():  # renamed ones are gone from those commands
        for path in paths:
            command = dict(LEAVES)[path]
            assert all(short not in p.opts for p in command.params), (short, path)


def test_global_options_before_or_after_the_command(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = ok("--repo", str(project), "--json", "ls", cwd=elsewhere).stdout
    after = ok("ls", "--repo", str(project), "--json", cwd=elsewhere).stdout
    mixed = ok("--json", "ls", f"--repo={project}", cwd=elsewhere).stdout
    assert json.loads(before) == json.loads(after) == json.loads(mixed)
    assert json.loads(before)["artifacts"][0]["name"] == "fraud"
    # nested commands too, and --quiet anywhere
    doc = json.loads(ok("alias", "set", "fraud-model@best", "fraud-model:v1", "--json",
                        "--repo", str(project), "-q", cwd=elsewhere).stdout)  # fmt: skip
    assert doc["alias"] == "fraud-model@best"
    assert "b3:" in ok("-q", "versions", "fraud", "--repo", str(project), cwd=elsewhere).stdout


def test_run_passes_options_after_its_command_on(project: Path) -> None:
    """`--json` after `--` (or after the command's first word) belongs to the command."""
    r = cli("run", "--", "python", "-c", "import sys; print(sys.argv[1:])", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "['--json']" in r.stdout
    r = cli("run", "--json", "--", "python", "-c", "print('hi')", cwd=project)
    assert r.returncode == 0, r.stderr
    out, _, doc = r.stdout.partition("\n")
    assert out == "hi" and json.loads(doc)["exit_code"] == 0


@pytest.mark.parametrize("where", ["before", "after"])
def test_json_errors_are_one_object_on_stderr_with_the_same_exit_code(
    project: Path, where: str
) -> None:
    args = ["--json", "show", "nope:v1"] if where == "before" else ["show", "nope:v1", "--json"]
    r = cli(*args, cwd=project)
    assert r.returncode == 1 and r.stdout == ""
    doc = json.loads(r.stderr)
    assert doc["error"] == "ArtifactNotFound"
    assert doc["name"] == "nope" and "no artifact named 'nope'" in doc["message"]
    plain = cli("show", "nope:v1", cwd=project)
    assert plain.returncode == 1 and plain.stderr.startswith("modelkeep: error: no artifact")

    usage = cli("ls", "--bogus", "--json", cwd=project)
    assert usage.returncode == 2
    doc = json.loads(usage.stderr)
    assert doc["error"] == "NoSuchOption" and doc["option_name"] == "--bogus"


def test_writes_print_json(project: Path) -> None:
    doc = json.loads(
        ok("archive", "fraud-model:v1", "--reason", "old", "--json", cwd=project).stdout
    )
    assert doc["ref"] == "fraud-model:v1" and doc["stage"] == "archived"
    doc = json.loads(
        ok("alias", "set", "fraud-model@x", "fraud-model:v1", "--json", cwd=project).stdout
    )
    assert doc["version"]["ref"] == "fraud-model:v1"
    assert json.loads(ok("alias", "remove", "fraud-model@x", "--json", cwd=project).stdout) == {
        "removed": "fraud-model@x"
    }
    doc = json.loads(
        ok("delete", "fraud-model:v1", "--reason", "leak", "--json", cwd=project).stdout
    )
    assert doc["ref"] == "fraud-model:v1"


def test_old_spellings_still_work_with_a_warning(project: Path) -> None:
    r = cli("alias", "set", "fraud-model@y", "fraud-model:v1", "-r", "why", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "`alias set -r` is deprecated; write --reason" in r.stderr
    history = json.loads(ok("history", "fraud-model", "--json", cwd=project).stdout)
    assert history["events"][-1]["reason"] == "why"
    r = cli("alias", "rm", "fraud-model@y", cwd=project)  # `rm` stays an alias of `remove`
    assert r.returncode == 0 and "removed fraud-model@y" in r.stdout
    assert ALIASES["rm"] == "remove"
    r = cli("gc", "-n", cwd=project)
    assert r.returncode == 0 and "would free" in r.stdout
    assert "`gc -n` is deprecated; write --dry-run" in r.stderr
    r = cli("lineage", "fraud:v1", "-f", "json", cwd=project)
    assert r.returncode == 0 and json.loads(r.stdout)
    assert "`lineage -f` is deprecated; write --format" in r.stderr


def test_every_command_has_an_example() -> None:
    from modelkeep.cli.reference import EXAMPLES

    for path, command in LEAVES:
        assert path in EXAMPLES, f"{path} has no example in modelkeep/cli/reference.py"
        assert EXAMPLES[path].startswith(f"modelkeep {path}")
        assert command.epilog == f"Example: {EXAMPLES[path]}"


def test_docs_cli_md_is_generated_from_the_commands() -> None:
    from modelkeep.cli.reference import render

    docs = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    assert docs.read_text(encoding="utf-8") == render(root_command), (
        "docs/cli.md is stale: run `python -m modelkeep.cli.docs > docs/cli.md`"
    )


def test_runs_compare_takes_version_refs_and_lives_in_the_library(tmp_path: Path) -> None:
    import modelkeep as mk

    with mk.init(tmp_path / "p") as repo:
        for lr, auc in ((0.1, 0.9), (0.2, 0.8)):
            with mk.start_run(name="train", repo=repo, params={"lr": lr}, capture_code=False) as r:
                r.log_metric("auc", auc)
                (tmp_path / "m.bin").write_bytes(str(lr).encode())
                repo.add(tmp_path / "m.bin", "m")
        first = repo.show("m:v1").run_id
        assert first is not None
        c = repo.compare_runs(["m:v1", "m:v2"])
        assert c.runs[0].id == first
        assert c.rows == (("params.lr", (0.1, 0.2)), ("metrics.auc", (0.9, 0.8)))
        assert c.differs(c.rows[0][1])
        mixed = json.loads(ok("runs", "compare", first[:8], "m:v2", "--json", cwd=repo.root).stdout)
        assert mixed == c.to_json()
        bad = cli("runs", "compare", "m:v9", first, cwd=repo.root)
        assert bad.returncode == 1 and "has no version 9" in bad.stderr


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI's entry point, run in this process (the matrix below runs it ~50 times)."""
    from modelkeep.cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_ref_taking_command_accepts_every_ref_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """NAME, NAME:vN, NAME:latest, NAME@stage, NAME@alias and b3:PREFIX name the same
    version in every command that takes a ref; `--at` too where a command offers it."""
    import modelkeep as mk

    monkeypatch.setenv("MODELKEEP_USER", "tester")
    root = tmp_path / "proj"
    with mk.init(root) as repo:
        (root / "w.bin").write_bytes(b"weights" * 1000)
        v = repo.log_model(root / "w.bin", "fraud", format="files", register=True)
        repo.promote(v, "production")
        repo.set_alias("fraud@champion", v)
        remote = tmp_path / "remote"
        repo.add_remote("nas", str(remote), default=True)
    forms = [
        "fraud",
        "fraud:v1",
        "fraud:latest",
        "fraud@production",
        "fraud@champion",
        v.digest[:15],
    ]
    at = ["--at", "2999-01-01T00:00:00Z"]
    reads: list[list[str]] = [
        ["show", "{ref}"],
        ["show", "{ref}", *at],
        ["get", "{ref}", "-o", str(tmp_path / "out" / "{n}.bin"), "--force"],
        ["get", "{ref}", "-o", str(tmp_path / "at" / "{n}.bin"), *at],
        ["lineage", "{ref}"],
        ["card", "{ref}"],
        ["diff", "{ref}", "fraud:v1"],
        ["push", "{ref}"],
        ["pull", "{ref}"],
    ]
    for template in reads:
        for n, ref in enumerate(forms):
            if "--at" in template and ref.startswith("b3:"):
                continue  # a content id names the same bytes at any time: refused, on purpose
            args = [a.replace("{ref}", ref).replace("{n}", str(n)) for a in template]
            code, out, err = _in_process(capsys, "--repo", str(root), "--json", *args)
            assert code == 0, (args, err)
            assert "fraud" in out or out.strip() == "", (args, out)
    code, _out, err = _in_process(capsys, "--repo", str(root), "show", v.digest[:15], *at)
    assert code == 1 and "content id names the same bytes at any time" in err
    # The commands that change the registry resolve refs the same way.
    writes = [
        ["approve", "fraud@champion", "archived", "--reason", "ok"],
        ["alias", "set", "fraud@best", v.digest[:15], "--reason", "r"],
        ["archive", "fraud@production", "--reason", "retired"],
        ["register", "fraud@best", "--as", "other", "--reason", "copy"],
        ["promote", "other", "staging", "--reason", "try"],
        ["delete", "fraud:latest", "--reason", "gone"],
    ]
    for args in writes:
        code, _out, err = _in_process(capsys, "--repo", str(root), "--json", *args)
        assert code == 0, (args, err)
    with mk.open(root) as repo:
        assert repo.show("other@staging").digest == v.digest
        assert [e.action for e in repo.history("fraud")][-2:] == ["archive", "delete"]
