"""MLflow's own client-side tests, run against `modelkeep serve`: how many pass, and why not.

MLflow's tests/tracking/test_rest_tracking.py and test_model_registry.py start a tracking
server through a fixture (`mlflow_client`, which calls `_init_server` from
tests/tracking/integration_test_utils.py) and then drive it with `MlflowClient`. This script
copies the chosen test files out of an MLflow checkout into a folder of its own, beside
stand-ins for the two helper modules they import, whose `_init_server` starts a fresh
`modelkeep serve` (a copy of a repository made once, with an admin account whose token the
client sends) instead of `mlflow server`. pytest then runs them in the venv of the full
`mlflow` package (bench_mlflow.py's, with pytest added), and the script prints passed /
failed / errors per file and the commonest first lines of the failures.

Each test gets a server of its own, as in MLflow's suite; the fixture's "file" parameter
(MLflow's file store, which modelkeep has no counterpart of) is deselected, so each test runs
once. A report, not part of the test suite: a failure here is a difference to look at, and
some are deliberate (the run's user is the account, not the `user_id` the client sends).

    git clone --depth 1 --branch v3.17.2 https://github.com/mlflow/mlflow \
        benchmarks/.work/mlflow-src
    .venv/bin/python benchmarks/mlflow_suite.py [--mlflow-src DIR] [-k EXPR] [--files a.py,b.py]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from common import WORK, BenchError, cli_command, log, md_table, process_env, run, save

FILES = ("tests/tracking/test_rest_tracking.py", "tests/tracking/test_model_registry.py")
ENV = process_env()

# The stand-ins written beside the copied tests. They are ours, not MLflow's.
INTEGRATION_TEST_UTILS = '''
"""Stand-in for MLflow's tests/tracking/integration_test_utils.py: `modelkeep serve`."""
import contextlib, os, shutil, socket, subprocess, tempfile, time
from pathlib import Path
import requests

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

@contextlib.contextmanager
def _init_server(backend_uri=None, root_artifact_uri=None, extra_env=None, app=None,
                 server_type=None, **kwargs):
    home = Path(tempfile.mkdtemp(prefix="mk-suite-"))
    root = home / "store"
    shutil.copytree(os.environ["MKSUITE_TEMPLATE"], root)
    port = _free_port()
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*os.environ["MKSUITE_MODELKEEP"].split("\\x1f"), "serve", "--port", str(port),
         "--rate-limit", "1000000"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(extra_env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                raise RuntimeError((home / "serve.log").read_text()[-2000:])
            time.sleep(0.1)
        os.environ["MLFLOW_TRACKING_TOKEN"] = os.environ["MKSUITE_TOKEN"]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(home, ignore_errors=True)

def _send_rest_tracking_post_request(tracking_server_uri, api_path, json_payload, auth=None):
    headers = {"Authorization": "Bearer " + os.environ["MKSUITE_TOKEN"]}
    return requests.post(tracking_server_uri + api_path, json=json_payload, headers=headers)

def _await_server_down_or_die(process, timeout=60):
    process.wait(timeout=timeout)

def _terminate_server(process, timeout=10):
    process.terminate()
    process.wait(timeout=timeout)
'''

INTEGRATION_UTILS = '''
"""Stand-in for MLflow's tests/integration/utils.py."""
from click.testing import CliRunner

def invoke_cli_runner(*args, **kwargs):
    res = CliRunner().invoke(*args, **kwargs)
    assert res.exit_code == 0, f"Got non-zero exit code {res.exit_code}. Output is: {res.output}"
    return res
'''

CONFTEST = '''
"""The suite's own conftest: one run per test (MLflow's file store has no counterpart)."""
import os
import pytest

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        (dropped if params.get("mlflow_client") == "file" else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept

def pytest_configure(config):
    for mark in ("allow_infer_pip_requirements_fallback", "notrackingurimock", "skipcacheclean"):
        config.addinivalue_line("markers", mark)
'''


def suite_python(work: Path) -> Path:
    """bench_mlflow.py's venv of the full MLflow package, with pytest added once."""
    from bench_mlflow import mlflow_python

    python = mlflow_python(work)
    probe = subprocess.run([python, "-c", "import pytest"], capture_output=True, check=False)
    if probe.returncode != 0:
        log("adding pytest to the MLflow venv (one-off) ...")
        uv = Path(sys.executable).with_name("uv")
        run([uv, "pip", "install", "-q", "--python", python, "pytest"], ENV)
    return python


def template(folder: Path) -> tuple[Path, str]:
    """A repository with an admin account, copied for each test's server, and its token."""
    import modelkeep as mk
    from modelkeep.meta import accounts

    root = folder / "template"
    root.mkdir(parents=True)
    run([*cli_command(), "init", "-q"], ENV, cwd=root)
    with mk.open(root) as repo:
        accounts.add_user(repo.db, "suite", admin=True)
        token = accounts.create_token(repo.db, "suite")[0]
    return root, token


def lay_out(src: Path, files: Sequence[str], folder: Path) -> list[str]:
    """The chosen test files (those the checkout has) beside the stand-ins; their paths."""
    for package in ("tests", "tests/tracking", "tests/integration"):
        (folder / package).mkdir(parents=True, exist_ok=True)
        (folder / package / "__init__.py").touch()
    (folder / "tests/tracking/integration_test_utils.py").write_text(INTEGRATION_TEST_UTILS)
    (folder / "tests/integration/utils.py").write_text(INTEGRATION_UTILS)
    (folder / "conftest.py").write_text(CONFTEST)
    found = []
    for name in files:
        if (src / name).is_file():
            shutil.copy(src / name, folder / name)
            found.append(name)
        else:
            log(f"{name} is not in {src}: skipped")
    if not found:
        raise BenchError(f"none of {list(files)} is in {src}: give an MLflow checkout")
    return found


def tally(junit: Path) -> tuple[dict[str, collections.Counter[str]], collections.Counter[str]]:
    """Outcomes per file, and the first lines of the failures, commonest first."""
    per_file: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    causes: collections.Counter[str] = collections.Counter()
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = (case.get("classname") or "").replace(".", "/") + ".py"
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed", "error": "errors"}.get(tag, tag)
                if tag != "skipped":
                    text = (found.get("message") or found.text or "").strip()
                    causes[text.splitlines()[0][:160] if text else tag] += 1
                break
        per_file[name][outcome] += 1
    return per_file, causes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--mlflow-src", type=Path, default=WORK / "mlflow-src")
    p.add_argument("--files", default=",".join(FILES), help="test files, comma-separated")
    p.add_argument("-k", dest="keyword", default="", help="pytest -k expression")
    p.add_argument("--workdir", type=Path, default=WORK)
    p.add_argument("--causes", type=int, default=15, help="how many failure causes to list")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.workdir / "mlflow-suite" / time.strftime("%Y%m%d-%H%M%S")
    files = lay_out(args.mlflow_src, [f for f in args.files.split(",") if f], folder / "run")
    python = suite_python(args.workdir)
    root, token = template(folder)
    env = dict(ENV)
    for var in [k for k in env if k.startswith("MLFLOW_")]:
        env.pop(var)
    env.update(
        MKSUITE_TEMPLATE=str(root),
        MKSUITE_TOKEN=token,
        MKSUITE_MODELKEEP="\x1f".join(cli_command()),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    junit = folder / "junit.xml"
    argv_: list[str | Path] = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=line"]
    argv_ += ["--rootdir", str(folder / "run"), f"--junitxml={junit}", *files]
    if args.keyword:
        argv_ += ["-k", args.keyword]
    log(f"running {len(files)} file(s) of MLflow's tests against modelkeep serve ...")
    proc = subprocess.run(
        [os.fspath(a) for a in argv_], cwd=folder / "run", env=env, capture_output=True, text=True
    )
    (folder / "pytest.log").write_text(proc.stdout + proc.stderr)
    if not junit.exists():
        raise BenchError(f"pytest wrote no report: {(proc.stdout + proc.stderr)[-1500:]}")
    per_file, causes = tally(junit)
    kinds = ("passed", "failed", "errors", "skipped")
    rows = [[name, *(str(c[k]) for k in kinds)] for name, c in sorted(per_file.items())]
    total = sum(per_file.values(), collections.Counter())
    rows.append(["total", *(str(total[k]) for k in kinds)])
    lines = [
        "# MLflow's client-side tests against modelkeep serve",
        "",
        f"Tests from {args.mlflow_src}, run with the full mlflow package of "
        f"{python.parent.parent}; pytest's log in {folder / 'pytest.log'}.",
        "",
        *md_table(["file", *kinds], rows),
        "",
        "Commonest first lines of the failures and errors:",
        "",
        *md_table(
            ["first line", "count"],
            [[f"`{t}`", str(n)] for t, n in causes.most_common(args.causes)],
        ),
    ]
    save(args.workdir, "mlflow-suite", lines, {"per_file": per_file, "causes": dict(causes)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
