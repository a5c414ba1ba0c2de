import { api, duration, h, link, load, num, q, when } from "../dom.js";

const PAGE = 50;
const FIXED = [["Run", null], ["Name", "name"], ["Status", "status"], ["User", null], ["Started", "started"], ["Duration", "duration"]];

// The table's state lives in the URL, so a filtered, sorted page is a link.
function state() {
  const p = new URLSearchParams(location.search);
  return { where: p.get("where") || "", sort: p.get("sort") || "", desc: p.get("desc") === "1", page: Math.max(0, parseInt(p.get("page") || "0", 10) || 0), hide: p.getAll("hide") };
}

function href(s) {
  return link.runs() + q({ where: s.where, sort: s.sort, desc: s.desc ? "1" : "", page: s.page || "", hide: s.hide });
}

export default async function runs(root) {
  const s = state();
  await load(root, async () => {
    // one condition per line or per ';', as `modelkeep runs --where` takes them
    const where = s.where.split(/[;\n]/).map((c) => c.trim()).filter(Boolean);
    const found = await api("GET", "/runs" + q({ where, sort: s.sort, descending: s.desc ? "true" : "", limit: PAGE + 1, offset: s.page * PAGE }));
    const more = found.length > PAGE;
    const shown = found.slice(0, PAGE);
    const metricKeys = [...new Set(shown.flatMap((r) => Object.keys(r.metrics || {})))].sort();
    const paramKeys = [...new Set(shown.flatMap((r) => Object.keys(r.params || {})))].sort();
    const all = [...FIXED, ...metricKeys.map((k) => [k, "metrics." + k]), ...paramKeys.map((k) => [k, "params." + k])];
    const shownKey = ([label, key]) => !s.hide.includes(key || label);
    const columns = all.filter(shownKey);
    const values = (r) => [
      h("td", { class: "mono" },
        h("input", { type: "checkbox", class: "pick", value: r.id, "aria-label": `select run ${r.name || r.id.slice(0, 8)} to compare` }), " ",
        h("a", { href: link.run(r.id) }, r.id.slice(0, 8))),
      h("td", {}, r.name || ""), h("td", {}, r.status), h("td", {}, r.user),
      h("td", {}, when(r.started_at)), h("td", {}, duration(r.started_at, r.ended_at)),
      ...metricKeys.map((k) => h("td", {}, k in (r.metrics || {}) ? num(r.metrics[k]) : "")),
      ...paramKeys.map((k) => h("td", {}, k in (r.params || {}) ? String(r.params[k]) : ""))];
    // the columns the user chose: a link like any other state of the table
    const chooser = h("details", { id: "columns" }, h("summary", {}, "Columns"),
      h("div", { class: "choices" }, all.slice(1).map(([label, key]) => {
        const id = key || label;
        const box = h("input", { type: "checkbox", "data-column": id, checked: !s.hide.includes(id) });
        box.addEventListener("change", () => {
          const hide = box.checked ? s.hide.filter((x) => x !== id) : [...s.hide, id];
          location.assign(href({ ...s, hide }));
        });
        return h("label", {}, box, " ", label);
      })));
    const header = columns.map(([label, key]) => {
      if (!key) return h("th", { scope: "col" }, label);
      const active = s.sort === key;
      const next = { ...s, sort: key, desc: active ? !s.desc : true, page: 0 };
      return h("th", { scope: "col", "aria-sort": active ? (s.desc ? "descending" : "ascending") : null },
        h("a", { href: href(next), class: "sort", "data-key": key }, label + (active ? (s.desc ? " ↓" : " ↑") : "")));
    });
    const rows = shown.map((r) => h("tr", { "data-run": r.id }, values(r).filter((_, i) => shownKey(all[i]))));
    const input = h("input", { id: "where", name: "where", value: s.where, size: 50, placeholder: "metrics.auc > 0.8; params.lr = 0.1", "aria-label": "Filter (--where conditions, separated by ;)" });
    const form = h("form", { id: "filter", class: "inline" }, input, " ", h("button", { type: "submit" }, "Filter"));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      location.assign(href({ ...s, where: input.value, page: 0 }));
    });
    const pager = h("nav", { class: "pager", "aria-label": "pages" },
      s.page > 0 ? h("a", { href: href({ ...s, page: s.page - 1 }), id: "prev" }, "← Previous") : null, " ",
      h("span", {}, `page ${s.page + 1}`), " ",
      more ? h("a", { href: href({ ...s, page: s.page + 1 }), id: "next" }, "Next →") : null);
    const compareButton = h("button", { type: "button", id: "compare" }, "Compare selected");
    compareButton.addEventListener("click", () => {
      const picked = [...root.querySelectorAll("input.pick:checked")].map((x) => x.value);
      location.assign("/ui/compare" + q({ runs: picked }));
    });
    return h("div", {},
      h("h1", {}, "Runs"), form, chooser, h("p", {}, compareButton),
      h("div", { class: "scroll" }, h("table", { id: "runs" }, h("thead", {}, h("tr", {}, header)),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "no runs match"))))),
      pager);
  });
}
