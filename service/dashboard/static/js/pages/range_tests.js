// `/range-tests`: the LR range tests, newest first, with what each ran on, how far it got and the
// LR it suggests (GET /v1/lr-range-tests). The status filter and the page's cursor live in the
// URL; the table is read again every 2 s and redrawn only when it changed.
import { api, ApiError, RANGE_TEST_STATUSES } from "../api.js";
import { clear, errorBox, h, link } from "../dom.js";
import { num, progressBar, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";

const POLL_MS = 2000;
const PAGE = 100;

// Shared with the test's own page: its LR ramp and its steps as a progress bar.
export function lrSpan(t) {
  return `${num(t.min_lr, 3)} → ${num(t.max_lr, 3)}`;
}

export function stepsProgress(t) {
  return progressBar({ epochs_run: t.steps_run, epochs: t.steps, fraction: t.steps ? t.steps_run / t.steps : 0 }, "steps");
}

export async function renderRangeTests(root, query) {
  const status = query.get("status") || "";
  const cursor = query.get("cursor") || "";

  const statusSelect = h("select", { name: "status", id: "status-filter" }, h("option", { value: "" }, "any status"),
    RANGE_TEST_STATUSES.map((s) => h("option", { value: s }, s)));
  statusSelect.value = status;
  statusSelect.addEventListener("change", () => {
    location.href = statusSelect.value ? `/range-tests?status=${encodeURIComponent(statusSelect.value)}` : "/range-tests";
  });
  const notice = h("div");
  const tbody = h("tbody");
  const more = h("p");

  clear(
    root,
    h("div", { class: "toolbar" }, h("h1", { class: "grow" }, "LR range tests"), h("label", {}, "Status ", statusSelect)),
    h("p", { class: "muted" },
      "Leslie Smith's test: the LR grows step by step from min to max while the batch loss is recorded; ",
      "the service suggests an LR from the curve. Start one with ",
      h("code", {}, "glidepath submit"), " or ", h("code", {}, "POST /v1/lr-range-tests"), " (",
      link("/docs#/lr-range-tests", "API"), ")."),
    notice,
    h("table", { id: "range-tests" },
      h("thead", {}, h("tr", {},
        ["id", "name", "status", "dataset · model", "LR span", "steps", "suggested LR", "created", "by"].map((t) => h("th", {}, t)))),
      tbody),
    more,
  );

  const row = (t) => h("tr", { "data-id": t.id, "data-status": t.status },
    h("td", { class: "num" }, link(`/range-tests/${t.id}`, `#${t.id}`)),
    h("td", {}, link(`/range-tests/${t.id}`, t.name || "(unnamed)")),
    h("td", {}, statusBadge(t.status)),
    h("td", {}, `${t.dataset} · ${t.model}`),
    h("td", { class: "num" }, lrSpan(t)),
    h("td", {}, stepsProgress(t)),
    h("td", { class: "num suggested-lr", title: t.rule || t.stopped || "" },
      t.suggested_lr === null ? h("span", { class: "muted" }, t.rule ? "none" : "—") : num(t.suggested_lr, 3)),
    h("td", { class: "muted" }, when(t.created_at)),
    h("td", { class: "created-by" }, t.created_by || "—"),
  );

  let shown = "";
  async function load() {
    try {
      const page = await api.rangeTests({ status, cursor, limit: PAGE });
      clear(notice);
      const seen = JSON.stringify(page);
      if (seen === shown) return true; // unchanged: keep the rows (a hover, a selection) as they are
      shown = seen;
      clear(tbody, page.items.length ? page.items.map(row)
        : h("tr", {}, h("td", { colspan: 9, class: "muted" }, status ? `No range test is ${status}.` : "No range tests yet.")));
      const q = new URLSearchParams({ ...(status ? { status } : {}), cursor: page.next_cursor || "" });
      clear(more, cursor ? link(status ? `/range-tests?status=${encodeURIComponent(status)}` : "/range-tests", "← newest") : null,
        cursor && page.next_cursor ? " · " : null,
        page.next_cursor ? link(`/range-tests?${q}`, "older tests →") : null);
    } catch (err) {
      clear(notice, errorBox(err));
      // A bad status or cursor typed into the URL will not fix itself: stop.
      if (err instanceof ApiError && err.status === 422) return false;
    }
    return true;
  }

  poll(load, POLL_MS);
}
