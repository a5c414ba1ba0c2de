"""`modelkeep serve` with real processes: the CLI and the Python API as its clients, the
permission matrix, who the audit log names, and what hostile requests get."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import modelkeep as mk
from modelkeep import api
from modelkeep.errors import ArtifactNotFound, Forbidden, InsecureServer, InvalidRef
from modelkeep.meta.accounts import ROLES
from tests import mkserve
from tests.conftest import MODELKEEP, git, git_work_tree, isolate_git

ROLE_USERS = {
    "nobody": None,
    "vic": "viewer",
    "eddie": "editor",
    "maya": "maintainer",
    "ada": "admin",
}


def mk_cli(
    env: dict[str, str], *args: str, cwd: Path, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [MODELKEEP, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if ok:
        assert r.returncode == 0, f"modelkeep {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    base = tmp_path_factory.mktemp("served")
    s = mkserve.start(base / "store")
    mkserve.with_accounts(s, {"alice": "admin", "bob": "maintainer", **ROLE_USERS})
    yield s
    s.stop()


def client_dir(tmp_path: Path) -> Path:
    work = tmp_path / "client"
    work.mkdir()
    return work


# -- the CLI story, locally and through the server: the same output ------------------------


_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _normal(text: str) -> str:
    """Times, run ids and the audit chain's head hash (made of times) differ by nature."""
    text = re.sub(r'((head|hash|prev_hash)"?:? "?)[0-9a-f]{64}', r"\1HASH", text)
    return _ID.sub("ID", _TIME.sub("TIME", text))


STORY: list[tuple[str, ...]] = [
    ("add", "model.bin", "-n", "fraud", "-m", "first"),
    ("add", "model2.bin", "-n", "fraud", "-m", "second"),
    ("ls",),
    ("versions", "fraud"),
    ("show", "fraud:v1"),
    ("register", "fraud:v1", "--as", "fraud"),
    ("register", "fraud:v2", "--as", "fraud"),
    ("promote", "fraud:v1", "staging"),
    ("promote", "fraud:v1", "production"),
    ("promote", "fraud:v2", "staging"),
    ("alias", "set", "fraud@champion", "fraud:v1"),
    ("models",),
    ("history", "fraud"),
    ("diff", "fraud:v1", "fraud:v2"),
    ("get", "fraud@champion", "-o", "restored.bin"),
    ("rollback", "fraud", "--reason", "bad day"),
    ("audit",),
    ("audit", "--verify"),
    ("lineage", "fraud:v1"),
    ("show", "fraud@production", "--json"),
    ("versions", "fraud", "--json"),
    ("history", "fraud", "--json"),
    ("files", "fraud:v2", "--json"),
]


def _story(env: dict[str, str], cwd: Path) -> list[str]:
    (cwd / "model.bin").write_bytes(b"weights-1" * 50_000)
    (cwd / "model2.bin").write_bytes(b"weights-2" * 50_000)
    out = []
    for args in STORY:
        r = mk_cli(env, *args, cwd=cwd, ok=False)
        out.append(f"$ {' '.join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    assert (cwd / "restored.bin").read_bytes() == b"weights-1" * 50_000
    return out


def test_the_cli_story_prints_the_same_through_a_server(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("story")
    s = mkserve.start(base / "store")
    try:
        mkserve.with_accounts(s, {"alice": "admin"})
        remote_env = s.client_env(s.tokens["alice"])
        local_env = {**s.client_env(None), "MODELKEEP_USER": "alice"}
        local_env.pop("MODELKEEP_SERVER")
        local = tmp_path / "local"
        local.mkdir()
        mk_cli(local_env, "init", "-q", cwd=local)
        through = client_dir(tmp_path)
        mine, theirs = _story(local_env, local), _story(remote_env, through)
        for a, b in zip(mine, theirs, strict=True):
            # the store id and host of a version differ between two stores by design
            a, b = (re.sub(r'"(store_id|host)": "[^"]*"', r'"\1": "X"', x) for x in (a, b))
            assert _normal(a) == _normal(b)
    finally:
        s.stop()


# -- who acts ----------------------------------------------------------------------------------


def test_the_audit_log_names_the_authenticated_account_not_a_claimed_one(
    served: mkserve.Served, tmp_path: Path
) -> None:
    work = client_dir(tmp_path)
    (work / "m.bin").write_bytes(b"bob's model")
    env = {**served.client_env(served.tokens["bob"]), "MODELKEEP_USER": "mallory"}
    mk_cli(env, "add", "m.bin", "-n", "claims", cwd=work)
    mk_cli(env, "register", "claims:v1", "--as", "claims", cwd=work)
    mk_cli(env, "promote", "claims:v1", "staging", cwd=work)
    events = json.loads(mk_cli(env, "history", "claims", "--json", cwd=work).stdout)["events"]
    assert [e["actor"] for e in events] == ["bob", "bob"]
    shown = json.loads(mk_cli(env, "show", "claims:v1", "--json", cwd=work).stdout)
    assert shown["user"] == "bob"
    # a client-chosen name in a request body is refused, not recorded
    with served.http("bob") as h:
        r = h.post("/api/v1/versions/claims:v1/stage", json={"stage": "none", "actor": "eve"})
    assert r.status_code == 422 and "actor" in r.json()["message"]


def test_a_run_logged_through_the_server_belongs_to_the_account(
    served: mkserve.Served, tmp_path: Path
) -> None:
    work = client_dir(tmp_path)
    script = work / "train.py"
    script.write_text(
        "import os, modelkeep as mk\n"
        "repo = mk.open(os.environ['MODELKEEP_SERVER'], token=os.environ['MODELKEEP_TOKEN'])\n"
        "with mk.start_run(name='train', params={'lr': 0.1}, repo=repo) as run:\n"
        "    run.log_metric('auc', 0.91)\n"
        "    open('w.bin', 'wb').write(b'w' * 1000)\n"
        "    print(run.log_artifact('w.bin', 'run-weights').ref)\n"
    )
    env = {**served.client_env(served.tokens["eddie"]), "MODELKEEP_USER": "mallory"}
    r = subprocess.run(
        [str(Path(MODELKEEP).with_name("python")), str(script)],
        cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    runs = json.loads(mk_cli(env, "runs", "--json", cwd=work).stdout)["runs"]
    mine = [x for x in runs if x["name"] == "train"]
    assert mine and mine[0]["user"] == "eddie" and mine[0]["metrics"]["auc"] == 0.91
    lineage = mk_cli(env, "lineage", "run-weights:v1", cwd=work).stdout
    assert "train" in lineage
    # another account may not log into eddie's run
    with served.http("maya") as h:
        denied = h.post(f"/api/v1/runs/{mine[0]['id']}/params", json={"params": {"x": "1"}})
    assert denied.status_code == 403


def test_an_approval_must_come_from_another_account(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("approvals")
    store = base / "store"
    store.mkdir()
    mkserve.admin(store, "init", "-q")
    (store / "modelkeep.toml").write_text(
        '[policy.default.production]\napprovals = 1\nmovers = ["carol", "dave"]\n'
    )
    s = mkserve.start(store)
    try:
        mkserve.with_accounts(
            s, {"carol": "maintainer", "dave": "maintainer", "erin": "maintainer"}
        )
        work = client_dir(tmp_path)
        (work / "m.bin").write_bytes(b"gated")
        carol, dave, erin = (s.client_env(s.tokens[u]) for u in ("carol", "dave", "erin"))
        mk_cli(carol, "add", "m.bin", "-n", "gated", cwd=work)
        mk_cli(carol, "register", "gated:v1", "--as", "gated", cwd=work)
        mk_cli(carol, "approve", "gated:v1", "production", cwd=work)
        refused = mk_cli(carol, "promote", "gated:v1", "production", cwd=work, ok=False)
        assert refused.returncode == 1 and "approval" in refused.stderr
        mk_cli(dave, "approve", "gated:v1", "production", cwd=work)
        not_mover = mk_cli(erin, "promote", "gated:v1", "production", cwd=work, ok=False)
        assert not_mover.returncode == 1 and "carol, dave" in not_mover.stderr
        mk_cli(carol, "promote", "gated:v1", "production", cwd=work)
        events = json.loads(mk_cli(carol, "history", "gated", "--json", cwd=work).stdout)["events"]
        assert [(e["action"], e["actor"]) for e in events][-1] == ("promote", "carol")
    finally:
        s.stop()


# -- the permission matrix ---------------------------------------------------------------------


def _args(op: api.Op) -> tuple[dict[str, str], dict[str, Any]]:
    """Path parameters and arguments that make a valid request for op on the fixture data."""
    path = {"ref": "perm:v1", "name": "perm", "alias": "perm@champion", "run_id": "0" * 32}
    sample: dict[str, dict[str, Any]] = {
        "diff": {"old_ref": "perm:v1", "new_ref": "perm:v1"},
        "env_diff": {"a": "perm:v1", "b": "perm:v1"},
        "compare_runs": {"refs": ["perm:v1"]},
        "promote": {"stage": "staging"},
        "approve": {"stage": "staging"},
        "register": {"source_ref": "perm:v1"},
        "rollback": {"reason": "matrix"},
        "set_alias": {"target": "perm:v1"},
        "delete": {"reason": "matrix"},
        "create_run": {"new": {}, "params": {}},
        "log_params": {"params": {}},
        "log_metrics": {"items": []},
        "add_input": {"ref": "perm:v1"},
        "end_run": {"status": "finished"},
        "set_run_error": {"error": "x"},
        "add_attachment": {"name": "x.txt", "digest": "b3:" + "0" * 64},
        "evaluate": {"metrics": {"auc": 0.5}},
        "version_metrics": {"metrics": ["auc"]},
        "describe_model": {"text": "matrix"},
        "tag_model": {"key": "k", "value": "v"},
        "untag_model": {"key": "k"},
        "rename_model": {"new_name": "perm-renamed"},
    }
    return {k: v for k, v in path.items() if k in op.path_params}, sample.get(op.name, {})


def _send(h: httpx.Client, op: api.Op) -> httpx.Response:
    path_args, args = _args(op)
    url = api.PREFIX + op.path
    for key, value in path_args.items():
        url = url.replace(f"{{{key}:path}}", value).replace(f"{{{key}}}", value)
    if op.in_body:
        return h.request(op.method, url, json=args)
    return h.request(op.method, url, params=args)


def test_every_operation_needs_its_role_and_no_more(served: mkserve.Served, tmp_path: Path) -> None:
    work = client_dir(tmp_path)
    (work / "p.bin").write_bytes(b"permission matrix")
    env = served.client_env(served.tokens["alice"])
    mk_cli(env, "add", "p.bin", "-n", "perm", cwd=work)
    mk_cli(env, "register", "perm:v1", "--as", "perm", cwd=work)
    seen: dict[tuple[str, str], int] = {}
    for user, role in ROLE_USERS.items():
        with served.http(user) as h:
            for op in api.OPS:
                if op.name in ("delete", "rename_model") and role == "admin":
                    continue  # allowed; shown elsewhere, without losing the fixture's model
                status = _send(h, op).status_code
                seen[(user, op.name)] = status
                allowed = role is not None and ROLES.index(role) >= ROLES.index(op.role)
                assert status < 500, (user, op.name, status)
                if allowed:
                    assert status not in (401, 403), (user, op.name, status)
                else:
                    assert status == 403, (user, op.name, status)
    with served.http("ada") as h:
        assert (
            h.request("DELETE", "/api/v1/versions/perm:v1", params={"reason": "x"}).status_code
            == 200
        )
    # the 403 names the role that would be needed
    with served.http("vic") as h:
        r = h.post("/api/v1/versions/perm:v1/stage", json={"stage": "staging"})
    assert r.json()["role"] == "maintainer" and "maintainer" in r.json()["message"]


# The endpoints outside the operation table: (method, path, body, role needed).
OTHER_ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/v1/objects/missing", {"keys": ["0" * 64]}, "editor"),
    ("POST", "/api/v1/objects/locate", {"keys": ["0" * 64]}, "viewer"),
    ("POST", "/api/v1/objects", None, "editor"),
    ("GET", "/api/v1/packs/pack-0", None, "viewer"),
    (
        "POST",
        "/api/v1/versions",
        {"name": "perm2", "digest": "b3:" + "0" * 64, "kind": "file"},
        "editor",
    ),
    ("GET", "/api/v1/policy", None, "viewer"),
    ("GET", "/api/v1/users", None, "admin"),
    ("POST", "/api/v1/users", {"name": "made-by-matrix"}, "admin"),
    ("PATCH", "/api/v1/users/nobody", {"disabled": False}, "admin"),
    ("PUT", "/api/v1/users/nobody/grants", {"role": "viewer", "model": "nothing-*"}, "admin"),
    ("GET", "/api/v1/tokens?user=alice", None, "admin"),
    ("POST", "/api/v1/tokens", {"user": "alice"}, "admin"),
]


def test_the_other_endpoints_need_their_role(served: mkserve.Served) -> None:
    for user, role in ROLE_USERS.items():
        with served.http(user) as h:
            for method, path, body, needed in OTHER_ENDPOINTS:
                r = h.request(method, path, json=body, headers={"Range": "bytes=0-0"})
                allowed = role is not None and ROLES.index(role) >= ROLES.index(needed)
                assert r.status_code < 500, (user, path, r.status_code)
                if allowed:
                    assert r.status_code not in (401, 403), (user, method, path, r.text)
                else:
                    assert r.status_code == 403, (user, method, path, r.status_code)
            # every account reads itself and makes its own tokens
            assert h.get("/api/v1/account").json()["name"] == user
            assert h.post("/api/v1/tokens", json={"label": "mine"}).status_code == 201
    with httpx.Client(base_url=served.url) as anonymous:
        for method, path, body, _ in OTHER_ENDPOINTS:
            assert anonymous.request(method, path, json=body).status_code == 401


def test_a_grant_on_a_model_glob_reaches_only_those_models(
    served: mkserve.Served, tmp_path: Path
) -> None:
    work = client_dir(tmp_path)
    admin_env = served.client_env(served.tokens["alice"])
    for name in ("fraud-eu", "churn"):
        (work / f"{name}.bin").write_bytes(name.encode())
        mk_cli(admin_env, "add", f"{name}.bin", "-n", name, cwd=work)
        mk_cli(admin_env, "register", f"{name}:v1", "--as", name, cwd=work)
    mkserve.admin(served.root, "user", "add", "gina")
    mkserve.admin(served.root, "role", "grant", "gina", "maintainer", "--model", "fraud-*")
    served.tokens["gina"] = mkserve.make_token(served.root, "gina")
    env = served.client_env(served.tokens["gina"])
    mk_cli(env, "promote", "fraud-eu:v1", "staging", cwd=work)
    denied = mk_cli(env, "promote", "churn:v1", "staging", cwd=work, ok=False)
    assert denied.returncode == 1 and "needs the maintainer role on 'churn'" in denied.stderr
    denied = mk_cli(env, "show", "churn:v1", cwd=work, ok=False)
    assert denied.returncode == 1
    listed = json.loads(mk_cli(env, "ls", "--json", cwd=work).stdout)
    names = {a["name"] for a in listed["artifacts"]}
    assert "fraud-eu" in names and "churn" not in names
    # objects are shared across models: reading bytes by id needs a viewer role on '*'
    fresh = served.client_env(served.tokens["gina"], tmp_path / "gina")  # an empty cache
    refused = mk_cli(fresh, "get", "fraud-eu:v1", "-o", "x.bin", cwd=work, ok=False)
    assert refused.returncode == 1 and "a viewer role on '*'" in refused.stderr


def test_a_models_description_tags_and_name_over_the_server(
    served: mkserve.Served, tmp_path: Path
) -> None:
    """The `model` commands work against `modelkeep serve` as on a local store, as the
    signed-in account; a rename needs the admin role on both names."""
    work = client_dir(tmp_path)
    admin_env = served.client_env(served.tokens["alice"])
    for name in ("credit-eu", "credit-us"):
        (work / f"{name}.bin").write_bytes(name.encode())
        mk_cli(admin_env, "add", f"{name}.bin", "-n", name, cwd=work)
        mk_cli(admin_env, "register", f"{name}:v1", "--as", name, cwd=work)
    editor = served.client_env(served.tokens["eddie"])
    mk_cli(editor, "model", "describe", "credit-eu", "EU credit scoring", cwd=work)
    mk_cli(editor, "model", "tag", "credit-eu", "owner", "risk", cwd=work)
    shown = json.loads(mk_cli(editor, "model", "show", "credit-eu", "--json", cwd=work).stdout)
    assert shown["description"] == "EU credit scoring" and shown["tags"] == {"owner": "risk"}
    with mk.open(served.root) as repo:
        actors = {e.actor for e in repo.history("credit-eu") if e.action in ("describe", "tag-set")}
    assert actors == {"eddie"}  # the account, not the server's own user
    viewer = served.client_env(served.tokens["vic"])
    denied = mk_cli(viewer, "model", "tag", "credit-eu", "owner", "me", cwd=work, ok=False)
    assert denied.returncode == 1 and "editor" in denied.stderr
    mkserve.admin(served.root, "user", "add", "regional")
    mkserve.admin(served.root, "role", "grant", "regional", "admin", "--model", "credit-eu*")
    regional = served.client_env(mkserve.make_token(served.root, "regional"))
    denied = mk_cli(regional, "model", "rename", "credit-eu", "credit-us2", cwd=work, ok=False)
    assert denied.returncode == 1 and "'credit-us2'" in denied.stderr
    mk_cli(regional, "model", "rename", "credit-eu", "credit-eu-2", cwd=work)
    moved = json.loads(mk_cli(editor, "model", "show", "credit-eu-2", "--json", cwd=work).stdout)
    assert moved["tags"] == {"owner": "risk"}


def test_a_disabled_user_and_a_revoked_or_expired_token_are_refused_at_once(
    served: mkserve.Served,
) -> None:
    mkserve.admin(served.root, "user", "add", "temp")
    mkserve.admin(served.root, "role", "grant", "temp", "viewer")
    first, second = (mkserve.make_token(served.root, "temp") for _ in range(2))
    ok = httpx.get(served.url + "/api/v1/models", headers={"Authorization": f"Bearer {first}"})
    assert ok.status_code == 200
    token_id = first.split("_")[1]
    mkserve.admin(served.root, "token", "revoke", token_id)
    revoked = httpx.get(served.url + "/api/v1/models", headers={"Authorization": f"Bearer {first}"})
    assert revoked.status_code == 401 and revoked.json()["error"] == "unauthenticated"
    assert (
        httpx.get(
            served.url + "/api/v1/models", headers={"Authorization": f"Bearer {second}"}
        ).status_code
        == 200
    )
    mkserve.admin(served.root, "user", "disable", "temp")
    disabled = httpx.get(
        served.url + "/api/v1/models", headers={"Authorization": f"Bearer {second}"}
    )
    assert disabled.status_code == 401
    # expired: a token whose time is up (made directly in the database, a second ago)
    from datetime import UTC, datetime, timedelta

    from modelkeep.meta import accounts

    with mk.open(served.root) as repo:
        accounts.add_user(repo.db, "brief")
        accounts.grant(repo.db, "brief", "viewer")
        expired, _ = accounts.create_token(
            repo.db, "brief", expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
    r = httpx.get(served.url + "/api/v1/models", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    for bad in ("", "Bearer", "Bearer mkt_nothex_x", "Basic !!!", "Token abc"):
        r = httpx.get(served.url + "/api/v1/models", headers={"Authorization": bad})
        assert r.status_code == 401, bad


def test_tokens_are_kept_as_hashes_and_listed_without_the_secret(served: mkserve.Served) -> None:
    token = mkserve.make_token(served.root, "vic")
    db = (served.root / ".modelkeep" / "meta.sqlite").read_bytes()
    secret = token.split("_", 2)[2]  # the secret itself may hold "_"
    assert token.encode() not in db and secret.encode() not in db
    listed = mkserve.admin(served.root, "token", "list", "--user", "vic", "--json")
    assert token not in listed and token.split("_")[1] in listed


# -- the client's side -------------------------------------------------------------------------


def test_the_python_api_reads_and_writes_through_a_server(
    served: mkserve.Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in served.client_env(None, tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    data = os.urandom(3_000_000)
    (tmp_path / "big.bin").write_bytes(data)
    with mk.open(served.url, token=served.tokens["eddie"]) as repo:
        added = repo.add(tmp_path / "big.bin", "py-api")
        assert added.version.user == "eddie" and added.new_bytes > 0
        again = repo.add(tmp_path / "big.bin", "py-api")
        assert again.version.number == 1 and again.new_bytes == 0  # nothing sent twice
        with pytest.raises(ArtifactNotFound):
            repo.show("no-such:v1")
        with pytest.raises(Forbidden):  # an editor adds versions, a maintainer moves them
            repo.promote("py-api:v1", "staging")
        with pytest.raises(InvalidRef):  # errors keep their class across the wire
            repo.show("Not A Ref")
    with mk.open(served.url, token=served.tokens["vic"]) as reader:
        out = reader.get("py-api:v1", tmp_path / "out.bin")
        assert out.read_bytes() == data
        with reader.open("py-api:v1") as f:
            assert f.read() == data


def test_a_token_is_never_sent_over_plain_http_to_another_machine(tmp_path: Path) -> None:
    with pytest.raises(InsecureServer):
        mk.open("http://192.0.2.7:8080", token="mkt_000000000000_" + "a" * 43)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "c")}
    r = subprocess.run(
        [MODELKEEP, "login", "http://192.0.2.7:8080", "--token", "x"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 1 and "plain HTTP" in r.stderr
    assert not (tmp_path / "c" / "modelkeep" / "credentials.toml").exists()


def test_login_keeps_the_token_private_and_logout_forgets_it(
    served: mkserve.Served, tmp_path: Path
) -> None:
    env = served.client_env(None, tmp_path / "home")
    work = client_dir(tmp_path)
    bad = mk_cli(
        env, "login", served.url, "--token", "mkt_000000000000_" + "a" * 43, cwd=work, ok=False
    )
    assert bad.returncode == 1 and "not signed in" in bad.stderr
    mk_cli(env, "login", served.url, "--token", served.tokens["vic"], cwd=work)
    path = tmp_path / "home" / ".config" / "modelkeep" / "credentials.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(mk_cli(env, "models", "--json", cwd=work).stdout) is not None
    mk_cli(env, "logout", served.url, cwd=work)
    after = mk_cli(env, "models", cwd=work, ok=False)
    assert after.returncode == 1 and "not signed in" in after.stderr


def test_store_commands_say_they_run_on_the_server_machine(
    served: mkserve.Served, tmp_path: Path
) -> None:
    env = served.client_env(served.tokens["alice"])
    work = client_dir(tmp_path)
    for args in (("gc",), ("fsck",), ("du",)):
        r = mk_cli(env, *args, cwd=work, ok=False)
        assert r.returncode == 1 and "run it on the server's machine" in r.stderr, r.stderr
    r = mk_cli(env, "reproduce", "fraud:v1", cwd=work, ok=False)
    assert r.returncode == 1 and "reproduce runs against a local store" in r.stderr, r.stderr


# -- hostile and malformed requests ------------------------------------------------------------


def _state(served: mkserve.Served) -> tuple[Any, Any]:
    with served.http("alice") as h:
        return h.get("/api/v1/artifacts").json(), h.get("/api/v1/audit").json()


def test_bad_requests_get_a_clear_4xx_and_change_nothing(served: mkserve.Served) -> None:
    before = _state(served)
    with served.http("alice") as h:
        cases = [
            h.post(
                "/api/v1/versions/x:v1/stage",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            h.post("/api/v1/versions/x:v1/stage", json=["a", "list"]),
            h.post("/api/v1/versions/x:v1/stage", json={"stage": 5}),
            h.post("/api/v1/versions/x:v1/stage", json={"stage": "staging", "bogus": 1}),
            h.post("/api/v1/versions/x:v1/stage", json={}),
            h.get("/api/v1/versions/..%2F..%2Fetc%2Fpasswd"),
            h.get("/api/v1/versions/../../etc/passwd"),
            h.get("/api/v1/artifacts/..%2F..%2Fsecret/versions"),
            h.get("/api/v1/packs/..%2F..%2Fmeta.sqlite", headers={"Range": "bytes=0-10"}),
            h.get("/api/v1/packs/nope", headers={"Range": "bytes=0-10"}),
            h.get("/api/v1/packs/nope"),
            h.get("/api/v1/runs", params={"limit": "many"}),
            h.post("/api/v1/objects/missing", json={"keys": ["../../x"]}),
            h.post("/api/v1/objects", content=b"\x00" * 4),
            h.post("/api/v1/objects", content=(10**9).to_bytes(8, "big") + b"x"),
            h.post(
                "/api/v1/versions",
                json={"name": "../evil", "digest": "b3:" + "0" * 64, "kind": "file"},
            ),
            h.post(
                "/api/v1/versions",
                json={"name": "ok", "digest": "b3:" + "0" * 64, "kind": "file", "user": "eve"},
            ),
            h.post("/api/v1/tokens", json={"user": "alice", "expires_days": -1}),
            h.put("/api/v1/users/bob/grants", json={"role": "god"}),
        ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        if r.headers.get("content-type", "").startswith("application/json"):
            doc = r.json()
            assert doc["message"] and "Traceback" not in doc["message"]
            assert "/tmp" not in doc["message"] and str(served.root) not in r.text
    assert _state(served) == before


def test_a_huge_body_is_refused_before_it_is_read(served: mkserve.Served) -> None:
    with served.http("alice") as h:
        r = h.post(
            "/api/v1/versions/x:v1/stage",
            content=b'{"stage": "' + b"a" * (2 * 1024 * 1024) + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["error"] == "request_too_large"
        big = h.post("/api/v1/objects", content=b"\x00" * (100 * 1024 * 1024))
        assert big.status_code == 413


def test_the_openapi_document_lists_every_operation(served: mkserve.Served) -> None:
    doc = httpx.get(served.url + "/api/openapi.json").json()
    ids = {spec.get("operationId") for path in doc["paths"].values() for spec in path.values()}
    assert {op.name for op in api.OPS} <= ids
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok"}


def test_requests_past_the_rate_limit_get_429(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    s = mkserve.start(
        tmp_path_factory.mktemp("rate") / "store",
        args=["--rate-limit", "5", "--sign-in-limit", "5"],
    )
    try:
        mkserve.with_accounts(s, {"alice": "admin", "bob": "viewer"})
        with s.http("alice") as h:
            codes = [h.get("/api/v1/models").status_code for _ in range(8)]
            limited = h.get("/api/v1/models")
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        with s.http("bob") as h:  # per account: another one is not slowed
            assert h.get("/api/v1/models").status_code == 200
        log = s.log.read_text()
        assert "GET /api/v1/models 429 alice" in log and "GET /api/v1/models 200 bob" in log
        # guessing tokens from one address stops at --sign-in-limit failures a minute
        guesses = [
            httpx.get(
                s.url + "/api/v1/models",
                headers={"Authorization": f"Bearer mkt_{i:012x}_{'a' * 43}"},
            )
            for i in range(8)
        ]
        codes = [g.status_code for g in guesses]
        assert codes[:5] == [401] * 5 and codes[-1] == 429
        with s.http("bob") as h:
            assert h.get("/api/v1/models").status_code == 429  # the address waits too
    finally:
        s.stop()


def test_a_proxy_header_names_the_account_only_from_the_proxy(
    served: mkserve.Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("proxy")
    trusted = mkserve.start(base / "a", args=["--trust-proxy-header", "X-Forwarded-User"])
    try:
        mkserve.with_accounts(trusted, {"sso-user": "viewer"})
        r = httpx.get(trusted.url + "/api/v1/account", headers={"X-Forwarded-User": "sso-user"})
        assert r.status_code == 200 and r.json()["name"] == "sso-user"
        unknown = httpx.get(trusted.url + "/api/v1/account", headers={"X-Forwarded-User": "ghost"})
        assert unknown.status_code == 404 or unknown.status_code == 401
    finally:
        trusted.stop()
    elsewhere = mkserve.start(
        base / "b", args=["--trust-proxy-header", "X-Forwarded-User", "--proxy", "192.0.2.1"]
    )
    try:
        mkserve.with_accounts(elsewhere, {"sso-user": "viewer"})
        r = httpx.get(elsewhere.url + "/api/v1/account", headers={"X-Forwarded-User": "sso-user"})
        assert r.status_code == 401  # 127.0.0.1 is not the configured proxy
    finally:
        elsewhere.stop()
    r = httpx.get(served.url + "/api/v1/account", headers={"X-Forwarded-User": "alice"})
    assert r.status_code == 401  # off by default


def test_concurrent_clients_get_gap_free_numbers_and_one_production(
    served: mkserve.Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads of one process, each its own client, on a cache none of them made yet (the
    first ones race to make it): adding, registering, promoting and resolving at once."""
    import threading

    for key, value in served.client_env(None, tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            with mk.open(served.url, token=served.tokens["bob"]) as repo:
                path = tmp_path / f"c{i}.bin"
                path.write_bytes(os.urandom(20_000))
                version = repo.add(path, "concurrent").version
                repo.register(version, "concurrent")
                repo.promote(version, "production")
                assert repo.show("concurrent@production").name == "concurrent"
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with mk.open(served.url, token=served.tokens["vic"]) as repo:
        versions = repo.versions("concurrent")
        assert sorted(v.number for v in versions) == list(range(1, 21))
        assert [v.stage for v in versions].count("production") == 1
        assert repo.verify_audit().ok
    assert " 500 " not in served.log.read_text()


def test_accounts_are_managed_through_the_server_by_an_admin_only(
    served: mkserve.Served, tmp_path: Path
) -> None:
    work = client_dir(tmp_path)
    admin_env = served.client_env(served.tokens["alice"])
    made = json.loads(mk_cli(admin_env, "user", "add", "remote-made", "--json", cwd=work).stdout)
    assert made["name"] == "remote-made" and not made["admin"]
    mk_cli(admin_env, "role", "grant", "remote-made", "editor", "--model", "team/*", cwd=work)
    token = json.loads(
        mk_cli(admin_env, "token", "create", "--user", "remote-made", "--json", cwd=work).stdout
    )
    listed = mk_cli(admin_env, "user", "list", cwd=work).stdout
    assert "remote-made" in listed and "editor:team/*" in listed
    mk_cli(admin_env, "token", "revoke", token["id"], cwd=work)
    r = httpx.get(
        served.url + "/api/v1/account", headers={"Authorization": f"Bearer {token['token']}"}
    )
    assert r.status_code == 401
    # a maintainer may make tokens for itself, not for others, and may not add users
    bob_env = served.client_env(served.tokens["bob"])
    own = json.loads(mk_cli(bob_env, "token", "create", "--json", cwd=work).stdout)
    assert own["user"] == "bob"
    for args in (("token", "create", "--user", "alice"), ("user", "add", "sneaky"),
                 ("role", "grant", "bob", "admin"), ("user", "disable", "alice")):  # fmt: skip
        refused = mk_cli(bob_env, *args, cwd=work, ok=False)
        assert refused.returncode == 1 and "needs the admin role" in refused.stderr, args
    bad = mk_cli(admin_env, "token", "create", "--expires", "forever", cwd=work, ok=False)
    assert bad.returncode == 1 and "90d" in bad.stderr


def test_the_server_delivers_webhooks_signed_naming_the_account(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.test_webhooks import SECRET, Receiver, wait_for

    receiver = Receiver()
    base = tmp_path_factory.mktemp("hooks")
    store = base / "store"
    store.mkdir()
    mkserve.admin(store, "init", "-q")
    mkserve.admin(
        store, "webhook", "add", receiver.url(), "--events", "version.created,stage.changed",
        "--secret-env", "HOOK_SECRET",
    )  # fmt: skip
    s = mkserve.start(store, env={"HOOK_SECRET": SECRET})
    try:
        mkserve.with_accounts(s, {"bob": "maintainer"})
        env = s.client_env(s.tokens["bob"])
        work = client_dir(tmp_path)
        (work / "m.bin").write_bytes(b"hooked")
        mk_cli(env, "add", "m.bin", "-n", "hooked", cwd=work)
        mk_cli(env, "register", "hooked:v1", "--as", "hooked", cwd=work)
        wait_for("two deliveries", lambda: len(receiver.seen()) >= 2)
        got = receiver.seen()
        assert {g.event for g in got} == {"version.created", "stage.changed"}
        assert all(g.verified for g in got)
        assert json.dumps([g.doc for g in got]).count('"bob"') >= 2
        refused = mk_cli(env, "webhook", "list", cwd=work, ok=False)
        assert refused.returncode == 1 and "on the server's machine" in refused.stderr
    finally:
        s.stop()
        receiver.stop()


def test_modelkeep_run_through_a_server_links_what_the_script_logs(
    served: mkserve.Served, tmp_path: Path
) -> None:
    work = client_dir(tmp_path)
    (work / "train.py").write_text(
        "import modelkeep as mk\n"
        "with mk.start_run(params={'depth': 4}) as run:\n"
        "    run.log_metric('loss', 0.25)\n"
        "    open('out.bin', 'wb').write(b'trained')\n"
        "    print(run.log_artifact('out.bin', 'cli-run-out').ref)\n"
    )
    env = served.client_env(served.tokens["eddie"])
    python = str(Path(MODELKEEP).with_name("python"))
    r = mk_cli(env, "run", "--", python, "train.py", cwd=work)
    assert "cli-run-out:v1" in r.stdout
    shown = json.loads(mk_cli(env, "show", "cli-run-out:v1", "--json", cwd=work).stdout)
    run = json.loads(mk_cli(env, "runs", "show", shown["run_id"], "--json", cwd=work).stdout)
    assert run["status"] == "finished" and run["user"] == "eddie"
    assert run["params"] == {"depth": 4} and run["metrics"]["loss"] == 0.25


def test_a_committed_modelkeep_toml_names_the_server(
    served: mkserve.Served, tmp_path: Path
) -> None:
    project = client_dir(tmp_path)
    (project / "modelkeep.toml").write_text(f'server = "{served.url}"\n')
    (project / "sub").mkdir()
    env = served.client_env(served.tokens["vic"])
    env.pop("MODELKEEP_SERVER")
    me = json.loads(mk_cli(env, "models", "--json", cwd=project / "sub").stdout)
    assert isinstance(me, dict)
    (project / "modelkeep.toml").write_text("server = 42\n")
    bad = mk_cli(env, "models", cwd=project, ok=False)
    assert bad.returncode == 1 and "server must be a URL" in bad.stderr
    (project / "modelkeep.toml").write_text('server = "ftp://example.com"\n')
    bad = mk_cli(env, "models", cwd=project, ok=False)
    assert bad.returncode == 1 and "not a server URL" in bad.stderr


def test_a_git_work_tree_tracks_versions_on_a_server(
    served: mkserve.Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """add writes modelkeep.lock, status compares, and a second clone with an empty cache
    checks out every locked path from the server."""
    isolate_git(tmp_path, monkeypatch)
    top = git_work_tree(tmp_path / "proj")
    (top / "modelkeep.toml").write_text(f'server = "{served.url}"\n')
    data = top / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    env = served.client_env(served.tokens["eddie"])  # with the Git isolation above
    env.pop("MODELKEEP_SERVER")  # modelkeep.toml names the server
    mk_cli(env, "add", "data", "-n", "wt-data", cwd=top)
    assert "wt-data:v1" in (top / "modelkeep.lock").read_text()
    assert json.loads(mk_cli(env, "status", "--json", cwd=top).stdout)["paths"][0]["state"] == "ok"
    git(top, "add", "-A")
    git(top, "commit", "-qm", "data v1")
    (data / "train.csv").write_text("changed\n")
    states = json.loads(mk_cli(env, "status", "--json", cwd=top).stdout)["paths"]
    assert states[0]["state"] == "modified"
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(top), str(clone))
    fresh = {**env, "XDG_CACHE_HOME": str(tmp_path / "other-cache")}
    mk_cli(fresh, "checkout", cwd=clone)
    assert (clone / "data" / "train.csv").read_text() == "a,b\n1,2\n"
