import { api, enc, h, link, load, q, section, table, when } from "../dom.js";

function iso(local) {
  // a datetime-local value is the viewer's wall time: as an instant for the API
  return local ? new Date(local).toISOString() : "";
}

export default async function audit(root) {
  const p = new URLSearchParams(location.search);
  const s = { model: p.get("model") || "", actor: p.get("actor") || "", kind: p.get("kind") || "", since: p.get("since") || "", at: p.get("at") || "" };
  const input = (name, label, type = "text") => h("label", {}, label + " ", h("input", { name, id: "audit-" + name, type, value: s[name] }));
  const form = h("form", { id: "audit-form", class: "inline", method: "get", action: "/ui/audit" },
    input("model", "Model"), input("actor", "Actor"), input("kind", "Kind"), input("since", "Since", "datetime-local"),
    input("at", "As of", "datetime-local"), h("button", { type: "submit" }, "Show"));
  const body = h("div");
  root.replaceChildren(h("h1", {}, "Audit log"), form, body);
  await load(body, async () => {
    const [events, check] = await Promise.all([
      api("GET", "/audit" + q({ name: s.model, since: iso(s.since) })),
      api("GET", "/audit/verify"),
    ]);
    const until = s.at ? new Date(s.at) : null;
    const shown = events.filter((e) =>
      (!s.actor || e.actor.includes(s.actor)) && (!s.kind || e.action === s.kind) && (!until || new Date(e.at) <= until));
    const rows = shown.slice().reverse().map((e) => h("tr", {},
      h("td", {}, String(e.id)), h("td", {}, when(e.at)), h("td", {}, e.actor), h("td", {}, e.action),
      h("td", {}, e.model ? h("a", { href: link.model(e.model) }, e.model) : "-"),
      h("td", {}, e.target ? h("a", { href: link.version(e.target) }, e.target) : "-"),
      h("td", {}, JSON.stringify(e.before || {})), h("td", {}, JSON.stringify(e.after || {})), h("td", {}, e.reason || "")));
    const verified = check.problems.length
      ? h("div", { class: "error", id: "chain" }, `The event chain does NOT verify: ${check.problems.length} problem(s)`, h("ul", {}, check.problems.map((x) => h("li", {}, typeof x === "string" ? x : JSON.stringify(x)))))
      : h("p", { class: "ok", id: "chain" }, `The event chain verifies: ${check.events} events, head ${check.head}`);
    return h("div", {}, verified,
      s.at ? section(`Stages as of ${new Date(s.at).toLocaleString()}`, await stagesAt(iso(s.at))) : null,
      section(`Events (${shown.length})`, table(["#", "Time", "Actor", "Kind", "Model", "Target", "Before", "After", "Reason"], rows, { id: "events" })));
  });
}

// Every model's production and staging version at a past instant (the server reads the log).
async function stagesAt(at) {
  const models = await api("GET", "/models");
  const held = await Promise.all(models.map(async (m) => {
    const one = (stage) => api("GET", `/versions/${enc(m.name + "@" + stage)}` + q({ at })).then((v) => `v${v.number}`, () => "-");
    return [m.name, await one("production"), await one("staging")];
  }));
  return table(["Model", "Production", "Staging"], held.map(([name, prod, stag]) =>
    h("tr", {}, h("td", {}, h("a", { href: link.model(name) }, name)), h("td", {}, prod), h("td", {}, stag))), { id: "as-of" });
}
