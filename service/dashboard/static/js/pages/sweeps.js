// `/sweeps`: every sweep, newest first (GET /v1/sweeps): its strategy and pruner, status, runs
// per status, best run with the metric that ranks it, the swept fields, when and by whom. Polled
// every 2 s while any sweep runs, else every 10 s (a sweep submitted later appears by itself).
import { api } from "../api.js";
import { clear, errorBox, h, link } from "../dom.js";
import { countsText, num, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";

const POLL_MS = 2000;
const IDLE_POLL_MS = 10000;
const HEADS = ["id", "name", "strategy", "pruner", "status", "runs", "best", "swept", "created", "by"];

function row(s) {
  const best = s.best
    ? [`${s.metric} ${num(s.best.score)} `, link(`/experiments/${s.best.experiment_id}`, `#${s.best.experiment_id}`)]
    : h("span", { class: "muted" }, `${s.metric} —`);
  return h("tr", { "data-id": s.id, "data-status": s.status },
    h("td", {}, link(`/sweeps/${s.id}`, `#${s.id}`)),
    h("td", {}, s.name || h("span", { class: "muted" }, "(unnamed)")),
    h("td", {}, s.strategy === "lr_coarse_to_fine" ? `${s.strategy} (stage ${s.stage})` : s.strategy),
    h("td", {}, s.pruner || "—"),
    h("td", {}, statusBadge(s.status)),
    h("td", { class: "counts" }, countsText(s.counts) || "no runs"),
    h("td", { class: "best num", title: `each run's best ${s.metric}, ${s.mode === "min" ? "lowest" : "highest"} wins` },
      "best ", best),
    h("td", { class: "swept" }, s.parameters.join(", ")),
    h("td", {}, when(s.created_at)),
    h("td", {}, s.created_by || "—"));
}

export async function renderSweeps(root) {
  document.title = "sweeps · Glidepath";
  const body = h("div", { id: "sweeps-body" });
  clear(root, h("div", { class: "toolbar" }, h("h1", { class: "grow" }, "Sweeps")), body);

  async function load() {
    let page;
    try {
      page = await api.sweeps();
    } catch (err) {
      clear(body, errorBox(err));
      return true; // the service may come back: keep trying
    }
    clear(body, page.items.length
      ? h("table", { id: "sweeps" },
        h("thead", {}, h("tr", {}, HEADS.map((t) => h("th", {}, t)))),
        h("tbody", {}, page.items.map(row)))
      : h("p", { class: "muted", id: "no-sweeps" },
        "No sweeps yet: submit one with `glidepath submit sweep.yaml` or POST /v1/sweeps (docs/batches-and-sweeps.md)."));
    running = page.items.some((s) => s.status === "running");
    return true;
  }

  let running = false;
  poll(load, () => (running ? POLL_MS : IDLE_POLL_MS));
}
