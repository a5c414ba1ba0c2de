"""Throwaway GCS emulator for the test suite: gcp-storage-emulator (a pytest plugin).

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.gcs"]``.

The emulator (a PyPI package, installed by the ``dev`` extra) runs in a subprocess
(``python -m tests.gcs``) on 127.0.0.1 and a free port, one per pytest-xdist worker, and
keeps its buckets in memory; it exits when its standard input closes. It checks no
credentials, so gcsfs talks to it anonymously: ``STORAGE_EMULATOR_HOST``, gcsfs's own
variable for an emulator, is all a client needs.

Fixtures:

* ``gcs_server`` (session): the running emulator (``endpoint``, ``env()``, ``fs()``).
* ``gcs_bucket`` (function): a new, empty bucket on it; ``STORAGE_EMULATOR_HOST`` is set
  and the machine's own Google credentials are hidden for the test.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.servers import ServerProcess, start_module

__all__ = ["GCSServer", "gcs_bucket", "gcs_server"]


@dataclass
class GCSServer(ServerProcess):
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def fs(self) -> Any:
        """A gcsfs filesystem on the emulator, for the tests' own setup and damage.

        gcsfs's plain class: its default one (ExtendedGcsFileSystem), given anonymous
        credentials, first asks a gRPC endpoint for the bucket's layout, which the emulator
        does not serve, and retries for about two minutes before falling back.
        """
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(
            endpoint_url=self.endpoint, token="anon", project="test", skip_instance_cache=True
        )


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    proc, ready = start_module("tests.gcs", "the GCS emulator")
    server = GCSServer(proc, ready["port"])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def gcs_bucket(gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for key, value in gcs_server.env().items():
        monkeypatch.setenv(key, value)
    # No real Google credentials or metadata server: gcsfs falls back to anonymous access.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    name = f"mk-{uuid.uuid4().hex[:20]}"
    gcs_server.fs().mkdir(name)
    return name


# -- the emulator process -----------------------------------------------------------


def _serve(stdin: IO[str], stdout: IO[str]) -> None:
    import logging

    from gcp_storage_emulator.server import create_server

    logging.disable(logging.CRITICAL)  # it logs every request
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    port = server._api._httpd.server_address[1]  # port 0: the one the OS chose
    stdout.write(json.dumps({"port": port}) + "\n")
    stdout.flush()
    for _ in stdin:  # until the test session closes our standard input
        pass
    server.stop()


if __name__ == "__main__":
    _serve(sys.stdin, sys.stdout)
