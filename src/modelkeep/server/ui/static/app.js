// The web UI's entry: the server-rendered shell names the page (body data-page) and its
// subject (data-arg); the page module fills <main> from the JSON API.
import { api, clear, errorBox, h } from "./dom.js";
import models from "./pages/models.js";
import model from "./pages/model.js";
import version from "./pages/version.js";
import runs from "./pages/runs.js";
import run from "./pages/run.js";
import compare from "./pages/compare.js";
import diff from "./pages/diff.js";
import audit from "./pages/audit.js";
import account from "./pages/account.js";
import lineage from "./pages/lineage.js";

const PAGES = { models, model, version, runs, run, compare, diff, audit, account, lineage };

async function main() {
  const body = document.body;
  const page = PAGES[body.dataset.page];
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      try {
        await api("POST", "/ui/logout");
      } finally {
        location.assign("/ui/login");
      }
    });
  }
  const root = document.getElementById("main");
  if (!page) return;
  try {
    const account = await api("GET", "/account");
    await page(root, body.dataset.arg || "", account);
  } catch (error) {
    clear(root).appendChild(h("div", {}, errorBox(error), h("p", {}, h("a", { href: "/" }, "Back to the models"))));
  }
  // when the page was filled, in ms since navigation began (benchmarks/bench_ui.py reads it)
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.ready = "1";
}

main();
