// `/tokens` (admins): every token with its role, when it was made and last used (to the minute),
// revoked or not; a form that makes one and shows it this once; revoke. docs/access.md.
import { api, getToken, setToken } from "../api.js";
import { clear, errorBox, h } from "../dom.js";
import { when } from "../format.js";

const ROLES = ["read", "submit", "admin"];

// `identify`: main.js's, which reads the stored token's name and role into the top bar.
export async function renderTokens(root, identify) {
  const notice = h("div");
  const made = h("div", { id: "token-made" });
  const tbody = h("tbody");
  const name = h("input", { name: "name", required: true, maxlength: 100, placeholder: "e.g. ci or dashboard",
    pattern: "[A-Za-z0-9][A-Za-z0-9._@\\-]*", title: "letters, digits and . _ - @" });
  const role = h("select", { name: "role" }, ROLES.map((r) => h("option", { value: r }, r)));

  // An open API (no token at all, none stored here): the token made now closes it, and this
  // browser keeps it, so a first token below admin would shut this page to the person making it.
  let open = false;

  async function load() {
    const page = await api.tokens();
    open = page.items.length === 0 && !getToken();
    if (open) role.value = "admin";
    clear(tbody, page.items.length ? page.items.map((t) => h("tr", { "data-name": t.name },
      h("td", {}, t.name),
      h("td", {}, t.role),
      h("td", { class: "muted" }, when(t.created_at)),
      h("td", { class: "muted" }, t.last_used_at ? when(t.last_used_at) : "never"),
      h("td", {}, t.revoked ? h("span", { class: "muted" }, `revoked ${when(t.revoked_at)}`)
        : h("button", { type: "button", class: "danger", onclick: () => revoke(t.name) }, "Revoke"))))
      : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No tokens: the API is open to anyone who can reach it.")));
  }

  async function revoke(tokenName) {
    if (!confirm(`Revoke token ${tokenName}? Every API process refuses it within a second or two.`)) return;
    try {
      await api.revokeToken(tokenName);
      clear(notice);
      await load();
    } catch (err) {
      clear(notice, errorBox(err));
    }
  }

  async function create(event) {
    event.preventDefault();
    if (open && role.value !== "admin" && !confirm(`The first token closes the API, and this browser keeps it: ` +
        `a ${role.value} token cannot make tokens, so this page would be closed to you ` +
        "(glidepath token create on the server can still make one). Make it anyway?")) return;
    let t;
    try {
      t = await api.createToken(name.value.trim(), role.value);
    } catch (err) {
      clear(made); // a token shown for an earlier create is not this one
      clear(notice, errorBox(err));
      return;
    }
    // The first token closes an open API: from now on this page's own calls need one too, so
    // the page keeps this one (the person would be refused at once otherwise).
    const adopted = !getToken();
    if (adopted) setToken(t.token);
    clear(notice);
    clear(made, h("p", {}, `Token ${t.name} (${t.role}), shown this once: copy it now.`),
      h("div", { class: "token-once", id: "token-value" }, t.token),
      adopted ? h("p", { class: "muted", id: "token-adopted" },
        "The API needs a token from now on: this browser uses this one (Token in the top bar to change it).") : null);
    name.value = "";
    // What follows is read with the token stored: a refusal is shown, and the token stays shown.
    try {
      if (adopted) await identify();
      await load();
    } catch (err) {
      clear(notice, errorBox(err));
    }
  }

  clear(
    root,
    h("h1", {}, "Tokens"),
    h("p", { class: "muted" }, "read: every GET · submit: also create and cancel runs, upload datasets · admin: also tokens. " +
      "Tokens in GLIDEPATH_API_TOKENS are admins and are not listed."),
    h("form", { class: "toolbar", id: "token-create", onsubmit: create },
      h("label", {}, "Name ", name), h("label", {}, "Role ", role),
      h("button", { type: "submit" }, "Create token")),
    made,
    notice,
    h("table", { id: "tokens" },
      h("thead", {}, h("tr", {}, ["name", "role", "created", "last used", ""].map((c) => h("th", {}, c)))),
      tbody),
  );
  await load();
}
