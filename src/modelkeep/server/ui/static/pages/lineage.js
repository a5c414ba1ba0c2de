import { api, enc, h, link, load, q } from "../dom.js";
import cytoscape from "../vendor/cytoscape-3.35.0/cytoscape.esm.min.js";

const NEIGHBOURS = 100; // runs that used a version, newest first, drawn per expansion

// An interactive graph around a version: pan and zoom; a version node expands to its own
// lineage (double-click, or select it and press Enter); Collapse removes what it added.
export default async function lineage(root, ref) {
  await load(root, async () => {
    const near = await api("GET", `/pages/lineage/${enc(ref)}` + q({ limit: NEIGHBOURS }));
    const first = near.graph;
    const box = h("div", { id: "graph", class: "graph", tabindex: 0, "aria-label": "lineage graph" });
    const status = h("p", { id: "graph-status", class: "muted", role: "status" });
    const open = h("button", { type: "button", id: "graph-open" }, "Open selected");
    const expand = h("button", { type: "button", id: "graph-expand" }, "Expand selected");
    const collapse = h("button", { type: "button", id: "graph-collapse" }, "Collapse selected");
    const fit = h("button", { type: "button", id: "graph-fit" }, "Fit");
    // the keyboard's way to pick a node (a click selects one too)
    const pick = h("select", { id: "graph-node", "aria-label": "select a node" });
    const page = h("div", {}, h("h1", {}, "Lineage of ", h("span", { class: "mono" }, first.root)),
      h("p", {}, h("label", {}, "Node ", pick), " ", open, " ", expand, " ", collapse, " ", fit, " ", h("a", { href: link.version(first.root) }, "back to the version")), status, box);
    setTimeout(() => draw(box, status, near, { open, expand, collapse, fit, pick }), 0);
    return page;
  });
}

function elements(doc, addedBy) {
  const out = [];
  for (const [key, node] of Object.entries(doc.nodes || {})) {
    const run = key.startsWith("run:");
    out.push({ group: "nodes", data: { id: key, label: run ? `run ${node.name || node.id.slice(0, 8)}` : key, kind: run ? "run" : "version", addedBy, href: run ? link.run(node.id) : link.version(key) } });
  }
  for (const e of doc.edges || []) {
    out.push({ group: "edges", data: { id: `${e.source}->${e.target}`, source: e.source, target: e.target, kind: e.kind, addedBy } });
  }
  return out;
}

function draw(box, status, near, buttons) {
  const first = near.graph;
  // runs that used a node and are not drawn (the server sends the newest NEIGHBOURS)
  const hidden = { [first.root]: near.users - near.shown };
  // cytoscape adds an inline <style> unless an element with this id exists: our own file
  if (!document.getElementById("__________cytoscape_stylesheet")) {
    document.head.appendChild(h("link", { rel: "stylesheet", id: "__________cytoscape_stylesheet", href: "/ui/static/cytoscape.css" }));
  }
  const cy = cytoscape({
    container: box,
    elements: elements(first, first.root).map((el) => (el.data.id === first.root ? { ...el, data: { ...el.data, root: true } } : el)),
    wheelSensitivity: 0.3,
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 4, width: 22, height: 22, "background-color": "#2563eb" } },
      { selector: "node[kind = 'run']", style: { shape: "round-rectangle", "background-color": "#059669" } },
      { selector: "node[?root]", style: { "border-width": 3, "border-color": "#f59e0b" } },
      { selector: "node:selected", style: { "background-color": "#d97706" } },
      { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", "line-color": "#9ca3af", "target-arrow-color": "#9ca3af" } },
    ],
    layout: { name: "breadthfirst", directed: true, spacingFactor: 1.1 },
  });
  const layout = () => cy.layout({ name: "breadthfirst", directed: true, spacingFactor: 1.1 }).run();
  const say = () => {
    const more = Object.entries(hidden).filter(([key, n]) => n > 0 && cy.getElementById(key).nonempty());
    status.textContent = `${cy.nodes().length} nodes, ${cy.edges().length} edges` +
      more.map(([key, n]) => `; ${n} more runs used ${key}`).join("");
    box.dataset.nodes = String(cy.nodes().length);
    const current = selected() ? selected().id() : "";
    buttons.pick.replaceChildren(h("option", { value: "" }, "(none)"),
      ...cy.nodes().map((n) => h("option", { value: n.id(), selected: n.id() === current }, n.data("label"))));
  };
  buttons.pick.addEventListener("change", () => {
    cy.nodes().unselect();
    const node = buttons.pick.value ? cy.getElementById(buttons.pick.value) : null;
    if (node && node.nonempty()) { node.select(); cy.center(node); }
  });
  cy.on("select", "node", (event) => { buttons.pick.value = event.target.id(); });
  const selected = () => cy.nodes(":selected")[0];
  async function grow(node) {
    if (!node || node.data("kind") !== "version") return;
    const found = await api("GET", `/pages/lineage/${enc(node.id())}` + q({ limit: NEIGHBOURS }));
    const doc = found.graph;
    hidden[node.id()] = found.users - found.shown;
    cy.add(elements(doc, node.id()).filter((el) => cy.getElementById(el.data.id).empty()));
    layout(); say();
  }
  cy.on("dbltap", "node", (event) => grow(event.target));
  buttons.expand.addEventListener("click", () => grow(selected()));
  buttons.collapse.addEventListener("click", () => {
    const node = selected();
    if (!node) return;
    cy.elements().filter((el) => el.data("addedBy") === node.id() && el.id() !== node.id()).remove();
    layout(); say();
  });
  buttons.open.addEventListener("click", () => { const n = selected(); if (n) location.assign(n.data("href")); });
  buttons.fit.addEventListener("click", () => cy.fit());
  box.addEventListener("keydown", (event) => { if (event.key === "Enter") grow(selected()); });
  say();
  box.dataset.ready = "1";
}
