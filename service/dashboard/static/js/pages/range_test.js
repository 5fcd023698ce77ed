// `/range-tests/{id}`: one LR range test. Its batch loss and smoothed loss against the LR on a log
// axis, filled in while it runs (polled from `next_from_step`); once it ends, the suggested LR
// marked with its rule as the tooltip, and the minimum-loss and steepest-descent LRs marked too.
// "Train with this LR" opens the create form with the test's spec at the suggestion.
import { api, FINAL_STATUSES } from "../api.js";
import { lineChart } from "../charts.js";
import { clear, errorBox, h, link } from "../dom.js";
import { num, paramsText, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";
import { lrSpan, stepsProgress } from "./range_tests.js";

const POLL_MS = 1000;
const SMOOTHED_COLOR = "#d9622b";

// What the test trains, in one line: "digits · mlp [64] · SGD (momentum=0.9) · batch 64 · seed 0".
function specLine(spec) {
  const dataset = typeof spec.dataset === "object" ? spec.dataset.type : spec.dataset;
  const model = spec.model || {};
  const shape = model.hidden ? ` [${model.hidden.join(", ")}]` : model.params ? ` (${paramsText(model.params)})` : "";
  const solver = spec.solver || {};
  const params = solver.params && Object.keys(solver.params).length ? ` (${paramsText(solver.params)})` : "";
  return `${dataset} · ${model.type}${shape} · ${solver.type}${params} · batch ${spec.batch_size} · seed ${spec.seed ?? 0}`;
}

// The loss axis's span: with `crop`, a diverging tail above 1.5× the drop from the starting loss
// is cut off (as `glidepath range-test show` crops its sparkline), so the descent fills the chart.
function lossRange(series, crop) {
  const finite = series.flat().filter((v) => v !== null && Number.isFinite(v));
  if (!finite.length) return [0, 1];
  const lo = Math.min(...finite);
  let hi = Math.max(...finite);
  const start = series[0].find((v) => v !== null && Number.isFinite(v));
  if (crop && start !== undefined && start > lo) hi = Math.min(hi, lo + 1.5 * (start - lo));
  const pad = (hi - lo) * 0.05 || 0.1;
  return [lo - pad, hi + pad];
}

// The three LRs the suggestion is read from, as markers on the chart (their kinds are styled).
function markersOf(t) {
  return [
    t.min_loss_lr !== null && { x: t.min_loss_lr, kind: "min_loss", title: `minimum of the filtered loss at LR ${num(t.min_loss_lr, 3)}` },
    t.steepest_lr !== null && { x: t.steepest_lr, kind: "steepest", title: `steepest descent of the filtered loss at LR ${num(t.steepest_lr, 3)}` },
    // Last, so it is drawn on top where it coincides with one of the others.
    t.suggested_lr !== null && { x: t.suggested_lr, kind: "suggested", title: t.rule },
  ].filter(Boolean);
}

// Why there is no suggested LR. A test that ran to its end has a rule saying why it suggests
// none; one cancelled or failed has no rule at all, so its status and stop reason say it.
function noSuggestion(t, final) {
  if (!final) return "once it ends";
  if (t.rule) return "none (the rule says why)";
  const why = t.stopped ? ` (${t.stopped})` : t.error ? " (the error is below)" : "";
  return `none: it ${t.status === "failed" ? "failed" : `was ${t.status}`} before suggesting one${why}`;
}

export async function renderRangeTest(root, id, query) {
  const facts = h("div", { id: "summary" });
  const notice = h("div");
  const chartEl = h("div", { id: "range-chart" });
  const specEl = h("pre", { class: "spec", id: "spec" });
  const train = h("a", { href: `/new?from_range_test=${id}`, class: "button", id: "train-with-lr", "data-needs": "submit",
    hidden: true }, "Train with this LR");
  const cancel = h("button", { type: "button", class: "danger", id: "cancel", "data-needs": "submit", hidden: true }, "Cancel");
  const title = h("h1", { class: "grow", id: "title" }, `Range test #${id}`);
  // `?full=1`: the whole loss axis, the tail included (a deep link to either view).
  const crop = h("input", { type: "checkbox", id: "crop-tail", checked: query.get("full") !== "1" });
  const key = h("div", { class: "marker-key" },
    [["suggested", "suggested LR"], ["min_loss", "minimum loss"], ["steepest", "steepest descent"]].map(([kind, label]) =>
      h("span", { class: `decision-${kind}` }, h("span", { class: "marker-swatch" }), label)),
    h("label", { class: "crop-toggle", title: "cut off a diverging tail above 1.5× the drop from the starting loss" },
      crop, " crop the diverging tail"));

  clear(
    root,
    h("div", { class: "toolbar" }, title, cancel, train, link("/range-tests", "all range tests")),
    notice,
    h("div", { class: "row" },
      h("div", { class: "grow" }, chartEl, key),
      h("div", { class: "side", style: "width:400px" },
        h("div", { class: "card" }, h("h2", {}, "Test"), facts),
        h("div", { class: "card" }, h("h2", {}, "Spec"), specEl))),
  );

  const chart = lineChart(chartEl, {
    title: "batch loss against learning rate (log scale)",
    series: [{ label: "loss" }, { label: "smoothed loss", color: SMOOTHED_COLOR }],
    xLabel: "learning rate",
    logX: true,
    empty: "no points yet",
    height: 380,
    yRange: () => lossRange([losses, smoothed], crop.checked),
  });
  const lrs = [];
  const losses = [];
  const smoothed = [];
  let next = 0;
  crop.addEventListener("change", () => {
    history.replaceState(null, "", crop.checked ? location.pathname : `${location.pathname}?full=1`);
    if (lrs.length) chart.setData(lrs, [losses, smoothed]);
  });

  function show(t) {
    title.textContent = `Range test #${t.id}${t.name ? ` · ${t.name}` : ""}`;
    const final = FINAL_STATUSES.has(t.status);
    cancel.hidden = final;
    cancel.disabled = t.cancel_requested;
    if (t.cancel_requested && !final) cancel.textContent = "Cancelling…";
    train.hidden = t.suggested_lr === null;
    train.title = t.suggested_lr === null ? "" : `a new experiment with this spec and base_lr ${num(t.suggested_lr, 3)}`;
    clear(facts, h("dl", { class: "facts" },
      h("dt", {}, "status"), h("dd", { id: "status" }, statusBadge(t.status)),
      h("dt", {}, "trains"), h("dd", { id: "spec-line" }, specLine(t.spec)),
      h("dt", {}, "LR span"), h("dd", { id: "lr-span" }, `${lrSpan(t)}, exponential over ${t.steps} steps`),
      h("dt", {}, "steps"), h("dd", { id: "steps" }, stepsProgress(t)),
      h("dt", {}, "suggested LR"), h("dd", { id: "suggested-lr", "data-value": t.suggested_lr ?? "" },
        t.suggested_lr === null ? h("span", { class: "muted" }, noSuggestion(t, final))
          : h("strong", {}, num(t.suggested_lr, 3))),
      t.rule ? [h("dt", {}, "rule"), h("dd", { id: "rule" }, t.rule)] : null,
      t.min_loss_lr !== null ? [h("dt", {}, "minimum loss"), h("dd", {}, `at LR ${num(t.min_loss_lr, 3)}`)] : null,
      t.steepest_lr !== null ? [h("dt", {}, "steepest descent"), h("dd", {}, `at LR ${num(t.steepest_lr, 3)}`)] : null,
      t.stopped ? [h("dt", {}, "stopped"), h("dd", { id: "stopped" }, t.stopped)] : null,
      t.error ? [h("dt", {}, "error"), h("dd", { class: "error-box" }, t.error)] : null,
      h("dt", {}, "smoothing"), h("dd", {}, `EMA β ${t.smoothing}; stops past ${t.diverge_factor}× the best smoothed loss`),
      h("dt", {}, "device"), h("dd", {}, `${t.device || "—"}${t.worker ? ` on ${t.worker}` : ""}, attempt ${t.attempt}`),
      h("dt", {}, "created"), h("dd", {}, when(t.created_at)),
      h("dt", {}, "created by"), h("dd", { id: "created-by" }, t.created_by || h("span", { class: "muted" }, "— (the API was open)")),
      t.finished_at ? [h("dt", {}, "finished"), h("dd", {}, when(t.finished_at))] : null,
    ));
    chart.setDecisions(markersOf(t));
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      show(await api.cancelRangeTest(id));
    } catch (err) {
      clear(notice, errorBox(err));
      cancel.disabled = false;
    }
  });

  // Points arrive from `next_from_step` on; the first read (a 404 is the page's error) fills the spec.
  function ingest(t) {
    if (t.steps_run < lrs.length) {
      // A new attempt (the test resumed on another worker) starts over: so does the chart.
      lrs.length = losses.length = smoothed.length = 0;
      next = 0;
      return true;
    }
    for (const p of t.points) {
      lrs.push(p.lr);
      losses.push(p.loss);
      smoothed.push(p.smoothed_loss);
    }
    next = t.next_from_step;
    if (t.points.length) chart.setData(lrs, [losses, smoothed]);
    show(t);
    return !FINAL_STATUSES.has(t.status);
  }

  const first = await api.rangeTest(id);
  specEl.textContent = JSON.stringify(first.spec, null, 2);
  if (!ingest(first)) return;
  poll(async () => {
    const t = await api.rangeTest(id, next);
    clear(notice);
    return ingest(t);
  }, POLL_MS);
}
