"""Throwaway S3-compatible server for the test suite: moto in server mode (a pytest plugin).

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.s3"]``.

The server runs in a subprocess (``python -m tests.s3``) on 127.0.0.1 and a free port, one per
pytest-xdist worker (the fixture is session-scoped, and each worker is its own session). It
enforces credentials: two IAM users are made before authentication is switched on, a writer
allowed everything on S3 and one allowed nothing, so wrong and unauthorised keys get the
errors a real S3 gives. The subprocess reads ``stop`` and ``start`` on its standard input and
keeps its buckets in memory across them, so a test can cut the network in the middle of a
push and bring the same server back.

Fixtures:

* ``s3_server`` (session): the running server (``endpoint``, ``env()``, ``stop()``, ``start()``).
* ``s3_bucket`` (function): a new, empty bucket on it; the AWS variables (writer's keys and
  ``AWS_ENDPOINT_URL``) are set for the test, so the library and the CLI find the server.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pytest

from tests.servers import ServerProcess, start_module

__all__ = ["S3Server", "s3_bucket", "s3_server"]

REGION = "us-east-1"


@dataclass
class S3Server(ServerProcess):
    writer: dict[str, str]  # access key id and secret of a user allowed s3:*
    denied: dict[str, str]  # of a user allowed nothing
    running: bool = field(default=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, keys: dict[str, str] | None = None) -> dict[str, str]:
        keys = keys or self.writer
        return {
            "AWS_ACCESS_KEY_ID": keys["id"],
            "AWS_SECRET_ACCESS_KEY": keys["secret"],
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
        }

    def _command(self, word: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == {"stop": "stopped", "start": "started"}[word], answer

    def stop(self) -> None:
        """Close the port: clients get connection refused. Buckets are kept."""
        self._command("stop")
        self.running = False

    def start(self) -> None:
        self._command("start")
        self.running = True

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.writer["id"],
            aws_secret_access_key=self.writer["secret"],
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    proc, ready = start_module("tests.s3", "the moto S3 server")
    server = S3Server(proc, ready["port"], ready["writer"], ready["denied"])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    if not s3_server.running:
        s3_server.start()
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    name = f"mk-{uuid.uuid4().hex[:20]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


# -- the server process -------------------------------------------------------------


def _iam_user(iam: Any, name: str, policy: dict[str, Any] | None) -> dict[str, str]:
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def _serve(stdin: IO[str], stdout: IO[str]) -> None:
    import logging

    import boto3
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    iam = boto3.client(
        "iam",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    allow_s3 = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    writer = _iam_user(iam, "writer", allow_s3)
    denied = _iam_user(iam, "nobody", None)
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on, every request is checked
    ActionAuthenticatorMixin.request_count = 0
    stdout.write(json.dumps({"port": port, "writer": writer, "denied": denied}) + "\n")
    stdout.flush()
    for line in stdin:
        word = line.strip()
        if word == "stop":
            server.stop()
            stdout.write("stopped\n")
        elif word == "start":
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            stdout.write("started\n")
        stdout.flush()


if __name__ == "__main__":
    _serve(sys.stdin, sys.stdout)
