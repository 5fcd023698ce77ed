// `/experiments/{id}`: LR (log axis) and metric charts filled live from the metrics cursor,
// decisions marked on the charts and listed with their sentence, the spec, cancel and clone, each
// worker's attempt at the run, and the final model's download once it has one. The best epoch is
// named by its metric; wall time and the mean epoch's duration; the loss chart's log axis is
// kept in the URL (`?log=1`). An LR that changes within an epoch (OneCycleLR, a per-step warmup)
// is drawn per optimizer step (GET …/lr?resolution=step), not as an epoch staircase.
import { api, FINAL_STATUSES, getToken } from "../api.js";
import { lineChart } from "../charts.js";
import { clear, errorBox, h, link, saveBlob } from "../dom.js";
import { bytes, count, duration, num, progressBar, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";
import { follow } from "../sse.js";
import { bestCriterion } from "../specs.js";

const POLL_MS = 1000;
const SUMMARY_MS = 5000; // while epochs stream in, the summary is read again at most this often
const STEP_TRACE_MS = 3000; // while epochs stream in, the per-step LR is read again at most this often
const STEP_POINTS = 2000; // per-step LR points asked for (min/max-downsampled by the API)

// Whether the LR moved within any epoch: each row carries its min and max over the epoch's steps.
const changesWithinEpochs = (rows) => rows.some((r) => r.lr_min != null && r.lr_max != null && r.lr_min !== r.lr_max);

// "best val_loss 0.1445 at epoch 10": the metric named, and whether lower or higher is better.
function bestText(e) {
  if (e.best) return `${e.best.metric} ${num(e.best.value)} at epoch ${e.best.epoch}`;
  return e.best_value === null ? "—" : `${num(e.best_value)} at epoch ${e.best_epoch}`;
}

// The best epoch of `rows` by the run's own rule (specs.js bestCriterion), for the summary to
// keep up with the epochs between its reads of the run; null before any value.
export function bestOfRows(spec, rows) {
  const { metric, mode, minDelta, baseline } = bestCriterion(spec);
  let best = null;
  let bar = baseline; // a best to beat that no epoch has reached yet, or null
  for (const r of rows) {
    const v = r[metric];
    if (v === null || v === undefined) continue;
    if (bar === null || (mode === "max" ? v > bar + minDelta : v < bar - minDelta)) {
      best = { metric, mode, value: v, epoch: r.epoch };
      bar = v;
    }
  }
  return best;
}

// Wall time from the first claim to the end (or now, while it runs), and the mean epoch from
// the rows' own durations (training and validation, without queueing or checkpoints).
function durationsText(e, rows) {
  const started = e.started_at ? Date.parse(e.started_at) : null;
  const ended = e.finished_at ? Date.parse(e.finished_at) : null;
  const wall = started === null ? "not started" : ended !== null ? `${duration((ended - started) / 1000)} wall`
    : `${duration((Date.now() - started) / 1000)} so far`;
  const timed = rows.filter((r) => Number.isFinite(r.duration_s));
  const mean = timed.length ? timed.reduce((a, r) => a + r.duration_s, 0) / timed.length : null;
  return mean === null ? wall : `${wall} · ${duration(mean)} per epoch (mean of ${timed.length})`;
}

// {model|dataset: {name, package, version}} → "model tiny_resnet · glidepath-example-plugin 0.1.0".
function pluginLines(plugins) {
  return Object.entries(plugins).map(([kind, p]) =>
    h("div", { "data-kind": kind }, `${kind} ${p.name} · ${p.package} ${p.version}`));
}

// [{attempt, worker, started_at, ended_at, outcome, resumed_from_epoch}] oldest first.
function attemptsTable(attempts, final) {
  if (!attempts.length) {
    return h("p", { class: "muted" }, final ? "No attempts: the run ended before a worker took it."
      : "None yet: each worker's attempt at the run appears here.");
  }
  const columns = ["attempt", "worker", "started", "ended", "outcome", "resumed from epoch"];
  return h("table", { id: "attempt-list" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, attempts.map((a) => h("tr", { "data-attempt": a.attempt },
      h("td", { class: "num" }, a.attempt),
      h("td", {}, a.worker),
      h("td", {}, when(a.started_at)),
      h("td", {}, a.ended_at ? when(a.ended_at) : "—"),
      h("td", {}, a.outcome ? statusBadge(a.outcome) : h("span", { class: "muted" }, "running")),
      h("td", { class: "num" }, a.resumed_from_epoch ?? "—")))));
}

// The model as a file: a plain link where the API is open; with a token, fetched with it
// (a link cannot send the header) and handed to the browser as a blob.
async function saveModel(id) {
  saveBlob(await api.model(id), `experiment-${id}.safetensors`);
}

export async function renderExperiment(root, id) {
  // A range test is an experiments row of its own kind; its page is /range-tests/{id}.
  let experiment = await api.experiment(id);
  if (experiment.kind === "lr_range_test") return location.replace(`/range-tests/${id}`);
  const head = h("div", { id: "summary" });
  const notice = h("div");
  const lrEl = h("div", { id: "lr-chart" });
  const lossEl = h("div", { id: "loss-chart" });
  const metricEl = h("div", { id: "metric-chart" });
  const decisionsEl = h("div", { id: "decisions" });
  const attemptsEl = h("div", { id: "attempts" });
  const specEl = h("pre", { class: "spec", id: "spec" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel", "data-needs": "submit" }, "Cancel");
  const clone = h("a", { href: `/new?clone=${id}`, class: "button", id: "clone", "data-needs": "submit" }, "Clone");
  const downloadModel = h("a", { href: api.modelUrl(id), class: "button", id: "download-model",
    download: `experiment-${id}.safetensors`, hidden: true }, "Download model");

  clear(
    root,
    h("div", { class: "toolbar" }, h("h1", { class: "grow", id: "title" }, `Experiment #${id}`), cancel, downloadModel, clone,
      link(`/compare?ids=${id}`, "compare…")),
    notice,
    head,
    h("div", { class: "row" },
      h("div", { class: "grow" }, lrEl, lossEl, metricEl,
        h("div", { class: "card" }, h("h2", {}, "Attempts"), attemptsEl)),
      h("div", { class: "side", style: "width:380px" },
        h("div", { class: "card" }, h("h2", {}, "Decisions"), decisionsEl),
        h("div", { class: "card" }, h("h2", {}, "Spec"), specEl))),
  );

  const lrChart = lineChart(lrEl, { title: "learning rate (log scale)", series: [{ label: "lr" }], logY: true, stepped: true });
  const lossChart = lineChart(lossEl, { title: "loss", series: [{ label: "train_loss" }, { label: "val_loss", color: "#d9622b" }],
    logY: new URLSearchParams(location.search).get("log") === "1",
    logToggle: { onChange: (on) => {
      const url = new URL(location.href);
      if (on) url.searchParams.set("log", "1");
      else url.searchParams.delete("log");
      history.replaceState(null, "", url);
    } } });
  let metricChart = null; // val_accuracy or val_mae, whichever the rows carry

  const rows = [];
  let cursor = 0;
  let decisions = [];

  const durationsEl = h("dd", { id: "durations" });
  const renderDurations = () => (durationsEl.textContent = durationsText(experiment, rows));
  // Progress and best move with every epoch; redrawn alone (renderCharts, once a frame) so the
  // card keeps up with the charts between the summary's reads of the run.
  const progressEl = h("dd", { id: "progress" });
  const bestEl = h("dd", { id: "best" });
  function renderProgress() {
    const e = experiment;
    clear(progressEl, progressBar(e.progress),
      // A run that ended early says why: "stopped early at epoch 12 of 50: val_loss has not…".
      e.progress.stopped ? h("div", { id: "stopped" }, e.progress.stopped) : null);
    const best = bestOfRows(e.spec, rows) || e.best;
    if (best) Object.assign(e, { best, best_value: best.value, best_epoch: best.epoch });
    bestEl.textContent = bestText(e);
    if (e.best) {
      bestEl.dataset.metric = e.best.metric;
      bestEl.title = `the ${e.best.mode === "max" ? "highest" : "lowest"} ${e.best.metric} of the run`;
    }
  }

  function setProgress(epoch) {
    experiment.epochs_run = epoch;
    const total = experiment.progress.epochs;
    experiment.progress = { ...experiment.progress, epochs_run: epoch, fraction: total ? epoch / total : 0 };
  }

  // Takes a new read of the run. Its progress counts the epochs the charts show, whichever side is
  // ahead: epochs sent while the answer was on its way are newer (never 33 beside 34), and on a
  // busy machine the read may count epochs not delivered yet (never 61 beside 35).
  function adopt(read) {
    experiment = read;
    if (rows.length) setProgress(rows[rows.length - 1].epoch);
  }

  function renderSummary() {
    const e = experiment;
    renderDurations();
    renderProgress();
    document.title = `#${e.id} ${e.name || ""} · Glidepath`;
    clear(document.getElementById("title"), `#${e.id} ${e.name || "(unnamed)"} `, statusBadge(e.status));
    cancel.hidden = FINAL_STATUSES.has(e.status);
    cancel.disabled = e.cancel_requested;
    if (e.cancel_requested && !FINAL_STATUSES.has(e.status)) cancel.textContent = "Cancelling…";
    downloadModel.hidden = !e.model;
    if (e.model) downloadModel.title = `${bytes(e.model.size)}, sha256 ${e.model.sha256}`;
    clear(head, h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "progress"), progressEl,
      h("dt", {}, "dataset"), h("dd", {}, `${e.dataset} (${Object.entries(e.split_sizes || {}).map(([k, v]) => `${k} ${v}`).join(", ")}), ${e.steps_per_epoch ?? "?"} steps/epoch`),
      h("dt", {}, "best"), bestEl,
      h("dt", {}, "time"), durationsEl,
      e.stop_reason && !e.progress.stopped ? [h("dt", {}, "stopped"), h("dd", {}, e.stop_reason)] : null,
      e.error ? [h("dt", {}, "error"), h("dd", { class: "error-box" }, e.error)] : null,
      e.test_metrics ? [h("dt", {}, "test"), h("dd", {}, Object.entries(e.test_metrics).map(([k, v]) => `${k} ${num(v)}`).join(", "))] : null,
      e.model ? [h("dt", {}, "model"), h("dd", { id: "model" }, `${bytes(e.model.size)} safetensors, sha256 ${e.model.sha256.slice(0, 12)}…`)] : null,
      e.sweep_id ? [h("dt", {}, "sweep"), h("dd", {}, link(`/sweeps/${e.sweep_id}`, `sweep #${e.sweep_id}`))] : null,
      h("dt", {}, "device"), h("dd", {}, `${e.device || "—"}${e.worker ? ` on ${e.worker}` : ""}, attempt ${e.attempt}`),
      h("dt", {}, "parameters"), h("dd", { id: "param-count" }, e.param_count === null || e.param_count === undefined
        ? h("span", { class: "muted" }, "known once it runs") : count(e.param_count)),
      e.plugins ? [h("dt", {}, "plugins"), h("dd", { id: "plugins" }, pluginLines(e.plugins))] : null,
      h("dt", {}, "created"), h("dd", {}, when(e.created_at)),
      h("dt", {}, "created by"), h("dd", { id: "created-by" }, e.created_by || h("span", { class: "muted" }, "— (the API was open)")),
      h("dt", {}, "tags"), h("dd", {}, Object.entries(e.tags).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`))),
    )));
    specEl.textContent = JSON.stringify(e.spec, null, 2);
    clear(attemptsEl, attemptsTable(e.attempts || [], FINAL_STATUSES.has(e.status)));
  }

  function renderDecisions() {
    clear(decisionsEl, decisions.length
      ? h("table", { id: "decision-list" }, h("tbody", {}, decisions.map((d) => h("tr", { "data-kind": d.kind, "data-epoch": d.epoch },
        h("td", { class: "num" }, `epoch ${d.epoch}`),
        h("td", {}, h("span", { class: `decision-${d.kind}` }, "● "), d.kind.replace("_", " "),
          h("div", { class: "muted" }, d.reason))))))
      : FINAL_STATUSES.has(experiment.status)
        ? h("p", { class: "muted", id: "no-decisions" }, "No decisions: the run ended without an LR reduction or a stop of its own.")
        : h("p", { class: "muted" }, "None yet: LR reductions and the stop appear here."));
    for (const chart of [lrChart, lossChart, metricChart]) if (chart) chart.setDecisions(decisions);
  }

  // The LR per optimizer step once it moves within an epoch; x is the fractional epoch (step k
  // of epoch e at e + k / steps_per_epoch), so its ticks stay on whole epochs. Read again at
  // most every STEP_TRACE_MS while epochs arrive; until it comes (or if it cannot), per epoch.
  let stepTrace = null;
  let traceAt = 0;
  let traceTimer = null;
  let traceBusy = false;
  async function loadStepTrace() {
    traceTimer = null;
    if (traceBusy) return wantStepTrace(); // the rows moved on meanwhile: read once more after it
    traceBusy = true;
    traceAt = Date.now();
    try {
      const trace = await api.lrTrace(id, { resolution: "step", max_points: STEP_POINTS });
      const spe = trace.steps_per_epoch || experiment.steps_per_epoch || 1;
      stepTrace = trace.points.length ? trace : stepTrace;
      if (stepTrace) {
        lrChart.setStepped(false);
        lrChart.setTitle(`learning rate per optimizer step (log scale${trace.downsampled ? `, ${trace.points.length} of ${trace.total_points} steps` : ""})`);
        lrEl.dataset.resolution = "step";
        const xs = trace.points.map((p) => 1 + p.step / spe);
        const top = trace.points.reduce((best, p, i) => (p.lr > trace.points[best].lr ? i : best), 0);
        lrEl.dataset.peakEpoch = xs[top].toFixed(3); // where the LR peaks (tests read it)
        lrChart.setData(xs, [trace.points.map((p) => p.lr)]);
      }
    } catch {
      lrEl.dataset.resolution = "epoch"; // e.g. rows stored before per-step LRs were kept
    } finally {
      traceBusy = false;
    }
  }
  function wantStepTrace() {
    if (traceTimer) return;
    traceTimer = setTimeout(loadStepTrace, Math.max(0, traceAt + STEP_TRACE_MS - Date.now()));
  }

  function renderCharts() {
    const xs = rows.map((r) => r.epoch);
    if (changesWithinEpochs(rows)) wantStepTrace();
    if (!stepTrace) {
      lrEl.dataset.resolution = lrEl.dataset.resolution || "epoch";
      lrChart.setData(xs, [rows.map((r) => r.lr)]);
    }
    renderDurations();
    renderProgress();
    lossChart.setData(xs, [rows.map((r) => r.train_loss), rows.map((r) => r.val_loss)]);
    // A row that diverged carries both keys, null: the task's metric is the one with values.
    const has = (k) => rows.some((r) => r[k] != null);
    const key = has("val_accuracy") ? "val_accuracy" : has("val_mae") ? "val_mae" : null;
    if (key && !metricChart) {
      metricChart = lineChart(metricEl, { title: key, series: [{ label: key, color: "#23824a" }] });
      metricChart.setDecisions(decisions);
    }
    if (metricChart && key) metricChart.setData(xs, [rows.map((r) => (r[key] === undefined ? null : r[key]))]);
  }

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      adopt(await api.cancel(id));
      renderSummary();
    } catch (err) {
      clear(notice, errorBox(err));
      cancel.disabled = false;
    }
  });

  downloadModel.addEventListener("click", async (event) => {
    if (!getToken()) return; // an open API: the link downloads on its own
    event.preventDefault();
    try {
      await saveModel(id);
      clear(notice);
    } catch (err) {
      clear(notice, errorBox(err));
    }
  });

  renderSummary();
  renderDecisions();

  // Live: the run's event stream (GET …/events) brings each epoch as it is stored, its decisions
  // and each status change; the stream ends after the final status. An epoch at or before the
  // last one shown is a rewrite (the run resumed from an earlier checkpoint): the rows and
  // decisions from it on are replaced. The experiment itself (attempts, best, model) is read
  // again on a status change, and at most every SUMMARY_MS while epochs arrive.
  let final = FINAL_STATUSES.has(experiment.status);
  let drawing = false;
  let summaryAt = 0;
  let summaryTimer = null;
  const redraw = () => {
    if (drawing) return;
    drawing = true;
    requestAnimationFrame(() => {
      drawing = false;
      renderCharts();
    });
  };
  const refreshSummary = async () => {
    clearTimeout(summaryTimer);
    summaryTimer = null;
    summaryAt = Date.now();
    try {
      adopt(await api.experiment(id));
      renderSummary();
      renderDecisions(); // "None yet" becomes "No decisions" once the run has ended
    } catch (err) {
      clear(notice, errorBox(err));
    }
  };
  follow(`/v1/experiments/${id}/events`, {
    epoch: (row) => {
      if (row.epoch <= cursor) {
        const from = rows.findIndex((r) => r.epoch >= row.epoch);
        if (from >= 0) rows.splice(from);
        decisions = decisions.filter((d) => d.epoch < row.epoch);
        renderDecisions();
      }
      rows.push(row);
      cursor = row.epoch;
      redraw();
      setProgress(row.epoch);
      if (!summaryTimer) summaryTimer = setTimeout(refreshSummary, Math.max(0, summaryAt + SUMMARY_MS - Date.now()));
    },
    decision: (d) => {
      decisions = [...decisions.filter((x) => !(x.epoch === d.epoch && x.kind === d.kind)), d];
      renderDecisions();
    },
    status: (s) => {
      final = FINAL_STATUSES.has(s.status);
      if (s.status !== experiment.status || final || s.attempt !== experiment.attempt
          || s.cancel_requested !== experiment.cancel_requested) refreshSummary();
    },
  }, { over: () => final, fallback: () => pollFrom(cursor) });

  // Polling, where the stream cannot be had: each tick asks only for rows after the cursor. The
  // experiment and its decisions are read again when something happened: a row with a decision,
  // or a status change.
  const pollFrom = () => poll(async () => {
    const page = await api.metrics(id, cursor);
    cursor = page.next_after_epoch;
    rows.push(...page.epochs);
    const final = FINAL_STATUSES.has(page.status);
    const changed = page.status !== experiment.status || page.epochs.length > 0;
    if (page.epochs.length) renderCharts();
    if (changed || final) {
      adopt(await api.experiment(id));
      renderSummary();
    }
    if (page.epochs.some((r) => r.decision) || final) {
      decisions = (await api.decisions(id)).decisions;
      renderDecisions();
    }
    clear(notice);
    // Keep going until the run has ended and every row has been read.
    return !(final && page.epochs.length === 0);
  }, POLL_MS);
}
