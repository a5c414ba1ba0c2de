"""`modelkeep serve` side by side with `mlflow server`, both driven by the same MLflow client.

The full `mlflow` server runs from a venv of its own under the work folder (made once with uv),
on SQLite with proxied artifacts (`--serve-artifacts`); `modelkeep serve` runs on the same
machine in the same run. The client is the project venv's MLflow client, in this process, one
call at a time; each workload is timed call by call and reported as p50 and p95, with the
ratio MLflow / modelkeep (above 1: modelkeep is faster). A workload the server does not answer
(an endpoint not served yet) reads `not served` and is not counted as a failure; a wrong result
(the two servers disagree on a search, an artifact comes back with other bytes) is listed under
"Problems" and makes the script exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import (
    WORK,
    BenchError,
    cli_command,
    log,
    machine,
    md_table,
    median_ms,
    p95_ms,
    process_env,
    run,
    save,
)

MLFLOW_SERVER = "mlflow==3.17.2"  # the newest full `mlflow` release on the index
MiB = 1 << 20
ENV = process_env()
os.environ.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_ENABLE_ASYNC_LOGGING="false")
os.environ.pop("MLFLOW_TRACKING_URI", None)


@dataclass(frozen=True)
class Scale:
    calls: int  # timed calls per latency workload (after two untimed ones)
    runs: int  # runs that search_runs searches
    ckpt_bytes: int  # each of the five checkpoints
    versions: int  # model versions created (each one timed)


FULL = Scale(calls=50, runs=10_000, ckpt_bytes=512 * MiB, versions=50)
QUICK = Scale(calls=10, runs=500, ckpt_bytes=32 * MiB, versions=10)
SECTIONS = ("floor", "log_batch", "search_runs", "registry", "checkpoints")


# -- the two servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mlflow_python(work: Path) -> Path:
    """The venv of the full MLflow server (bench_server.py's too), made with uv if missing."""
    venv = work / "mlflow-server-venv"
    python = venv / "bin" / "python"
    name, pinned = MLFLOW_SERVER.split("==")
    probe = f"import mlflow.server, importlib.metadata as m; print(m.version({name!r}))"

    def ready() -> bool:
        if not python.exists():
            return False
        got = subprocess.run([python, "-c", probe], env=ENV, capture_output=True, text=True)
        return got.stdout.strip() == pinned

    if not ready():
        uv = Path(sys.executable).with_name("uv")
        log(f"installing {MLFLOW_SERVER} into {venv} with uv (one-off) ...")
        run([uv, "venv", "-q", "--clear", "--python", sys.executable, venv], ENV)
        run([uv, "pip", "install", "-q", "--python", python, MLFLOW_SERVER], ENV)
        if not ready():
            raise BenchError(f"mlflow.server does not import from {venv} after installing it")
    return python


@dataclass
class Served:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    stored: Path  # the folder whose size is the bytes the server keeps for artifacts
    logfile: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _start(
    name: str, argv: Sequence[str | Path], cwd: Path, port: int, ready: str, stored: Path
) -> Served:
    logfile = cwd.parent / f"{name}-server.log"
    proc = subprocess.Popen(
        [os.fspath(a) for a in argv],
        cwd=cwd,
        env={**ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # as bench_server.py
        stdout=logfile.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers are stopped with it
    )
    served = Served(name, f"http://127.0.0.1:{port}", proc, stored, logfile)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited {proc.returncode}: {logfile.read_text()[-800:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(served.url + ready, timeout=2).status_code == 200:
                return served
        time.sleep(0.2)
    served.stop()
    raise BenchError(f"{name} did not get ready in 120 s: {logfile.read_text()[-800:]}")


def start_mlflow(work: Path, python: Path) -> Served:
    home = work / "mlflow-server"
    home.mkdir(parents=True)
    artifacts = home / "artifacts"
    port = free_port()
    argv: list[str | Path] = [
        python.with_name("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    return _start("mlflow", argv, home, port, "/health", artifacts)


def start_modelkeep(work: Path) -> tuple[Served, str]:
    """A fresh repository served by one worker, and an admin's token for the client."""
    import modelkeep as mk
    from modelkeep.meta import accounts

    root = work / "modelkeep-server"
    root.mkdir(parents=True)
    run([*cli_command(), "init", "-q"], ENV, cwd=root)
    with mk.open(root) as repo:
        accounts.add_user(repo.db, "bench", admin=True)
        token = accounts.create_token(repo.db, "bench")[0]
    port = free_port()
    argv = [*cli_command(), "serve", "--port", str(port), "--workers", "1"]
    argv += ["--rate-limit", "1000000"]  # the setup sends thousands of requests a minute
    served = _start("modelkeep", argv, root, port, "/readyz", root / ".modelkeep" / "store")
    return served, token


def du(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the workloads -------------------------------------------------------------------------------


NOT_SERVED = "not served"


@dataclass
class Result:
    """What one server did in one workload: seconds per call, or why there are none."""

    seconds: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _not_served(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException, RestException

    text = str(exc)
    if isinstance(exc, RestException) and exc.error_code == "ENDPOINT_NOT_FOUND":
        return True
    return isinstance(exc, MlflowException) and ("404" in text or "Not Found" in text)


def timed(call: Callable[[int], object], n: int, warmup: int = 2) -> list[float]:
    for i in range(warmup):
        call(-1 - i)
    seconds = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - t0)
    return seconds


def bench_floor(client: Any, s: Scale) -> Result:
    """`get_experiment`: the least a call costs (request, authentication, one row, JSON)."""
    exp = client.create_experiment("floor")
    return Result(timed(lambda _: client.get_experiment(exp), s.calls))


def bench_log_batch(client: Any, s: Scale) -> Result:
    from mlflow.entities import Metric

    exp = client.create_experiment("log-batch")
    run_id = client.create_run(exp).info.run_id
    now = int(time.time() * 1000)

    def call(i: int) -> None:
        base = (i + 10) * 100
        metrics = [Metric(f"m{j % 10}", j / 7, now, base + j // 10) for j in range(1000)]
        client.log_batch(run_id, metrics=metrics)

    out = Result(timed(call, s.calls))
    history = client.get_metric_history(run_id, "m3")
    out.extra["history"] = len(history)
    if len(history) != (s.calls + 2) * 100:
        out.note = f"m3 has {len(history)} values, not {(s.calls + 2) * 100}"
    return out


SEARCH = {
    "filter_string": "metrics.auc > 0.5 and params.model = 'rf'",
    "order_by": ["metrics.auc DESC"],
    "max_results": 100,
}


def bench_search_runs(client: Any, s: Scale) -> Result:
    from mlflow.entities import Metric, Param, RunTag

    exp = client.create_experiment("search")
    rng = random.Random(7)
    aucs = [i / s.runs for i in range(s.runs)]
    rng.shuffle(aucs)
    now = int(time.time() * 1000)

    def make(i: int) -> None:
        run_id = client.create_run(exp, run_name=f"r{i:05d}").info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric("auc", aucs[i], now, 0), Metric("loss", 1 - aucs[i], now, 0)],
            params=[Param("model", ("rf", "gbm", "mlp")[i % 3]), Param("lr", str(i % 10))],
            tags=[RunTag("team", ("risk", "ops")[i % 2])],
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(make, range(s.runs)))
    setup = time.perf_counter() - t0
    found: list[str] = []

    def call(_: int) -> None:
        found[:] = [r.info.run_name for r in client.search_runs([exp], **SEARCH)]

    out = Result(timed(call, s.calls))
    out.extra.update(setup_s=setup, found=found)
    return out


def bench_registry(client: Any, s: Scale, tmp: Path) -> dict[str, Result]:
    exp = client.create_experiment("registry")
    run_id = client.create_run(exp).info.run_id
    made, got = Result(), Result()
    try:
        # The run logs one small model per version first (untimed): modelkeep registers the
        # files a source names (a version is a snapshot of them), MLflow records the URI.
        rng = random.Random(3)
        for i in range(s.versions + 2):
            model = tmp / f"model{i}"
            model.mkdir(parents=True)
            (model / "MLmodel").write_text(f"artifact_path: model{i}\nflavors: {{}}\n")
            (model / "weights.bin").write_bytes(rng.randbytes(64 * 1024))
            client.log_artifacts(run_id, str(model), f"model{i}")
        client.create_registered_model("bench-model")
        numbers: list[str] = []

        def create(i: int) -> None:
            source = f"runs:/{run_id}/model{i + 2}"
            made_one = client.create_model_version("bench-model", source, run_id=run_id)
            numbers.append(made_one.version)

        made.seconds = timed(create, s.versions)
        if len(set(numbers)) != len(numbers):
            made.note = f"{len(numbers)} registrations made {len(set(numbers))} versions"
        client.set_registered_model_alias("bench-model", "champion", "2")

        def by_alias(_: int) -> None:
            if client.get_model_version_by_alias("bench-model", "champion").version != "2":
                raise BenchError("the alias champion does not point at version 2")

        got.seconds = timed(by_alias, s.calls)
    except BenchError:
        raise
    except Exception as exc:
        if not _not_served(exc):
            raise
        note = f"{NOT_SERVED} ({str(exc).splitlines()[0][:80]})"
        made.note = made.note or note
        got.note = got.note or note
    return {"create_model_version": made, "get_model_version_by_alias": got}


def checkpoints(work: Path, s: Scale) -> list[Path]:
    """Five successive float32 checkpoints, ~10% of the bytes changed each (bench_store's W2)."""
    import bench_store as bs

    folder = work / "data" / f"mlflow-ckpt-{s.ckpt_bytes // MiB}MiB"
    paths = [folder / f"ckpt{i}.safetensors" for i in range(5)]
    spec = folder / ".spec"
    want = f"{bs.GENERATOR_VERSION} {s.ckpt_bytes}"
    if spec.exists() and spec.read_text() == want and all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    log(f"generating five checkpoints of {s.ckpt_bytes // MiB} MiB in {folder} ...")
    lo, hi = (MiB, 16 * MiB) if s.ckpt_bytes >= 256 * MiB else (256 * 1024, 4 * MiB)
    tensors = bs.tensor_layout(s.ckpt_bytes, lo, hi, seed=2)
    for i, path in enumerate(paths):
        if i:
            tensors = bs.successor(tensors, 0.10, i, seed=2)
        bs.write_safetensors(path, tensors)
    spec.write_text(want)
    return paths


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def bench_checkpoints(client: Any, served: Served, paths: list[Path], tmp: Path) -> Result:
    exp = client.create_experiment("checkpoints")
    run_id = client.create_run(exp).info.run_id
    out = Result()
    before = du(served.stored)
    try:
        for i, path in enumerate(paths):
            t0 = time.perf_counter()
            client.log_artifact(run_id, str(path), artifact_path=f"step{i}")
            out.seconds.append(time.perf_counter() - t0)
            out.extra.setdefault("stored", []).append(du(served.stored) - before)
        back = Path(client.download_artifacts(run_id, f"step4/{paths[4].name}", str(tmp)))
        if sha256(back) != sha256(paths[4]):
            out.note = "the last checkpoint came back with other bytes"
        back.unlink()
    except Exception as exc:
        if not _not_served(exc) and "artifact" not in str(exc).lower():
            raise
        out.note = f"{NOT_SERVED} ({str(exc).splitlines()[0][:80]})"
    return out


# -- the report ------------------------------------------------------------------------------------


def ratio(a: list[float], b: list[float]) -> str:
    if not a or not b:
        return "—"
    return f"{median_ms(a) / median_ms(b):.2f}×"


def cell(r: Result, fn: Callable[[list[float]], float]) -> str:
    if not r.seconds:
        return r.note.split(" (")[0] or "—"
    ms = fn(r.seconds)
    return f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}"


def report(
    results: dict[str, dict[str, Result]], s: Scale, mode: str, problems: list[str]
) -> tuple[list[str], dict[str, Any]]:
    lines = [
        f"# modelkeep serve vs mlflow server ({mode})",
        "",
        f"Machine: {machine('mlflow-skinny')}. Server: {MLFLOW_SERVER}, one worker each, SQLite.",
        "The machine was shared with other work while this ran.",
        "",
    ]
    rows = []
    for name, by in results.items():
        if name == "checkpoints":
            continue
        m, k = by.get("mlflow", Result()), by.get("modelkeep", Result())
        rows.append(
            [
                name,
                str(len(m.seconds) or "—"),
                cell(m, median_ms),
                cell(m, p95_ms),
                cell(k, median_ms),
                cell(k, p95_ms),
                ratio(m.seconds, k.seconds),
            ]
        )
    head = ["workload", "calls", "mlflow p50 ms", "p95", "modelkeep p50 ms", "p95", "mlflow/mk"]
    lines += [*md_table(head, rows), ""]
    if "search_runs" in results:
        setup = {k: v.extra.get("setup_s") for k, v in results["search_runs"].items()}
        made = ", ".join(f"{k} {v:.0f} s" for k, v in setup.items() if v is not None)
        lines += [f"search_runs: {s.runs:,} runs, made with 4 client threads ({made}).", ""]
    if "checkpoints" in results:
        mc, kc = results["checkpoints"].get("mlflow"), results["checkpoints"].get("modelkeep")
        rows = []
        for i in range(5):
            row = [f"ckpt{i}"]
            for r in (mc, kc):
                if r is None or len(r.seconds) <= i:
                    row += [r.note.split(" (")[0] if r else "—", "—"]
                else:
                    row += [f"{r.seconds[i]:.2f}", f"{r.extra['stored'][i] / MiB:,.0f}"]
            rows.append(row)
        head = ["log_artifact", "mlflow s", "stored MiB", "modelkeep s", "stored MiB"]
        lines += md_table(head, rows)
        if mc and kc and mc.extra.get("stored") and len(kc.extra.get("stored", [])) == 5:
            share = kc.extra["stored"][-1] / mc.extra["stored"][-1]
            lines += ["", f"Stored bytes, modelkeep / MLflow after five checkpoints: {share:.1%}."]
        lines.append("")
    if problems:
        lines += ["## Problems", "", *(f"- {p}" for p in problems), ""]
    doc = {
        "mode": mode,
        "scale": s.__dict__,
        "results": {
            w: {
                srv: {"seconds": r.seconds, "note": r.note, "extra": r.extra}
                for srv, r in by.items()
            }
            for w, by in results.items()
        },
        "problems": problems,
    }
    return lines, doc


@contextlib.contextmanager
def servers(
    work: Path, venvs: Path, which: Sequence[str]
) -> Iterator[dict[str, tuple[Served, str]]]:
    started: dict[str, tuple[Served, str]] = {}
    try:
        if "mlflow" in which:
            started["mlflow"] = (start_mlflow(work, mlflow_python(venvs)), "")
        if "modelkeep" in which:
            started["modelkeep"] = start_modelkeep(work)
        yield started
    finally:
        for served, _ in started.values():
            served.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--workdir", type=Path, default=WORK)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"a subset of {','.join(SECTIONS)}")
    p.add_argument("--skip-mlflow", action="store_true", help="run modelkeep's server only")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    only = [x for x in args.only.split(",") if x]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}: choose from {SECTIONS}")
    s, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.workdir / "mlflow" / stamp
    which = ["modelkeep"] if args.skip_mlflow else ["mlflow", "modelkeep"]
    paths = checkpoints(args.workdir, s) if "checkpoints" in only else []
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after mlflow set its own levels
    results: dict[str, dict[str, Result]] = {}
    problems: list[str] = []
    with servers(work, args.workdir, which) as started:
        for name, (served, token) in started.items():
            log(f"{name} at {served.url}")
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
            if token:
                os.environ["MLFLOW_TRACKING_TOKEN"] = token
            client = MlflowClient(tracking_uri=served.url, registry_uri=served.url)
            for section in only:
                log(f"{name}: {section} ...")
                try:
                    if section == "floor":
                        results.setdefault("get_experiment", {})[name] = bench_floor(client, s)
                    elif section == "log_batch":
                        results.setdefault(section, {})[name] = bench_log_batch(client, s)
                    elif section == "search_runs":
                        results.setdefault(section, {})[name] = bench_search_runs(client, s)
                    elif section == "registry":
                        for key, r in bench_registry(client, s, work / f"{name}-reg").items():
                            results.setdefault(key, {})[name] = r
                    else:
                        tmp = work / f"{name}-download"
                        tmp.mkdir()
                        results.setdefault(section, {})[name] = bench_checkpoints(
                            client, served, paths, tmp
                        )
                except Exception as exc:
                    problems.append(f"{name} {section}: {type(exc).__name__}: {exc}"[:600])
                    log(problems[-1])
        for section, by in results.items():
            for name, r in by.items():
                if r.note and not r.note.startswith(NOT_SERVED):
                    problems.append(f"{name} {section}: {r.note}")
        found = {k: r.extra.get("found") for k, r in results.get("search_runs", {}).items()}
        if len(found) == 2 and found["mlflow"] != found["modelkeep"]:
            problems.append(
                "search_runs: the two servers found different runs, or in another order"
            )
    lines, doc = report(results, s, mode, problems)
    save(args.workdir, f"bench-mlflow-{mode}", lines, doc)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
