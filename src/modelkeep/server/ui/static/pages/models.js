import { api, h, link, load, table } from "../dom.js";

function stageCell(numbers, name) {
  return (numbers || []).map((n) => h("a", { href: link.version(`${name}:v${n}`) }, `v${n} `));
}

export default async function models(root) {
  await load(root, async () => {
    const found = await api("GET", "/models");
    const body = h("tbody");
    const search = h("input", { type: "search", id: "model-search", placeholder: "Filter by name", "aria-label": "Filter models by name" });
    const rows = found.map((m) => {
      const aliases = Object.entries(m.aliases || {}).map(([a, n]) => `${a}=v${n}`).join(" ");
      return [m.name, h("tr", {},
        h("td", {}, h("a", { href: link.model(m.name) }, m.name)),
        h("td", {}, stageCell((m.stages || {}).production, m.name)),
        h("td", {}, stageCell((m.stages || {}).staging, m.name)),
        h("td", {}, aliases || "-"),
        h("td", {}, h("a", { href: link.version(`${m.name}:v${m.latest}`) }, `v${m.latest}`)),
        h("td", {}, String(m.registered)))];
    });
    const show = () => {
      const needle = search.value.trim().toLowerCase();
      while (body.firstChild) body.removeChild(body.firstChild);
      const shown = rows.filter(([name]) => name.toLowerCase().includes(needle));
      shown.forEach(([, row]) => body.appendChild(row));
      if (!shown.length) body.appendChild(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "no models")));
    };
    search.addEventListener("input", show);
    show();
    return h("div", {},
      h("h1", {}, "Models"),
      h("p", {}, search),
      h("div", { class: "scroll" }, h("table", { id: "models" },
        h("thead", {}, h("tr", {}, ["Model", "Production", "Staging", "Aliases", "Latest", "Versions"].map((x) => h("th", { scope: "col" }, x)))),
        body)));
  });
}
