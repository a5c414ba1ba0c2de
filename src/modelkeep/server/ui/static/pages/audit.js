import { api, h, link, load, pageOf, pager, q, section, table, when } from "../dom.js";

const PAGE = 50; // events on one page
const MODELS = 50; // models on one page of the "as of" table

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
    // filtered and paged on the server: a page of events, never the whole log
    const [found, check] = await Promise.all([
      api("GET", "/pages/audit" + q({ name: s.model, actor: s.actor, kind: s.kind, since: iso(s.since), until: iso(s.at), limit: PAGE, offset: pageOf("page") * PAGE })),
      api("GET", "/audit/verify"),
    ]);
    const rows = found.items.map((e) => h("tr", {},
      h("td", {}, String(e.id)), h("td", {}, when(e.at)), h("td", {}, e.actor), h("td", {}, e.action),
      h("td", {}, e.model ? h("a", { href: link.model(e.model) }, e.model) : "-"),
      h("td", {}, e.target ? h("a", { href: link.version(e.target) }, e.target) : "-"),
      h("td", {}, JSON.stringify(e.before || {})), h("td", {}, JSON.stringify(e.after || {})), h("td", {}, e.reason || "")));
    const verified = check.problems.length
      ? h("div", { class: "error", id: "chain" }, `The event chain does NOT verify: ${check.problems.length} problem(s)`, h("ul", {}, check.problems.map((x) => h("li", {}, typeof x === "string" ? x : JSON.stringify(x)))))
      : h("p", { class: "ok", id: "chain" }, `The event chain verifies: ${check.events} events, head ${check.head}`);
    return h("div", {}, verified,
      s.at ? section(`Stages as of ${new Date(s.at).toLocaleString()}`, await stagesAt(iso(s.at), s.model)) : null,
      section(`Events (${found.total})`, table(["#", "Time", "Actor", "Kind", "Model", "Target", "Before", "After", "Reason"], rows, { id: "events" }), pager(found, "page", "events")));
  });
}

// One page of the models with their production and staging version at a past instant
// (the server replays the log for the models on the page).
async function stagesAt(at, model) {
  const models = await api("GET", "/pages/models" + q({ search: model, limit: MODELS, offset: pageOf("mpage") * MODELS }));
  const names = models.items.map((m) => m.model.name);
  const held = names.length ? await api("GET", "/pages/stages-at" + q({ names, at })) : {};
  const cell = (n) => (n === null || n === undefined ? "-" : `v${n}`);
  return h("div", {}, table(["Model", "Production", "Staging"], names.map((name) =>
    h("tr", {}, h("td", {}, h("a", { href: link.model(name) }, name)),
      h("td", {}, cell((held[name] || {}).production)), h("td", {}, cell((held[name] || {}).staging)))), { id: "as-of" }),
    pager(models, "mpage", "as-of"));
}
