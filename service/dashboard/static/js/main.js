// Client-side routing: the server returns index.html for every dashboard path, and this picks
// the page by `location.pathname`. Links inside the app are ordinary <a href>s, so each page is a
// deep link; navigation reloads the shell (cheap: every asset is cached and revalidated).
// The token's role (GET /v1/tokens/me) is set on <body data-role>: elements marked
// data-needs="submit" or "admin" are hidden by the stylesheet from the roles short of it, and a
// page that needs a role says so instead of rendering.
import { api, ApiError, getToken, setToken, onUnauthorized } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { stopAll } from "./poll.js";
import { renderList } from "./pages/list.js";
import { renderNew } from "./pages/new.js";
import { renderExperiment } from "./pages/experiment.js";
import { renderCompare } from "./pages/compare.js";
import { renderSweep } from "./pages/sweep.js";
import { renderTokens } from "./pages/tokens.js";
import { renderSweeps } from "./pages/sweeps.js";
import { renderRangeTests } from "./pages/range_tests.js";
import { renderRangeTest } from "./pages/range_test.js";
import { renderWorkers } from "./pages/workers.js";

const RANK = { none: -1, read: 0, submit: 1, admin: 2 };
// The page's role, from the API: "none" until a token is accepted.
let role = "none";

const ROUTES = [
  [/^\/$/, "list", () => renderList],
  [/^\/new\/?$/, "new", () => renderNew, "submit"],
  [/^\/tokens\/?$/, "tokens", () => (root) => renderTokens(root, identify), "admin"],
  [/^\/experiments\/(\d+)\/?$/, "experiment", (m) => (root, q) => renderExperiment(root, Number(m[1]), q)],
  [/^\/compare\/?$/, "compare", () => renderCompare],
  [/^\/sweeps\/?$/, "sweeps", () => renderSweeps],
  [/^\/sweeps\/(\d+)\/?$/, "sweeps", (m) => (root, q) => renderSweep(root, Number(m[1]), q)],
  [/^\/range-tests\/?$/, "range-tests", () => renderRangeTests],
  [/^\/range-tests\/(\d+)\/?$/, "range-tests", (m) => (root, q) => renderRangeTest(root, Number(m[1]), q)],
  [/^\/workers\/?$/, "workers", () => renderWorkers],
];

async function route() {
  stopAll();
  const root = document.getElementById("app");
  const query = new URLSearchParams(location.search);
  for (const [pattern, nav, make, needs] of ROUTES) {
    const match = location.pathname.match(pattern);
    if (!match) continue;
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    if (needs && RANK[role] < RANK[needs]) {
      clear(root, h("h1", {}, "Not allowed"), h("p", { class: "muted", id: "needs-role" },
        `This page needs a token with the ${needs} role; this one has ${role === "none" ? "no role" : role}.`));
      return;
    }
    try {
      await make(match)(root, query);
    } catch (err) {
      clear(root, errorBox(err));
    }
    return;
  }
  clear(root, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Experiments")));
}

// Who the stored token is: its name and role in the top bar, the role on <body>.
async function identify() {
  const who = document.getElementById("whoami");
  try {
    const me = await api.me();
    role = me.role;
    who.textContent = me.name ? `${me.name} · ${me.role}` : "open API";
    who.title = me.name ? `token ${me.name}, role ${me.role}` : "no token needed: GLIDEPATH_API_TOKENS is empty and no token exists";
  } catch (err) {
    role = "none";
    who.textContent = err instanceof ApiError && err.status === 401 ? "no token" : "";
  }
  document.body.dataset.role = role;
}

function setUpToken() {
  const panel = document.getElementById("token-panel");
  const input = document.getElementById("token-input");
  const note = document.getElementById("token-note");
  // Every refused call opens the panel (a page left polling refuses one every few seconds): one
  // already open keeps what is being typed in it.
  const show = (message) => {
    note.textContent = message || "";
    if (!panel.hidden) return;
    panel.hidden = false;
    input.value = getToken();
    input.focus();
  };
  document.getElementById("token-button").addEventListener("click", () => (panel.hidden ? show() : (panel.hidden = true)));
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    panel.hidden = true;
    identify().then(route);
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    setToken("");
    input.value = "";
    note.textContent = "forgotten";
    // As Save does: the page shown was read with the forgotten token (a token list, its Revoke
    // buttons), so it is drawn again without it.
    identify().then(route);
  });
  onUnauthorized(() => show("The API asks for a token: paste one made by `glidepath token create`."));
}

setUpToken();
identify().then(route);
