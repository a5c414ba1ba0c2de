import { api, errorBox, h, link, pageOf, pager, q, when, withParams } from "../dom.js";

const PAGE = 50;

function stageCell(numbers, name) {
  return (numbers || []).map((n) => h("a", { href: link.version(`${name}:v${n}`) }, `v${n} `));
}

// One page of the registered models, searched on the server; the search and the page
// are in the URL, so a filtered page is a link.
export default async function models(root) {
  const params = new URLSearchParams(location.search);
  const search = h("input", { type: "search", id: "model-search", name: "q", value: params.get("q") || "", placeholder: "Filter by name", "aria-label": "Filter models by name" });
  const holder = h("div");
  root.replaceChildren(h("h1", {}, "Models"), h("p", {}, search), holder);
  let page = pageOf("page");
  let latest = 0; // answers to an older search (typing fast) are dropped, not shown
  const show = async () => {
    const mine = ++latest;
    holder.replaceChildren(h("p", { class: "loading", role: "status" }, "Loading…"));
    try {
      const found = await api("GET", "/pages/models" + q({ search: search.value.trim(), limit: PAGE, offset: page * PAGE }));
      if (mine === latest) holder.replaceChildren(render(found));
    } catch (error) {
      if (mine === latest) holder.replaceChildren(errorBox(error));
    }
  };
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      page = 0;
      history.replaceState(null, "", withParams({ q: search.value.trim(), page: 0 }));
      show();
    }, 250);
  });
  await show();
}

function render(found) {
  const rows = found.items.map(({ model: m, last_change }) => {
    const aliases = Object.entries(m.aliases || {}).map(([a, n]) => `${a}=v${n}`).join(" ");
    return h("tr", {},
      h("td", {}, h("a", { href: link.model(m.name) }, m.name)),
      h("td", {}, stageCell((m.stages || {}).production, m.name)),
      h("td", {}, stageCell((m.stages || {}).staging, m.name)),
      h("td", {}, aliases || "-"),
      h("td", {}, h("a", { href: link.version(`${m.name}:v${m.latest}`) }, `v${m.latest}`)),
      h("td", {}, String(m.registered)),
      h("td", {}, when(last_change)));
  });
  return h("div", {},
    h("div", { class: "scroll" }, h("table", { id: "models", "data-total": found.total },
      h("thead", {}, h("tr", {}, ["Model", "Production", "Staging", "Aliases", "Latest", "Versions", "Last change"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no models"))))),
    pager(found));
}
