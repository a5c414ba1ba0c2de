"""A real `modelkeep serve` process for the tests: a store, accounts with tokens, a URL.

`Served.client_env(token)` is the environment a client process needs to use it (its own
HOME and caches, MODELKEEP_SERVER, MODELKEEP_TOKEN) and nothing of the test runner's own
identity: MODELKEEP_USER is dropped, so a test sees which account the server recorded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MODELKEEP = str(Path(sys.executable).with_name("modelkeep"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a command on the server's machine (its store); its stdout."""
    r = subprocess.run(
        [MODELKEEP, *args],
        cwd=root,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, f"modelkeep {' '.join(args)}: {r.stdout}{r.stderr}"
    return r.stdout


def make_token(root: Path, user: str, env: dict[str, str] | None = None) -> str:
    import json

    return str(
        json.loads(admin(root, "token", "create", "--user", user, "--json", env=env))["token"]
    )


@dataclass
class Served:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    home: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self, token: str | None, home: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MODELKEEP_USER"}
        home = home or self.home
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_CACHE_HOME=str(home / ".cache"),
            MODELKEEP_SERVER=self.url,
        )
        env.pop("MODELKEEP_TOKEN", None)
        if token is not None:
            env["MODELKEEP_TOKEN"] = token
        return env

    def http(self, user: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(
    root: Path,
    *,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Served:
    """Serve the repository at root (made with init first if missing) and wait until ready."""
    if not (root / ".modelkeep").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        admin(root, "init", "-q", env=env)
    port = port or free_port()
    log = root.parent / f"serve-{port}.log"
    proc = subprocess.Popen(
        [MODELKEEP, "serve", "--port", str(port), *args],
        cwd=root,
        env={**os.environ, **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    served = Served(root, port, proc, log, root.parent / f"home-{port}")
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"modelkeep serve exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(served.url + "/readyz", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise AssertionError(f"modelkeep serve did not get ready: {log.read_text()}")
        time.sleep(0.1)


def with_accounts(
    served: Served, roles: dict[str, str | None], env: dict[str, str] | None = None
) -> Served:
    """Add users with a global role each ('admin' makes an admin account; None: no role)
    and a token for each, in served.tokens. Through the library, in this process: the
    commands themselves are tested on their own, and a process per step costs seconds."""
    import modelkeep as mk
    from modelkeep.meta import accounts

    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with mk.open(served.root) as repo:
            for user, role in roles.items():
                accounts.add_user(repo.db, user, admin=role == "admin")
                if role not in (None, "admin"):
                    accounts.grant(repo.db, user, role)
                served.tokens[user] = accounts.create_token(repo.db, user)[0]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return served
