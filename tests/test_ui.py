"""The web UI: browser sessions and their CSRF rules (httpx), `modelkeep ui`'s one-time
link, and every page walked in a real headless Chromium (Selenium) against a real
`modelkeep serve` on a store built through the library.

The browser tests share one browser and one server (module scope) and are marked slow;
they are skipped when Debian's chromium and chromium-driver are not installed.
Screenshots of every page land in test-artifacts/ui/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

import modelkeep as mk
from tests import mkserve

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
EVIL = "<script>window.pwned=1</script><b>bold</b>\n"
PASSWORD = "correct horse battery"
POLICY = '[policy.default.production]\nrequire_stage = "staging"\ngates = ["auc >= 0.80"]\n'


def build_store(root: Path) -> None:
    """A dataset, three runs with metric histories that made a model's three versions,
    a promotion through a gate, a rollback and an alias."""
    work = root / "work"
    work.mkdir(parents=True)
    repo = mk.init(root)
    (root / "modelkeep.toml").write_text(POLICY, "utf-8")
    data = work / "data"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n3,4\n", "utf-8")
    (data / "evil.html").write_text(EVIL, "utf-8")
    ds = repo.add(data, "ds").version
    made = []
    for i, auc in enumerate([0.70, 0.85, 0.90]):
        w = work / f"model{i}"
        w.mkdir()
        (w / "weights.bin").write_bytes(bytes(range(256)) * (i + 1))
        (w / "README.md").write_text(f"model {i}\n", "utf-8")
        if i == 2:
            made.append(repo.show(_train_from_a_dirty_work_tree(root, w)))
            continue
        with mk.start_run(name=f"train-{i}", repo=repo, capture_code=False) as run:
            run.use(ds.ref, work / f"use{i}")
            run.log_params({"lr": 0.1 / (i + 1), "epochs": 3})
            for step in range(5):
                run.log_metrics(
                    {"loss": 1.0 / (step + 1 + i), "auc": auc * (step + 1) / 5}, step=step
                )
            made.append(run.log_artifact(w, "fraud-run"))
    for v in made:
        repo.register(v.ref, "fraud")
    repo.promote("fraud:v2", "staging", reason="try")
    repo.promote("fraud:v2", "production", reason="passes its gate")
    repo.promote("fraud:v3", "staging", reason="try")
    repo.promote("fraud:v3", "production", reason="better")
    repo.rollback("fraud", reason="v3 misbehaves")
    repo.set_alias("fraud@champion", "fraud:v2", reason="best so far")
    repo.close()


TRAIN = """\
import sys
from pathlib import Path

import modelkeep as mk

lr = 0.03
print('<b>not bold</b>')
repo = mk.open(sys.argv[1])
w = Path(sys.argv[2])
with mk.start_run(name="train-2", repo=repo) as run:
    run.use("ds:v1", w.parent / "use2")
    run.log_params({"lr": 0.1 / 3, "epochs": 3})
    for step in range(5):
        run.log_metrics({"loss": 1.0 / (step + 3), "auc": 0.9 * (step + 1) / 5}, step=step)
    print(run.log_artifact(w, "fraud-run").ref)
"""


def _train_from_a_dirty_work_tree(root: Path, w: Path) -> str:
    """The last run, as a real script in a Git work tree with an uncommitted change: the
    run records the commit and the dirty patch. The version's ref."""
    code = root / "work" / "code"
    code.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(code)]
    subprocess.run([*git, "init", "-q"], check=True)
    (code / "train.py").write_text(TRAIN.replace("lr = 0.03", "lr = 0.1"), "utf-8")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    (code / "train.py").write_text(TRAIN, "utf-8")
    r = subprocess.run(
        [sys.executable, "train.py", str(root), str(w)],
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return r.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    base = tmp_path_factory.mktemp("ui")
    build_store(base / "store")
    s = mkserve.start(base / "store")
    try:
        mkserve.with_accounts(
            s, {"alice": "admin", "mia": "maintainer", "vic": "viewer", "ed": "editor"}
        )
        from modelkeep.meta import accounts
        from modelkeep.server.passwords import hash_password

        with mk.open(s.root) as repo:
            accounts.set_password_hash(repo.db, "alice", hash_password(PASSWORD))
        yield s
    finally:
        s.stop()


def sign_in(served: mkserve.Served, **doc: str) -> httpx.Client:
    client = httpx.Client(base_url=served.url, timeout=60)
    r = client.post("/ui/login", json=doc)
    assert r.status_code == 200, r.text
    return client


def csrf_of(client: httpx.Client, page: str = "/ui/runs") -> str:
    text = client.get(page).text
    start = text.index('name="csrf-token" content="') + len('name="csrf-token" content="')
    return text[start : text.index('"', start)]


# -- sessions and CSRF (no browser) -----------------------------------------------------------


def test_password_sign_in_gives_a_strict_httponly_cookie(served: mkserve.Served) -> None:
    r = httpx.post(served.url + "/ui/login", json={"user": "alice", "password": PASSWORD})
    assert r.status_code == 200 and r.json() == {"user": "alice"}
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain http on 127.0.0.1
    wrong = httpx.post(served.url + "/ui/login", json={"user": "alice", "password": "nope nope"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    form = httpx.post(served.url + "/ui/login", data={"user": "alice", "password": PASSWORD})
    assert form.status_code == 415  # a cross-site form cannot sign anyone in


def test_secure_cookie_behind_an_https_proxy(served: mkserve.Served) -> None:
    r = httpx.post(
        served.url + "/ui/login",
        json={"token": served.tokens["vic"]},
        headers={"X-Forwarded-Proto": "https"},  # from 127.0.0.1, a trusted proxy address
    )
    assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()


def test_a_cookie_change_needs_its_own_sessions_csrf_token(served: mkserve.Served) -> None:
    with (
        closing(sign_in(served, token=served.tokens["mia"])) as mia,
        closing(sign_in(served, token=served.tokens["alice"])) as alice,
    ):
        assert mia.get("/api/v1/account").json()["name"] == "mia"
        body = {"target": "fraud:v2", "reason": "ui test"}
        path = "/api/v1/aliases/fraud@csrf"
        none = mia.put(path, json=body)
        assert none.status_code == 403 and none.json()["error"] == "csrf_refused"
        other = mia.put(path, json=body, headers={"X-CSRF-Token": csrf_of(alice)})
        assert other.status_code == 403 and other.json()["error"] == "csrf_refused"
        own = mia.put(path, json=body, headers={"X-CSRF-Token": csrf_of(mia)})
        assert own.status_code == 200, own.text
        # a bearer client sends no cookie and needs no CSRF token
        with served.http("mia") as api:
            assert api.request("DELETE", path, json={"reason": "tidy"}).status_code == 200


def test_signing_out_ends_the_session_on_the_server(served: mkserve.Served) -> None:
    client = sign_in(served, token=served.tokens["vic"])
    name = f"modelkeep_session_{served.port}"  # the port is in the name: cookies ignore ports
    cookie = client.cookies[name]
    token = csrf_of(client)
    assert client.post("/ui/logout", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post("/ui/logout", headers={"X-CSRF-Token": token}).status_code == 200
    # the copied cookie no longer signs anyone in: API and pages alike
    again = httpx.get(served.url + "/api/v1/account", cookies={name: cookie})
    assert again.status_code == 401
    page = httpx.get(served.url + "/ui/runs", cookies={name: cookie})
    assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")


def test_a_session_from_a_short_lived_token_ends_when_the_token_does(
    served: mkserve.Served,
) -> None:
    """Signing in with a token that expires soon must not give a 12-hour session."""
    from datetime import UTC, datetime, timedelta

    from modelkeep.meta import accounts

    ends = datetime.now(UTC) + timedelta(seconds=6)
    with mk.open(served.root) as repo:
        accounts.add_user(repo.db, "brief-web")
        accounts.grant(repo.db, "brief-web", "viewer")
        token, _ = accounts.create_token(repo.db, "brief-web", expires_at=ends)
    r = httpx.post(served.url + "/ui/login", json={"token": token})
    assert r.status_code == 200, r.text
    max_age = int(r.headers["set-cookie"].lower().split("max-age=")[1].split(";")[0])
    assert 0 < max_age <= 6
    with mk.open(served.root) as repo:
        (session,) = [t for t in accounts.tokens(repo.db, "brief-web") if t.label == "web session"]
    assert session.expires_at is not None and session.expires_at <= ends
    name = f"modelkeep_session_{served.port}"
    cookie = {name: r.cookies[name]}
    assert httpx.get(served.url + "/api/v1/account", cookies=cookie).status_code == 200
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.5)
    assert httpx.get(served.url + "/api/v1/account", cookies=cookie).status_code == 401


def test_a_session_has_the_accounts_roles_and_no_more(served: mkserve.Served) -> None:
    with closing(sign_in(served, token=served.tokens["vic"])) as vic:
        refused = vic.post(
            "/api/v1/versions/fraud:v3/stage",
            json={"stage": "staging", "reason": "x"},
            headers={"X-CSRF-Token": csrf_of(vic)},
        )
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


def test_pages_need_a_session_and_unknown_refs_are_404(served: mkserve.Served) -> None:
    r = httpx.get(served.url + "/ui/models/fraud")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/models/fraud"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    with closing(sign_in(served, token=served.tokens["vic"])) as vic:
        for path in ("/ui/versions/fraud:v99", "/ui/models/ds", "/ui/runs/ffffffff", "/ui/nope"):
            page = vic.get(path)
            assert page.status_code == 404, path
            assert 'href="/"' in page.text
        # the subject is escaped into the page, never markup
        odd = vic.get("/ui/versions/" + "%3Cscript%3Ex")
        assert "<script>x" not in odd.text
        ok = vic.get("/ui/versions/fraud@production")
        assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
        assert vic.get("/ui/static/vendor/uplot-1.6.32/LICENSE").status_code == 200


def test_the_ui_command_signs_in_the_local_user_once(tmp_path: Path) -> None:
    root = tmp_path / "local"
    root.mkdir()
    mkserve.admin(root, "init", "-q")
    proc = subprocess.Popen(
        [mkserve.MODELKEEP, "ui", "--no-browser", "--json"],
        cwd=root,
        env={**os.environ, "MODELKEEP_USER": "lee"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        lines = b""
        while not lines.rstrip().endswith(b"}"):
            lines += proc.stdout.readline()
        doc = json.loads(lines)
        assert doc["url"].startswith("http://127.0.0.1:") and doc["user"] == "lee"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(doc["url"] + "/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert httpx.get(doc["url"] + "/api/v1/models").status_code == 401  # no open port
        guessed = httpx.get(doc["url"] + "/ui/link/" + "A" * 43)
        assert guessed.status_code == 403
        with httpx.Client(base_url=doc["url"]) as browser:
            first = browser.get(doc["link"].removeprefix(doc["url"]))
            assert first.status_code == 303
            assert browser.get("/api/v1/account").json()["name"] == "lee"
            assert browser.get(doc["link"].removeprefix(doc["url"])).status_code == 403
        # the link was used: another client holding it gets nothing
        assert httpx.get(doc["link"]).status_code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
browser_tests = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    selenium = pytest.importorskip("selenium")
    del selenium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def ready(driver: Any, timeout: float = 20) -> None:
    """Wait for the page's module to finish (body data-ready) with no loading state left."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script(
            "return document.body.dataset.ready === '1' && !document.querySelector('.loading')"
        )
    )


def shot(driver: Any, name: str) -> None:
    """The whole page (up to 4000 px tall), not only the window, once it is laid out (a
    page loaded without `ready`, such as a server-rendered one, may not be yet)."""
    import base64

    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && document.body !== null"
            " && document.body.scrollHeight > 0"
        )
    )
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    width = max(1, size["cssLayoutViewport"]["clientWidth"])
    height = max(1, min(4000, size["cssContentSize"]["height"]))
    clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
    png = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    (ARTIFACTS / f"{name}.png").write_bytes(base64.b64decode(png["data"]))


def visit(driver: Any, served: mkserve.Served, path: str, name: str | None = None) -> None:
    driver.get(served.url + path)
    ready(driver)
    if name:
        shot(driver, name)


def find(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def find_all(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def sign_in_with(driver: Any, served: mkserve.Served, **fields: str) -> None:
    driver.delete_all_cookies()
    visit(driver, served, "/ui/login")
    for key, value in fields.items():
        find(driver, f"#{key}").send_keys(value)
    find(driver, "#token-submit" if "token" in fields else "#password-submit").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: "/ui/login" not in d.current_url)
    ready(driver)


def requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@browser_tests
@pytest.mark.slow
def test_walk_every_page_as_an_admin(browser: Any, served: mkserve.Served) -> None:
    d = browser
    visit(d, served, "/", "login-redirect")
    assert "/ui/login" in d.current_url
    shot(d, "login")
    sign_in_with(d, served, user="alice", password=PASSWORD)
    shot(d, "models")
    assert [a.text for a in find_all(d, "#models tbody td:first-child a")] == ["fraud"]
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    find(d, "#model-search").send_keys("zzz")  # typing asks the server, a moment later
    WebDriverWait(d, 20).until(lambda x: "no models" in find(x, "#models tbody").text)
    assert "q=zzz" in d.current_url  # the search is a link
    find(d, "#model-search").send_keys(Keys.BACKSPACE * 3)
    WebDriverWait(d, 20).until(lambda x: find_all(x, "#models tbody a"))
    ready(d)

    find(d, "#models tbody a").click()
    ready(d)
    shot(d, "model")
    rows = find_all(d, "#versions tbody tr")
    assert len(rows) == 3
    assert "production" in find(d, "#version-2").text and "champion" in find(d, "#version-2").text
    assert "archived" in find(d, "#version-3").text
    assert "auc >= 0.80" in find(d, "#gates").text
    # the server's readiness check per version, with the measured values
    assert "auc is 0.7" in find(d, "#version-1 td.readiness").text
    assert "already in production" in find(d, "#version-2 td.readiness").text
    history = find(d, "#history").text
    assert "rollback" in history and "v3 misbehaves" in history

    visit(d, served, "/ui/versions/fraud:v2", "version")
    assert {"README.md", "weights.bin"} <= {
        e.text for e in find_all(d, "#files tbody td:first-child")
    }
    assert "train-1" in find(d, "#lineage").text and "ds:v1" in find(d, "#upstream").text
    assert "auc" in find(d, ".run-metrics").text

    # a download is the version's bytes
    find(d, "#files a.download[download='weights.bin']").click()
    target = d.downloads / "weights.bin"
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.read_bytes() == bytes(range(256)) * 2

    # a file that holds markup is shown as text, never run
    visit(d, served, "/ui/versions/ds:v1")
    find(d, "button.preview[data-path='evil.html']").click()

    WebDriverWait(d, 20).until(lambda x: find_all(x, "#preview-text"))
    assert find(d, "#preview-text").text.strip() == EVIL.strip()
    assert d.execute_script("return window.pwned === undefined")
    assert not find_all(d, "#preview b")
    shot(d, "version-preview")

    visit(d, served, "/ui/runs", "runs")
    assert len(find_all(d, "#runs tbody tr")) == 3
    find(d, "#where").send_keys("metrics.auc > 0.8")
    find(d, "#filter button").click()
    ready(d)
    assert len(find_all(d, "#runs tbody tr")) == 2
    assert "where=metrics.auc" in d.current_url  # the filtered table is a link
    find(d, "a.sort[data-key='metrics.auc']").click()
    ready(d)
    names = [r.find_elements("css selector", "td")[1].text for r in find_all(d, "#runs tbody tr")]
    assert names == ["train-2", "train-1"]
    shot(d, "runs-filtered")
    # the user chooses the columns, and the choice is part of the link
    assert "epochs" in find(d, "#runs thead").text
    find(d, "#columns summary").click()
    find(d, "#columns input[data-column='params.epochs']").click()
    WebDriverWait(d, 20).until(lambda x: "hide=" in x.current_url)
    ready(d)
    assert "hide=params.epochs" in d.current_url and "epochs" not in find(d, "#runs thead").text
    assert len(find_all(d, "#runs tbody tr")) == 2  # still filtered

    find(d, "#runs tbody tr a").click()
    ready(d)
    shot(d, "run")
    assert len(find_all(d, "#charts figure.chart canvas")) == 2  # auc and loss over steps
    assert "lr" in find(d, "#params").text
    assert "ds:v1" in d.page_source and "fraud:v3" in d.page_source
    # the code: its commit and the uncommitted change as a diff, as text
    WebDriverWait(d, 20).until(lambda x: find_all(x, "#patch"))
    assert any(s.text == "+lr = 0.03" for s in find_all(d, "#patch span.add"))
    assert any(s.text == "-lr = 0.1" for s in find_all(d, "#patch span.del"))
    assert any(s.text == " print('<b>not bold</b>')" for s in find_all(d, "#patch span"))
    assert not find_all(d, "#patch b")
    shot(d, "run-code")

    d.get(served.url + "/ui/versions/fraud:v99")  # server-rendered, no script
    shot(d, "not-found")
    assert find(d, "h1").text == "Not found" and find(d, "main a[href='/']")

    d.set_window_size(390, 844)  # a phone
    visit(d, served, "/ui/models/fraud", "model-phone")
    visit(d, served, "/ui/runs", "runs-phone")
    d.set_window_size(1280, 800)

    # nothing was requested from anywhere but this server
    outside = [u for u in requested_urls(d) if not u.startswith((served.url, "data:", "blob:"))]
    assert outside == []
    # no script error and no CSP violation (a refused API answer is a page's expected state)
    logged = d.get_log("browser")
    assert [e for e in logged if e["level"] == "SEVERE" and e["source"] != "network"] == []


@browser_tests
@pytest.mark.slow
def test_promote_as_a_maintainer_and_a_refusal_shows_every_reason(
    browser: Any, served: mkserve.Served
) -> None:
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = browser
    sign_in_with(d, served, token=served.tokens["mia"])
    visit(d, served, "/ui/models/fraud")
    # v1 (auc 0.7, not in staging) to production: refused, every unmet condition inline
    find(d, "#promote-1").click()
    Select(find(d, "#action-stage")).select_by_value("production")
    find(d, "#action-reason").send_keys("try production")
    find(d, "#action-confirm").click()
    WebDriverWait(d, 20).until(lambda x: find_all(x, "#action-result .unmet li"))
    unmet = [li.text for li in find_all(d, "#action-result .unmet li")]
    assert len(unmet) == 2, unmet
    assert any("staging" in u for u in unmet) and any("auc >= 0.80" in u for u in unmet)
    shot(d, "model-refused")
    # v3 to staging: no policy for staging, it moves
    find(d, "#promote-3").click()
    Select(find(d, "#action-stage")).select_by_value("staging")
    find(d, "#action-reason").send_keys("retry v3")
    find(d, "#action-confirm").click()
    WebDriverWait(d, 20).until(lambda x: "staging" in find(x, "#version-3").text)
    ready(d)
    with served.http("mia") as api:
        assert api.get("/api/v1/versions/fraud:v3").json()["stage"] == "staging"


@browser_tests
@pytest.mark.slow
def test_a_viewer_sees_no_buttons_and_signs_out(browser: Any, served: mkserve.Served) -> None:
    d = browser
    sign_in_with(d, served, token=served.tokens["vic"])
    visit(d, served, "/ui/models/fraud", "model-viewer")
    assert len(find_all(d, "#versions tbody tr")) == 3
    assert not find_all(d, "#promote-1") and not find_all(d, "#rollback")
    with served.http("vic") as api:  # and the API refuses too
        r = api.post("/api/v1/versions/fraud:v1/stage", json={"stage": "staging"})
        assert r.status_code == 403
    find(d, "#logout").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 20).until(lambda x: "/ui/login" in x.current_url)
    d.get(served.url + "/ui/runs")
    assert "/ui/login" in d.current_url  # the session is over


@browser_tests
@pytest.mark.slow
def test_compare_diff_lineage_audit_and_account(browser: Any, served: mkserve.Served) -> None:
    from urllib.parse import quote

    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    sign_in_with(d, served, user="alice", password=PASSWORD)
    visit(d, served, "/ui/runs")
    for box in find_all(d, "#runs input.pick"):
        box.click()
    find(d, "#compare").click()
    WebDriverWait(d, 20).until(lambda x: len(find_all(x, "#charts figure.chart canvas")) == 2)
    ready(d)
    shot(d, "compare")
    # one series per run in every shared metric's chart
    assert [f.get_attribute("data-series") for f in find_all(d, "#charts figure")] == ["3", "3"]
    assert "≠" in find(d, "#comparison").text  # lr differs between the runs

    visit(d, served, "/ui/versions/fraud:v2")
    find(d, "#diff-previous").click()
    ready(d)
    shot(d, "diff")
    changes = find(d, "#changes").text
    assert "weights.bin" in changes and "modified" in changes
    assert "auc" in find(d, "#diff-metrics").text

    visit(d, served, "/ui/versions/fraud:v2")
    find(d, "#lineage-graph").click()
    ready(d)
    WebDriverWait(d, 20).until(lambda x: find(x, "#graph").get_attribute("data-ready") == "1")
    before = int(find(d, "#graph").get_attribute("data-nodes"))
    assert before == 3  # fraud:v2, the run that made it, ds:v1
    # select ds:v1 and expand it: the other runs that used it join the graph
    from selenium.webdriver.support.ui import Select

    Select(find(d, "#graph-node")).select_by_value("ds:v1")  # the keyboard's way to pick
    find(d, "#graph-expand").click()
    WebDriverWait(d, 20).until(lambda x: int(find(x, "#graph").get_attribute("data-nodes")) > 3)
    shot(d, "lineage")
    find(d, "#graph-collapse").click()
    WebDriverWait(d, 20).until(lambda x: int(find(x, "#graph").get_attribute("data-nodes")) == 3)

    visit(d, served, "/ui/audit", "audit")
    assert "verifies" in find(d, "#chain").text
    assert "rollback" in find(d, "#events").text
    with served.http("alice") as api:
        history = api.get("/api/v1/models/fraud/history").json()
    v3_live = next(
        e["at"]
        for e in history
        if e["target"] == "fraud:v3" and e["after"] == {"stage": "production"}
    )
    visit(d, served, "/ui/audit?at=" + quote(v3_live), "audit-as-of")
    assert "v3" in find(d, "#as-of tbody").text  # production then, rolled back since
    assert "rollback" not in find(d, "#events").text

    visit(d, served, "/ui/account", "account")
    assert "web session" in find(d, "#tokens").text and "mia" in find(d, "#users").text
    find(d, "#token-label").send_keys("from the ui")
    find(d, "#token-create").click()
    WebDriverWait(d, 20).until(lambda x: find_all(x, "#new-token"))
    token = find(d, "#new-token").text
    assert (
        httpx.get(
            served.url + "/api/v1/account", headers={"Authorization": f"Bearer {token}"}
        ).json()["name"]
        == "alice"
    )
    visit(d, served, "/ui/account")
    token_id = token.split("_")[1]
    find(d, f"tr[data-token='{token_id}'] button.revoke").click()
    WebDriverWait(d, 20).until(  # the page reloads: read it by script, never a stale element
        lambda x: (
            "revoked"
            in x.execute_script(
                "const r = document.querySelector(arguments[0]); return r ? r.textContent : ''",
                f"tr[data-token='{token_id}']",
            )
        )
    )
    assert (
        httpx.get(
            served.url + "/api/v1/account", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )
    outside = [u for u in requested_urls(d) if not u.startswith((served.url, "data:", "blob:"))]
    assert outside == []
    logged = d.get_log("browser")
    assert [e for e in logged if e["level"] == "SEVERE" and e["source"] != "network"] == []


def test_readiness_reads_what_promote_would_check_and_moves_nothing(
    served: mkserve.Served,
) -> None:
    with served.http("vic") as api:  # a viewer may ask; only a maintainer may move
        before = api.get("/api/v1/models/fraud/history").json()
        r = api.get("/api/v1/versions/fraud:v1/readiness", params={"stage": "production"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["ready"] is False and doc["gates"] == ["auc >= 0.80"]
        assert doc["unmet"] == ["gate 'auc >= 0.80' unmet: auc is 0.7"]
        assert any("from staging only" in x for x in doc["refused"])
        staging = api.get("/api/v1/versions/fraud:v1/readiness", params={"stage": "staging"})
        assert staging.json()["ready"] is True
        assert api.get("/api/v1/models/fraud/history").json() == before  # nothing recorded
        with closing(sign_in(served, token=served.tokens["mia"])) as mia:
            refused = mia.post(
                "/api/v1/versions/fraud:v1/stage",
                json={"stage": "production", "reason": "x"},
                headers={"X-CSRF-Token": csrf_of(mia)},
            )
            assert refused.status_code == 409  # the same conditions, listed for the page
            assert sorted(refused.json()["unmet"]) == sorted(doc["refused"] + doc["unmet"])


def test_the_browser_is_given_a_private_page_not_the_link() -> None:
    """A command line is readable by every user of the machine: the browser opens a file
    only this user can read, which forwards to the one-time link."""
    import stat

    from modelkeep.cli.ui import _forwarding_page

    link = 'http://127.0.0.1:9/ui/link/s3cret"<x>'
    page = _forwarding_page(link)
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700
    text = page.read_text()
    assert "s3cret&quot;&lt;x&gt;" in text and '"<x>' not in text


def build_long_store(root: Path) -> None:
    """More of everything than one page shows: 55 models, a model of 25 versions, a
    folder of 130 files, and 60 more events than that."""
    repo = mk.init(root)
    work = root / "work"
    (work / "shards").mkdir(parents=True)
    for i in range(130):
        (work / "shards" / f"s{i:03}.bin").write_bytes(b"x" * (i + 1))
    repo.add(work, "big-ds")
    for i in range(25):
        (work / "w.bin").write_bytes(f"weights {i}".encode())
        repo.add(work / "w.bin", "long-src")
        repo.register(f"long-src:v{i + 1}", "long")
    for i in range(54):
        (work / "m.txt").write_text(f"model {i}", "utf-8")
        repo.add(work / "m.txt", f"m{i:02}-src")
        repo.register(f"m{i:02}-src:v1", f"m{i:02}")
    repo.close()


@pytest.fixture(scope="module")
def long_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mkserve.Served]:
    base = tmp_path_factory.mktemp("ui-long")
    build_long_store(base / "store")
    s = mkserve.start(base / "store")
    try:
        mkserve.with_accounts(s, {"alice": "admin"})
        yield s
    finally:
        s.stop()


def _rows(driver: Any, css: str) -> list[str]:
    return [r.text for r in find_all(driver, css)]


@browser_tests
@pytest.mark.slow
def test_long_lists_are_paged_on_the_server(browser: Any, long_served: mkserve.Served) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    d, s = browser, long_served
    sign_in_with(d, s, token=s.tokens["alice"])
    visit(d, s, "/")
    first = _rows(d, "#models tbody td:first-child")
    assert len(first) == 50 and first[0] == "long" and "1–50 of 55" in find(d, ".pager").text
    find(d, "#next").click()
    ready(d)
    assert _rows(d, "#models tbody td:first-child") == [f"m{i:02}" for i in range(49, 54)]
    assert "page=1" in d.current_url and find(d, "#prev")
    shot(d, "models-page-2")
    find(d, "#model-search").send_keys("m5")  # searched on the server, back to page 1
    WebDriverWait(d, 20).until(lambda x: len(find_all(x, "#models tbody tr")) == 4)

    visit(d, s, "/ui/models/long")
    assert [r.get_attribute("id") for r in find_all(d, "#versions tbody tr")][:2] == [
        "version-25",
        "version-24",
    ]
    assert (
        len(find_all(d, "#versions tbody tr")) == 20 and "of 25" in find(d, "#versions-pager").text
    )
    assert len(find_all(d, "#history tbody tr")) == 25  # 25 registrations
    find(d, "#versions-next").click()
    ready(d)
    assert [r.get_attribute("id") for r in find_all(d, "#versions tbody tr")] == [
        f"version-{n}" for n in range(5, 0, -1)
    ]

    visit(d, s, "/ui/audit")
    assert len(find_all(d, "#events tbody tr")) == 50 and "of 79" in find(d, "#events-pager").text
    find(d, "#events-next").click()
    ready(d)
    assert len(find_all(d, "#events tbody tr")) == 29
    visit(d, s, "/ui/audit?kind=register&model=m03")  # filtered on the server
    assert len(find_all(d, "#events tbody tr")) == 1 and "m03:v1" in find(d, "#events").text

    visit(d, s, "/ui/versions/big-ds:v1")
    assert _rows(d, "#files tbody td:first-child") == ["shards/"]
    find(d, "#files a.dir").click()
    ready(d)
    assert len(find_all(d, "#files a.download")) == 100 and "of 130" in find(d, "#files-pager").text
    find(d, "#files-next").click()
    ready(d)
    names = [a.get_attribute("download") for a in find_all(d, "#files a.download")]
    assert names == [f"s{i:03}.bin" for i in range(100, 130)]
    shot(d, "version-folder-page-2")
    assert "every byte counts as new" in find(d, "#dedup").text
    logged = d.get_log("browser")
    assert [e for e in logged if e["level"] == "SEVERE" and e["source"] != "network"] == []


@browser_tests
@pytest.mark.slow
def test_the_version_page_shows_new_and_reused_bytes(browser: Any, served: mkserve.Served) -> None:
    d = browser
    sign_in_with(d, served, user="alice", password=PASSWORD)
    with served.http("alice") as api:
        figures = api.get("/api/v1/pages/dedup/fraud-run:v2").json()
    assert (
        figures["previous"] == "fraud-run:v1"
        and figures["new"] + figures["reused"] == (figures["size"])
    )
    visit(d, served, "/ui/versions/fraud-run:v2", "version-dedup")
    text = find(d, "#dedup").text
    assert "fraud-run:v1" in text and "Reused bytes" in text and "New bytes" in text


@browser_tests
@pytest.mark.slow
def test_the_model_spec_shows_the_input_example_as_a_table(
    browser: Any, served: mkserve.Served
) -> None:
    pd = pytest.importorskip("pandas")
    linear = pytest.importorskip("sklearn.linear_model")
    frame = pd.DataFrame({"age": [31, 47, 52], "city": ["Oslo", "<b>Lima</b>", "Pune"]})
    model = linear.LinearRegression().fit(frame[["age"]], [1.0, 2.0, 3.0])
    with mk.open(served.root) as repo:
        repo.log_model(model, "price", input_example=frame)
    d = browser
    sign_in_with(d, served, user="alice", password=PASSWORD)
    visit(d, served, "/ui/versions/price:v1", "version-model-spec")
    example = find(d, "#input-example")
    assert [c.text for c in example.find_elements("css selector", "th")] == ["age", "city"]
    rows = [r.text for r in example.find_elements("css selector", "tbody tr")]
    assert rows == ["31 Oslo", "47 <b>Lima</b>", "52 Pune"]  # text, never markup
