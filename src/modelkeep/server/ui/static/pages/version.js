import { api, ApiError, clear, enc, errorBox, h, link, load, num, pageOf, pager, q, section, short, size, table, when, withParams } from "../dom.js";

const PREVIEW_LIMIT = 256 * 1024;
const FILES = 100; // entries of one folder on one page
const NEIGHBOURS = 50; // runs that used the version, newest first

export default async function version(root, ref) {
  await load(root, async () => {
    const v = await api("GET", `/versions/${enc(ref)}`);
    const exact = `${v.name}:v${v.number}`;
    const dir = new URLSearchParams(location.search).get("dir") || "";
    const [files, near, spec, card, run, dedup, example] = await Promise.all([
      api("GET", `/pages/files/${enc(exact)}` + q({ path: dir, limit: FILES, offset: pageOf("fpage") * FILES })),
      api("GET", `/pages/lineage/${enc(exact)}` + q({ limit: NEIGHBOURS })),
      v.type === "model" ? api("GET", `/versions/${enc(exact)}/model-spec`).catch(() => null) : null,
      v.type === "model" ? api("GET", `/versions/${enc(exact)}/card`).catch(() => null) : null,
      v.run_id ? api("GET", `/runs/${enc(v.run_id)}`).catch(() => null) : null,
      api("GET", `/pages/dedup/${enc(exact)}`).catch(() => null),
      v.type === "model" ? api("GET", `/versions/${enc(exact)}/input-example`).catch(() => null) : null,
    ]);
    const preview = h("div", { id: "preview" });
    const into = (path) => withParams({ dir: path, fpage: 0 });
    const up = dir ? h("tr", {}, h("td", { class: "mono", colspan: 4 },
      h("a", { href: into(dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) : ""), id: "dir-up" }, "../"))) : null;
    const fileRows = files.items.map((f) => h("tr", {},
      h("td", { class: "mono" }, f.kind === "dir" ? h("a", { href: into(f.path), class: "dir" }, f.path + "/") : f.path),
      h("td", {}, size(f.size)),
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
      section(dir ? `Files in ${dir}/` : "Files", table(["Path", "Size", "Digest", ""], up ? [up, ...fileRows] : fileRows, { id: "files" }), pager(files, "fpage", "files"), preview),
      dedup ? section("Storage: new and reused bytes", dedupView(dedup)) : null,
      spec ? section("Model spec", specView(spec), example ? [h("h3", {}, "Input example"), exampleView(example)] : null) : null,
      card ? section("Model card", h("pre", { id: "card", class: "text" }, card)) : null,
      run ? section("Producing run", runSummary(run)) : null,
      section("Lineage", lineageView(near.graph, exact),
        near.users > near.shown ? h("p", { class: "muted", id: "lineage-more" }, `${near.shown} of the ${near.users} runs that used it are shown (the newest).`) : null,
        h("p", {}, h("a", { href: "/ui/lineage/" + enc(exact), id: "lineage-graph" }, "Open the lineage graph"))),
      v.number > 1 ? h("p", {}, h("a", { href: "/ui/diff" + q({ old: `${v.name}:v${v.number - 1}`, new: exact }), id: "diff-previous" }, `Diff with ${v.name}:v${v.number - 1}`)) : null);
  });
}

// What the figures mean, said where they are shown (docs/ui.md says the same).
function dedupView(d) {
  if (!d.complete) {
    return h("p", { class: "muted", id: "dedup" }, `${d.changed_files.toLocaleString()} files changed since ${d.previous}: too many to count here.`);
  }
  const pct = (x) => (d.size ? ` (${((100 * x) / d.size).toFixed(1)} %)` : "");
  const explain = d.previous
    ? `Counted chunk by chunk (about 64 KiB each, before compression) against the previous version ${d.previous}: reused bytes lie in chunks ${d.previous} already holds, so storing this version did not store them again; new bytes lie in chunks it does not hold (some may still be shared with other versions of the store). ${d.changed_files.toLocaleString()} file(s) were added or changed.`
    : "There is no earlier version of this artifact, so every byte counts as new.";
  return h("div", { id: "dedup" },
    h("dl", { class: "facts" },
      fact("New bytes", h("span", { id: "dedup-new" }, size(d.new) + pct(d.new))),
      fact("Reused bytes", h("span", { id: "dedup-reused" }, size(d.reused) + pct(d.reused))),
      fact("Compared with", d.previous ? h("a", { href: link.version(d.previous) }, d.previous) : "-")),
    h("p", { class: "muted" }, explain));
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

const EXAMPLE_ROWS = 50;

// The stored input example as a table where it is one (rows of a frame, columns of a
// dict, records), else as JSON text; every value is text.
function exampleView(doc) {
  const data = doc.data;
  let columns = Array.isArray(doc.columns) ? doc.columns.map(String) : null;
  let rows = null;
  if (data && Array.isArray(data.columns) && Array.isArray(data.data) && data.data.every(Array.isArray)) {
    columns = data.columns.map(String); // a DataFrame, split: {columns, data: rows}
    rows = data.data;
  } else if (Array.isArray(data) && data.every(Array.isArray)) {
    rows = data;
  } else if (Array.isArray(data) && data.length && data.every((r) => r && typeof r === "object" && !Array.isArray(r))) {
    columns = [...new Set(data.flatMap(Object.keys))];
    rows = data.map((r) => columns.map((c) => r[c]));
  } else if (data && typeof data === "object" && !Array.isArray(data) && Object.values(data).every(Array.isArray)) {
    columns = Object.keys(data);
    const n = Math.max(0, ...Object.values(data).map((c) => c.length));
    rows = Array.from({ length: n }, (_, i) => columns.map((c) => data[c][i]));
  }
  if (!rows) return h("pre", { class: "text", id: "input-example" }, JSON.stringify(data, null, 2));
  const width = Math.max(columns ? columns.length : 0, ...rows.map((r) => r.length));
  const head = columns || Array.from({ length: width }, (_, i) => String(i));
  const cell = (x) => h("td", {}, x === null || x === undefined ? "" : typeof x === "object" ? JSON.stringify(x) : String(x));
  return h("div", {},
    table(head, rows.slice(0, EXAMPLE_ROWS).map((r) => h("tr", {}, r.map(cell))), { id: "input-example" }),
    rows.length > EXAMPLE_ROWS ? h("p", { class: "muted" }, `the first ${EXAMPLE_ROWS} of ${rows.length} rows`) : null);
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
