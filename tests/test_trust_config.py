"""Secrets, audit and configuration files, attacked as a user or an intruder would:
credentials in Git and remote URLs, registry rows edited behind the event log, hand-edited
config.toml, remotes.toml and modelkeep.toml, and names that read as command-line options.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import modelkeep as mk
from modelkeep.redact import has_credentials, mask_url, strip_credentials
from tests.conftest import cli, git, isolate_git, jcli, ok, write
from tests.test_registry import _every_kind_of_change, candidate, sql, to_production

PREFIX = "modelkeep: error: "
SECRET = "Sup3rS3cretT0ken"


def error_line(r: subprocess.CompletedProcess[str]) -> str:
    """A refused command: exit 1, exactly one line on stderr, no traceback."""
    assert r.returncode == 1, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    return lines[0]


def database_bytes(root: Path) -> bytes:
    """Every byte of the SQLite database, its write-ahead log included."""
    control = root / ".modelkeep"
    return b"".join(p.read_bytes() for p in sorted(control.glob("meta.sqlite*")))


# -- finding 11: no secrets stored or printed ---------------------------------------------


@pytest.mark.parametrize(
    ("remote", "recorded"),
    [
        (f"ssh://deploy:{SECRET}@git.example.com:2222/team/proj.git",
         "ssh://git.example.com:2222/team/proj.git"),
        (f"https://alice:{SECRET}@example.com/team/proj.git", "https://example.com/team/proj.git"),
        (f"https://{SECRET}@github.com/team/proj.git", "https://github.com/team/proj.git"),
        (f"git://bob:{SECRET}@example.com/proj.git", "git://example.com/proj.git"),
        (f"ftps://bob:{SECRET}@example.com/proj.git?x=1", "ftps://example.com/proj.git"),
        (f"bob:{SECRET}@example.com:team/proj.git", "example.com:team/proj.git"),
        ("git@github.com:team/proj.git", "git@github.com:team/proj.git"),
    ],
)  # fmt: skip
def test_modelkeep_run_never_records_git_remote_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, remote: str, recorded: str
) -> None:
    isolate_git(tmp_path, monkeypatch)
    monkeypatch.delenv("MODELKEEP_RUN_ID", raising=False)
    monkeypatch.delenv("MODELKEEP_REPO", raising=False)
    top = tmp_path / "proj"
    top.mkdir()
    git(top, "init", "-q", "-b", "main")
    git(top, "remote", "add", "origin", remote)
    mk.init(top).close()
    write(top / "train.py", b"print('trained')\n")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "start")

    ok("run", "--name", "train", "--", sys.executable, "train.py", cwd=top)
    (run,) = jcli("runs", cwd=top)["runs"]
    shown = ok("runs", "show", run["id"], "--json", cwd=top).stdout
    assert json.loads(shown)["code"]["git"]["remote"] == recorded
    assert SECRET not in shown
    assert SECRET not in ok("runs", "show", run["id"], cwd=top).stdout
    assert SECRET.encode() not in database_bytes(top)


S3_WHERE = "AWS_SECRET_ACCESS_KEY"


@pytest.mark.parametrize(
    ("url", "options", "where"),
    [
        (f"s3://AKIAEXAMPLE:{SECRET}@my-bucket/models", [], "environment"),
        (f"gs://user:{SECRET}@my-bucket/models", [], "environment"),
        (f"az://acct:{SECRET}@container/models", [], "environment"),
        (f"file://user:{SECRET}@localhost/tmp/remote", [], "environment"),
        (f"user:{SECRET}@host:/srv/remote", [], "environment"),
        ("s3://my-bucket/models", [f"endpoint_url=http://minio:{SECRET}@127.0.0.1:9000"], S3_WHERE),
        ("s3://my-bucket/models", [f"secret_access_key={SECRET}"], S3_WHERE),
        ("s3://my-bucket/models", [f"key={SECRET}"], S3_WHERE),
        ("s3://my-bucket/models", [f"token={SECRET}"], S3_WHERE),
        ("gs://my-bucket/models", [f"credentials={SECRET}"], "GOOGLE_APPLICATION_CREDENTIALS"),
        ("az://container/models", [f"account_key={SECRET}"], "AZURE_STORAGE_"),
        ("az://container/models", [f"sas_token={SECRET}"], "AZURE_STORAGE_"),
        ("az://container/models", [f"connection_string={SECRET}"], "AZURE_STORAGE_"),
        ("az://container/models", [f"password={SECRET}"], "AZURE_STORAGE_"),
    ],
)  # fmt: skip
def test_remote_add_refuses_credentials_without_printing_them(
    repo: mk.Repo, url: str, options: list[str], where: str
) -> None:
    args = [a for o in options for a in ("--option", o)]
    r = cli("remote", "add", "origin", url, *args, cwd=repo.root)
    line = error_line(r)
    assert SECRET not in line and SECRET not in r.stdout
    assert "credential" in line and where in line, line
    remotes = repo.root / ".modelkeep" / "remotes.toml"
    assert not remotes.exists() or SECRET not in remotes.read_text()
    assert jcli("remote", "list", cwd=repo.root) == {"remotes": []}


def test_remote_list_masks_credentials_a_hand_edited_file_holds(repo: mk.Repo) -> None:
    (repo.root / ".modelkeep" / "remotes.toml").write_text(
        "[remote.old]\n"
        f'url = "s3://AKIAEXAMPLE:{SECRET}@my-bucket/models"\n'
        "default = true\n"
        f'options = {{ endpoint_url = "http://minio:{SECRET}@127.0.0.1:9000", '
        f'secret_access_key = "{SECRET}", region = "eu-west-1" }}\n',
        "utf-8",
    )
    table = ok("remote", "list", cwd=repo.root).stdout
    assert SECRET not in table
    assert "s3://***@my-bucket/models" in table and "region=eu-west-1" in table
    doc = jcli("remote", "list", cwd=repo.root)
    assert SECRET not in json.dumps(doc)
    assert doc["remotes"][0]["options"] == {
        "endpoint_url": "http://***@127.0.0.1:9000",
        "region": "eu-west-1",
        "secret_access_key": "***",
    }
    # Using it, or adding a remote of the same name, says what is wrong without the secret.
    write(repo.root / "f.bin", b"data")
    ok("add", "f.bin", "--name", "data", cwd=repo.root)
    for args in (("push",), ("remote", "add", "old", "/tmp/elsewhere")):
        r = cli(*args, cwd=repo.root)
        assert SECRET not in error_line(r) and SECRET not in r.stdout
    gone = ok("remote", "remove", "old", cwd=repo.root).stdout
    assert SECRET not in gone


def test_url_helpers_strip_and_mask_every_scheme() -> None:
    assert strip_credentials("ssh://u:p@h:22/x") == "ssh://h:22/x"
    assert strip_credentials("https://[::1]:8443/x.git") == "https://[::1]:8443/x.git"
    assert strip_credentials("git@github.com:a/b.git") == "git@github.com:a/b.git"
    assert strip_credentials("../sibling") == "../sibling"
    assert mask_url("http://u:p@h:9000/x?sig=abc#f") == "http://***@h:9000/x?***#f"
    assert mask_url("git@github.com:a/b.git") == "git@github.com:a/b.git"
    assert not has_credentials("/data/user@example/models")
    assert has_credentials("HTTPS://tok@host/x")


# -- finding 12a: audit --verify replays the log against the rows ---------------------------


def _history(repo: mk.Repo) -> None:
    """v1 in production (alias champion), v2 in staging, v3 registered only."""
    for label in ("one", "two", "three"):
        candidate(repo, label)
    to_production(repo, "fraud:v1")
    repo.promote("fraud:v2", "staging", reason="try it")
    repo.set_alias("fraud@champion", "fraud:v1", reason="best")


def _version_id(number: int) -> str:
    return (
        "(SELECT v.id FROM versions v JOIN artifacts a ON a.id = v.artifact_id "
        f"WHERE a.name = 'fraud' AND v.number = {number})"
    )


TAMPERING = {
    # Put v2 in production by hand (the index allows one: v1 is moved out first).
    "stage": (
        [
            f"UPDATE versions SET stage = 'archived' WHERE id = {_version_id(1)}",
            f"UPDATE versions SET stage = 'production' WHERE id = {_version_id(2)}",
        ],
        [
            "fraud:v1 stage: the events say 'production', the database says 'archived'",
            "fraud:v2 stage: the events say 'staging', the database says 'production'",
        ],
    ),
    "alias-moved": (
        [f"UPDATE aliases SET version_id = {_version_id(3)}"],
        ["fraud@champion version: the events say v1, the database says v3"],
    ),
    "alias-added": (
        [
            "INSERT INTO aliases (artifact_id, alias, version_id) "
            f"SELECT artifact_id, 'canary', id FROM versions WHERE id = {_version_id(3)}"
        ],
        ["fraud@canary version: the events say no such alias, the database says v3"],
    ),
    "alias-removed": (
        ["DELETE FROM aliases"],
        ["fraud@champion version: the events say v1, the database says no such alias"],
    ),
    "unregistered-promotable": (
        # An added version, never registered, made promotable by hand.
        [
            "UPDATE versions SET registered = TRUE, stage = 'staging' WHERE id = "
            "(SELECT v.id FROM versions v JOIN artifacts a ON a.id = v.artifact_id "
            "WHERE a.name = 'run-artifact' AND v.number = 1)"
        ],
        [
            "run-artifact:v1 stage: the events say 'none', the database says 'staging'",
            "run-artifact:v1 registered: the events say no, the database says yes",
        ],
    ),
    "staging-holder": (
        # Both in staging; v3 is made to look older than v2, so @staging resolves to v2.
        [
            f"UPDATE versions SET stage = 'staging' WHERE id = {_version_id(3)}",
            f"UPDATE versions SET stage_changed_at = "
            f"(SELECT created_at FROM artifacts WHERE name = 'fraud') WHERE id = {_version_id(3)}",
        ],
        ["fraud:v3 stage: the events say 'none', the database says 'staging'"],
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
def test_audit_verify_names_registry_rows_edited_behind_the_log(
    backend_repo: mk.Repo, tamper: str
) -> None:
    repo = backend_repo
    _history(repo)
    assert ok("audit", "--verify", cwd=repo.root).stdout.startswith("ok: ")
    statements, named = TAMPERING[tamper]
    sql(repo, *statements)

    r = cli("audit", "--verify", cwd=repo.root)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    for line in named:
        assert f"broken: {line}" in r.stderr.splitlines(), r.stderr
    doc = json.loads(cli("audit", "--verify", "--json", cwd=repo.root).stdout)
    assert doc["ok"] is False and doc["problems"] == named
    assert not any(p.startswith("event") for p in doc["problems"])  # the chain is intact


def test_audit_verify_names_a_staging_holder_moved_by_its_timestamp(
    backend_repo: mk.Repo,
) -> None:
    repo = backend_repo
    _history(repo)
    repo.promote("fraud:v3", "staging", reason="newer")
    assert repo.show("fraud@staging").number == 3
    sql(
        repo,
        "UPDATE versions SET stage_changed_at = (SELECT created_at FROM artifacts "
        f"WHERE name = 'fraud') WHERE id = {_version_id(3)}",
    )
    assert repo.show("fraud@staging").number == 2  # what the edit does to deployments
    r = cli("audit", "--verify", cwd=repo.root)
    assert r.returncode == 1
    assert (
        "broken: fraud@staging holder (stage_changed_at): the events say v3, the database "
        "says v2" in r.stderr.splitlines()
    ), r.stderr


def test_audit_verify_passes_after_every_kind_of_change(backend_repo: mk.Repo) -> None:
    repo = backend_repo
    _every_kind_of_change(repo)  # promote, override, rollback, alias set/rm, archive, delete
    candidate(repo, "four")
    candidate(repo, "five")
    repo.promote("fraud:v4", "staging")
    repo.promote("fraud:v5", "staging")  # two in staging: the newer holds it
    repo.set_alias("fraud@canary", "fraud:v4")
    repo.set_alias("fraud@canary", "fraud:v5")
    repo.archive("fraud:v4", reason="superseded")
    repo.delete("fraud:v4", reason="gone")
    r = ok("audit", "--verify", cwd=repo.root)
    assert r.stdout.startswith("ok: ") and r.stderr == ""
    assert jcli("audit", "--verify", cwd=repo.root)["problems"] == []


def test_an_event_that_cannot_be_replayed_is_one_line_not_a_traceback(repo: mk.Repo) -> None:
    _history(repo)
    sql(repo, "UPDATE events SET after_json = '[1]' WHERE action = 'alias-set'")
    r = cli("audit", "--verify", cwd=repo.root)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert any("cannot be replayed" in line for line in r.stderr.splitlines()), r.stderr
    line = error_line(cli("show", "fraud@champion", "--at", "2100-01-01", cwd=repo.root))
    assert "cannot be replayed" in line and "audit --verify" in line


# -- finding 12b: configuration files -------------------------------------------------------


def _policy_target(root: Path) -> tuple[str, ...]:
    write(root / "m.bin", b"model bytes")
    ok("add", "m.bin", "--name", "m", cwd=root)
    ok("register", "m:v1", "--as", "fraud", cwd=root)
    return ("promote", "fraud:v1", "staging")


# file -> (where it lives, the command that reads it)
FILES = {
    "config": (".modelkeep/config.toml", None),
    "remotes": (".modelkeep/remotes.toml", ("remote", "list")),
    "policy": ("modelkeep.toml", "promote"),
}
BAD = {
    ("config", "utf8"): (b'# settings\ntrust_pickle = "\xff\xfe"\n', 2, None),
    ("config", "toml"): (b"# settings\ntrust_pickle = [\n", 2, "not valid TOML"),
    ("config", "type"): (b"database_url = 5\n", 1, "database_url"),
    ("config", "bool"): (b'\ntrust_pickle = "false"\n', 2, "trust_pickle"),
    ("remotes", "utf8"): (b'[remote.a]\nurl = "/srv/\xc3("\n', 2, None),
    ("remotes", "toml"): (b"[remote.a\n", 1, "not valid TOML"),
    ("remotes", "type"): (b"remote = 5\n", 1, "remote"),
    ("remotes", "bool"): (b'[remote.a]\nurl = "/srv/r"\ndefault = "false"\n', 3, "default"),
    ("policy", "utf8"): (b"[policy.default.staging]\n# \xff\n", 2, None),
    ("policy", "toml"): (b"[policy.default.staging]\ngates = [\n", 2, "not valid TOML"),
    ("policy", "type"): (b'[policy.default.staging]\napprovals = "1"\n', 2, "approvals"),
    ("policy", "bool"): (b"[policy.default.staging]\napprovals = true\n", 2, "approvals"),
}


@pytest.mark.parametrize(("kind", "defect"), sorted(BAD))
def test_a_bad_configuration_file_is_one_line_naming_file_and_line(
    repo: mk.Repo, kind: str, defect: str
) -> None:
    root = repo.root
    rel, command = FILES[kind]
    args = _policy_target(root) if command == "promote" else (command or ("ls",))
    data, line, names = BAD[(kind, defect)]
    path = write(root / rel, data)

    found = error_line(cli(*args, cwd=root))
    assert f"{path}, line {line}: " in found, found
    if defect == "utf8":
        assert "not UTF-8" in found
    if names is not None:
        assert names in found
    if defect == "bool":
        assert "true or false" in found or "whole number" in found
    if kind == "policy":
        if defect in ("utf8", "toml"):
            # modelkeep.toml also holds the project's remotes: a file that cannot be read
            # stops every command, as a broken Git config does; nothing was changed
            assert error_line(cli("show", "fraud:v1", cwd=root)) == found
            path.unlink()
        assert jcli("show", "fraud:v1", cwd=root)["stage"] == "none"


def test_remote_default_must_be_a_boolean_not_a_string(repo: mk.Repo) -> None:
    """`default = "false"` used to count as true: a push went to the wrong place."""
    path = repo.root / ".modelkeep" / "remotes.toml"
    path.write_text('[remote.a]\nurl = "/srv/a"\ndefault = "false"\n', "utf-8")
    with pytest.raises(mk.ModelkeepError, match=r"remotes\.toml, line 3: .*default"):
        mk.open(repo.root)
    path.write_text('[remote.a]\nurl = "/srv/a"\ndefault = false\n', "utf-8")
    with mk.open(repo.root) as again:
        assert again.settings.default_remote is None


# -- finding 12c: names that read as options ------------------------------------------------


@pytest.mark.parametrize("name", ["-rf", "--force", "team/-x", "team/--", "a/b/-c"])
def test_names_starting_with_a_dash_are_refused(repo: mk.Repo, name: str) -> None:
    root = repo.root
    write(root / "f.bin", b"bytes")
    line = error_line(cli("add", "f.bin", f"--name={name}", cwd=root))
    assert "starts with '-'" in line
    ok("add", "f.bin", "--name", "ok-name", cwd=root)
    line = error_line(cli("register", "ok-name:v1", f"--as={name}", cwd=root))
    assert "starts with '-'" in line
    assert [a["name"] for a in jcli("ls", cwd=root)["artifacts"]] == ["ok-name"]
