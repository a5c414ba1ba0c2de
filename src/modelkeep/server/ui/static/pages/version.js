import { api, ApiError, clear, enc, errorBox, h, link, load, num, q, section, short, size, table, when } from "../dom.js";

const PREVIEW_LIMIT = 256 * 1024;

export default async function version(root, ref) {
  await load(root, async () => {
    const v = await api("GET", `/versions/${enc(ref)}`);
    const exact = `${v.name}:v${v.number}`;
    const [files, lineage, spec, card, run] = await Promise.all([
      api("GET", `/versions/${enc(exact)}/files`),
      api("GET", `/versions/${enc(exact)}/lineage`),
      v.type === "model" ? api("GET", `/versions/${enc(exact)}/model-spec`).catch(() => null) : null,
      v.type === "model" ? api("GET", `/versions/${enc(exact)}/card`).catch(() => null) : null,
      v.run_id ? api("GET", `/runs/${enc(v.run_id)}`).catch(() => null) : null,
    ]);
    const preview = h("div", { id: "preview" });
    const fileRows = files.map((f) => h("tr", {},
      h("td", { class: "mono" }, f.kind === "dir" ? f.path + "/" : f.path),
      h("td", {}, f.kind === "dir" ? "" : size(f.size)),
      h("td", { class: "mono" }, short(f.digest)),
      h("td", {}, f.kind === "dir" ? "" : [
        h("a", { href: link.file(v.name, v.number, f.path), download: f.path.split("/").pop(), class: "download" }, "Download"), " ",
        f.size <= PREVIEW_LIMIT ? h("button", { type: "button", class: "preview", "data-path": f.path, onclick: () => showPreview(preview, v, f) }, "Preview") : null,
      ])));
    const info = h("dl", { class: "facts" },
      fact("Ref", exact), fact("Type", v.type), fact("Digest", v.digest), fact("Size", size(v.size)),
      fact("Files", String(v.file_count)), fact("Author", v.user), fact("Created", when(v.created_at)),
      fact("Message", v.message || "-"), fact("Stage", v.stage),
      fact("Run", v.run_id ? h("a", { href: link.run(v.run_id) }, v.run_id) : "-"),
      v.registered ? fact("Model", h("a", { href: link.model(v.name) }, v.name)) : null);
    return h("div", {},
      h("h1", {}, "Version ", h("span", { class: "mono" }, exact)),
      info,
      section("Files", table(["Path", "Size", "Digest", ""], fileRows, { id: "files" }), preview),
      spec ? section("Model spec", specView(spec)) : null,
      card ? section("Model card", h("pre", { id: "card", class: "text" }, card)) : null,
      run ? section("Producing run", runSummary(run)) : null,
      section("Lineage", lineageView(lineage, exact),
        h("p", {}, h("a", { href: "/ui/lineage/" + enc(exact), id: "lineage-graph" }, "Open the lineage graph"))),
      v.number > 1 ? h("p", {}, h("a", { href: "/ui/diff" + q({ old: `${v.name}:v${v.number - 1}`, new: exact }), id: "diff-previous" }, `Diff with ${v.name}:v${v.number - 1}`)) : null);
  });
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

async function showPreview(area, v, f) {
  clear(area).appendChild(h("p", { class: "loading", role: "status" }, "Loading…"));
  try {
    const response = await fetch(link.file(v.name, v.number, f.path), { credentials: "same-origin" });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const bytes = new Uint8Array(await response.arrayBuffer());
    let text;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch (e) {
      text = null;
    }
    clear(area).appendChild(h("h3", {}, f.path));
    // textContent: whatever the file holds is shown as text, never as HTML
    area.appendChild(text === null ? h("p", { class: "muted" }, "binary file: no preview") : h("pre", { class: "text", id: "preview-text" }, text));
  } catch (error) {
    clear(area).appendChild(errorBox(error));
  }
}

function specView(spec) {
  const rows = [];
  for (const [key, value] of Object.entries(spec)) {
    if (value === null || value === undefined || (typeof value === "object" && !Object.keys(value).length)) continue;
    rows.push(h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, typeof value === "object" ? h("pre", { class: "text" }, JSON.stringify(value, null, 2)) : String(value))));
  }
  return h("div", { class: "scroll" }, h("table", { id: "model-spec" }, h("tbody", {}, rows)));
}

export function runSummary(run) {
  const params = Object.entries(run.params || {}).map(([k, val]) => h("tr", {}, h("td", {}, k), h("td", {}, String(val))));
  const metrics = Object.entries(run.metrics || {}).map(([k, val]) => h("tr", {}, h("td", {}, k), h("td", {}, num(val))));
  return h("div", { class: "two" },
    h("div", {}, h("p", {}, h("a", { href: link.run(run.id) }, `${run.name || run.id.slice(0, 8)} (${run.status})`)),
      h("h3", {}, "Params"), table(["Param", "Value"], params)),
    h("div", {}, h("h3", {}, "Metrics"), table(["Metric", "Last value"], metrics, { class: "run-metrics" })));
}

function nodeLink(key, node) {
  if (key.startsWith("run:")) return h("a", { href: link.run(node.id) }, `run ${node.name || node.id.slice(0, 8)}`);
  return h("a", { href: link.version(node.ref) }, node.ref);
}

function lineageView(lineage, root) {
  const nodes = lineage.nodes || {};
  const up = [], down = [];
  // walk the edges both ways from the root: upstream (what made it), downstream (what used it)
  const walk = (start, forward, out) => {
    const seen = new Set([start]);
    const queue = [start];
    while (queue.length) {
      const at = queue.shift();
      for (const e of lineage.edges || []) {
        const from = forward ? e.source : e.target, to = forward ? e.target : e.source;
        if (from === at && !seen.has(to)) {
          seen.add(to); queue.push(to);
          out.push(h("li", {}, nodeLink(to, nodes[to] || { ref: to, id: to.slice(4) }), ` (${e.kind})`));
        }
      }
    }
  };
  walk(root, false, up);
  walk(root, true, down);
  return h("div", { class: "two", id: "lineage" },
    h("div", {}, h("h3", {}, "Upstream"), up.length ? h("ul", { id: "upstream" }, up) : h("p", { class: "muted" }, "none")),
    h("div", {}, h("h3", {}, "Downstream"), down.length ? h("ul", { id: "downstream" }, down) : h("p", { class: "muted" }, "none")));
}
