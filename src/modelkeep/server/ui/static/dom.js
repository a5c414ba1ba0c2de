// Small DOM helpers: every piece of data becomes a text node (never HTML).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

export class ApiError extends Error {
  constructor(status, doc) {
    super((doc && doc.message) || `HTTP ${status}`);
    this.status = status;
    this.doc = doc || {};
  }
}

// The JSON API the CLI's server client uses (/api/v1); a change carries the CSRF token.
export async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") {
    init.headers["X-CSRF-Token"] = csrf();
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const url = path.startsWith("/api/") || path.startsWith("/ui/") ? path : "/api/v1" + path;
  const response = await fetch(url, init);
  if (response.status === 401) {
    location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
    throw new ApiError(401, { message: "signed out" });
  }
  let doc = null;
  try { doc = await response.json(); } catch (e) { doc = null; }
  if (!response.ok) throw new ApiError(response.status, doc);
  return doc;
}

export function q(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

export const enc = encodeURIComponent;

// Dates in the viewer's own time zone; the machine-readable instant in datetime.
export function when(iso) {
  if (!iso) return "-";
  const date = new Date(iso);
  return h("time", { datetime: iso, title: iso }, date.toLocaleString());
}

export function size(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function num(value) {
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
}

export function short(digest) {
  return digest ? digest.slice(0, 15) : "-";
}

export function duration(start, end) {
  if (!start || !end) return "-";
  const s = (new Date(end) - new Date(start)) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
}

export const link = {
  model: (name) => "/ui/models/" + enc(name),
  version: (ref) => "/ui/versions/" + enc(ref),
  run: (id) => "/ui/runs/" + enc(id),
  runs: () => "/ui/runs",
  file: (name, number, path) => "/ui/download" + q({ ref: `${name}:v${number}`, path }),
};

export function table(headers, rows, attrs = {}) {
  return h("div", { class: "scroll" },
    h("table", attrs,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "none")))));
}

export function section(title, ...body) {
  return h("section", { "aria-label": title }, h("h2", {}, title), ...body);
}

export function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" }, error.message || String(error));
  if (error.doc && Array.isArray(error.doc.unmet)) {
    box.appendChild(h("ul", { class: "unmet" }, error.doc.unmet.map((u) => h("li", {}, u))));
  }
  return box;
}

// Load into a container: a visible loading state, then the content or the error.
export async function load(container, build) {
  clear(container).appendChild(h("p", { class: "loading", role: "status" }, "Loading…"));
  try {
    const content = await build();
    clear(container);
    if (content) container.appendChild(content);
  } catch (error) {
    clear(container).appendChild(errorBox(error));
  }
}

const ROLES = ["viewer", "editor", "maintainer", "admin"];

function glob(pattern, name) {
  const re = new RegExp("^" + pattern.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
  return re.test(name);
}

// Whether to SHOW a control: the API decides (and refuses) whatever the page shows.
export function mayOn(account, role, model) {
  if (!account) return false;
  if (account.admin) return true;
  return (account.grants || []).some(
    (g) => (g.model === "*" || (model && glob(g.model, model))) && ROLES.indexOf(g.role) >= ROLES.indexOf(role));
}

// The URL with some of its query parameters changed (a page of a table is a link).
export function withParams(changes) {
  const p = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "" || value === 0) p.delete(key);
    else p.set(key, String(value));
  }
  const text = p.toString();
  return location.pathname + (text ? "?" + text : "");
}

export function pageOf(name) {
  return Math.max(0, parseInt(new URLSearchParams(location.search).get(name) || "0", 10) || 0);
}

// Previous/next links of one paged table, read from the server's {total, offset, limit};
// param names the table's page in the URL (several tables on one page each have their own).
export function pager(found, param = "page", id = "") {
  const page = Math.floor(found.offset / found.limit);
  const last = Math.max(0, Math.ceil(found.total / found.limit) - 1);
  const from = found.total ? found.offset + 1 : 0;
  const to = Math.min(found.total, found.offset + found.limit);
  const pre = id ? id + "-" : "";
  return h("nav", { class: "pager", "aria-label": "pages", id: id ? id + "-pager" : null },
    page > 0 ? h("a", { href: withParams({ [param]: page - 1 }), id: pre + "prev", rel: "prev" }, "← Previous") : null, " ",
    h("span", { class: "muted" }, `${from.toLocaleString()}–${to.toLocaleString()} of ${found.total.toLocaleString()}`), " ",
    page < last ? h("a", { href: withParams({ [param]: page + 1 }), id: pre + "next", rel: "next" }, "Next →") : null);
}
