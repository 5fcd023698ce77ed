// `/workers`: the worker registry (GET /v1/workers): each worker's host and pid, state, queues,
// devices, plugins (name, package@version, params on hover), the run it holds, when it started and
// when it was last seen. A worker not seen for longer than the registry's `lost_after_s` shows as
// stale. Polled every 5 s for as long as the page is open: workers come and go.
import { api } from "../api.js";
import { clear, errorBox, h, link } from "../dom.js";
import { ago, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";

const POLL_MS = 5000;
const HEADS = ["host", "pid", "state", "queues", "devices", "plugins", "current run", "started", "last seen"];

function device(d) {
  const memory = d.memory_mb ? ` (${Math.round(d.memory_mb / 1024)} GiB)` : "";
  const model = d.model && d.model !== d.name ? ` ${d.model}` : "";
  return h("span", { class: "plugin", "data-device": d.name }, `${d.name}${model}${memory}`);
}

function plugins(p) {
  const entries = ["models", "datasets"].flatMap((kind) => Object.entries(p[kind] || {}).map(([name, e]) => {
    const params = e.params.map((x) => `${x.name}${x.required ? " (required)" : `=${JSON.stringify(x.default)}`}`);
    if (e.var_keyword) params.push("**kwargs");
    return h("span", { class: "plugin", "data-kind": kind, "data-name": name, title: params.length ? `params: ${params.join(", ")}` : "no params" },
      `${kind === "models" ? "model" : "dataset"} ${name} `, h("span", { class: "muted" }, `${e.package}@${e.version}`));
  }));
  const errors = Object.entries(p.errors || {});
  if (errors.length) {
    entries.push(h("span", { class: "plugin not-offered", title: errors.map(([n, why]) => `${n}: ${why}`).join("\n") },
      `${errors.length} not offered (hover)`));
  }
  return entries.length ? entries : h("span", { class: "muted" }, "built-ins only");
}

function row(w, lostAfter) {
  const state = w.state === "lost" ? "stale" : w.state;
  return h("tr", { "data-id": w.id, "data-state": state },
    h("td", { class: "host" }, w.host),
    h("td", { class: "num" }, w.pid),
    h("td", { title: state === "stale" ? `not seen for more than ${lostAfter} s` : null }, statusBadge(state)),
    h("td", { class: "queues" }, w.queues.join(", ")),
    h("td", {}, w.devices.map(device)),
    h("td", {}, plugins(w.plugins)),
    h("td", { class: "current-run" }, w.current_run ? link(`/experiments/${w.current_run}`, `#${w.current_run}`) : h("span", { class: "muted" }, "idle")),
    h("td", {}, when(w.started_at)),
    h("td", { class: "last-seen", title: when(w.last_seen) }, ago(w.last_seen)));
}

export async function renderWorkers(root) {
  document.title = "workers · Glidepath";
  const body = h("div", { id: "workers-body" });
  clear(root, h("div", { class: "toolbar" }, h("h1", { class: "grow" }, "Workers")), body);

  poll(async () => {
    let list;
    try {
      list = await api.workers();
    } catch (err) {
      clear(body, errorBox(err));
      return true;
    }
    clear(body, list.items.length
      ? [h("p", { class: "muted" }, `A worker not seen for more than ${list.lost_after_s} s is stale; a stopped one shut down cleanly. Forgotten after a day.`),
        h("table", { id: "workers" },
          h("thead", {}, h("tr", {}, HEADS.map((t) => h("th", {}, t)))),
          h("tbody", {}, list.items.map((w) => row(w, list.lost_after_s))))]
      : h("p", { class: "muted", id: "no-workers" }, "No worker has registered: start one with `glidepath worker` (or `glidepath up`)."));
    return true;
  }, POLL_MS);
}
