// Client-side routing: the server returns index.html for every dashboard path, and this picks
// the page by `location.pathname`. Links inside the app are ordinary <a href>s, so each page is a
// deep link; navigation reloads the shell (cheap: every asset is cached and revalidated).
import { getToken, setToken, onUnauthorized } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { stopAll } from "./poll.js";
import { renderList } from "./pages/list.js";
import { renderNew } from "./pages/new.js";
import { renderExperiment } from "./pages/experiment.js";
import { renderCompare } from "./pages/compare.js";
import { renderSweep } from "./pages/sweep.js";

const ROUTES = [
  [/^\/$/, "list", () => renderList],
  [/^\/new\/?$/, "new", () => renderNew],
  [/^\/experiments\/(\d+)\/?$/, "experiment", (m) => (root, q) => renderExperiment(root, Number(m[1]), q)],
  [/^\/compare\/?$/, "compare", () => renderCompare],
  [/^\/sweeps\/(\d+)\/?$/, "sweep", (m) => (root, q) => renderSweep(root, Number(m[1]), q)],
];

async function route() {
  stopAll();
  const root = document.getElementById("app");
  const query = new URLSearchParams(location.search);
  for (const [pattern, nav, make] of ROUTES) {
    const match = location.pathname.match(pattern);
    if (!match) continue;
    document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    try {
      await make(match)(root, query);
    } catch (err) {
      clear(root, errorBox(err));
    }
    return;
  }
  clear(root, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Experiments")));
}

function setUpToken() {
  const panel = document.getElementById("token-panel");
  const input = document.getElementById("token-input");
  const note = document.getElementById("token-note");
  const show = (message) => {
    panel.hidden = false;
    input.value = getToken();
    note.textContent = message || "";
    input.focus();
  };
  document.getElementById("token-button").addEventListener("click", () => (panel.hidden ? show() : (panel.hidden = true)));
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    panel.hidden = true;
    route();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    setToken("");
    input.value = "";
    note.textContent = "forgotten";
  });
  onUnauthorized(() => show("The API asks for a token (GLIDEPATH_API_TOKENS is set)."));
}

setUpToken();
route();
