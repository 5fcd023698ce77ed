// `/`: the newest experiments with status, progress, best value and tags; filters by status, tag
// and sweep live in the URL (shareable); the table is polled every 2 s.
import { api, ApiError, STATUSES } from "../api.js";
import { clear, errorBox, h, link } from "../dom.js";
import { num, progressBar, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";
import { follow } from "../sse.js";

const POLL_MS = 2000;
const RELOAD_MS = 1000; // events that change the list (a new run, a status) reload it at most this often

export async function renderList(root, query) {
  const filters = {
    status: query.get("status") || "",
    tag: query.get("tag") || "",
    sweep_id: query.get("sweep") || "",
  };
  const selected = new Set();

  const statusSelect = h("select", { name: "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  statusSelect.value = filters.status;
  const tagInput = h("input", { name: "tag", placeholder: "key or key:value", value: filters.tag });
  const sweepSelect = h("select", { name: "sweep" }, h("option", { value: "" }, "any sweep"));
  const compareButton = h("button", { type: "button", disabled: true, onclick: () => {
    location.href = `/compare?ids=${[...selected].join(",")}`;
  } }, "Compare selected");
  const notice = h("div");
  const tbody = h("tbody");

  const apply = () => {
    const q = new URLSearchParams();
    if (statusSelect.value) q.set("status", statusSelect.value);
    if (tagInput.value.trim()) q.set("tag", tagInput.value.trim());
    if (sweepSelect.value) q.set("sweep", sweepSelect.value);
    const s = q.toString();
    location.href = s ? `/?${s}` : "/";
  };
  statusSelect.addEventListener("change", apply);
  sweepSelect.addEventListener("change", apply);
  tagInput.addEventListener("keydown", (e) => e.key === "Enter" && apply());

  clear(
    root,
    h("div", { class: "toolbar" },
      h("h1", { class: "grow" }, "Experiments"),
      h("a", { href: "/new", "data-needs": "submit" }, h("span", { class: "button" }, "New experiment"))),
    h("form", { class: "toolbar", id: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
      h("label", {}, "Status ", statusSelect),
      h("label", {}, "Tag ", tagInput),
      h("label", {}, "Sweep ", sweepSelect),
      h("button", { type: "submit", class: "ghost" }, "Filter"),
      h("span", { class: "grow" }),
      compareButton),
    notice,
    h("table", { id: "experiments" },
      h("thead", {}, h("tr", {},
        ["", "id", "name", "status", "progress", "best", "dataset", "tags", "created", "by"].map((t) => h("th", {}, t)))),
      tbody),
  );

  // The sweep filter offers the sweeps that exist; a failure here only leaves the list short.
  api.sweeps().then((page) => {
    for (const s of page.items) sweepSelect.append(h("option", { value: s.id }, `#${s.id} ${s.name || s.strategy}`));
    sweepSelect.value = filters.sweep_id;
  }).catch(() => {});

  const row = (e) => h("tr", { "data-id": e.id },
    h("td", {}, h("input", { type: "checkbox", checked: selected.has(e.id), "aria-label": `select ${e.id}`,
      onchange: (ev) => {
        if (ev.target.checked) selected.add(e.id); else selected.delete(e.id);
        compareButton.disabled = selected.size < 1;
      } })),
    h("td", { class: "num" }, link(`/experiments/${e.id}`, `#${e.id}`)),
    h("td", {}, link(`/experiments/${e.id}`, e.name || "(unnamed)")),
    h("td", {}, statusBadge(e.status)),
    h("td", {}, progressBar(e.progress)),
    h("td", { class: "num", title: e.best_epoch ? `epoch ${e.best_epoch}` : "" },
      e.best_value === null ? "—" : `${e.best ? `${e.best.metric} ` : ""}${num(e.best_value)} @${e.best_epoch}`),
    h("td", {}, e.dataset),
    h("td", {}, Object.entries(e.tags).map(([k, v]) => h("span", {
      class: "tag", title: "filter by this tag",
      onclick: () => { location.href = `/?tag=${encodeURIComponent(`${k}:${v}`)}`; },
    }, `${k}=${v}`))),
    h("td", { class: "muted" }, when(e.created_at)),
    // The token that created it; none when the API was open.
    h("td", { class: "created-by", title: e.created_by ? `created with token ${e.created_by}` : "" }, e.created_by || "—"),
  );

  // The rows shown, by id; runs the last reload did not list (outside the filters, or older than
  // the page), with the status they had then.
  let shown = new Map();
  const outside = new Map();
  let pending = new Map();

  async function load() {
    try {
      const page = await api.listExperiments({ ...filters, limit: 100 });
      clear(notice);
      shown = new Map(page.items.map((e) => [e.id, e]));
      for (const [id, status] of pending) if (!shown.has(id)) outside.set(id, status);
      pending = new Map();
      clear(tbody, page.items.length ? page.items.map(row)
        : h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No experiments match.")));
    } catch (err) {
      clear(notice, errorBox(err));
      // A bad filter (an unknown status typed into the URL) will not fix itself: stop.
      if (err instanceof ApiError && err.status === 422) return false;
    }
    return true;
  }

  let reloadTimer = null;
  const reloadSoon = () => {
    if (reloadTimer) return;
    reloadTimer = setTimeout(async () => {
      await load();
      reloadTimer = null;
    }, RELOAD_MS);
  };

  if (!(await load())) return;
  // Live: each run's status and progress as they change (GET /v1/events, the sweep's when the
  // list is filtered by one). A shown row is updated in place; a new status, or a run not shown
  // (new, or one the filters may now take in), reloads the list. Polled where the stream fails.
  const stream = filters.sweep_id ? `/v1/events?sweep_id=${encodeURIComponent(filters.sweep_id)}` : "/v1/events";
  follow(stream, {
    status: (s) => {
      const e = shown.get(s.experiment_id);
      if (!e) {
        if (outside.get(s.experiment_id) !== s.status) {
          pending.set(s.experiment_id, s.status);
          reloadSoon();
        }
        return;
      }
      if (s.status !== e.status) reloadSoon();
      Object.assign(e, { status: s.status, epochs_run: s.epochs_run, best_epoch: s.best_epoch,
        best_value: s.best_value });
      e.progress = { ...e.progress, epochs_run: s.epochs_run, fraction: s.epochs ? s.epochs_run / s.epochs : 0 };
      const old = tbody.querySelector(`tr[data-id="${e.id}"]`);
      if (old) old.replaceWith(row(e));
    },
    end: () => reloadSoon(),
  }, { fallback: () => poll(load, POLL_MS) });
}
