#!/usr/bin/env python3
"""Remote benchmark: `modelkeep push`/`pull` vs `dvc push`/`pull`, same data, same remote kind.

W1 (one incompressible safetensors file) and the W2 chain (a checkpoint and four successors,
~10% of the bytes changed each time; the same generators and seeds as bench_store.py) are pushed
to and pulled from (a) a folder remote and (b) an S3-compatible server on 127.0.0.1 (moto in
server mode, started here as a subprocess on a free port), by both tools in the same run.

A push starts from a repository holding every version (`modelkeep push REFS --remote R`;
`dvc push -r R`, with `--all-commits` for the chain, whose versions are Git commits). A pull
starts from a fresh repository with an empty local store and the same metadata (modelkeep: a
copy of the first repository's `meta.sqlite`; DVC: `git clone`), so everything the versions
need must cross from the remote, and ends with the newest version as a file in the workspace
(`modelkeep pull REFS` + `modelkeep get NEWEST`; `dvc pull`, which checks the file out).

The clone section (`--only clone`) shares W1 the way a team shares it with Git and a bucket: a
Git repository per tool whose commit carries W1's pointer and the folder remote's configuration
(`modelkeep.toml` + `modelkeep.lock`; `.dvc/config` + `model.safetensors.dvc`), pushed once,
untimed. Timed: `git clone` into an empty folder + `modelkeep init` + `modelkeep checkout`
against `git clone` + `dvc pull`, each ending with W1 in the work tree, compared byte for byte.

Bytes transferred are measured outside both tools, the same way for both:

* folder push: the size of every file created or changed in the remote folder by the push
  (a snapshot of path, size, mtime and inode before and after);
* folder pull: the bytes of the remote folder's files in the page cache after the pull, the
  page cache having been dropped just before it (`fincore`): what the pull read from the
  remote. Readahead can only add to it (needs root; otherwise not measured);
* S3 push / pull: the HTTP body bytes the server received (push) or sent (pull) during the
  command, counted by a WSGI wrapper around moto's application (request Content-Length,
  response bodies as written); headers are not counted. The details add the number of
  requests per method, the growth of the bucket, and the growth of the local store.

The same wrapper answers plain one-range GETs itself from moto's stored object, reading only
the range: moto reads the whole object for each range request, which would make a tool that
keeps large objects (DVC: one per file) pay the server far more than S3 would charge it.

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import bench_store as bs
import common
from bench_store import GiB, KiB, MiB, Timing, human_bytes, human_seconds
from common import Arg, BenchError, log, run

DVC_REQUIREMENTS = [f"dvc=={bs.DVC_VERSION}", "dvc-s3==3.3.0"]
ENV = bs.ENV  # bench_store's timed/warm/du_sb read it too; main fills it
STATS_PATH = "/__bench__/stats"
FAILURES = (BenchError, OSError, ValueError, subprocess.TimeoutExpired)  # a step's, reported
KINDS = ("folder", "s3")
WORKLOADS = ("w1", "w2", "clone")
TOOLS = ("modelkeep", "dvc")
BUCKETS = {"modelkeep": "modelkeep-bench", "dvc": "dvc-bench"}


def run_(argv: Sequence[Arg], cwd: Path | None = None) -> str:
    return run(argv, ENV, cwd)


@dataclass(frozen=True)
class Scale:
    mode: str
    w1_bytes: int
    w2_bytes: int
    tensor_min: int
    tensor_max: int
    min_free: int
    w2_successors: int = 4
    w2_change_frac: float = 0.10


FULL = Scale("full", GiB, 512 * MiB, MiB, 16 * MiB, 20 * GiB)
QUICK = Scale("quick", 64 * MiB, 32 * MiB, 256 * KiB, 2 * MiB, 2 * GiB)


def generate(s: Scale, data: Path) -> dict[str, list[Path]]:
    """W1 and the W2 chain in data (kept, and reused while its marker matches the scale).

    At full scale the bytes are those of bench_store.py's W1 and W2: same layouts and seeds.
    """
    files = {
        "w1": [data / "w1" / "model.safetensors"],
        "w2": [data / "w2" / f"ckpt{v}.safetensors" for v in range(s.w2_successors + 1)],
    }
    spec = {"generator": bs.GENERATOR_VERSION, "seed": bs.BASE_SEED, **asdict(s)}
    marker = data / ".spec"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return files
    log(f"generating the {s.mode} workloads in {data} ...")
    bs.rmtree(data)
    for name in files:
        (data / name).mkdir(parents=True)
    layout = functools.partial(bs.tensor_layout, lo=s.tensor_min, hi=s.tensor_max)
    bs.write_safetensors(files["w1"][0], layout(s.w1_bytes, seed=1))
    chain = [layout(s.w2_bytes, seed=2)]
    for v in range(1, s.w2_successors + 1):
        chain.append(bs.successor(chain[-1], s.w2_change_frac, v, seed=2))
    for path, tensors in zip(files["w2"], chain, strict=True):
        bs.write_safetensors(path, tensors)
    marker.write_text(json.dumps(spec))
    return files


# --- the S3 server -------------------------------------------------------------------------


def serve_s3() -> None:
    """moto's S3 on 127.0.0.1, a free port (printed first), HTTP body bytes counted per method.

    Run as `bench_remote.py --serve-s3` by S3Server. GET STATS_PATH answers the counters.
    """
    from wsgiref.types import StartResponse, WSGIEnvironment

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.s3.models import s3_backends
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)
    single_range = re.compile(r"bytes=(\d+)-(\d+)")

    def ranged_get(environ: WSGIEnvironment) -> tuple[list[tuple[str, str]], bytes] | None:
        """Headers and bytes of a plain one-range GET of an object, read from moto's store.

        moto reads the whole object for every range request (a 1 GiB object fetched in 50 MiB
        ranges costs it 21 GiB of copying); S3 reads the range. So the server answers those
        itself, reading only the range; anything else (and any surprise) goes to moto.
        """
        match = single_range.fullmatch(environ.get("HTTP_RANGE", ""))
        conditional = any(k.startswith("HTTP_IF_") for k in environ)
        if environ["REQUEST_METHOD"] != "GET" or not match or conditional:
            return None
        if environ.get("QUERY_STRING"):
            return None
        bucket, _, name = str(environ.get("PATH_INFO", "")).lstrip("/").partition("/")
        try:
            partition, account = s3_backends.bucket_accounts[bucket]
            key = s3_backends[account][partition].get_object(bucket, name)
            if key is None:
                return None
            begin, end = int(match[1]), min(int(match[2]), key.size - 1)
            if begin > end:
                return None
            with key.lock:
                key._value_buffer.seek(begin)
                data: bytes = key._value_buffer.read(end - begin + 1)
            headers = [
                ("Content-Type", str(key.metadata.get("Content-Type", "binary/octet-stream"))),
                ("Content-Length", str(len(data))),
                ("Content-Range", f"bytes {begin}-{end}/{key.size}"),
                ("Accept-Ranges", "bytes"),
                ("ETag", str(key.etag)),
                ("Last-Modified", str(key.last_modified_RFC1123)),
            ]
            return headers, data
        except Exception:  # moto answers it, errors included
            return None

    lock = threading.Lock()
    counts: Counter[str] = Counter()

    def add(key: str, n: int) -> None:
        with lock:
            counts[key] += n

    def counted(method: str, what: str, body: Iterable[bytes]) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in body:
                for i in range(0, len(chunk), MiB):  # counted once written to the socket
                    piece = chunk[i : i + MiB]
                    yield piece
                    add(f"{method} out", len(piece))
                    sent += len(piece)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            print(f"{what} -> {sent}", file=sys.stderr, flush=True)  # the request log

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == STATS_PATH:
            with lock:
                doc = json.dumps(counts).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [doc]
        method, received = str(environ["REQUEST_METHOD"]), int(environ.get("CONTENT_LENGTH") or 0)
        add(f"{method} requests", 1)
        add(f"{method} in", received)
        query = f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else ""
        what = f"{method} {environ.get('PATH_INFO')}{query} {environ.get('HTTP_RANGE', '')}"
        what += f" <- {received}"
        if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")):
            add("chunked requests (body not counted)", 1)
        fast = ranged_get(environ)
        if fast is not None:
            add("range GETs read by the wrapper", 1)
            start_response("206 Partial Content", fast[0])
            return counted(method, what + " (range read by the wrapper)", [fast[1]])
        return counted(method, what, moto_app(environ, start_response))

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_port, flush=True)
    server.serve_forever()


class S3Server:
    """The moto subprocess, its counters, and a bucket for each tool."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, os.fspath(Path(__file__).resolve()), "--serve-s3"]
        self.stderr = (tmp / "moto.log").open("w")
        env = {**ENV, "TMPDIR": str(tmp)}  # moto spills objects over 16 MiB to temporary files
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise BenchError(f"the S3 server did not start; see {tmp / 'moto.log'}")
        self.url = f"http://127.0.0.1:{int(line)}"
        log(f"S3 server (moto) on {self.url}")

    def call(self, method: str, path: str) -> bytes:
        """An unsigned request (moto takes it as S3's): the bench's own, outside the timings."""
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=60) as resp:
            body: bytes = resp.read()
            return body

    def counters(self) -> Counter[str]:
        return Counter(json.loads(self.call("GET", STATS_PATH)))

    def reset(self) -> None:
        """Drop every bucket and object (frees the server's memory), then make empty buckets."""
        self.call("POST", "/moto-api/reset")
        for bucket in BUCKETS.values():
            self.call("PUT", f"/{bucket}")

    def usage(self, bucket: str, prefix: str) -> tuple[int, int]:
        """Bytes and number of the objects under prefix (ListObjectsV2, every page)."""
        size = count = 0
        query = {"list-type": "2", "prefix": prefix}
        while True:
            root = ElementTree.fromstring(
                self.call("GET", f"/{bucket}?{urllib.parse.urlencode(query)}")
            )
            ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
            for obj in root.iter(f"{ns}Contents"):
                size, count = size + int(obj.findtext(f"{ns}Size") or 0), count + 1
            token = root.findtext(f"{ns}NextContinuationToken")
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return size, count
            query["continuation-token"] = token

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


# --- measuring a folder remote -------------------------------------------------------------

Snapshot = dict[str, tuple[int, int, int]]  # relative path -> size, mtime_ns, inode


def snapshot(root: Path) -> Snapshot:
    out: Snapshot = {}
    for path in bs.files_under(root):
        st = path.stat()
        out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def written(before: Snapshot, after: Snapshot) -> tuple[int, int]:
    """Bytes and number of the files that are new or changed (a rewritten file counts whole)."""
    changed = [v[0] for k, v in after.items() if before.get(k) != v]
    return sum(changed), len(changed)


def can_drop_cache() -> bool:
    return os.access(bs.DROP_CACHES, os.W_OK) and shutil.which("fincore") is not None


def resident(root: Path) -> int:
    """Bytes of root's files now in the page cache (`fincore`)."""
    paths = [os.fspath(p) for p in bs.files_under(root)]
    total = 0
    for i in range(0, len(paths), 500):
        out = run_(["fincore", "--bytes", "--noheadings", "--output", "RES", *paths[i : i + 500]])
        total += sum(int(x) for x in out.split())
    return total


# --- the two tools -------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    kind: str  # "folder" or "s3"
    name: str
    url: str
    folder: Path | None = None  # the folder remote's path
    bucket: str = ""
    prefix: str = ""


class Peer:
    """What a benchmark does with one tool: set up, push, make a fresh clone, pull, check."""

    tool = ""

    def __init__(self, argv: list[str], files: list[Path], name: str) -> None:
        self.argv, self.files, self.name = argv, files, name

    def setup(self, repo: Path, remotes: Sequence[Remote]) -> None:
        raise NotImplementedError

    def push(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        raise NotImplementedError

    def fresh(self, src: Path, dest: Path, remote: Remote) -> None:
        raise NotImplementedError

    def pull(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        raise NotImplementedError

    def store(self, repo: Path) -> Path:
        raise NotImplementedError

    def notes(self, cmds: list[list[Arg]], seconds: list[float], outs: list[str]) -> list[str]:
        """Each command's time, when there are several."""
        if len(cmds) < 2:
            return []
        n = len(self.argv)
        return [" + ".join(f"{c[n]} {s:.3f} s" for c, s in zip(cmds, seconds, strict=True))]

    def check(self, repo: Path) -> None:
        """After a pull: the newest version is in the workspace, byte for byte."""
        raise NotImplementedError


class ModelkeepPeer(Peer):
    tool = "modelkeep"

    @property
    def refs(self) -> list[str]:
        return [f"{self.name}:v{v}" for v in range(1, len(self.files) + 1)]

    def out(self, repo: Path) -> Path:
        return repo / "out" / self.files[-1].name

    def remote_add(self, repo: Path, remote: Remote) -> None:
        run_([*self.argv, "remote", "add", remote.name, remote.url], repo)

    def setup(self, repo: Path, remotes: Sequence[Remote]) -> None:
        repo.mkdir(parents=True)
        run_([*self.argv, "init"], repo)
        for path in self.files:
            run_([*self.argv, "add", path, "--name", self.name], repo)
        for remote in remotes:
            self.remote_add(repo, remote)

    def push(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        return [[*self.argv, "push", *self.refs, "--remote", remote.name, "--json"]]

    def fresh(self, src: Path, dest: Path, remote: Remote) -> None:
        """A new repository with an empty store and a copy of src's metadata."""
        dest.mkdir(parents=True)
        run_([*self.argv, "init"], dest)
        meta = dest / ".modelkeep" / "meta.sqlite"
        for stale in meta.parent.glob("meta.sqlite*"):
            stale.unlink()
        with (
            contextlib.closing(sqlite3.connect(src / ".modelkeep" / "meta.sqlite")) as a,
            contextlib.closing(sqlite3.connect(meta)) as b,
        ):
            a.backup(b)  # WAL included
        self.remote_add(dest, remote)  # remotes live in .modelkeep/remotes.toml, not the metadata

    def pull(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        get: list[Arg] = [*self.argv, "get", self.refs[-1], "-o", self.out(repo), "--force"]
        return [[*self.argv, "pull", *self.refs, "--remote", remote.name, "--json"], get]

    def store(self, repo: Path) -> Path:
        return repo / ".modelkeep" / "store"

    def check(self, repo: Path) -> None:
        bs.same_file(self.files[-1], self.out(repo))

    def notes(self, cmds: list[list[Arg]], seconds: list[float], outs: list[str]) -> list[str]:
        said = json.loads(outs[0]).get("bytes")  # push/pull --json: what modelkeep counted
        return [*super().notes(cmds, seconds, outs), f"modelkeep's own count {said} bytes"]

    def check_all(self, repo: Path) -> None:
        """Every older version restores from the local store alone (no remote is default)."""
        for ref, src in zip(self.refs[:-1], self.files[:-1], strict=True):
            out = repo / "out-older" / src.name
            run_([*self.argv, "get", ref, "-o", out, "--force"], repo)
            bs.same_file(src, out)
            out.unlink()


class DvcPeer(Peer):
    tool = "dvc"

    @property
    def workspace_name(self) -> str:
        return "model.safetensors" if len(self.files) == 1 else "ckpt.safetensors"

    @property
    def all_commits(self) -> list[str]:
        return ["--all-commits"] if len(self.files) > 1 else []

    def configure(self, repo: Path, remote: Remote | None = None) -> None:
        """.dvc/config.local, written as `dvc config --local` would (one file, no processes).

        ext4 has no reflinks: DVC's default cache.type "reflink,copy" is "copy" there anyway.
        DVC 3.67's `push`/`pull -r R --all-commits` still asks for a default remote: R it is.
        """
        default = f"    remote = {remote.name}\n" if remote else ""
        text = f"[core]\n    check_update = false\n{default}[cache]\n    type = copy\n"
        (repo / ".dvc" / "config.local").write_text(text)

    def setup(self, repo: Path, remotes: Sequence[Remote]) -> None:
        repo.mkdir(parents=True)
        run_(["git", "init", "-q"], repo)
        run_([*self.argv, "init", "-q"], repo)
        self.configure(repo)
        with (repo / ".dvc" / "config").open("a") as config:  # as `dvc remote add` writes it
            for remote in remotes:
                config.write(f"['remote \"{remote.name}\"']\n    url = {remote.url}\n")
                if remote.kind == "s3":
                    config.write(f"    endpointurl = {ENV['AWS_ENDPOINT_URL']}\n")
        ws = repo / self.workspace_name
        for v, path in enumerate(self.files, 1):  # one Git commit per version, as a team has
            ws.unlink(missing_ok=True)
            shutil.copyfile(path, ws)
            run_([*self.argv, "add", "-q", ws.name], repo)
            run_(["git", "add", "-A"], repo)
            run_(["git", "commit", "-q", "-m", f"v{v}"], repo)

    def push(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        self.configure(repo, remote)  # untimed: the commands are run later
        return [[*self.argv, "push", "-q", "-r", remote.name, *self.all_commits]]

    def fresh(self, src: Path, dest: Path, remote: Remote) -> None:
        run_(["git", "clone", "-q", src, dest])
        self.configure(dest)

    def pull(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        self.configure(repo, remote)
        return [[*self.argv, "pull", "-q", "-r", remote.name, *self.all_commits]]

    def store(self, repo: Path) -> Path:
        return repo / ".dvc" / "cache"

    def check(self, repo: Path) -> None:
        bs.same_file(self.files[-1], repo / self.workspace_name)


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Cell:
    times: list[Timing] = field(default_factory=list)  # per run: command(s), sync after
    moved: list[int] = field(default_factory=list)  # per run: bytes transferred
    notes: list[str] = field(default_factory=list)
    failed: int = 0  # runs that failed (listed under Problems) or could not run

    def add(self, timing: Timing, moved: int | None, notes: list[str]) -> None:
        self.times.append(timing)
        self.moved.extend([] if moved is None else [moved])
        self.notes.extend(notes)

    def seconds(self) -> float | None:
        return statistics.median(sum(t) for t in self.times) if self.times else None

    def bytes_moved(self) -> float | None:
        return statistics.median(self.moved) if self.moved else None


@dataclass
class Row:
    """One operation: medians of the runs that succeeded; a failed run is noted in its cell."""

    label: str
    target: str  # "time" (modelkeep no slower than DVC) or "bytes" (at most 32% of DVC's)
    cells: dict[str, Cell] = field(default_factory=lambda: {t: Cell() for t in TOOLS})

    def cells_md(self, skipped: set[str]) -> list[str]:
        def show(tool: str, value: float | None, fmt: Callable[[float], str]) -> str:
            failed = self.cells[tool].failed
            if value is None:
                return "error" if failed else "skipped" if tool in skipped else "—"
            runs = len(self.cells[tool].times)
            return fmt(value) + (f" ({runs} of {runs + failed} runs)" if failed else "")

        def ratio(values: dict[str, float | None]) -> float | None:
            mk, dvc = values["modelkeep"], values["dvc"]
            return mk / dvc if mk is not None and dvc else None

        t = {tool: self.cells[tool].seconds() for tool in TOOLS}
        b = {tool: self.cells[tool].bytes_moved() for tool in TOOLS}
        t_ratio, b_ratio = ratio(t), ratio(b)
        met = (t_ratio <= 1.0) if t_ratio is not None and self.target == "time" else None
        if self.target == "bytes":
            met = None if b_ratio is None else b_ratio <= 0.32
        return [
            self.label,
            *(show(tool, t[tool], human_seconds) for tool in TOOLS),
            "—" if t_ratio is None else f"{t_ratio:.2f}×",
            *(show(tool, b[tool], human_bytes) for tool in TOOLS),
            "—" if b_ratio is None else f"{b_ratio:.1%}",
            "time ≤ DVC's" if self.target == "time" else "bytes ≤ 32% of DVC's",
            "—" if met is None else "yes" if met else "**NO**",
        ]

    def details(self) -> str:
        parts = []
        for tool, cell in self.cells.items():
            if not cell.times:
                continue
            op, sync = (statistics.median(t[i] for t in cell.times) for i in (0, 1))
            runs = ", ".join(f"{sum(t):.3f}" for t in cell.times)
            moved = ", ".join(str(m) for m in cell.moved)
            notes = "; ".join(dict.fromkeys(cell.notes))  # once each, in order
            parts.append(
                f"{tool}: {op:.3f} s + sync {sync:.3f} s (runs: {runs} s; bytes: {moved})"
                + (f"; {notes}" if notes else "")
            )
        return " — ".join(parts)


@dataclass
class Ctx:
    scale: Scale
    files: dict[str, list[Path]]
    runs: Path
    kinds: list[str]
    keep_runs: bool
    s3: S3Server | None = None
    rows: dict[str, Row] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def row(self, workload: str, op: str, kind: str) -> Row:
        what = "W1" if workload == "w1" else f"W2 chain ({len(self.files[workload])} versions)"
        where = {"folder": "folder", "s3": "S3"}[kind]
        label = f"{what} {op} {'→' if op == 'push' else '←'} {where}"
        return self.rows.setdefault(label, Row(label, "time" if workload == "w1" else "bytes"))

    def fail(self, rows: Iterable[Row], tool: str, what: str, exc: BaseException) -> None:
        self.problems.append(f"{what} [{tool}]: {exc}")
        log(f"ERROR {what} [{tool}]: {exc}")
        for row in rows:
            row.cells[tool].failed += 1


def timed_each(cmds: list[list[Arg]], cwd: Path) -> tuple[Timing, list[float], list[str]]:
    """bench_store.timed (the commands, then a sync), keeping each command's time and output."""
    os.sync()
    outs, ends = [], []
    t0 = time.perf_counter()
    for cmd in cmds:
        outs.append(run_(cmd, cwd))
        ends.append(time.perf_counter())
    t1 = time.perf_counter()
    os.sync()
    each = [end - start for start, end in zip([t0, *ends], ends, strict=False)]
    return (t1 - t0, time.perf_counter() - t1), each, outs


def transfer(
    ctx: Ctx, peer: Peer, remote: Remote, cmds: list[list[Arg]], cwd: Path, pushing: bool
) -> tuple[Timing, int | None, list[str]]:
    """Time cmds (plus a sync) and measure the bytes they moved to or from the remote."""
    if pushing:
        bs.warm(peer.store(cwd))  # page cache dropped, then the local store read once
    else:
        bs.warm()  # page cache dropped: the remote is read cold
    s3, folder = ctx.s3 if remote.kind == "s3" else None, remote.folder
    if s3 is not None:
        objects_before, before = s3.usage(remote.bucket, remote.prefix), s3.counters()
    elif pushing:
        assert folder is not None
        snap = snapshot(folder)
    timing, each, outs = timed_each(cmds, cwd)
    notes = peer.notes(cmds, each, outs)
    if s3 is not None:
        delta = s3.counters()
        delta.subtract(before)
        moved = sum(v for k, v in delta.items() if k.endswith(" in" if pushing else " out"))
        requests = ", ".join(
            f"{k.split()[0]} {v}" for k, v in sorted(delta.items()) if "requests" in k and v
        )
        notes.append(f"HTTP requests: {requests}")
        if pushing:
            size, count = s3.usage(remote.bucket, remote.prefix)
            size, count = size - objects_before[0], count - objects_before[1]
            notes.append(f"bucket grew by {size} bytes in {count} objects")
        if delta.get("chunked requests (body not counted)"):
            ctx.problems.append(f"{peer.tool}: chunked S3 requests, their bodies not counted")
        return timing, moved, notes
    assert folder is not None
    if pushing:
        moved, files = written(snap, snapshot(folder))
        return timing, moved, [*notes, f"{files} files written into the remote folder"]
    if not can_drop_cache():
        return timing, None, [*notes, "bytes not measured: needs root and fincore"]
    return timing, resident(folder), notes


def bench_workload(ctx: Ctx, workload: str, rep: int) -> None:
    files = ctx.files[workload]
    tools = [t for t in (TOOLS if rep % 2 == 0 else TOOLS[::-1]) if t in ARGV]
    for tool in tools:  # the order alternates between repeats
        peer: Peer = (ModelkeepPeer if tool == "modelkeep" else DvcPeer)(
            ARGV[tool], files, workload
        )
        d = ctx.runs / f"{workload}-r{rep}" / tool
        bs.rmtree(d)
        remotes = []
        for kind in ctx.kinds:
            if kind == "folder":
                (d / "remote").mkdir(parents=True)
                remotes.append(Remote(kind, kind, str(d / "remote"), folder=d / "remote"))
            else:
                prefix = f"{workload}-r{rep}"
                url = f"s3://{BUCKETS[tool]}/{prefix}"
                remotes.append(Remote(kind, kind, url, bucket=BUCKETS[tool], prefix=prefix))
        rows = [ctx.row(workload, op, r.kind) for r in remotes for op in ("push", "pull")]
        log(f"{workload} run {rep + 1} [{tool}]: setting up ...")
        try:
            peer.setup(d / "src", remotes)
        except FAILURES as exc:
            ctx.fail(rows, tool, f"{workload} set-up", exc)
            continue
        for remote in remotes:
            bench_remote(ctx, peer, d, remote, workload)
        if not ctx.keep_runs:
            bs.rmtree(d)
    if ctx.s3 is not None:
        ctx.s3.reset()  # frees the server's memory for the next workload


def bench_remote(ctx: Ctx, peer: Peer, d: Path, remote: Remote, workload: str) -> None:
    push, pull = (ctx.row(workload, op, remote.kind) for op in ("push", "pull"))
    tool, what = peer.tool, f"{workload} {remote.kind}"
    try:
        log(f"{what} [{tool}]: push ...")
        timing, moved, notes = transfer(
            ctx, peer, remote, peer.push(d / "src", remote), d / "src", True
        )
        push.cells[tool].add(timing, moved, notes)
    except FAILURES as exc:
        return ctx.fail([push, pull], tool, f"{what} push", exc)
    dest = d / f"pull-{remote.kind}"
    try:
        log(f"{what} [{tool}]: pull ...")
        peer.fresh(d / "src", dest, remote)
        store_before = bs.du_sb(peer.store(dest)) if peer.store(dest).exists() else 0
        timing, moved, notes = transfer(ctx, peer, remote, peer.pull(dest, remote), dest, False)
        grew = bs.du_sb(peer.store(dest)) - store_before
        peer.check(dest)
        if isinstance(peer, ModelkeepPeer) and len(peer.files) > 1:
            check_older(ctx, peer, dest, remote)
        pull.cells[tool].add(timing, moved, [*notes, f"local store grew by {grew} bytes"])
    except FAILURES as exc:
        ctx.fail([pull], tool, f"{what} pull", exc)
    if not ctx.keep_runs:
        bs.rmtree(dest)


def check_older(ctx: Ctx, peer: ModelkeepPeer, repo: Path, remote: Remote) -> None:
    """The older versions restore without reading the remote again: the pull fetched them."""
    bs.warm()
    before = ctx.s3.counters() if ctx.s3 is not None and remote.kind == "s3" else Counter()
    peer.check_all(repo)
    if remote.kind == "s3" and ctx.s3 is not None:
        after = ctx.s3.counters()
        after.subtract(before)
        extra = sum(v for k, v in after.items() if k.endswith(" out"))
    else:
        assert remote.folder is not None
        extra = resident(remote.folder)
    if extra:
        raise BenchError(f"restoring the older versions read {extra} more bytes from the remote")


# --- a fresh clone ------------------------------------------------------------------------


class ClonePeer(Peer):
    """A Git repository that carries W1's pointer and the remote's configuration, and clones.

    The source repository is built and pushed once (untimed); each timed run clones it into an
    empty folder and restores W1 from the folder remote, as a second person would.
    """

    workspace_name = "model.safetensors"
    steps: tuple[str, ...] = ()  # what each timed command is called in the details

    def __init__(self, argv: list[str], files: list[Path], name: str) -> None:
        super().__init__(argv, files, name)
        self.step_seconds: list[list[float]] = []  # per run: each timed command's seconds

    def init(self, repo: Path) -> None:
        raise NotImplementedError

    def track(self, repo: Path, remote: Remote) -> None:
        """Declare the remote in committed configuration, track the file, push it."""
        raise NotImplementedError

    def setup(self, repo: Path, remotes: Sequence[Remote]) -> None:
        (remote,) = remotes
        repo.mkdir(parents=True)
        run_(["git", "init", "-q"], repo)
        self.init(repo)
        shutil.copyfile(self.files[0], repo / self.workspace_name)
        self.track(repo, remote)
        run_(["git", "add", "-A"], repo)
        run_(["git", "commit", "-q", "-m", "w1"], repo)
        if self.workspace_name in run_(["git", "ls-files"], repo).split():
            raise BenchError(f"{self.tool}: Git tracks the data file itself, not its pointer")

    def fresh(self, src: Path, dest: Path, remote: Remote) -> None:
        dest.mkdir(parents=True)  # `git clone SRC .` from inside it: one cwd for every step

    def clone(self, src: Path) -> list[Arg]:
        return ["git", "clone", "-q", src, "."]

    def notes(self, cmds: list[list[Arg]], seconds: list[float], outs: list[str]) -> list[str]:
        self.step_seconds.append(seconds)  # summed up by steps_note() after the last run
        return []

    def steps_note(self) -> str:
        medians = [statistics.median(runs) for runs in zip(*self.step_seconds, strict=True)]
        each = " + ".join(f"{n} {s:.3f} s" for n, s in zip(self.steps, medians, strict=True))
        return f"median of each step: {each}"

    def check(self, repo: Path) -> None:
        bs.same_file(self.files[0], repo / self.workspace_name)


class ModelkeepClonePeer(ClonePeer):
    tool = "modelkeep"
    steps = ("git clone", "init", "checkout")

    def init(self, repo: Path) -> None:
        run_([*self.argv, "init"], repo)

    def track(self, repo: Path, remote: Remote) -> None:
        run_([*self.argv, "remote", "add", remote.name, remote.url, "--default", "--project"], repo)
        run_([*self.argv, "add", self.workspace_name, "--name", self.name], repo)
        run_([*self.argv, "push"], repo)
        for committed in ("modelkeep.toml", "modelkeep.lock"):
            if not (repo / committed).is_file():
                raise BenchError(f"modelkeep wrote no {committed} in {repo}")

    def pull(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        src = repo.parent / "src"
        return [self.clone(src), [*self.argv, "init"], [*self.argv, "checkout"]]

    def store(self, repo: Path) -> Path:
        return repo / ".modelkeep" / "store"


class DvcClonePeer(ClonePeer):
    tool = "dvc"
    steps = ("git clone", "dvc pull")
    verify = False  # DVC's remote option: re-hash what a pull downloads (default false)

    def init(self, repo: Path) -> None:
        """`dvc init`, with the settings a team commits: copies (what ext4 gets anyway), no
        update check."""
        run_([*self.argv, "init", "-q"], repo)
        run_([*self.argv, "config", "core.check_update", "false"], repo)
        run_([*self.argv, "config", "cache.type", "copy"], repo)

    def track(self, repo: Path, remote: Remote) -> None:
        run_([*self.argv, "remote", "add", "-d", remote.name, remote.url], repo)
        if self.verify:
            run_([*self.argv, "remote", "modify", remote.name, "verify", "true"], repo)
        run_([*self.argv, "add", "-q", self.workspace_name], repo)
        run_([*self.argv, "push", "-q"], repo)

    def pull(self, repo: Path, remote: Remote) -> list[list[Arg]]:
        return [self.clone(repo.parent / "src"), [*self.argv, "pull", "-q"]]

    def store(self, repo: Path) -> Path:
        return repo / ".dvc" / "cache"


class DvcVerifyClonePeer(DvcClonePeer):
    """DVC with `verify = true` on the remote: it hashes what it pulls, as modelkeep always does."""

    verify = True


def bench_clone(ctx: Ctx, repeat: int) -> None:
    """Each tool's repository is set up and pushed once; then `repeat` timed clones of each,
    the tools in alternating order, each into an empty folder, page cache dropped before.

    A second row compares the same modelkeep runs with DVC verifying what it pulls.
    """
    label = "W1 git clone + checkout ← folder"
    row = ctx.rows.setdefault(label, Row(label, "time"))
    vlabel = f"{label}, DVC remote with `verify = true`"
    vrow = ctx.rows.setdefault(
        vlabel, Row(vlabel, "time", {"modelkeep": row.cells["modelkeep"], "dvc": Cell()})
    )
    variants: dict[str, tuple[type[ClonePeer], Row]] = {
        "modelkeep": (ModelkeepClonePeer, row),
        "dvc": (DvcClonePeer, row),
        "dvc-verify": (DvcVerifyClonePeer, vrow),
    }
    ready: dict[str, tuple[ClonePeer, Remote, Path]] = {}
    for key, (cls, r) in variants.items():
        if cls.tool not in ARGV:
            continue
        d = ctx.runs / "clone" / key
        peer = cls(ARGV[cls.tool], ctx.files["w1"], "w1")
        remote = Remote("folder", "nas", str(d / "remote"), folder=d / "remote")
        bs.rmtree(d)
        (d / "remote").mkdir(parents=True)
        log(f"clone [{key}]: setting up and pushing (untimed) ...")
        try:
            peer.setup(d / "src", [remote])
        except FAILURES as exc:
            ctx.fail([r], peer.tool, f"clone set-up ({key})", exc)
            continue
        ready[key] = peer, remote, d
    for rep in range(repeat):
        for key in list(ready)[:: 1 if rep % 2 == 0 else -1]:
            (peer, remote, d), r = ready[key], variants[key][1]
            dest = d / f"clone-r{rep}"
            try:
                log(f"clone run {rep + 1} [{key}]: git clone + checkout ...")
                peer.fresh(d / "src", dest, remote)
                cmds = peer.pull(dest, remote)
                timing, moved, notes = transfer(ctx, peer, remote, cmds, dest, False)
                peer.check(dest)
                stored = bs.du_sb(peer.store(dest))
                r.cells[peer.tool].add(timing, moved, [*notes, f"local store {stored} bytes"])
            except FAILURES as exc:
                ctx.fail([r], peer.tool, f"clone run {rep + 1} ({key})", exc)
            if not ctx.keep_runs:
                bs.rmtree(dest)
    for key, (peer, _, _) in ready.items():
        if peer.step_seconds:
            variants[key][1].cells[peer.tool].notes.append(peer.steps_note())
    if not ctx.keep_runs:
        bs.rmtree(ctx.runs / "clone")


# --- the run --------------------------------------------------------------------------------

ARGV: dict[str, list[str]] = {}  # the command of modelkeep and DVC, when they run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark push and pull: modelkeep against DVC.")
    add = p.add_argument
    add("--quick", action="store_true", help="W1 64 MiB, W2 chain of 32 MiB: a smoke run")
    add("--skip-dvc", action="store_true", help="do not install or run DVC")
    add("--skip-modelkeep", action="store_true", help="do not run modelkeep")
    add("--workdir", type=Path, default=common.WORK, help="workloads, repos, DVC venv, results")
    add("--only", default=",".join(WORKLOADS), help="w1, w2, clone or all (default)")
    add("--kinds", default=",".join(KINDS), help="folder, s3 or both (default)")
    add("--repeat", type=int, help="runs of each workload (default 3, or 1 with --quick)")
    add("--keep-runs", action="store_true", help="keep the repos and remote folders of this run")
    add("--serve-s3", action="store_true", help=argparse.SUPPRESS)  # the S3 server process
    args = p.parse_args(argv)
    for opt, allowed in (("only", WORKLOADS), ("kinds", KINDS)):
        chosen = [x.strip().lower() for x in getattr(args, opt).split(",") if x.strip()]
        if set(chosen) - set(allowed):
            p.error(f"--{opt}: choose from {', '.join(allowed)}")
        setattr(args, opt, [x for x in allowed if x in chosen])
    args.repeat = max(1, args.repeat or (1 if args.quick else 3))
    return args


def set_env(runs: Path, workdir: Path) -> None:
    ENV.update(common.process_env(), DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(runs / "dvc"))
    ENV["GIT_CEILING_DIRECTORIES"] = str(workdir)  # no Git work tree above the repos and data
    for who in ("AUTHOR", "COMMITTER"):
        ENV.update({f"GIT_{who}_NAME": "bench", f"GIT_{who}_EMAIL": "bench@example.invalid"})
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        ENV.pop(var, None)
    ENV.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")  # dummies, for moto
    ENV.update(AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    none = str(runs / "no-aws-config")  # no profile of this machine's user is read
    ENV.update(AWS_CONFIG_FILE=none, AWS_SHARED_CREDENTIALS_FILE=none)


def report(ctx: Ctx, args: argparse.Namespace, workdir: Path, elapsed: float) -> list[str]:
    s, skipped = ctx.scale, set(TOOLS) - set(ARGV)
    n = s.w2_successors + 1
    head = ["operation", "modelkeep", "DVC", "time ratio (mk/DVC)", "modelkeep bytes",
            "DVC bytes", "bytes ratio (mk/DVC)", "target", "met?"]  # fmt: skip
    fs = run_(["findmnt", "-n", "-o", "FSTYPE", "-T", workdir]).strip()
    return [
        f"## modelkeep remote benchmark ({s.mode} mode)",
        "",
        f"W1: one {human_bytes(s.w1_bytes)} safetensors file of random float32 tensors. W2 "
        f"chain: {n} versions of a {human_bytes(s.w2_bytes)} checkpoint, each successor with "
        f"~{s.w2_change_frac:.0%} of its bytes changed (whole tensors re-randomised).",
        "",
        *common.md_table(head, [r.cells_md(skipped) for r in ctx.rows.values()]),
        "",
        f"- Times: median of {args.repeat} run(s), fresh repositories and remotes each run, tools "
        "in alternating order; wall-clock seconds of the command(s) **plus a `sync` right after**"
        ", after an untimed `sync`. Push: the page cache is dropped and the local store read "
        "once first. Pull: the page cache is dropped, the store is empty (modelkeep: a fresh "
        "repository with a copy of `meta.sqlite`; DVC: `git clone`), and the pull ends with the "
        "newest version in the workspace: `modelkeep pull REFS` + `modelkeep get NEWEST` vs "
        "`dvc pull` (`--all-commits` for the chain).",
        "- Bytes: folder push = size of the files created or changed in the remote folder; folder "
        "pull = bytes of the remote folder in the page cache after the pull (dropped before; "
        "`fincore`); S3 push / pull = HTTP body bytes the server received / sent during the "
        "command (request Content-Length, response bodies; headers not counted).",
        *(
            [
                "- Clone: one Git repository per tool, built and pushed once (untimed), carrying "
                "W1's pointer and the folder remote's configuration (modelkeep: `remote add nas DIR"
                " --default --project` into `modelkeep.toml`, `add FILE --name w1` into "
                "`modelkeep.lock`, `push`; DVC: `dvc remote add -d nas DIR`, `cache.type copy`, "
                "`dvc add FILE`, `dvc push`), then committed. Timed, in an empty folder, page "
                "cache dropped first: `git clone -q SRC .` + `modelkeep init` + `modelkeep "
                "checkout` vs `git clone -q SRC .` + `dvc pull`; the restored file is compared "
                "with W1. Bytes: the remote folder's bytes in the page cache afterwards. modelkeep "
                "verifies every chunk it fetches; DVC does not re-hash what it pulls unless the "
                "remote has `verify = true`: the second row compares the same modelkeep runs with "
                "a DVC repository whose committed remote has it.",
            ]
            if "clone" in args.only
            else []
        ),
        f"- S3: moto {common.version('moto')} in server mode on 127.0.0.1 (objects over 16 MiB "
        f"spill to temporary files on {fs}; one-range GETs read only the range, as S3 does, not "
        "the whole object as moto does); modelkeep through `AWS_ENDPOINT_URL`, DVC through "
        "`endpointurl`; dummy credentials.",
        f"- machine: {common.machine()}; workdir filesystem {fs}",
        f"- `{' '.join(ARGV.get('modelkeep', ['modelkeep not run']))}`; "
        + ("DVC not run" if "dvc" in skipped else f"{', '.join(DVC_REQUIREMENTS)}"),
        *(
            ["- QUICK mode: small workloads; a smoke run, not figures to quote."]
            if args.quick
            else []
        ),
        "",
        "Details (median operation time + sync; every run; cross-checks):",
        "",
        *(f"- {r.label}: {d}" for r in ctx.rows.values() if (d := r.details())),
        *(["", "Problems:", "", *(f"- {p}" for p in ctx.problems)] if ctx.problems else []),
        "",
        f"Total benchmark wall time: {human_seconds(elapsed)}.",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_s3:
        serve_s3()
        return 0
    scale, t_start = QUICK if args.quick else FULL, time.perf_counter()
    workdir: Path = args.workdir.resolve()
    if not bs.has_room(workdir, scale.mode, scale.min_free):
        return 1
    files = generate(scale, workdir / "data" / f"remote-{scale.mode}")
    runs = workdir / "runs" / f"remote-{scale.mode}"
    bs.rmtree(runs)
    runs.mkdir(parents=True)
    set_env(runs, workdir)
    if not args.skip_modelkeep:
        ARGV["modelkeep"] = common.cli_command()
    if not args.skip_dvc:
        dvc = common.peer_venv(workdir / "dvc-venv", DVC_REQUIREMENTS, "dvc_s3", ENV)
        ARGV["dvc"] = [str(dvc.parent / "dvc")]
    ctx = Ctx(scale, files, runs, args.kinds, args.keep_runs)
    try:
        if "s3" in args.kinds and set(args.only) - {"clone"}:  # the clone's remote is a folder
            ctx.s3 = S3Server(runs / "moto")
            ENV["AWS_ENDPOINT_URL"] = ctx.s3.url
            ctx.s3.reset()
        for workload in args.only:
            if workload == "clone":
                bench_clone(ctx, args.repeat)
                continue
            for rep in range(args.repeat):
                log(f"{workload} (run {rep + 1}) ...")
                bench_workload(ctx, workload, rep)
    finally:
        if ctx.s3 is not None:
            ctx.s3.stop()
    lines = report(ctx, args, workdir, time.perf_counter() - t_start)
    rows = [asdict(r) for r in ctx.rows.values()]
    doc: dict[str, object] = {"scale": asdict(scale), "rows": rows, "problems": ctx.problems}
    common.save(workdir, f"remote-{scale.mode}", lines, doc)
    if not args.keep_runs:
        bs.rmtree(runs)
    return 1 if ctx.problems else 0


if __name__ == "__main__":
    sys.exit(main())
