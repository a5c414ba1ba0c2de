import { api, enc, h, link, load, num, q, section, table } from "../dom.js";
import uPlot from "../vendor/uplot-1.6.32/uPlot.esm.js";

const POINTS = 1000; // points of one run's series
const MAX_RUNS = 20; // runs compared at once (more are left out of the link)
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563"];

function same(values) {
  return values.every((v) => JSON.stringify(v) === JSON.stringify(values[0]));
}

export default async function compare(root) {
  const ids = new URLSearchParams(location.search).getAll("runs").slice(0, MAX_RUNS);
  await load(root, async () => {
    if (ids.length < 2) {
      return h("div", {}, h("h1", {}, "Compare runs"),
        h("p", {}, "Pick two or more runs in ", h("a", { href: link.runs() }, "the runs table"), " and press Compare."));
    }
    const found = await api("GET", "/run-comparison" + q({ refs: ids }));
    const runs = found.runs;
    const rows = found.rows.map(([key, values]) => h("tr", { class: same(values) ? "" : "differs" },
      h("th", { scope: "row" }, key, same(values) ? "" : " ≠"),
      values.map((v) => h("td", {}, v === null || v === undefined ? "-" : num(v)))));
    const head = ["", ...runs.map((r) => h("a", { href: link.run(r.id) }, r.name || r.id.slice(0, 8)))];
    const histories = await Promise.all(runs.map((r) => api("GET", `/pages/metrics/${enc(r.id)}` + q({ max_points: POINTS }))));
    const keys = histories.map((hist) => new Set(hist.map((m) => m.key)));
    const shared = [...keys[0]].filter((k) => keys.every((s) => s.has(k))).sort();
    // one series per run: {step: value} of the (thinned) points the server sent
    const pointsOf = (hist, key) => {
      const one = hist.find((m) => m.key === key);
      return one ? new Map(one.steps.map((s, i) => [s, one.values[i]])) : new Map();
    };
    const charts = h("div", { class: "charts", id: "charts" });
    setTimeout(() => {
      for (const key of shared) {
        const maps = histories.map((hist) => pointsOf(hist, key));
        const steps = [...new Set(maps.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
        const data = [steps, ...maps.map((at) => {
          return steps.map((s) => (at.has(s) && typeof at.get(s) === "number" ? at.get(s) : null));
        })];
        const figure = h("figure", { class: "chart", "data-metric": key }, h("figcaption", {}, key));
        charts.appendChild(figure);
        const series = [{ label: "step" }, ...runs.map((r, i) => ({ label: r.name || r.id.slice(0, 8), stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))];
        const plot = new uPlot({ width: 520, height: 220, scales: { x: { time: false } }, series }, data, figure);
        figure.dataset.series = String(plot.series.length - 1);
      }
      if (!shared.length) charts.appendChild(h("p", { class: "muted" }, "the runs share no metric"));
    }, 0);
    return h("div", {},
      h("h1", {}, `Compare ${runs.length} runs`),
      section("Params and final metrics", table(head, rows, { id: "comparison" }),
        h("p", { class: "muted" }, "≠ marks a row whose values differ.")),
      section("Shared metrics over steps", charts));
  });
}
