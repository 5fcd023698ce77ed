// `/compare?ids=1,2,3`: several runs overlaid (`GET /v1/experiments/compare`, null-padded series),
// one metric at a time, each run in its own colour (palette.js: colours, then dashes) with its
// decisions marked in it. The x axis is the epoch, the optimizer step (epoch × steps_per_epoch)
// or the wall-clock seconds since the run started training (the running sum of its epochs'
// duration_s), as the data allows; optional EMA smoothing; each run's best and last value; and
// the spec keys in which the runs differ. Metric, axis and smoothing are in the URL.
import { api, FINAL_STATUSES } from "../api.js";
import { lineChart } from "../charts.js";
import { clear, errorBox, h, link, svg } from "../dom.js";
import { num, statusBadge } from "../format.js";
import { styleFor } from "../palette.js";
import { poll } from "../poll.js";
import { flatten, leafText } from "../specs.js";

const METRICS = ["lr", "train_loss", "val_loss", "val_accuracy", "val_mae"];
// Higher is better only for accuracy; the LR has no best.
const BEST = { train_loss: "min", val_loss: "min", val_mae: "min", val_accuracy: "max" };
const AXES = { epoch: "epoch", step: "optimizer step", time: "seconds since start" };
const POLL_MS = 2000;
// Keys every run has its own of, shown elsewhere: not what sets runs apart.
const NOT_DIFFED = new Set(["name"]);

export async function renderCompare(root, query) {
  const ids = (query.get("ids") || "").split(",").map((s) => s.trim()).filter((s) => /^\d+$/.test(s)).map(Number);
  const metric = METRICS.includes(query.get("metric")) ? query.get("metric") : "lr";
  const wantedAxis = Object.hasOwn(AXES, query.get("x")) ? query.get("x") : "epoch";
  let smoothing = Math.min(0.99, Math.max(0, Number(query.get("smooth")) || 0));

  const idsInput = h("input", { name: "ids", value: ids.join(","), placeholder: "1,2,3", size: 30 });
  const metricSelect = h("select", { name: "metric", id: "metric" }, METRICS.map((m) => h("option", { value: m }, m)));
  metricSelect.value = metric;
  const axisSelect = h("select", { name: "x", id: "x-axis" }, Object.entries(AXES).map(([v, t]) => h("option", { value: v }, t)));
  axisSelect.value = wantedAxis;
  const smoothInput = h("input", { type: "range", id: "smoothing", name: "smooth", min: 0, max: 0.99, step: 0.01,
    value: smoothing, disabled: metric === "lr", title: "EMA weight of the past: 0 is the raw values" });
  const smoothValue = h("span", { id: "smoothing-value", class: "num" }, smoothing.toFixed(2));
  const pageUrl = (changes) => {
    const q = new URLSearchParams({ ids: idsInput.value.replace(/\s+/g, ""), metric: metricSelect.value,
      x: axisSelect.value, smooth: smoothing, ...changes });
    if (q.get("x") === "epoch") q.delete("x");
    if (Number(q.get("smooth")) === 0) q.delete("smooth");
    return `/compare?${q}`;
  };
  const go = () => { location.href = pageUrl({}); };
  metricSelect.addEventListener("change", go);
  axisSelect.addEventListener("change", go);
  const notice = h("div");
  const chartEl = h("div", { id: "compare-chart" });
  const table = h("tbody");
  const diffEl = h("div", { id: "spec-diff-panel" });

  clear(root,
    h("h1", {}, "Compare experiments"),
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); go(); } },
      h("label", {}, "ids ", idsInput), h("label", {}, "metric ", metricSelect), h("label", {}, "x axis ", axisSelect),
      h("label", {}, "smoothing ", smoothInput, " ", smoothValue),
      h("button", { type: "submit", class: "ghost" }, "Show")),
    notice, chartEl,
    h("table", { id: "compare-runs" }, h("thead", {}, h("tr", {},
      ["", "run", "status", "epochs", `best ${metric}`, `last ${metric}`, "decisions"].map((t) => h("th", {}, t)))), table),
    diffEl);

  if (!ids.length) {
    clear(notice, h("p", { class: "muted" }, "Give experiment ids (comma-separated), or pick runs on the experiments list."));
    return;
  }

  let chart = null;
  let axis = null;
  let latest = null;
  // Says "(smoothed)" while the slider is above 0: set again as it moves.
  const chartTitle = () => `${metric === "lr" ? "learning rate (log scale)" : metric} by ${AXES[axis]}`
    + (smoothing && metric !== "lr" ? " (smoothed)" : "");
  const draw = () => {
    const { xs, ys, xOf } = aligned(latest.series, latest.epochs, metric, axis);
    chart.setData(xs, ys.map((values) => (metric === "lr" ? values : ema(values, smoothing))));
    chart.setDecisions(latest.series.flatMap((s, i) => s.decisions.map((d) => ({
      ...d, experiment_id: s.experiment_id, color: styleFor(i).color, x: xOf(i, d.epoch) }))));
  };
  // Smoothing redraws in place (the data is here); the URL keeps it for a shared link.
  smoothInput.addEventListener("input", () => {
    smoothing = Number(smoothInput.value);
    smoothValue.textContent = smoothing.toFixed(2);
    history.replaceState(null, "", pageUrl({}));
    if (chart) chart.setTitle(chartTitle());
    if (chart && latest) draw();
  });

  poll(async () => {
    let data;
    try {
      data = await api.compare(ids);
    } catch (err) {
      clear(notice, errorBox(err));
      return err.status !== 404 && err.status !== 422; // an unknown id will not appear by waiting
    }
    clear(notice);
    latest = data;
    if (!chart) {
      axis = offered(data.series).includes(wantedAxis) ? wantedAxis : "epoch";
      axisSelect.value = axis;
      for (const option of axisSelect.options) option.disabled = !offered(data.series).includes(option.value);
      chart = lineChart(chartEl, {
        title: chartTitle(),
        series: data.series.map((s, i) => ({ label: `#${s.experiment_id} ${s.name}`, ...styleFor(i),
          spanGaps: sharedX(data.series, axis) === null })),
        logY: metric === "lr",
        stepped: metric === "lr",
        xLabel: AXES[axis],
        height: 360,
      });
      chartEl.dataset.axis = axis;
      chartEl.dataset.series = String(data.series.length);
    }
    draw();
    clear(table, data.series.map((s, i) => runRow(s, i, metric)));
    clear(diffEl, specDiff(data.series));
    return !data.series.every((s) => FINAL_STATUSES.has(s.status));
  }, POLL_MS);
}

// The axes the data supports: steps once every run has its steps_per_epoch (it starts), time
// when the API gives the epochs' durations.
function offered(series) {
  const axes = ["epoch"];
  if (series.every((s) => s.steps_per_epoch)) axes.push("step");
  if (series.every((s) => Array.isArray(s.duration_s))) axes.push("time");
  return axes;
}

// One x per epoch index for all runs, or null when each run has x values of its own.
function sharedX(series, axis) {
  if (axis === "epoch") return (epochs) => epochs;
  if (axis === "step" && new Set(series.map((s) => s.steps_per_epoch)).size === 1) {
    return (epochs) => epochs.map((e) => e * series[0].steps_per_epoch);
  }
  return null;
}

// Each run's x of each of its epochs (null where it has none yet).
function runXs(s, epochs, axis) {
  if (axis === "epoch") return epochs;
  if (axis === "step") return epochs.map((e) => e * s.steps_per_epoch);
  let elapsed = 0;
  return s.duration_s.map((d) => (d === null ? null : Math.round((elapsed += d) * 1000) / 1000));
}

// uPlot wants one x array: the shared one, or the union of the runs' own x values with each run
// null where it has no point (its line spans those gaps).
function aligned(series, epochs, metric, axis) {
  const perRun = series.map((s) => runXs(s, epochs, axis));
  const xOf = (i, epoch) => perRun[i][epoch - 1] ?? null;
  const shared = sharedX(series, axis);
  if (shared) return { xs: shared(epochs), ys: series.map((s) => s[metric]), xOf };
  const xs = [...new Set(perRun.flat().filter((x) => x !== null))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, k) => [x, k]));
  const ys = series.map((s, i) => {
    const out = new Array(xs.length).fill(null);
    perRun[i].forEach((x, e) => { if (x !== null && s[metric][e] !== null) out[at.get(x)] = s[metric][e]; });
    return out;
  });
  return { xs, ys, xOf };
}

// Exponential moving average over the points a run has (`weight` of the past), gaps kept.
function ema(values, weight) {
  if (!weight) return values;
  let last = null;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return v;
    last = last === null ? v : weight * last + (1 - weight) * v;
    return last;
  });
}

// The best (by the metric's direction) and the last value, each with its epoch.
function extremes(values, metric) {
  let best = null;
  let last = null;
  values.forEach((v, k) => {
    if (v === null) return;
    last = { value: v, epoch: k + 1 };
    const better = BEST[metric] === "max" ? v > (best?.value ?? -Infinity) : v < (best?.value ?? Infinity);
    if (BEST[metric] && better) best = { value: v, epoch: k + 1 };
  });
  return { best, last };
}

function swatch(i) {
  const { color, dash } = styleFor(i);
  return svg("svg", { class: "swatch", width: 28, height: 10, "data-color": color, "data-dash": dash ? dash.join(",") : "" },
    svg("line", { x1: 0, y1: 5, x2: 28, y2: 5, stroke: color, "stroke-width": 3, "stroke-dasharray": dash ? dash.join(" ") : undefined }));
}

function valueCell(kind, point, metric) {
  return h("td", { class: `num ${kind}`, "data-value": point ? point.value : undefined },
    point ? `${num(point.value)} @ epoch ${point.epoch}` : "—",
    point && kind === "best" ? h("span", { class: "muted" }, ` (${BEST[metric]})`) : null);
}

function runRow(s, i, metric) {
  const { best, last } = extremes(s[metric], metric);
  return h("tr", { "data-id": s.experiment_id },
    h("td", {}, swatch(i)),
    h("td", {}, link(`/experiments/${s.experiment_id}`, `#${s.experiment_id} ${s.name}`)),
    h("td", {}, statusBadge(s.status)),
    h("td", { class: "num" }, s.lr.filter((v) => v !== null).length),
    valueCell("best", best, metric),
    valueCell("last", last, metric),
    h("td", {}, s.decisions.map((d) => h("div", { title: d.reason }, `epoch ${d.epoch}: ${d.kind.replace("_", " ")}`))));
}

// The spec keys (dotted paths to leaves) whose values are not the same in every run, one
// column per run.
function specDiff(series) {
  const flat = series.map((s) => flatten(s.spec));
  const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))].filter((k) => !NOT_DIFFED.has(k)).sort();
  const differing = keys.filter((k) => new Set(flat.map((f) => JSON.stringify(f[k] ?? null))).size > 1);
  const head = h("h2", {}, "Spec differences");
  if (series.length < 2) return [head, h("p", { class: "muted" }, "Pick two runs or more to see how their specs differ.")];
  if (!differing.length) return [head, h("p", { class: "muted", id: "spec-diff-none" }, "The specs are the same (names aside).")];
  return [head, h("div", { class: "table-scroll" }, h("table", { id: "spec-diff" },
    h("thead", {}, h("tr", {}, h("th", {}, "spec key"),
      series.map((s, i) => h("th", { "data-id": s.experiment_id }, swatch(i), ` #${s.experiment_id}`)))),
    h("tbody", {}, differing.map((k) => h("tr", { "data-key": k }, h("td", {}, h("code", {}, k)),
      flat.map((f) => h("td", { class: "num" }, leafText(f[k]))))))))];
}
