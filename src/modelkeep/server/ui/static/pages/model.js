import { api, enc, errorBox, h, link, load, mayOn, num, pageOf, pager, q, section, short, size, table, when, clear } from "../dom.js";

const STAGES = ["staging", "production", "archived"];
const PAGE = 20; // versions on one page (the server checks the readiness of each)
const HISTORY = 50; // events of the stage and alias history on one page

// The gates of the policy that apply to model, per stage (the policy's own text).
function gatesOf(policy, name) {
  const rules = (policy && policy.policy) || {};
  const out = {};
  for (const scope of ["default", name]) {
    for (const [stage, rule] of Object.entries(rules[scope] || {})) {
      if (rule && typeof rule === "object") out[stage] = { ...(out[stage] || {}), ...rule, from: scope };
    }
  }
  return out;
}

// The metric a gate reads, to show the measured value beside it (the server decides).
function metricOf(gate) {
  const m = /^\s*([A-Za-z0-9_.\-\[\]]+)\s*(>=|<=|==|!=|>|<)/.exec(gate);
  return m ? m[1] : null;
}

export default async function model(root, name, account) {
  const maintainer = mayOn(account, "maintainer", name);
  await load(root, async () => {
    // one page of the versions (newest first) and one of the history: never all of them
    const [found, summary, history, policy] = await Promise.all([
      api("GET", `/pages/versions/${enc(name)}` + q({ limit: PAGE, offset: pageOf("page") * PAGE })),
      api("GET", `/pages/model/${enc(name)}`),
      api("GET", "/pages/audit" + q({ name, limit: HISTORY, offset: pageOf("hpage") * HISTORY })),
      api("GET", "/policy").catch(() => null),
    ]);
    const versions = found.items;
    const entry = summary.model;
    const aliasesOf = {};
    for (const [alias, number] of Object.entries(entry.aliases || {})) (aliasesOf[number] ||= []).push(alias);
    const gates = gatesOf(policy, name);
    const metrics = [...new Set(Object.values(gates).flatMap((r) => (r.gates || []).map(metricOf).filter(Boolean)))];
    let measured = [];
    if (metrics.length && versions.length) {
      measured = await api("GET", `/artifacts/${enc(name)}/metrics` + q({ metrics, numbers: versions.map((v) => v.number) })).catch(() => []);
    }
    // whether each version on this page could move to the gated stage now, and why not:
    // the server's own check (the promotion's rules, read without moving anything)
    const gated = gates.production ? "production" : Object.keys(gates)[0] || null;
    const checked = gated ? versions : [];
    const ready = {};
    if (gated) {
      const answers = await Promise.all(checked.map((v) =>
        api("GET", `/versions/${enc(v.name + ":v" + v.number)}/readiness` + q({ stage: gated })).catch(() => null)));
      checked.forEach((v, i) => { ready[v.number] = answers[i]; });
    }
    const actionArea = h("div", { id: "action-area" });
    const headers = ["Version", "Digest", "Size", "Author", "Time", "Message", "Run", "Stage", "Aliases", ...metrics];
    if (gated) headers.push(`Ready for ${gated}?`);
    if (maintainer) headers.push("Actions");
    const rows = versions.map((v, i) => {
      const cells = [
        h("td", {}, h("a", { href: link.version(v.name + ":v" + v.number) }, `v${v.number}`)),
        h("td", { class: "mono" }, short(v.digest)),
        h("td", {}, size(v.size)),
        h("td", {}, v.user),
        h("td", {}, when(v.created_at)),
        h("td", {}, v.message || ""),
        h("td", {}, v.run_id ? h("a", { href: link.run(v.run_id) }, v.run_id.slice(0, 8)) : "-"),
        h("td", {}, h("span", { class: "stage stage-" + v.stage }, v.stage)),
        h("td", {}, (aliasesOf[v.number] || []).join(", ") || "-"),
        ...metrics.map((m) => h("td", {}, measured[i] && measured[i][m] !== null && measured[i][m] !== undefined ? num(measured[i][m]) : "-")),
      ];
      if (gated) cells.push(h("td", { class: "readiness" }, readinessCell(ready[v.number])));
      if (maintainer) cells.push(h("td", { class: "actions" }, actionButtons(v, actionArea, name)));
      return h("tr", { id: `version-${v.number}` }, cells);
    });
    const gateRows = Object.entries(gates).map(([stage, rule]) =>
      h("tr", {}, h("td", {}, stage), h("td", {}, rule.from),
        h("td", {}, (rule.gates || []).join("; ") || "-"),
        h("td", {}, rule.require_stage || "-"), h("td", {}, rule.approvals ? String(rule.approvals) : "-")));
    const events = history.items.map((e) =>
      h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.actor), h("td", {}, e.action),
        h("td", {}, e.target ? h("a", { href: link.version(e.target) }, e.target) : "-"),
        h("td", {}, describe(e.before)), h("td", {}, describe(e.after)), h("td", {}, e.reason || "")));
    return h("div", {},
      h("h1", {}, "Model ", h("span", { class: "mono" }, name)),
      maintainer ? h("p", {}, h("button", { type: "button", id: "rollback", onclick: () => ask(actionArea, { title: `Roll back ${name}`, name, run: (reason) => api("POST", `/models/${enc(name)}/rollback`, { reason }) }) }, "Roll back production")) : null,
      actionArea,
      section(`Versions (${found.total})`, table(headers, rows, { id: "versions" }), pager(found, "page", "versions")),
      section("Policy and gates", Object.keys(gates).length
        ? table(["Stage", "From", "Gates", "Requires stage", "Approvals"], gateRows, { id: "gates" })
        : h("p", { class: "muted" }, "No policy applies: any maintainer may move versions."),
        metrics.length ? h("p", { class: "muted" }, "The versions table shows each gate metric's measured value and, from the server's own check, whether each version could move now.") : null),
      section("Stage and alias history", table(["Time", "Actor", "Action", "Target", "Before", "After", "Reason"], events, { id: "history" }),
        pager(history, "hpage", "history")));
  });
}

function readinessCell(r) {
  if (!r) return "-";
  if (r.ready) return h("span", { class: "ok" }, "✓ ready", r.notes.length ? h("ul", {}, r.notes.map((n) => h("li", {}, n))) : null);
  return h("div", {}, h("span", { class: "no" }, "✗ not now"), h("ul", { class: "unmet" }, [...r.refused, ...r.unmet].map((u) => h("li", {}, u))));
}

function describe(doc) {
  if (!doc || !Object.keys(doc).length) return "-";
  return Object.entries(doc).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

function actionButtons(v, area, name) {
  const ref = `${v.name}:v${v.number}`;
  const button = (label, id, spec) => h("button", { type: "button", id: `${id}-${v.number}`, onclick: () => ask(area, spec) }, label);
  return [
    button("Promote", "promote", { title: `Promote ${ref}`, name, stage: true, run: (reason, stage) => api("POST", `/versions/${enc(ref)}/stage`, { stage, reason }) }),
    button("Approve", "approve", { title: `Approve ${ref}`, name, stage: true, run: (reason, stage) => api("POST", `/versions/${enc(ref)}/approvals`, { stage, reason }) }),
    button("Alias", "alias", { title: `Point an alias at ${ref}`, name, alias: true, run: (reason, _s, alias) => api("PUT", `/aliases/${enc(name + "@" + alias)}`, { target: ref, reason }) }),
    button("Archive", "archive", { title: `Archive ${ref}`, name, run: (reason) => api("POST", `/versions/${enc(ref)}/archive`, { reason }) }),
  ];
}

// Every action asks for a reason; a refusal shows every unmet condition inline.
function ask(area, spec) {
  clear(area);
  const reason = h("input", { id: "action-reason", name: "reason", required: true, autocomplete: "off" });
  const stage = spec.stage ? h("select", { id: "action-stage", name: "stage" }, STAGES.slice(0, 2).map((s) => h("option", { value: s }, s))) : null;
  const alias = spec.alias ? h("input", { id: "action-alias", name: "alias", required: true, pattern: "[a-z0-9][a-z0-9_.-]*" }) : null;
  const result = h("div", { id: "action-result" });
  const form = h("form", { class: "card", id: "action-form" },
    h("h2", {}, spec.title),
    stage ? h("label", {}, "Stage ", stage) : null,
    alias ? h("label", {}, "Alias ", alias) : null,
    h("label", {}, "Reason ", reason),
    h("button", { type: "submit", id: "action-confirm" }, "Confirm"), " ",
    h("button", { type: "button", id: "action-cancel", onclick: () => clear(area) }, "Cancel"),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(result).appendChild(h("p", { class: "loading", role: "status" }, "Working…"));
    try {
      await spec.run(reason.value, stage && stage.value, alias && alias.value);
      clear(result).appendChild(h("p", { class: "ok", role: "status" }, "Done."));
      setTimeout(() => location.reload(), 300);
    } catch (error) {
      clear(result).appendChild(errorBox(error));
    }
  });
  area.appendChild(form);
  reason.focus();
}
