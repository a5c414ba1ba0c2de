"""Throwaway Azure Blob Storage emulator for the test suite: Azurite (a pytest plugin).

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.azure"]``.

Azurite is an npm package: ``make emulators`` (run by ``make test``) installs the pinned
version into the git-ignored ``.node/`` folder. Its blob service runs in a subprocess on
127.0.0.1 and a free port, one per pytest-xdist worker, in memory, with telemetry off, and
exits when its standard input closes (``exit_on_stdin_eof.cjs``, preloaded). It
enforces shared-key authentication: the account is one made up for the session (Azurite's
``AZURITE_ACCOUNTS``), so a client needs its key, and adlfs finds everything in
``AZURE_STORAGE_CONNECTION_STRING``, the variable Azure's own tools read.

Fixtures:

* ``azure_server`` (session): the running emulator (``endpoint``, ``env()``, ``client()``).
* ``azure_container`` (function): a new, empty container on it; the connection string is
  set for the test.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServerProcess

__all__ = ["AZURITE", "AzureServer", "azure_container", "azure_server"]

HERE = Path(__file__).resolve().parent
AZURITE = HERE.parent / ".node" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "mktest"
_LISTENING = re.compile(r"listens on http://127\.0\.0\.1:(\d+)")


@dataclass
class AzureServer(ServerProcess):
    key: str  # the account's shared key (base64)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={self.key};"
            f"BlobEndpoint={self.endpoint};"
        )

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def client(self) -> Any:
        """An Azure SDK client on the emulator, for the tests' own setup and damage."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed ({AZURITE}): run `make emulators`", pytrace=False)
    key = base64.b64encode(secrets.token_bytes(64)).decode()
    workspace = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [
            "node",
            *("--require", str(HERE / "exit_on_stdin_eof.cjs"), str(AZURITE.resolve())),
            *("--blobHost", "127.0.0.1", "--blobPort", "0"),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",  # the Azure SDK may be newer than the emulator
            "--silent",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"},
        cwd=workspace,  # where it would write anything (it keeps blobs in memory)
    )
    assert proc.stdout is not None
    seen: list[str] = []
    port = None
    for line in proc.stdout:
        seen.append(line)
        match = _LISTENING.search(line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        proc.wait()
        pytest.fail(
            f"Azurite did not start (exit {proc.returncode}):\n{''.join(seen)}", pytrace=False
        )
    server = AzureServer(proc, port, key)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def azure_container(azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("ACCOUNT_NAME", "ACCOUNT_KEY", "SAS_TOKEN", "ANON"):
        monkeypatch.delenv(f"AZURE_STORAGE_{name}", raising=False)
    for key, value in azure_server.env().items():
        monkeypatch.setenv(key, value)
    name = f"mk-{uuid.uuid4().hex[:20]}"
    azure_server.client().create_container(name)
    return name
