// `/`: experiments with status, progress, best value, hyper-parameters (and a sweep's swept
// values when filtered by one) and tags. Filters, the name search (`q`) and the sort (`sort`,
// ordered by the API in every direction) live in the URL; "Load more" follows the API's cursor.
// Rows update live; each run's metrics export as CSV or JSON.
import { api, ApiError, getToken, STATUSES } from "../api.js";
import { clear, errorBox, h, link, saveBlob } from "../dom.js";
import { num, progressBar, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";
import { follow } from "../sse.js";
import { bestCriterion, leafText, schedulerText, valueAt } from "../specs.js";

const POLL_MS = 2000;
const RELOAD_MS = 1000; // events that change the list (a new run, a status) reload it at most this often
const PAGE = 100;
const MAX_PAGE = 500; // the API's largest page
// Sortable columns: the API's sort field, and the direction of a first click.
const SORTS = { id: "-", name: "", status: "", best: "", base_lr: "", created: "-" };
const DEFAULT_SORT = "-created";

export async function renderList(root, query) {
  const filters = {
    status: query.get("status") || "",
    tag: query.get("tag") || "",
    sweep_id: query.get("sweep") || "",
    q: query.get("q") || "",
  };
  const wanted = query.get("sort") || DEFAULT_SORT;
  const sort = Object.hasOwn(SORTS, wanted.replace(/^-/, "")) ? wanted : DEFAULT_SORT;
  const selected = new Set();

  const statusSelect = h("select", { name: "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  // Every filter the URL carries shows in its control, and so stays in the URL the next search
  // or sort makes, also one its options do not list: several statuses (`succeeded,cancelled`,
  // which the API takes), a sweep not among the newest the select offers, or not loaded yet.
  const keepOption = (select, value, text) => {
    if (value && ![...select.options].some((o) => o.value === value)) select.append(h("option", { value }, text));
    select.value = value;
  };
  keepOption(statusSelect, filters.status, filters.status.split(",").join(" or "));
  const searchInput = h("input", { name: "q", id: "search", type: "search", placeholder: "name contains…",
    value: filters.q, maxlength: 200 });
  const tagInput = h("input", { name: "tag", placeholder: "key or key:value", value: filters.tag });
  const sweepSelect = h("select", { name: "sweep" }, h("option", { value: "" }, "any sweep"));
  keepOption(sweepSelect, filters.sweep_id, `#${filters.sweep_id}`);
  const sweepNote = h("div", { id: "sweep-note" });
  const compareButton = h("button", { type: "button", disabled: true, onclick: () => {
    location.href = `/compare?ids=${[...selected].join(",")}`;
  } }, "Compare selected");
  const notice = h("div");
  const tbody = h("tbody");
  const theadRow = h("tr");
  const loadMore = h("button", { type: "button", id: "load-more", class: "ghost", hidden: true }, "Load more");
  const countNote = h("span", { class: "muted", id: "shown-count" });

  const url = (changes = {}) => {
    const q = new URLSearchParams();
    const state = { status: statusSelect.value, tag: tagInput.value.trim(), sweep: sweepSelect.value,
      q: searchInput.value.trim(), sort, ...changes };
    for (const key of ["status", "tag", "sweep", "q"]) if (state[key]) q.set(key, state[key]);
    if (state.sort !== DEFAULT_SORT) q.set("sort", state.sort);
    const s = q.toString();
    return s ? `/?${s}` : "/";
  };
  const apply = () => { location.href = url(); };
  statusSelect.addEventListener("change", apply);
  sweepSelect.addEventListener("change", apply);
  for (const input of [tagInput, searchInput]) input.addEventListener("keydown", (e) => e.key === "Enter" && apply());

  clear(
    root,
    h("div", { class: "toolbar" },
      h("h1", { class: "grow" }, "Experiments"),
      h("a", { href: "/new", "data-needs": "submit" }, h("span", { class: "button" }, "New experiment"))),
    h("form", { class: "toolbar", id: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
      h("label", {}, "Name ", searchInput),
      h("label", {}, "Status ", statusSelect),
      h("label", {}, "Tag ", tagInput),
      h("label", {}, "Sweep ", sweepSelect),
      h("button", { type: "submit", class: "ghost" }, "Filter"),
      h("span", { class: "grow" }),
      compareButton),
    notice,
    sweepNote,
    h("div", { class: "table-scroll" }, h("table", { id: "experiments" }, h("thead", {}, theadRow), tbody)),
    h("div", { class: "toolbar" }, countNote, loadMore),
  );

  // The sweep filter offers the sweeps that exist; a failure here only leaves the list short.
  api.sweeps().then((page) => {
    for (const s of page.items) {
      const text = `#${s.id} ${s.name || s.strategy}`;
      const known = [...sweepSelect.options].find((o) => o.value === String(s.id));
      if (known) known.textContent = text;
      else sweepSelect.append(h("option", { value: s.id }, text));
    }
  }).catch(() => {});

  // Filtered by a sweep: a column per swept field (its dotted spec path).
  let swept = [];
  if (filters.sweep_id) {
    try {
      const sweep = await api.sweep(filters.sweep_id);
      swept = [...new Set(sweep.experiments.flatMap((r) => Object.keys(r.params || {})))];
    } catch (err) {
      // No such sweep: no columns to add, and the page says why the list is empty.
      if (err instanceof ApiError && err.status === 404) {
        clear(sweepNote, h("p", { class: "error-box" }, `There is no sweep #${filters.sweep_id}.`));
      }
    }
  }

  // A header that sorts: the first click in its natural direction, the next reverses it.
  const sortHeader = (field, label) => {
    const current = sort.replace(/^-/, "") === field;
    const descending = sort.startsWith("-");
    const next = current ? (descending ? field : `-${field}`) : `${SORTS[field]}${field}`;
    return h("th", { "data-sort": field, "aria-sort": current ? (descending ? "descending" : "ascending") : "none" },
      h("a", { href: url({ sort: next }), class: "sort-link", title: `sort by ${label}` },
        label, current ? (descending ? " ▼" : " ▲") : ""));
  };
  clear(theadRow,
    h("th", {}, ""), sortHeader("id", "id"), sortHeader("name", "name"), sortHeader("status", "status"),
    h("th", {}, "progress"), sortHeader("best", "best"), sortHeader("base_lr", "base LR"),
    h("th", {}, "solver"), h("th", {}, "scheduler"), h("th", {}, "batch"),
    swept.map((p) => h("th", { "data-param": p, title: `swept: ${p}` }, p)),
    h("th", {}, "dataset"), h("th", {}, "tags"), sortHeader("created", "created"), h("th", {}, "by"),
    h("th", {}, "metrics"));
  const columns = theadRow.children.length;

  const row = (e) => h("tr", { "data-id": e.id },
    h("td", {}, h("input", { type: "checkbox", checked: selected.has(e.id), "aria-label": `select ${e.id}`,
      onchange: (ev) => {
        if (ev.target.checked) selected.add(e.id); else selected.delete(e.id);
        compareButton.disabled = selected.size < 1;
      } })),
    h("td", { class: "num" }, link(`/experiments/${e.id}`, `#${e.id}`)),
    h("td", { class: "name" }, link(`/experiments/${e.id}`, e.name || "(unnamed)")),
    h("td", {}, statusBadge(e.status)),
    h("td", {}, progressBar(e.progress)),
    h("td", { class: "num best", title: e.best_epoch ? `epoch ${e.best_epoch}` : "" },
      e.best_value === null ? "—" : `${e.best ? `${e.best.metric} ` : ""}${num(e.best_value)} @${e.best_epoch}`),
    h("td", { class: "num base-lr", "data-value": e.spec.base_lr, title: String(e.spec.base_lr) }, num(e.spec.base_lr, 3)),
    h("td", {}, e.spec.solver ? e.spec.solver.type : "—"),
    h("td", {}, schedulerText(e.spec)),
    h("td", { class: "num" }, e.spec.batch_size ?? "—"),
    swept.map((p) => h("td", { class: "num", "data-param": p }, leafText(valueAt(e.spec, p)))),
    h("td", {}, e.dataset),
    // Buttons, so Tab reaches them and Enter or Space filters as a click does.
    h("td", {}, Object.entries(e.tags).map(([k, v]) => h("button", {
      type: "button", class: "tag", title: "filter by this tag",
      onclick: () => { location.href = `/?tag=${encodeURIComponent(`${k}:${v}`)}`; },
    }, `${k}=${v}`))),
    h("td", { class: "muted created" }, when(e.created_at)),
    // The token that created it; none when the API was open.
    h("td", { class: "created-by", title: e.created_by ? `created with token ${e.created_by}` : "" }, e.created_by || "—"),
    h("td", { class: "exports" },
      exportLink(e.id, "csv", api.metricsCsvUrl(e.id), () => api.metricsCsv(e.id)), " ",
      exportLink(e.id, "json", null, () => metricsJson(e.id))),
  );

  const notify = (err) => clear(notice, errorBox(err));
  function exportLink(id, kind, href, fetchBlob) {
    const filename = `experiment-${id}-metrics.${kind}`;
    // CSV: a plain link where the API is open; with a token (a link cannot send the header), or
    // for JSON (assembled from the metrics pages), fetched and handed over as a blob.
    return h("a", { href: href || "#", download: filename, class: `export-${kind}`, "data-export": kind,
      title: `epochs of #${id} as ${kind.toUpperCase()}`,
      onclick: async (event) => {
        if (href && !getToken()) return;
        event.preventDefault();
        try {
          saveBlob(await fetchBlob(), filename);
        } catch (err) {
          notify(err);
        }
      } }, kind.toUpperCase());
  }

  // The rows shown, by id; runs the last reload did not list (outside the filters, or older than
  // the page), with the status they had then.
  let shown = new Map();
  const outside = new Map();
  let pending = new Map();
  let cursor = null;

  const params = (limit, after) => ({ ...filters, sort: sort === DEFAULT_SORT ? "" : sort, limit, cursor: after });
  const showMore = () => {
    loadMore.hidden = !cursor;
    countNote.textContent = `${shown.size} shown${cursor ? "; more below" : ""}`;
  };

  // A reload keeps as many rows as were shown (the pages loaded with "Load more"), at least one page.
  async function load() {
    try {
      const want = Math.max(PAGE, shown.size);
      const items = [];
      let after = null;
      do {
        const page = await api.listExperiments(params(Math.min(MAX_PAGE, want - items.length), after));
        items.push(...page.items);
        after = page.next_cursor;
      } while (after && items.length < want);
      cursor = after;
      clear(notice);
      shown = new Map(items.map((e) => [e.id, e]));
      for (const [id, status] of pending) if (!shown.has(id)) outside.set(id, status);
      pending = new Map();
      clear(tbody, items.length ? items.map(row)
        : h("tr", {}, h("td", { colspan: columns, class: "muted" }, "No experiments match.")));
      showMore();
    } catch (err) {
      notify(err);
      // A bad filter (an unknown status typed into the URL) will not fix itself: stop.
      if (err instanceof ApiError && err.status === 422) return false;
    }
    return true;
  }

  loadMore.addEventListener("click", async () => {
    loadMore.disabled = true;
    try {
      const page = await api.listExperiments(params(PAGE, cursor));
      const fresh = page.items.filter((e) => !shown.has(e.id));
      for (const e of fresh) shown.set(e.id, e);
      tbody.append(...fresh.map(row));
      cursor = page.next_cursor;
      showMore();
    } catch (err) {
      notify(err);
    } finally {
      loadMore.disabled = false;
    }
  });

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
      // A new status, or a new best under a sort by best, can move the row: reload.
      if (s.status !== e.status || (sort.endsWith("best") && s.best_value !== e.best_value)) reloadSoon();
      // The event carries the best's value and epoch; its metric (named in the row, as a reload
      // names it) comes from the spec.
      const { metric, mode } = bestCriterion(e.spec);
      Object.assign(e, { status: s.status, epochs_run: s.epochs_run, best_epoch: s.best_epoch,
        best_value: s.best_value,
        best: s.best_value === null ? null : { metric, mode, value: s.best_value, epoch: s.best_epoch } });
      e.progress = { ...e.progress, epochs_run: s.epochs_run, fraction: s.epochs ? s.epochs_run / s.epochs : 0 };
      const old = tbody.querySelector(`tr[data-id="${e.id}"]`);
      if (old) old.replaceWith(row(e));
    },
    end: () => reloadSoon(),
  }, { fallback: () => poll(load, POLL_MS) });
}

// The JSON export: the run's metrics page (`GET /v1/experiments/{id}/metrics`) with every epoch,
// read page by page.
async function metricsJson(id) {
  const epochs = [];
  let after = 0;
  let page;
  do {
    page = await api.metricsPage(id, after, 10000);
    epochs.push(...page.epochs);
    after = page.next_after_epoch;
  } while (page.epochs.length === 10000);
  const body = { experiment_id: id, status: page.status, epochs };
  return new Blob([JSON.stringify(body, null, 1)], { type: "application/json" });
}
