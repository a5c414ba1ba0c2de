"""Running unmodified MLflow client code against a `modelkeep serve` of the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests import mkserve


def client_run(served: mkserve.Served, code: str, **env: str) -> dict[str, Any]:
    """Run MLflow client code in a fresh process; it prints one JSON document last."""
    clean = {k: v for k, v in served.client_env(None).items() if not k.startswith("MLFLOW_")}
    clean.update(
        MLFLOW_TRACKING_URI=served.url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_ENABLE_ASYNC_LOGGING="false",
        **env,
    )
    served.home.mkdir(exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=clean,
        cwd=served.home,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr[-4000:]}"
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))
