#!/usr/bin/env python3
"""Web UI benchmark: every page of `modelkeep serve`'s UI on a store of 10,000 runs and
more than 10,000 versions, in headless Chromium (Selenium, Debian's chromium-driver).

The store is built once and cached under benchmarks/.work/ui-store-RUNS/: bench_lineage.py's
seeded history of runs (params, metric histories, inputs and outputs; bulk-inserted), its
versions pointed at two real stored contents (a file and a folder) so that the version
pages read real trees and manifests; then, through the library, a model of many registered
versions with promotions and an alias, and more registered models than one page shows.

For each page: the server time (the page's own API requests, from the browser's resource
timing: request sent to first byte back, summed over the page's requests) and the time to
loaded (navigation start to the page's loaded marker, `body[data-ready]`, with no loading
state left), p50 and p95 of several visits. A page showing an error, or not what it should,
is a wrong result: exit 1. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import bench_lineage
import common
import httpx
from common import BenchError, log

import modelkeep as mk
from modelkeep.refs import content_hex

TARGET_MS = 1000.0  # the bar: each page loaded in under a second (p50)
MODEL = "fraud"
MODEL_VERSIONS = 500  # registered versions of MODEL (60 ms each through the library)
OTHER_MODELS = 60  # more than one page of the models list (50)
READY_S = 60.0
# a gate on production: the model page then asks the server, per version shown, whether it
# could be promoted (20 readiness requests a page), as a team with a policy sees it
POLICY = '[policy.default.production]\nrequire_stage = "staging"\ngates = ["auc >= 0.80"]\n'


@dataclass(frozen=True)
class Page:
    label: str
    path: str
    check: str  # a script returning '' when the page shows what it should, else why not


def build(root: Path, runs: int) -> dict[str, Any]:
    """The store, and what the pages are pointed at (cached with it in facts.json)."""
    facts_file = root / "facts.json"
    if facts_file.exists():
        log(f"reusing the store in {root}")
        facts: dict[str, Any] = json.loads(facts_file.read_text("utf-8"))
        return facts
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    store = root / "store"
    repo = mk.init(store)
    payload = root / "payload"
    (payload / "folder" / "shards").mkdir(parents=True)
    rnd = os.urandom(1 << 20)
    (payload / "model.bin").write_bytes(rnd)
    for i in range(300):  # a folder of many files: its page shows one page of them
        part = payload / "folder" / "shards" / f"part-{i:04}.bin"
        part.write_bytes(rnd[i * 1000 : i * 1000 + 3000])
    (payload / "folder" / "README.md").write_text("a dataset\n", "utf-8")
    file_digest, _ = repo.digest_of(payload / "model.bin")
    dir_digest, _ = repo.digest_of(payload / "folder")
    file_count = 301
    dir_size = sum(p.stat().st_size for p in (payload / "folder").rglob("*") if p.is_file())
    history = bench_lineage.History(runs)
    log(f"generated: {history.summary()}")
    for row in history.versions:  # real content, so the version pages read real objects
        if row["kind"] == "file":
            row |= {"digest": content_hex(file_digest), "size": 1 << 20, "file_count": 1}
        else:
            row |= {"digest": content_hex(dir_digest), "size": dir_size, "file_count": file_count}
    bench_lineage.load(repo, history)
    repo.add(payload / "model.bin", "payload-file")
    repo.add(payload / "folder", "payload-dir")
    (payload / "folder" / "README.md").write_text("a dataset, changed\n", "utf-8")
    (payload / "folder" / "shards" / "part-0007.bin").write_bytes(os.urandom(5000))
    repo.add(payload / "folder", "payload-dir")
    log(f"bulk-loaded {len(history.runs):,} runs, {len(history.versions):,} versions")
    # the registry, through the library: every change an event of the hash chain
    weights = payload / "weights"
    weights.mkdir()
    for i in range(MODEL_VERSIONS):
        (weights / "w.bin").write_bytes(rnd[:200_000] + i.to_bytes(4, "big"))
        v = repo.add(weights, f"{MODEL}-src").version
        repo.register(v.ref, MODEL)
    repo.promote(f"{MODEL}:v{MODEL_VERSIONS - 2}", "staging", reason="bench")
    repo.promote(f"{MODEL}:v{MODEL_VERSIONS - 2}", "production", reason="bench")
    middle = datetime.now(UTC).isoformat()
    repo.promote(f"{MODEL}:v{MODEL_VERSIONS - 1}", "staging", reason="bench")
    repo.promote(f"{MODEL}:v{MODEL_VERSIONS - 1}", "production", reason="bench")
    repo.set_alias(f"{MODEL}@champion", f"{MODEL}:v{MODEL_VERSIONS - 2}", reason="bench")
    for i in range(OTHER_MODELS):
        source = history.ref(1 + i * (len(history.versions) // OTHER_MODELS))
        repo.register(source, f"team-{i:02}/model")
    hub = max(history.users, key=lambda vid: len(history.users[vid]))
    trains = [  # finished, its code recorded without a patch (patches are made-up content)
        r["id"]
        for i, r in enumerate(history.runs)
        if history.kinds[i] == "train"
        and r["status"] == "finished"
        and '"patch"' not in r["code_json"]
    ]
    with repo.db.read() as s:
        import sqlalchemy as sa

        versions = s.scalar(sa.text("SELECT count(*) FROM versions")) or 0
        n_runs = s.scalar(sa.text("SELECT count(*) FROM runs")) or 0
        points = s.scalar(sa.text("SELECT count(*) FROM metrics")) or 0
        events = s.scalar(sa.text("SELECT count(*) FROM events")) or 0
    from modelkeep.meta import accounts

    accounts.add_user(repo.db, "bench", admin=True)
    token = accounts.create_token(repo.db, "bench")[0]
    repo.close()
    facts = {
        "hub": history.ref(hub),
        "hub_users": len(history.users[hub]),
        "run": trains[-1],
        "compare": trains[-3:],
        "middle": middle,
        "token": token,
        "versions": versions,
        "runs": n_runs,
        "metric_points": points,
        "events": events,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    facts_file.write_text(json.dumps(facts, indent=1), "utf-8")
    log(f"built in {facts['build_s']} s: {versions:,} versions, {n_runs:,} runs, {events} events")
    return facts


def pages(f: dict[str, Any]) -> list[Page]:
    def at_least(css: str, n: int) -> str:
        count = f"document.querySelectorAll({json.dumps(css)}).length"
        return f"return {count} >= {n} ? '' : 'fewer than {n} of {css}';"

    graph = "return document.querySelector('#graph[data-ready]') ? '' : 'no graph';"
    hub = f"/ui/versions/{f['hub']}"
    runs = "/ui/runs?where=" + quote("metrics.auc > 0.9") + "&sort=metrics.auc&desc=1"

    last = MODEL_VERSIONS
    compare = "&".join(f"runs={r}" for r in f["compare"])
    return [
        Page("models (page 1 of 2)", "/", at_least("#models tbody tr", 50)),
        Page("models, searched", "/?q=team-0", at_least("#models tbody tr", 10)),
        Page(
            f"model ({last:,} versions, a gate)",
            f"/ui/models/{MODEL}",
            at_least("td.readiness", 20),
        ),
        Page("model, page 20", f"/ui/models/{MODEL}?page=20", at_least("#versions tbody tr", 20)),
        Page("version (300-file folder)", hub, at_least("#files tbody tr", 2)),
        Page(
            "version, folder page 3",
            hub + "?dir=shards&fpage=2",
            at_least("#files a.download", 100),
        ),
        Page(
            "diff",
            "/ui/diff?old=payload-dir:v1&new=payload-dir:v2",
            at_least("#changes tbody tr", 2),
        ),
        Page("runs", "/ui/runs", at_least("#runs tbody tr", 50)),
        Page("runs, filtered and sorted", runs, at_least("#runs tbody tr", 1)),
        Page("run (metric charts)", f"/ui/runs/{f['run']}", at_least("#charts figure", 1)),
        Page("compare 3 runs", "/ui/compare?" + compare, at_least("#charts figure", 1)),
        Page(f"lineage (hub of {f['hub_users']:,} runs)", f"/ui/lineage/{f['hub']}", graph),
        Page(f"audit ({f['events']:,} events)", "/ui/audit", at_least("#events tbody tr", 50)),
        Page(
            "audit, as of",
            "/ui/audit?at=" + quote(f["middle"][:16]),
            at_least("#as-of tbody tr", 50),
        ),
        Page("account", "/ui/account", at_least("#tokens tbody tr", 1)),
    ]


def serve(store: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_file = (store.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [*common.cli_command(), "serve", "--port", str(port)],
        cwd=store,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"modelkeep serve exited {proc.returncode}; see {log_file.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise BenchError("modelkeep serve did not get ready")


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise BenchError("needs Debian's chromium and chromium-driver (apt-get install ...)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


LOADED = (
    "return document.body && document.body.dataset.ready === '1' && "
    "!document.querySelector('.loading') && "
    "(!document.querySelector('#graph') || document.querySelector('#graph[data-ready]'))"
)
API_TIMES = """
return performance.getEntriesByType('resource')
  .filter((e) => new URL(e.name).pathname.startsWith('/api/'))
  .map((e) => [e.name, e.responseStart - e.requestStart, e.responseEnd]);
"""


def visit(d: Any, base: str, page: Page) -> tuple[float, float, int]:
    """(server seconds, seconds to loaded, API requests) of one visit."""
    from selenium.webdriver.support.ui import WebDriverWait

    d.get("about:blank")
    d.get(base + page.path)
    WebDriverWait(d, 60, poll_frequency=0.02).until(lambda x: x.execute_script(LOADED))
    errors = d.execute_script(
        "return [...document.querySelectorAll('.error, [role=alert]')].map((e) => e.textContent)"
    )
    heading = d.execute_script("const h = document.querySelector('h1'); return h && h.textContent")
    if errors or heading in ("Not found", "Error"):
        raise BenchError(f"{page.label} ({page.path}) shows an error: {errors or heading}")
    wrong = d.execute_script(page.check)
    if wrong:
        raise BenchError(f"{page.label} ({page.path}): {wrong}")
    ready_ms = float(d.execute_script("return document.body.dataset.readyMs"))
    # charts and the graph draw after the marker: loaded is when nothing is pending
    calls = d.execute_script(API_TIMES)
    end = max([ready_ms, *(c[2] for c in calls)])
    return sum(c[1] for c in calls) / 1000, end / 1000, len(calls)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the store (10,000)")
    parser.add_argument("--visits", type=int, default=7, help="visits of each page (7)")
    parser.add_argument("--rebuild", action="store_true", help="build the store again")
    args = parser.parse_args(argv)
    env = common.process_env()
    root = common.WORK / f"ui-store-{args.runs}"
    if args.rebuild:
        shutil.rmtree(root, ignore_errors=True)
    facts = build(root, args.runs)  # facts.json is written last: a failed build is redone
    (root / "store" / "modelkeep.toml").write_text(POLICY, "utf-8")
    port = common_free_port()
    proc = serve(root / "store", port, env)
    base = f"http://127.0.0.1:{port}"
    d = browser()
    results: list[tuple[Page, list[float], list[float], int]] = []
    try:
        d.get(base + "/ui/login")
        d.execute_script(
            "return fetch('/ui/login', {method: 'POST', headers: {'Content-Type': "
            "'application/json'}, body: JSON.stringify({token: arguments[0]})})"
            ".then((r) => r.status)",
            facts["token"],
        )
        for page in pages(facts):
            visit(d, base, page)  # a first visit warms the server's caches and the browser's
            server, loaded, calls = [], [], 0
            for _ in range(args.visits):
                s, t, calls = visit(d, base, page)
                server.append(s)
                loaded.append(t)
            results.append((page, server, loaded, calls))
            ms = common.fmt_ms
            log(f"{page.label}: server {ms(server)} ms, loaded {ms(loaded)} ms")
    except BenchError as exc:
        log(f"WRONG: {exc}")
        return 1
    finally:
        d.quit()
        proc.terminate()
        proc.wait(timeout=30)
    head = ["page", "API requests", "server p50 ms", "server p95 ms"]
    head += ["loaded p50 ms", "loaded p95 ms"]
    rows = [
        [page.label, str(calls), f"{common.median_ms(s):,.0f}", f"{common.p95_ms(s):,.0f}",
         f"{common.median_ms(t):,.0f}", f"{common.p95_ms(t):,.0f}"]
        for page, s, t, calls in results
    ]  # fmt: skip
    slow = [page.label for page, _, t, _ in results if common.median_ms(t) > TARGET_MS]
    lines = [
        f"# Web UI pages on {facts['versions']:,} versions, {facts['runs']:,} runs "
        f"({facts['metric_points']:,} metric points, {facts['events']:,} events)",
        "",
        f"Machine: {common.machine('selenium')}",
        "",
        f"{args.visits} visits of each page after one warm-up, headless Chromium at 1280x800. "
        "Server: the page's API requests, request sent to first byte back, summed. Loaded: "
        "navigation start to the page's loaded marker with no loading state left (charts "
        "and graphs drawn). p95 is the slowest visit (fewer than 20 samples).",
        "",
        *common.md_table(head, rows),
        "",
        f"Pages over {TARGET_MS:,.0f} ms (p50): {', '.join(slow) or 'none'}.",
    ]
    common.save(common.WORK, "bench_ui", lines, {"facts": facts, "results": [
        {"page": p.label, "path": p.path, "server_s": s, "loaded_s": t, "requests": c}
        for p, s, t, c in results
    ]})  # fmt: skip
    return 0


def common_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
