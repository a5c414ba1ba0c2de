"""Running unmodified MLflow client code against a `modelkeep serve` of the tests.

Two clients: the newest 3.x (in the project venv) and 2.22, the last of the 2.x line, which
teams still run. 2.22 lives in a venv of its own that the tests make on first use, once per
machine, under ~/.cache/modelkeep-tests (or $MODELKEEP_TEST_CACHE), with `uv` (next to the
interpreter, as `make venv` installs it, else on PATH), under a file lock so that xdist
workers wait for one another instead of racing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests import mkserve

MLFLOW_2 = "2.22"
CLIENTS = ("3", MLFLOW_2)  # for pytest.mark.parametrize / fixture params
_REQUIREMENTS = (f"mlflow-skinny=={MLFLOW_2}.*", "pandas>=2.0")  # search_runs gives a DataFrame


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "modelkeep-tests"
    return Path(os.environ.get("MODELKEEP_TEST_CACHE") or default)


def _uv() -> str:
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise RuntimeError("the MLflow 2.22 client's venv is made with uv: `pip install uv`")
    return found


def mlflow2_python() -> str:
    """The Python of a venv holding mlflow-skinny 2.22, made on first use and then reused."""
    venv = cache_dir() / f"mlflow-{MLFLOW_2}"
    python = venv / "bin" / "python"
    ready = venv / ".ready"  # written last: a venv without it is half made
    if ready.exists():
        return str(python)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"mlflow-{MLFLOW_2}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be making it: wait for it
        if not ready.exists():
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
            for step in (
                [_uv(), "venv", "-q", "--clear", "--python", sys.executable, str(venv)],
                [_uv(), "pip", "install", "-q", "--python", str(python), *_REQUIREMENTS],
            ):
                r = subprocess.run(step, env=env, capture_output=True, text=True, check=False)
                assert r.returncode == 0, f"{' '.join(step)}: {r.stderr[-2000:]}"
            ready.write_text(MLFLOW_2)
    return str(python)


def python_for(client: str) -> str:
    return sys.executable if client == "3" else mlflow2_python()


def client_run(served: mkserve.Served, code: str, client: str = "3", **env: str) -> dict[str, Any]:
    """Run MLflow client code in a fresh process; it prints one JSON document last."""
    clean = {k: v for k, v in served.client_env(None).items() if not k.startswith("MLFLOW_")}
    clean.update(
        MLFLOW_TRACKING_URI=served.url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_ENABLE_ASYNC_LOGGING="false",
        MLFLOW_DISABLE_TELEMETRY="true",  # 3.x fetches a telemetry config from the internet
        DO_NOT_TRACK="true",
        **env,
    )
    if client != "3":
        clean.pop("PYTHONPATH", None)  # the other venv's own packages, not the project's
        clean.pop("VIRTUAL_ENV", None)
    served.home.mkdir(exist_ok=True)
    r = subprocess.run(
        [python_for(client), "-c", code],
        env=clean,
        cwd=served.home,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-4000:]}"
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))
