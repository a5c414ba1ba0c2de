import { api, enc, h, link, load, num, q, section, size, table, when, duration } from "../dom.js";

const POINTS = 1000; // points of one chart
import uPlot from "../vendor/uplot-1.6.32/uPlot.esm.js";

export default async function run(root, id) {
  await load(root, async () => {
    const r = await api("GET", `/runs/${enc(id)}`);
    const [history, env] = await Promise.all([
      // each metric thinned on the server to at most POINTS points: a long history
      // costs the page the same as a short one
      api("GET", `/pages/metrics/${enc(r.id)}` + q({ max_points: POINTS })),
      r.env_id ? api("GET", `/environments/${enc(r.id)}`).catch(() => null) : null,
    ]);
    const charts = h("div", { class: "charts", id: "charts" });
    const byKey = {};
    for (const series of history) byKey[series.key] = series;
    const params = Object.entries(r.params || {}).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, String(v))));
    const metrics = Object.entries(r.metrics || {}).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, num(v)), h("td", {}, byKey[k] ? byKey[k].points.toLocaleString() : "0")));
    const refs = (list) => (list || []).length ? h("ul", {}, list.map((ref) => h("li", {}, h("a", { href: link.version(ref) }, ref)))) : h("p", { class: "muted" }, "none");
    const page = h("div", {},
      h("h1", {}, "Run ", h("span", { class: "mono" }, r.name || r.id.slice(0, 8))),
      h("dl", { class: "facts" },
        fact("Id", r.id), fact("Status", r.status), fact("User", r.user), fact("Host", r.host || "-"),
        fact("Started", when(r.started_at)), fact("Ended", when(r.ended_at)), fact("Duration", duration(r.started_at, r.ended_at)),
        r.error ? fact("Error", r.error) : null,
        r.parent_id ? fact("Parent", h("a", { href: link.run(r.parent_id) }, r.parent_id.slice(0, 8))) : null),
      section("Params", table(["Param", "Value"], params, { id: "params" })),
      section("Metrics", table(["Metric", "Last value", "Points"], metrics, { id: "metrics" }), charts),
      section("Inputs", refs(r.inputs)),
      section("Outputs", refs(r.outputs)),
      section("Command", h("pre", { class: "text", id: "command" }, commandText(r.command))),
      section("Code", codeView(r.code)),
      env ? section("Environment", envView(env)) : null);
    // charts need their container in the document to measure its width
    setTimeout(() => drawCharts(charts, byKey), 0);
    return page;
  });
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

function commandText(command) {
  if (!command || !command.argv) return "-";
  return (command.cwd ? `# in ${command.cwd}\n` : "") + command.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}

function drawCharts(container, byKey) {
  const width = Math.max(260, Math.min(560, container.clientWidth - 16 || 560));
  for (const [key, series] of Object.entries(byKey).sort()) {
    const thinned = series.steps.length < series.points ? ` (${series.steps.length} of ${series.points.toLocaleString()} points)` : "";
    const figure = h("figure", { class: "chart", "data-metric": key }, h("figcaption", {}, key + thinned));
    container.appendChild(figure);
    new uPlot({ width, height: 200, scales: { x: { time: false } }, series: [{ label: "step" }, { label: key, stroke: "#2563eb", width: 2 }] },
      [series.steps, series.values.map((x) => (typeof x === "number" ? x : null))], figure);
  }
  if (!Object.keys(byKey).length) container.appendChild(h("p", { class: "muted" }, "no metric history"));
}

function codeView(code) {
  if (!code || !Object.keys(code).length) return h("p", { class: "muted" }, "not recorded");
  const git = code.git;
  const box = h("div", { id: "code" });
  if (git) {
    box.appendChild(h("dl", { class: "facts" }, fact("Commit", git.commit || "-"), fact("Branch", git.branch || "-"), fact("Remote", git.remote || "-"), fact("Uncommitted changes", git.dirty ? "yes" : "no")));
  } else if (code.root) {
    box.appendChild(h("p", {}, `no Git repository: a snapshot of ${code.root}`));
  }
  const ref = code.patch || code.snapshot;
  if (ref) {
    box.appendChild(h("p", {}, h("a", { href: link.version(ref) }, ref)));
    if (code.patch) showPatch(box, ref);
  }
  return box;
}

async function showPatch(box, ref) {
  const holder = h("div", {}, h("p", { class: "loading", role: "status" }, "Loading the patch…"));
  box.appendChild(holder);
  try {
    const v = await api("GET", `/versions/${enc(ref)}`);
    const response = await fetch(link.file(v.name, v.number, "patch.diff"), { credentials: "same-origin" });
    if (!response.ok) throw new Error(`the patch could not be read (HTTP ${response.status})`);
    const text = await response.text();
    const pre = h("pre", { class: "diff", id: "patch" }, text.split("\n").map((line) =>
      h("span", { class: line.startsWith("+++") || line.startsWith("---") ? "file" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "" }, line + "\n")));
    holder.replaceChildren(pre);
  } catch (error) {
    holder.replaceChildren(h("p", { class: "error" }, error.message));
  }
}

function envView(env) {
  const packages = Object.entries(env.packages || {});
  const facts = h("dl", { class: "facts" },
    env.python ? fact("Python", typeof env.python === "object" ? [env.python.implementation, env.python.version].filter(Boolean).join(" ") : String(env.python)) : null,
    env.os ? fact("OS", Object.values(env.os).join(" ")) : null,
    env.cpu ? fact("CPU", `${env.cpu.model || ""} × ${env.cpu.count || "?"}`) : null,
    fact("GPU", (env.gpu || []).length ? env.gpu.map((g) => (typeof g === "object" ? g.name || JSON.stringify(g) : g)).join(", ") : "none"),
    env.cuda ? fact("CUDA", String(env.cuda)) : null);
  const details = h("details", {}, h("summary", {}, `${packages.length} packages`),
    table(["Package", "Version"], packages.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, String(v))))));
  return h("div", { id: "environment" }, facts, details);
}
