import { api, enc, h, link, load, num, pageOf, pager, q, section, size, table } from "../dom.js";

const PAGE = 100; // changes on one page

export default async function diff(root) {
  const params = new URLSearchParams(location.search);
  const oldRef = params.get("old") || "", newRef = params.get("new") || "";
  const form = h("form", { id: "diff-form", class: "inline", method: "get", action: "/ui/diff" },
    h("label", {}, "Old ", h("input", { name: "old", id: "old", value: oldRef, required: true })),
    h("label", {}, "New ", h("input", { name: "new", id: "new", value: newRef, required: true })),
    h("button", { type: "submit" }, "Diff"));
  const body = h("div");
  root.replaceChildren(h("h1", {}, "Diff of two versions"), form, body);
  if (!oldRef || !newRef) return;
  await load(body, async () => {
    const d = await api("GET", "/pages/diff" + q({ old_ref: oldRef, new_ref: newRef, limit: PAGE, offset: pageOf("page") * PAGE }));
    const rows = d.items.map((c) => h("tr", { class: "change-" + c.status },
      h("td", { class: "mono" }, c.path), h("td", {}, c.status),
      h("td", {}, c.old_size === null || c.old_size === undefined ? "-" : size(c.old_size)),
      h("td", {}, c.new_size === null || c.new_size === undefined ? "-" : size(c.new_size))));
    const [a, b] = await Promise.all([d.old, d.new].map((v) => (v.run_id ? api("GET", `/runs/${enc(v.run_id)}`).catch(() => null) : null)));
    const keys = [...new Set([...Object.keys((a && a.metrics) || {}), ...Object.keys((b && b.metrics) || {})])].sort();
    const metricRows = keys.map((k) => {
      const x = a && a.metrics[k], y = b && b.metrics[k];
      return h("tr", { class: x === y ? "" : "differs" }, h("th", { scope: "row" }, k),
        h("td", {}, x === undefined || x === null ? "-" : num(x)), h("td", {}, y === undefined || y === null ? "-" : num(y)));
    });
    const refOf = (v) => `${v.name}:v${v.number}`;
    return h("div", {},
      h("p", {}, h("a", { href: link.version(refOf(d.old)) }, refOf(d.old)), " → ", h("a", { href: link.version(refOf(d.new)) }, refOf(d.new))),
      section(`Files: ${d.counts.added} added, ${d.counts.removed} removed, ${d.counts.modified} modified`,
        table(["Path", "Change", "Old size", "New size"], rows, { id: "changes" }), pager(d)),
      section("Metrics of the producing runs", table(["Metric", refOf(d.old), refOf(d.new)], metricRows, { id: "diff-metrics" })));
  });
}
