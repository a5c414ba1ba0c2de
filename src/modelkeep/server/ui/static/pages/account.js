import { api, clear, enc, errorBox, h, load, section, table, when } from "../dom.js";

export default async function account(root, _arg, me) {
  await load(root, async () => {
    const tokens = await api("GET", "/api/v1/tokens");
    const users = me.admin ? await api("GET", "/api/v1/users") : null;
    const made = h("div", { id: "token-made", "aria-live": "polite" });
    const label = h("input", { id: "token-label", name: "label", maxlength: 128 });
    const days = h("input", { id: "token-days", name: "expires_days", type: "number", min: 1, max: 3650 });
    const form = h("form", { id: "token-form", class: "card" }, h("h3", {}, "New token"),
      h("label", {}, "Label ", label), h("label", {}, "Expires after (days, empty: never) ", days),
      h("button", { type: "submit", id: "token-create" }, "Create"), made);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { label: label.value };
        if (days.value) body.expires_days = parseInt(days.value, 10);
        const doc = await api("POST", "/api/v1/tokens", body);
        clear(made).appendChild(h("div", { class: "ok" }, "Your new token (shown this once): ", h("code", { id: "new-token", class: "mono" }, doc.token)));
      } catch (error) {
        clear(made).appendChild(errorBox(error));
      }
    });
    const rows = tokens.map((t) => h("tr", { "data-token": t.id },
      h("td", { class: "mono" }, t.id), h("td", {}, t.label || "-"), h("td", {}, when(t.created_at)),
      h("td", {}, t.expires_at ? when(t.expires_at) : "never"), h("td", {}, t.state),
      h("td", {}, t.state === "active" ? h("button", { type: "button", class: "revoke", onclick: async (event) => {
        try {
          await api("DELETE", `/api/v1/tokens/${enc(t.id)}`);
          location.reload();
        } catch (error) {
          event.target.replaceWith(errorBox(error));
        }
      } }, "Revoke") : "")));
    const grants = (me.grants || []).map((g) => `${g.role} on ${g.model}`).join(", ") || (me.admin ? "admin" : "no roles");
    return h("div", {},
      h("h1", {}, "Account ", h("span", { class: "mono" }, me.name)),
      h("p", {}, `Roles: ${me.admin ? "admin (everything)" : grants}`),
      section("Tokens", table(["Id", "Label", "Created", "Expires", "State", ""], rows, { id: "tokens" }), form),
      users ? section("Users and roles", table(["User", "Admin", "Disabled", "Roles"], users.map((u) => h("tr", {},
        h("td", {}, u.name), h("td", {}, u.admin ? "yes" : ""), h("td", {}, u.disabled ? "yes" : ""),
        h("td", {}, (u.grants || []).map((g) => `${g.role} on ${g.model}`).join(", ") || "-"))), { id: "users" })) : null);
  });
}
