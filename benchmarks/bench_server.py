#!/usr/bin/env python3
"""HTTP server benchmark: `modelkeep serve` vs `mlflow server`, same machine, same run.

Both servers run on this machine with a SQLite backend, and client processes (each with its
own httpx client: the same library on both sides, so the client costs the same) send them the
same registry work over HTTP, with 1 and with 16 clients at once: register a version, set an
alias, resolve NAME@ALIAS, list 1,000 versions. Then the bytes: a 1 GiB float32 safetensors
file (bench_store.py's W1) and its ~10%-changed successor pushed through modelkeep's server
(`ServerRepo.add`) and through MLflow's artifact proxy, counting the request bodies.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_store
import blake3
import common
import httpx
from common import BenchError, log

import modelkeep as mk

MLFLOW_REQUIREMENTS = ("mlflow==3.17.2",)  # the full package: `mlflow server` needs Flask etc.
TARGET_RATIO = 2.0  # modelkeep at least this many times faster, p50 and p99
BYTES_TARGET = 0.32  # modelkeep's bytes on the wire at most this share of MLflow's
LIST_VERSIONS = 1_000
ROUNDS = 4  # turns per operation and client count: the tools alternate, order rotating
CLIENTS = (1, 16)
OPS = ("register", "set_alias", "resolve", "list_1k")
READY_S = 300.0  # MLflow takes a minute to start on a loaded 2-core machine
MiB = 1 << 20

# One request: timed?, method, path, JSON body, query parameters, check of the answer.
# A check is None (any 2xx), or ("number" | "length", keys into the JSON answer, expected).
Check = tuple[str, tuple[str, ...], int] | None
Req = tuple[bool, str, str, Any, Any, Check]


# -- client processes -------------------------------------------------------------------------


def verify(response: httpx.Response, check: Check) -> str | None:
    """What is wrong with an answer, or None."""
    if response.status_code >= 300:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if check is None:
        return None
    kind, keys, want = check
    try:
        doc: Any = response.json()
        for key in keys:
            doc = doc[key]
        got = int(doc) if kind == "number" else len(doc)
    except (ValueError, KeyError, TypeError) as exc:
        return f"unexpected answer ({type(exc).__name__}: {exc}): {response.text[:200]}"
    return None if got == want else f"{kind} {'/'.join(keys)}: expected {want}, got {got}"


def client_loop(conn: multiprocessing.connection.Connection) -> None:
    """A client process: jobs in (base URL, headers, start time, requests), latencies out.

    Every job waits for its start time (CLOCK_MONOTONIC is one clock for all processes), so
    the clients of a round start together. One keep-alive httpx client per server."""
    clients: dict[str, httpx.Client] = {}
    while (job := conn.recv()) is not None:
        url, headers, start_at, reqs = job
        http = clients.get(url) or clients.setdefault(
            url, httpx.Client(base_url=url, headers=headers, timeout=600)
        )
        seconds: list[float] = []
        problems: list[str] = []
        time.sleep(max(0.0, start_at - time.monotonic()))
        for timed, method, path, body, params, check in reqs:
            t0 = time.perf_counter()
            try:
                response = http.request(method, path, json=body, params=params)
            except httpx.HTTPError as exc:
                problems.append(f"{method} {path}: {type(exc).__name__}: {exc}")
                continue
            dt = time.perf_counter() - t0
            if problem := verify(response, check):  # parsing the answer is not timed
                problems.append(f"{method} {path}: {problem}")
            elif timed:
                seconds.append(dt)
        conn.send((seconds, time.monotonic(), problems))
    for http in clients.values():
        http.close()


class ClientPool:
    """n client processes, started once (forked before any thread exists)."""

    def __init__(self, n: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs = []
        for _ in range(n):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=client_loop, args=(there,), daemon=True)
            proc.start()
            self.conns.append(here)
            self.procs.append(proc)

    def run(
        self, url: str, headers: dict[str, str], jobs: list[list[Req]]
    ) -> tuple[list[float], float, list[str]]:
        """One job per client, started together: latencies, wall seconds, problems."""
        start_at = time.monotonic() + 0.05
        for conn, reqs in zip(self.conns, jobs, strict=False):
            conn.send((url, headers, start_at, reqs))
        seconds: list[float] = []
        problems: list[str] = []
        end = start_at
        for conn in self.conns[: len(jobs)]:
            s, finished, p = conn.recv()
            seconds += s
            problems += p
            end = max(end, finished)
        return seconds, end - start_at, problems

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


# -- the two servers, as requests ---------------------------------------------------------------


@dataclass
class Side:
    """One server and how each primitive looks on it."""

    label: str
    url: str
    headers: dict[str, str]
    proc: subprocess.Popen[bytes]
    version: str = ""

    def register(self, model: str, n: int) -> Req:
        raise NotImplementedError

    def alias(self, model: str, alias: str, n: int) -> Req:
        raise NotImplementedError

    def resolve(self, model: str, alias: str, n: int, timed: bool = True) -> Req:
        raise NotImplementedError

    def listing(self, model: str, count: int) -> Req:
        raise NotImplementedError

    def create(self, model: str) -> list[Req]:
        return []


@dataclass
class Modelkeep(Side):
    sources: tuple[str, str] = ("", "")  # two small versions, registered in turn

    def register(self, model: str, n: int) -> Req:
        # A registration of an existing version (no bytes move): what create_model_version
        # is on MLflow's side. Alternating sources makes each call a new version.
        body = {"source_ref": self.sources[n % 2]}
        return (
            True,
            "POST",
            f"/api/v1/models/{model}/versions",
            body,
            None,
            ("number", ("number",), n),
        )

    def alias(self, model: str, alias: str, n: int) -> Req:
        body = {"target": f"{model}:v{n}"}
        return (
            True,
            "PUT",
            f"/api/v1/aliases/{model}@{alias}",
            body,
            None,
            ("number", ("number",), n),
        )

    def resolve(self, model: str, alias: str, n: int, timed: bool = True) -> Req:
        return (
            timed,
            "GET",
            f"/api/v1/versions/{model}@{alias}",
            None,
            None,
            ("number", ("number",), n),
        )

    def listing(self, model: str, count: int) -> Req:
        path = f"/api/v1/artifacts/{model}/versions"
        return (True, "GET", path, None, None, ("length", (), count))


@dataclass
class Mlflow(Side):
    run_id: str = ""  # a run whose artifacts hold the model, as mlflow.register_model has it
    source: str = ""

    def create(self, model: str) -> list[Req]:
        path = "/api/2.0/mlflow/registered-models/create"
        return [(False, "POST", path, {"name": model}, None, None)]

    def register(self, model: str, n: int) -> Req:
        path = "/api/2.0/mlflow/model-versions/create"
        body = {"name": model, "source": self.source, "run_id": self.run_id}
        return (True, "POST", path, body, None, ("number", ("model_version", "version"), n))

    def alias(self, model: str, alias: str, n: int) -> Req:
        # answers {}: the resolves after the phase check where each alias points
        body = {"name": model, "alias": alias, "version": str(n)}
        return (True, "POST", "/api/2.0/mlflow/registered-models/alias", body, None, None)

    def resolve(self, model: str, alias: str, n: int, timed: bool = True) -> Req:
        path, params = "/api/2.0/mlflow/registered-models/alias", {"name": model, "alias": alias}
        return (timed, "GET", path, None, params, ("number", ("model_version", "version"), n))

    def listing(self, model: str, count: int) -> Req:
        params = {"filter": f"name='{model}'", "max_results": LIST_VERSIONS}
        path = "/api/2.0/mlflow/model-versions/search"
        return (True, "GET", path, None, params, ("length", ("model_versions",), count))


def wait_ready(side: Side, path: str, log_file: Path) -> None:
    deadline = time.monotonic() + READY_S
    while True:
        if side.proc.poll() is not None:
            raise BenchError(f"{side.label} exited at start: {log_file.read_text()[-800:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(side.url + path, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"{side.label} was not ready after {READY_S:.0f} s; see {log_file}")
        time.sleep(0.2)


def start_modelkeep(run_dir: Path, env: dict[str, str], workers: int) -> Modelkeep:
    """`modelkeep serve` on a fresh store, with an admin account and its token."""
    root = run_dir / "mk-server"
    mk.init(root).close()
    cli = common.cli(root, env)
    cli("user", "add", "alice", "--admin")
    token = json.loads(cli("token", "create", "--user", "alice", "--json"))["token"]
    port = free_port()
    log_file = run_dir / "modelkeep-serve.log"
    argv = [*common.cli_command(), "--repo", str(root), "serve", "--port", str(port)]
    argv += ["--workers", str(workers), "--rate-limit", "0"]  # the default 1,200/min would 429
    proc = subprocess.Popen(
        argv, cwd=root, env=env, stdout=log_file.open("wb"), stderr=subprocess.STDOUT
    )
    side = Modelkeep(
        "modelkeep", f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}, proc
    )
    with stopped_on_error(proc):
        wait_ready(side, "/readyz", log_file)
    side.version = common.version("modelkeep")
    return side


def start_mlflow(work: Path, run_dir: Path, env: dict[str, str], workers: int) -> Mlflow:
    python = common.peer_venv(
        work / "mlflow-server-venv", MLFLOW_REQUIREMENTS, "mlflow.server", env
    )
    port = free_port()
    log_file = run_dir / "mlflow-server.log"
    argv = [str(python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{run_dir / 'mlflow.db'}"]
    argv += ["--artifacts-destination", str(run_dir / "mlflow-artifacts")]
    argv += ["--workers", str(workers)]
    proc = subprocess.Popen(  # its own process group: it starts a uvicorn child
        argv,
        cwd=run_dir,
        env=env,
        stdout=log_file.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    side = Mlflow("MLflow", f"http://127.0.0.1:{port}", {}, proc)
    with stopped_on_error(proc, group=True):
        wait_ready(side, "/health", log_file)
        url = side.url + "/api/2.0/mlflow/runs/create"
        made = httpx.post(url, json={"experiment_id": "0"}, timeout=60)
        if made.status_code != 200:
            raise BenchError(f"MLflow runs/create: HTTP {made.status_code} {made.text[:300]}")
    info = made.json()["run"]["info"]
    side.run_id, side.source = info["run_id"], info["artifact_uri"] + "/model"
    probe = "import importlib.metadata as m; print(m.version('mlflow'))"
    side.version = common.run([python, "-c", probe], env).strip()
    return side


@contextlib.contextmanager
def stopped_on_error(proc: subprocess.Popen[bytes], group: bool = False) -> Iterator[None]:
    try:
        yield
    except BaseException:
        stop(proc, group)
        raise


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], group: bool = False) -> None:
    """End a server this script started (with group: its whole process group)."""
    import signal

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
    if group:
        time.sleep(1)
        send(signal.SIGKILL)  # a child left behind


# -- the registry work --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    requests: int  # timed requests per write/resolve operation and client count
    list_requests: int  # ... per listing
    workers: int  # server worker processes, both sides

    def per_client(self, op: str, clients: int) -> int:
        """Timed requests per client and round."""
        total = self.list_requests if op == "list_1k" else self.requests
        return max(1, math.ceil(total / (ROUNDS * clients)))


@dataclass
class State:
    """What each side's registry holds, to build requests and their expected answers."""

    side: Side
    counts: dict[str, int] = field(default_factory=dict)  # versions per model
    aliases: dict[str, int] = field(default_factory=dict)  # alias of m -> version
    flips: int = 0

    def register(self, model: str) -> Req:
        self.counts[model] = self.counts.get(model, 0) + 1
        return self.side.register(model, self.counts[model])

    def job(self, op: str, client: int, n: int) -> list[Req]:
        """n timed requests of op for one client."""
        s = self.side
        match op:
            case "register":  # each client grows its own model: answers stay predictable
                return [self.register(f"reg-c{client:02d}") for _ in range(n)]
            case "set_alias":  # its own alias of m, between m:v1 and m:v2
                reqs = []
                for _ in range(n):
                    self.flips += 1
                    target = 1 + self.flips % 2
                    self.aliases[f"c{client:02d}"] = target
                    reqs.append(s.alias("m", f"c{client:02d}", target))
                return reqs
            case "resolve":
                return [s.resolve("m", "champion", 1)] * n
        return [s.listing("m1k", LIST_VERSIONS)] * n


def setup_registry(st: State, pool: ClientPool) -> list[str]:
    """Untimed: models m (2 versions, alias champion -> v1), m1k (1,000 versions) and one
    per client (1 version); then every client warms its connection with two resolves."""
    s = st.side
    log(f"{s.label}: setting up the models (1,000 registrations of m1k) ...")
    reqs: list[Req] = []
    for model in ("m", "m1k", *(f"reg-c{c:02d}" for c in range(max(CLIENTS)))):
        reqs += s.create(model)
    reqs += [st.register("m"), st.register("m"), s.alias("m", "champion", 1)]
    reqs += [st.register(f"reg-c{c:02d}") for c in range(max(CLIENTS))]
    reqs += [st.register("m1k") for _ in range(LIST_VERSIONS)]
    _, _, p = pool.run(s.url, s.headers, [reqs])
    warm = [[s.resolve("m", "champion", 1, timed=False)] * 2 for _ in range(max(CLIENTS))]
    _, _, p2 = pool.run(s.url, s.headers, warm)
    return [f"{s.label} setup: {x}" for x in [*p, *p2]]


@dataclass
class Cell:
    seconds: list[float] = field(default_factory=list)
    wall: float = 0.0  # summed over rounds

    @property
    def throughput(self) -> float:
        return len(self.seconds) / self.wall if self.wall else 0.0


Results = dict[str, dict[str, Cell]]  # "op/clients" -> side label -> samples


def bench_registry(
    states: list[State], pool: ClientPool, plan: Plan, o: Outcome, ops: Sequence[str] = OPS
) -> None:
    """Each operation with 1 and 16 clients, the sides taking turns round by round."""
    for op in ops:
        for clients in CLIENTS:
            key, per = f"{op}/{clients}", plan.per_client(op, clients)
            log(f"{key}: {ROUNDS} rounds of {clients} x {per} per side (load {common.load_avg()})")
            cells = o.results.setdefault(key, {st.side.label: Cell() for st in states})
            for r in range(ROUNDS):
                for st in states[r % 2 :] + states[: r % 2]:
                    s = st.side
                    jobs = [st.job(op, c, per) for c in range(clients)]
                    seconds, wall, problems = pool.run(s.url, s.headers, jobs)
                    cells[s.label].seconds += seconds
                    cells[s.label].wall += wall
                    o.problems += [f"{s.label} {key}: {p}" for p in problems[:3]]
                    if len(problems) > 3:
                        o.problems.append(f"{s.label} {key}: {len(problems) - 3} more failures")
            if op == "set_alias":  # where each alias points now, on both sides
                for st in states:
                    s = st.side
                    reqs = [s.resolve("m", a, n, timed=False) for a, n in st.aliases.items()]
                    _, _, problems = pool.run(s.url, s.headers, [reqs])
                    o.problems += [f"{s.label} alias check: {p}" for p in problems]


# -- bytes ------------------------------------------------------------------------------------


def workloads(scale: bench_store.Scale, data: Path) -> tuple[Path, Path]:
    """W1 of bench_store.py (same layout and seed, so the same bytes) and a successor with
    whole tensors re-randomised until ~10% of the bytes changed; kept and reused."""
    w1, w1b = data / "w1.safetensors", data / "w1-next.safetensors"
    spec = {"generator": bench_store.GENERATOR_VERSION, "seed": bench_store.BASE_SEED}
    spec |= {"bytes": scale.w1_bytes, "lo": scale.tensor_min, "hi": scale.tensor_max}
    marker = data / ".spec"
    if marker.exists() and json.loads(marker.read_text()) == spec and w1b.exists():
        return w1, w1b
    log(f"generating W1 ({scale.w1_bytes / MiB:,.0f} MiB) and its successor in {data} ...")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    tensors = bench_store.tensor_layout(scale.w1_bytes, scale.tensor_min, scale.tensor_max, seed=1)
    bench_store.write_safetensors(w1, tensors)
    bench_store.write_safetensors(w1b, bench_store.successor(tensors, 0.10, 1, seed=1))
    marker.write_text(json.dumps(spec))
    return w1, w1b


@dataclass
class Push:
    file: str
    size: int
    changed: int  # bytes that differ from the previous file (0 for the first)
    modelkeep_bytes: int = 0
    modelkeep_requests: int = 0
    modelkeep_s: float = 0.0
    mlflow_bytes: int = 0
    mlflow_requests: int = 0
    mlflow_s: float = 0.0


def changed_bytes(a: Path, b: Path) -> int:
    """Bytes of b that differ from a at the same offset, in 16 MiB blocks."""
    import numpy as np

    n = 0
    with a.open("rb") as fa, b.open("rb") as fb:
        while block := fb.read(16 * MiB):
            other = fa.read(len(block))
            x, y = np.frombuffer(block, np.uint8), np.frombuffer(other, np.uint8)
            m = min(len(x), len(y))
            n += int(np.count_nonzero(x[:m] != y[:m])) + len(x) - m
    return n


def file_digest(path: Path) -> str:
    h = blake3.blake3()
    with path.open("rb") as f:
        while block := f.read(16 * MiB):
            h.update(block)
    return h.hexdigest()


def push_modelkeep(side: Modelkeep, files: Sequence[Path], pushes: list[Push]) -> list[str]:
    """ServerRepo.add of each file; the request bodies counted by an httpx event hook."""
    sent = {"bytes": 0, "requests": 0}

    def count(request: httpx.Request) -> None:
        sent["bytes"] += len(request.content)
        sent["requests"] += 1

    problems: list[str] = []
    token = side.headers["Authorization"].split()[1]
    with contextlib.closing(mk.open(side.url, token=token)) as repo:
        repo.conn.http.event_hooks = {"request": [count], "response": []}  # type: ignore[attr-defined]
        for i, (path, push) in enumerate(zip(files, pushes, strict=True)):
            common.run(["sync"], dict(os.environ))
            before = dict(sent)
            t0 = time.perf_counter()
            added = repo.add(path, "w1", type="model")
            push.modelkeep_s = time.perf_counter() - t0
            push.modelkeep_bytes = sent["bytes"] - before["bytes"]
            push.modelkeep_requests = sent["requests"] - before["requests"]
            want = "b3:" + file_digest(path)
            shown = repo.show(f"w1:v{i + 1}")  # what the server says it holds
            if (added.version.number, shown.digest, shown.size) != (
                i + 1,
                want,
                path.stat().st_size,
            ):
                problems.append(
                    f"modelkeep push of {path.name}: got {shown.ref} {shown.digest} "
                    f"{shown.size} bytes, expected w1:v{i + 1} {want} {path.stat().st_size} bytes"
                )
    return problems


def push_mlflow(side: Mlflow, files: Sequence[Path], pushes: list[Push]) -> list[str]:
    """PUT of each file to MLflow's artifact proxy (what MlflowClient.log_artifact does
    against `mlflow-artifacts:`), the body streamed and counted."""
    problems: list[str] = []
    with httpx.Client(base_url=side.url, timeout=3600) as http:
        for i, (path, push) in enumerate(zip(files, pushes, strict=True)):
            common.run(["sync"], dict(os.environ))
            counted = [0]

            def body(p: Path = path, counted: list[int] = counted) -> Iterator[bytes]:
                with p.open("rb") as f:
                    while block := f.read(MiB):
                        counted[0] += len(block)
                        yield block

            size = path.stat().st_size
            where = f"w1/v{i + 1}"
            t0 = time.perf_counter()
            r = http.put(
                f"/api/2.0/mlflow-artifacts/artifacts/{where}/{path.name}",
                content=body(),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
            push.mlflow_s = time.perf_counter() - t0
            push.mlflow_bytes, push.mlflow_requests = counted[0], 1
            listed = http.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": where})
            files_doc = listed.json().get("files", []) if listed.status_code == 200 else []
            sizes = [int(f.get("file_size", -1)) for f in files_doc]
            if r.status_code >= 300 or sizes != [size]:
                problems.append(
                    f"MLflow push of {path.name}: HTTP {r.status_code} {r.text[:200]}, "
                    f"listed sizes {sizes}, expected [{size}]"
                )
    return problems


def bench_bytes(
    mk_side: Modelkeep | None, ml_side: Mlflow | None, files: Sequence[Path], o: Outcome
) -> None:
    pushes = [Push(files[0].name, files[0].stat().st_size, 0)]
    pushes.append(Push(files[1].name, files[1].stat().st_size, changed_bytes(*files)))
    o.pushes = pushes
    if mk_side:
        log(f"modelkeep: pushing {len(files)} files (load {common.load_avg()}) ...")
        o.problems += push_modelkeep(mk_side, files, pushes)
    if ml_side:
        log(f"MLflow: pushing {len(files)} files (load {common.load_avg()}) ...")
        o.problems += push_mlflow(ml_side, files, pushes)


# -- the report -------------------------------------------------------------------------------


def pct_ms(seconds: Sequence[float], q: float) -> float:
    """Nearest rank: with fewer than 100 samples, p99 is the slowest one."""
    return sorted(seconds)[max(0, math.ceil(q * len(seconds)) - 1)] * 1000


def fmt(ms: float) -> str:
    return f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}"


OP_LABELS = {
    "register": "register a version",
    "set_alias": "set an alias",
    "resolve": "resolve m@champion",
    "list_1k": f"list {LIST_VERSIONS:,} versions",
}


@dataclass
class Outcome:
    plan: Plan
    mode: str
    results: Results = field(default_factory=dict)
    pushes: list[Push] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def report(o: Outcome, total_s: float) -> list[str]:
    lines = [
        "## modelkeep server benchmark: `modelkeep serve` vs `mlflow server`",
        "",
        f"* machine: {common.machine('httpx', 'uvicorn', 'starlette')}",
        f"* servers: {'; '.join(f'{k} {v}' for k, v in o.versions.items())}; "
        f"{o.plan.workers} worker process(es) each, SQLite backends, on 127.0.0.1",
        f"* load average (1, 5, 15 min): {'; '.join(o.loads)}",
        "",
        "### Registry operations over HTTP (p50 / p99 per request, throughput per second)",
        "",
    ]
    head = ["operation", "clients", "n", "modelkeep p50 ms", "p99 ms", "req/s"]
    head += ["MLflow p50 ms", "p99 ms", "req/s", "p50 ×", "p99 ×", f"≥ {TARGET_RATIO:g}×?"]
    rows = []
    for key, cells in o.results.items():
        op, clients = key.split("/")
        a, b = cells.get("modelkeep", Cell()), cells.get("MLflow", Cell())
        row = [OP_LABELS[op], clients, f"{len(a.seconds)}/{len(b.seconds)}"]
        for c in (a, b):
            row += (
                [fmt(pct_ms(c.seconds, 0.5)), fmt(pct_ms(c.seconds, 0.99)), f"{c.throughput:,.0f}"]
                if c.seconds
                else ["—"] * 3
            )
        if a.seconds and b.seconds:
            r50 = pct_ms(b.seconds, 0.5) / pct_ms(a.seconds, 0.5)
            r99 = pct_ms(b.seconds, 0.99) / pct_ms(a.seconds, 0.99)
            met = "yes" if min(r50, r99) >= TARGET_RATIO else "**NO**"
            row += [f"{r50:.1f}", f"{r99:.1f}", met]
        else:
            row += ["—"] * 3
        rows.append(row)
    lines += [*common.md_table(head, rows, 2)]
    lines += [
        "",
        "n = timed requests (modelkeep/MLflow); p50/p99 by nearest rank over all of them; "
        "req/s = requests / wall time of the rounds (all clients started together); "
        "× = MLflow / modelkeep. modelkeep checks a bearer token on every request; MLflow "
        "runs without authentication.",
    ]
    if o.pushes:
        lines += ["", "### Bytes: pushing W1 and its successor (request bodies on the wire)", ""]
        head = ["push", "size", "changed", "modelkeep sent", "MLflow sent", "modelkeep / MLflow"]
        head += [f"≤ {BYTES_TARGET:.0%}?", "modelkeep s", "MLflow s"]
        rows = []
        total = Push("both files (information)", 0, 0)
        for i, p in enumerate(o.pushes):
            total.size += p.size
            total.changed += p.changed or p.size
            total.modelkeep_bytes += p.modelkeep_bytes
            total.mlflow_bytes += p.mlflow_bytes
            total.modelkeep_s += p.modelkeep_s
            total.mlflow_s += p.mlflow_s
            rows.append(bytes_row(p, "W1 (first push)" if i == 0 else "successor", target=i > 0))
        rows.append(bytes_row(total, total.file, target=False))
        lines += common.md_table(head, rows)
        lines += [
            "",
            "modelkeep: `ServerRepo.add` (chunked, hashed and compressed on the client; only "
            "the objects the server lacks go up, in packs), bodies counted by an httpx hook "
            f"({', '.join(str(p.modelkeep_requests) for p in o.pushes)} requests). MLflow: one "
            "streamed PUT per file to `/api/2.0/mlflow-artifacts/artifacts/…`. The target "
            "applies to the successor: both tools must send the first version whole, so two "
            "pushes can at best come to (1 + 0.1) / 2 of MLflow's bytes.",
        ]
    lines += ["", "Problems:", "", *(f"* {p}" for p in o.problems)] if o.problems else []
    return [*lines, "", f"Total benchmark wall time: {total_s:.0f} s."]


def bytes_row(p: Push, label: str, target: bool) -> list[str]:
    human = bench_store.human_bytes
    ratio = p.modelkeep_bytes / p.mlflow_bytes if p.mlflow_bytes and p.modelkeep_bytes else 0.0
    met = ("yes" if ratio <= BYTES_TARGET else "**NO**") if target and ratio else "—"
    changed = human(p.changed) if p.changed else "—"
    return [
        label,
        human(p.size),
        changed,
        human(p.modelkeep_bytes) if p.modelkeep_bytes else "—",
        human(p.mlflow_bytes) if p.mlflow_bytes else "—",
        f"{ratio:.1%}" if ratio else "—",
        met,
        f"{p.modelkeep_s:.1f}" if p.modelkeep_s else "—",
        f"{p.mlflow_s:.1f}" if p.mlflow_s else "—",
    ]


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time `modelkeep serve` against `mlflow server`.")
    add = p.add_argument
    add("--quick", action="store_true", help="128 MiB W1 and fewer requests: a smoke run")
    add("--requests", type=int, help="timed requests per operation and client count (400)")
    add("--list-requests", type=int, help="timed listings per client count (64)")
    add("--workers", type=int, default=1, help="worker processes of each server (1)")
    add("--work", type=Path, default=common.WORK, help="MLflow venv, data, runs, results")
    add("--keep", action="store_true", help="keep this run's servers' stores")
    add("--skip-mlflow", action="store_true", help="do not install or run MLflow")
    add("--skip-bytes", action="store_true", help="leave out the bytes section")
    add("--only", metavar="OPS", help=f"a subset of {','.join(OPS)},bytes")
    args = p.parse_args(argv)
    args.only = args.only.split(",") if args.only else [*OPS, "bytes"]
    if unknown := set(args.only) - {*OPS, "bytes"}:
        p.error(f"--only: unknown section {sorted(unknown)[0]!r}")
    if args.skip_bytes:
        args.only = [x for x in args.only if x != "bytes"]
    args.requests = args.requests or (64 if args.quick else 400)
    args.list_requests = args.list_requests or (16 if args.quick else 64)
    if min(args.requests, args.list_requests, args.workers) < 1:
        p.error("--requests, --list-requests and --workers must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    env = common.process_env()
    work: Path = args.work.absolute()
    run_dir = work / "server-runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    # ServerRepo's cache and credentials go under the run, not the user's home
    for var, sub in (("XDG_CACHE_HOME", "client-cache"), ("XDG_CONFIG_HOME", "client-config")):
        os.environ[var] = env[var] = str(run_dir / sub)
    env.pop("MODELKEEP_TOKEN", None)
    os.environ.pop("MODELKEEP_TOKEN", None)
    ml_env = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_", "MODELKEEP_"))}
    ml_env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    ml_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job runners
    scale = bench_store.QUICK if args.quick else bench_store.FULL
    plan = Plan(args.requests, args.list_requests, args.workers)
    o = Outcome(plan, scale.mode, loads=[f"start {common.load_avg()}"])
    pool = ClientPool(max(CLIENTS))  # forked before any server or thread starts
    with contextlib.ExitStack() as stack:
        stack.callback(pool.close)
        if not args.keep:
            stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        try:
            data = work / "data" / f"server-{scale.mode}"
            files = workloads(scale, data) if "bytes" in args.only else None
            mk_side = start_modelkeep(run_dir, env, args.workers)
            stack.callback(stop, mk_side.proc)
            o.versions["modelkeep"] = mk_side.version
            with contextlib.closing(
                mk.open(mk_side.url, token=mk_side.headers["Authorization"][7:])
            ) as repo:
                refs = []
                for i in range(2):  # the two small versions that registrations point at
                    (run_dir / "weights.bin").write_bytes(bytes([i]) * 4096)
                    refs.append(repo.add(run_dir / "weights.bin", "weights").version.ref)
                mk_side.sources = (refs[0], refs[1])
            ml_side = None
            if not args.skip_mlflow:
                try:
                    ml_side = start_mlflow(work, run_dir, ml_env, args.workers)
                    stack.callback(stop, ml_side.proc, group=True)
                    o.versions["MLflow"] = f"{ml_side.version} (`mlflow server`, uvicorn)"
                except BenchError as exc:
                    o.problems.append(f"MLflow could not be started: {exc}")
            states = [State(s) for s in (mk_side, ml_side) if s is not None]
            for st in list(states):
                problems = setup_registry(st, pool)
                o.problems += problems[:5]
                if problems and st.side is mk_side:
                    raise BenchError(f"modelkeep setup failed ({len(problems)} failures)")
                if problems:
                    o.problems.append(f"MLflow setup failed ({len(problems)} failures): dropped")
                    states.remove(st)
            o.loads.append(f"registry {common.load_avg()}")
            bench_registry(states, pool, plan, o, [op for op in OPS if op in args.only])
            if files:
                o.loads.append(f"bytes {common.load_avg()}")
                bench_bytes(mk_side, ml_side, files, o)
            o.loads.append(f"end {common.load_avg()}")
        except BenchError as exc:
            log(f"failed: {exc}")
            o.problems.append(str(exc))
        if args.keep:
            log(f"servers' stores kept in {run_dir}")
    name = f"server-{scale.mode}"
    common.save(work, name, report(o, time.perf_counter() - t_start), dataclasses.asdict(o))
    return 1 if o.problems else 0


if __name__ == "__main__":
    sys.exit(main())
