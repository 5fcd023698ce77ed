// A sweep's charts (`/sweeps/{id}`): its score against each swept value, one scatter per swept
// field, and parallel coordinates over the swept fields and the score. Plain SVG: a sweep has at
// most a thousand runs, and every mark is an element a person can hover (and click through to
// its run) and a test can count.
//
// Axes: strings (solver names) and other non-numbers are evenly spaced categories; numbers are on
// a log axis when the sweep draws them log-uniform, or when they are LR-like and span more than a
// decade; otherwise linear. The parallel coordinates use the same axes as the scatters.
import { FINAL_STATUSES, OK_STATUSES } from "./api.js";
import { h, svg } from "./dom.js";
import { num } from "./format.js";

// LR-like fields: base_lr, max_lr, eta_min, scheduler.params.min_lr, weight_decay.
const LR_LIKE = /(^|_)lr($|_)|learning_rate|eta_min|weight_decay/;
// A sequential scale ("plasma"), the best score dark and the worst light; the very light end is
// left out so every line stays visible on white.
const SCALE = ["#0d0887", "#6a00a8", "#b12a90", "#e16462", "#f89540"];

const label = (v) => (typeof v === "number" ? num(v) : typeof v === "string" ? v : JSON.stringify(v));

// A run's look: finished well (filled), still going (light), pruned (hollow grey), or ended
// otherwise (diverged, failed, cancelled: hollow red).
function kindOf(status) {
  if (OK_STATUSES.has(status)) return "done";
  if (!FINAL_STATUSES.has(status)) return "live";
  return status === "pruned" ? "pruned" : "bad";
}

function niceTicks(lo, hi, count = 5) {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => raw <= s);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// An axis over `values`: `at(v)` in [0, 1] (null for a value it cannot show), its ticks, its kind.
export function axisFor(values, { log = false } = {}) {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (present.some((v) => typeof v !== "number")) {
    const keys = [...new Set(present.map(label))]; // in the sweep's order
    const n = Math.max(keys.length, 1);
    const at = (v) => (keys.includes(label(v)) ? (keys.indexOf(label(v)) + 0.5) / n : null);
    return { kind: "category", at, slot: 1 / n, ticks: keys.map((k, i) => ({ at: (i + 0.5) / n, text: k })) };
  }
  let lo = present.length ? Math.min(...present) : 0;
  let hi = present.length ? Math.max(...present) : 1;
  if (log && lo > 0) {
    let [a, b] = [Math.log10(lo), Math.log10(hi)];
    if (a === b) [a, b] = [a - 0.5, b + 0.5];
    const pad = (b - a) * 0.06;
    [a, b] = [a - pad, b + pad];
    const at = (v) => (v > 0 ? (Math.log10(v) - a) / (b - a) : null);
    const decades = [];
    for (let k = Math.ceil(a); k <= Math.floor(b); k++) decades.push(10 ** k);
    const marks = decades.length >= 2 ? decades : [lo, hi].filter((v, i, all) => all.indexOf(v) === i);
    return { kind: "log", at, ticks: marks.map((v) => ({ at: at(v), text: num(v, 3) })) };
  }
  if (lo === hi) [lo, hi] = [lo - (Math.abs(lo) || 1) * 0.5, hi + (Math.abs(hi) || 1) * 0.5];
  const pad = (hi - lo) * 0.06;
  [lo, hi] = [lo - pad, hi + pad];
  const at = (v) => (typeof v === "number" ? (v - lo) / (hi - lo) : null);
  return { kind: "linear", at, ticks: niceTicks(lo, hi).map((v) => ({ at: at(v), text: num(v, 3) })) };
}

// The axis of each swept field: log where the sweep draws it log-uniform (or scans base_lr by
// decades), or where it is LR-like and its values span more than a decade.
function fieldAxis(sweep, path) {
  const values = sweep.experiments.map((r) => r.params[path]);
  const spec = (sweep.request.parameters || {})[path];
  const drawnLog = (spec && spec.distribution === "log_uniform") || sweep.strategy === "lr_coarse_to_fine";
  const nums = values.filter((v) => typeof v === "number" && v > 0);
  const wide = nums.length > 0 && Math.max(...nums) / Math.min(...nums) > 10;
  const lrLike = LR_LIKE.test(path.split(".").pop());
  return axisFor(values, { log: drawnLog || (lrLike && wide) });
}

const scored = (r) => typeof r.score === "number" && Number.isFinite(r.score);
const domId = (path) => path.replace(/[^\w-]/g, "-");

// A tooltip shown at once on hover (an SVG <title> alone waits about a second).
function tooltip(card) {
  const tip = h("div", { class: "sweep-tip", hidden: true });
  card.append(tip);
  return (el, text) => {
    el.append(svg("title", {}, text));
    el.addEventListener("mouseenter", (event) => {
      const box = card.getBoundingClientRect();
      tip.textContent = text;
      tip.hidden = false;
      tip.style.left = `${Math.min(event.clientX - box.left + 12, box.width - 260)}px`;
      tip.style.top = `${Math.max(event.clientY - box.top - 48, 0)}px`; // above the cursor
    });
    el.addEventListener("mouseleave", () => (tip.hidden = true));
  };
}

function runText(r, metric, paths) {
  const values = paths.map((p) => `${p}=${label(r.params[p])}`).join(", ");
  return `#${r.experiment_id} ${values} · ${metric} ${num(r.score)} (${r.status.replace("_", " ")})`;
}

// One scatter: x the field's value, y each run's best score.
function scatter(sweep, path, axis, yAxis, paths, W) {
  const [H, L, R, T, B] = [260, 58, 14, 10, 46];
  const [pw, ph] = [W - L - R, H - T - B];
  const runs = sweep.experiments.filter((r) => scored(r) && axis.at(r.params[path]) !== null);
  const card = h("div", { class: "chart sweep-chart", id: `score-vs-${domId(path)}`, "data-param": path,
    "data-axis": axis.kind, "data-points": runs.length },
  h("div", { class: "chart-title" }, `${sweep.metric} against ${path}`));
  const hover = tooltip(card);
  const px = (a) => L + a * pw;
  const py = (a) => T + (1 - a) * ph;
  // Runs that share a category are spread across its slot, so none hides another.
  const spread = new Map();
  const offsets = runs.map((r) => {
    if (axis.kind !== "category") return 0;
    const key = label(r.params[path]);
    spread.set(key, (spread.get(key) || 0) + 1);
    return spread.get(key) - 1;
  });
  const slotPx = (axis.slot || 0) * pw;
  const marks = runs.map((r, i) => {
    const n = axis.kind === "category" ? spread.get(label(r.params[path])) : 1;
    const dx = n > 1 ? (offsets[i] - (n - 1) / 2) * Math.min(9, (0.6 * slotPx) / n) : 0;
    const kind = kindOf(r.status);
    const dot = svg("circle", { class: `pt pt-${kind}`, cx: px(axis.at(r.params[path])) + dx, cy: py(yAxis.at(r.score)),
      r: 4.5, "data-id": r.experiment_id, "data-status": r.status, "data-x": label(r.params[path]), "data-y": r.score });
    hover(dot, runText(r, sweep.metric, paths));
    return svg("a", { href: `/experiments/${r.experiment_id}` }, dot);
  });
  card.append(svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "sweep-svg", role: "img" },
    axis.ticks.map((t) => [
      svg("line", { class: "grid", x1: px(t.at), x2: px(t.at), y1: T, y2: T + ph }),
      svg("text", { class: "tick", x: px(t.at), y: T + ph + 14, "text-anchor": "middle" }, t.text),
    ]),
    yAxis.ticks.map((t) => [
      svg("line", { class: "grid", x1: L, x2: L + pw, y1: py(t.at), y2: py(t.at) }),
      svg("text", { class: "tick", x: L - 5, y: py(t.at) + 4, "text-anchor": "end" }, t.text),
    ]),
    svg("rect", { class: "frame", x: L, y: T, width: pw, height: ph }),
    svg("text", { class: "axis-label", x: L + pw / 2, y: H - 6, "text-anchor": "middle" },
      `${path}${axis.kind === "log" ? " (log)" : ""}`),
    svg("text", { class: "axis-label", transform: `translate(13 ${T + ph / 2}) rotate(-90)`, "text-anchor": "middle" },
      `best ${sweep.metric}`),
    marks,
    runs.length ? null : svg("text", { class: "tick", x: L + pw / 2, y: T + ph / 2, "text-anchor": "middle" }, "no scores yet")));
  return card;
}

// The colour of a score: t = 0 for the best of the sweep, 1 for the worst.
function colour(t) {
  const x = Math.min(Math.max(t, 0), 1) * (SCALE.length - 1);
  const i = Math.min(Math.floor(x), SCALE.length - 2);
  const [a, b] = [SCALE[i], SCALE[i + 1]].map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)));
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * (x - i))).join(",")})`;
}

// One polyline per run over the swept fields and the score, coloured by the score.
function parallel(sweep, paths, axes, yAxis, W) {
  const runs = sweep.experiments.filter((r) => scored(r) && paths.every((p, i) => axes[i].at(r.params[p]) !== null));
  const [H, L, R, T, B] = [320, 70, 150, 30, 26];
  const [pw, ph] = [W - L - R, H - T - B];
  const all = [...axes, yAxis];
  const xs = all.map((_, i) => L + (i * pw) / (all.length - 1));
  const py = (a) => T + (1 - a) * ph;
  const scores = runs.map((r) => r.score);
  const [lo, hi] = scores.length ? [Math.min(...scores), Math.max(...scores)] : [0, 1];
  const badness = (v) => (hi === lo ? 0 : sweep.mode === "min" ? (v - lo) / (hi - lo) : (hi - v) / (hi - lo));
  const card = h("div", { class: "chart sweep-chart", id: "parallel-coords", "data-lines": runs.length },
    h("div", { class: "chart-title" }, `Parallel coordinates: ${paths.join(", ")} and ${sweep.metric}`));
  const hover = tooltip(card);
  // The worst first, so the best runs are drawn on top.
  const order = [...runs].sort((a, b) => badness(b.score) - badness(a.score));
  const lines = order.map((r) => {
    const points = [...paths.map((p, i) => axes[i].at(r.params[p])), yAxis.at(r.score)];
    const d = points.map((a, i) => `${i ? "L" : "M"}${xs[i].toFixed(1)} ${py(a).toFixed(1)}`).join(" ");
    const line = svg("path", { d, class: `pc-line pc-${kindOf(r.status)}`, stroke: colour(badness(r.score)),
      "data-id": r.experiment_id, "data-status": r.status, "data-score": r.score });
    hover(line, runText(r, sweep.metric, paths));
    return svg("a", { href: `/experiments/${r.experiment_id}` }, line);
  });
  const titles = [...paths.map((p, i) => `${p}${axes[i].kind === "log" ? " (log)" : ""}`), `best ${sweep.metric}`];
  const legendX = L + pw + 55;
  const [best, worst] = sweep.mode === "min" ? [lo, hi] : [hi, lo];
  card.append(svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "sweep-svg", role: "img" },
    svg("defs", {}, svg("linearGradient", { id: "pc-scale", x1: 0, y1: 0, x2: 0, y2: 1 },
      SCALE.map((c, i) => svg("stop", { offset: i / (SCALE.length - 1), "stop-color": c })))),
    lines,
    all.map((axis, i) => svg("g", { class: "pc-axis", "data-axis": axis.kind },
      svg("line", { class: "axis", x1: xs[i], x2: xs[i], y1: T, y2: T + ph }),
      axis.ticks.map((t) => [
        svg("line", { class: "axis", x1: xs[i] - 4, x2: xs[i], y1: py(t.at), y2: py(t.at) }),
        svg("text", { class: "tick halo", x: xs[i] - 6, y: py(t.at) + 4, "text-anchor": "end" }, t.text),
      ]),
      svg("text", { class: "axis-label", x: xs[i], y: T - 12, "text-anchor": "middle" }, titles[i]))),
    svg("g", { class: "pc-legend", id: "pc-legend" },
      svg("rect", { x: legendX - 8, y: T, width: 16, height: ph, fill: "url(#pc-scale)" }),
      svg("text", { class: "tick", x: legendX + 14, y: T + 10 }, `best ${num(best)}`),
      svg("text", { class: "tick", x: legendX + 14, y: T + ph }, `worst ${num(worst)}`),
      // Along the scale, not under it: the right margin is too narrow for "colour: val_accuracy".
      svg("text", { class: "axis-label", id: "pc-legend-caption", transform: `translate(${legendX - 14} ${T + ph / 2}) rotate(-90)`,
        "text-anchor": "middle" }, `colour: ${sweep.metric}`)),
    runs.length ? null : svg("text", { class: "tick", x: L + pw / 2, y: T + ph / 2, "text-anchor": "middle" }, "no scores yet")));
  return card;
}

function legend() {
  const item = (kind, text) => h("span", { class: "sweep-key" },
    svg("svg", { viewBox: "0 0 12 12", width: 12, height: 12 }, svg("circle", { class: `pt pt-${kind}`, cx: 6, cy: 6, r: 4.5 })), ` ${text}`);
  return h("p", { class: "sweep-legend muted" }, item("done", "finished"), item("live", "still going"),
    item("pruned", "pruned"), item("bad", "diverged, failed or cancelled"),
    " · each run's best score; hover a mark for the run, click to open it");
}

// The scatters' grid (dashboard.css .sweep-scatters): columns of at least MIN_CARD px, GAP apart;
// a card's padding and border take CARD_EDGE px of its width.
const [MIN_CARD, GAP, CARD_EDGE] = [360, 12, 14];

// Both charts for a sweep's detail (GET /v1/sweeps/{id}); re-built on every refresh. `width`: the
// page's content width, so each SVG is drawn at the pixels it gets (its text at its real size).
export function sweepCharts(sweep, width = 1160) {
  const paths = Object.keys(sweep.experiments[0]?.params || {});
  if (!paths.length) return null;
  const axes = paths.map((p) => fieldAxis(sweep, p));
  const yAxis = axisFor(sweep.experiments.filter(scored).map((r) => r.score));
  const columns = Math.max(1, Math.min(paths.length, Math.floor((width + GAP) / (MIN_CARD + GAP))));
  const cardWidth = Math.max(MIN_CARD, (width - (columns - 1) * GAP) / columns) - CARD_EDGE;
  return h("section", { id: "sweep-charts" },
    h("h2", {}, "Score against the swept values"),
    legend(),
    h("div", { class: "sweep-scatters" }, paths.map((p, i) => scatter(sweep, p, axes[i], yAxis, paths, cardWidth))),
    parallel(sweep, paths, axes, yAxis, Math.max(width, 600) - CARD_EDGE));
}
