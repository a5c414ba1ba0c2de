"""What the suite's emulator plugins (tests/s3.py, gcs.py, azure.py) share: a server in a
child process on 127.0.0.1 that exits when its standard input closes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int

    def close(self) -> None:
        """Close its standard input, which ends it; kill it if it lingers."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_module(module: str, what: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Run `python -m module`, which prints one JSON line (its port, …) once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        pytest.fail(f"{what} did not start (exit {proc.returncode})", pytrace=False)
    ready: dict[str, Any] = json.loads(line)
    return proc, ready
