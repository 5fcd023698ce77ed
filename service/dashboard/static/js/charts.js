// Line charts on uPlot (vendored, global `uPlot`), with decisions drawn as hoverable markers.
//
// A chart is created on its first non-empty data (uPlot's log scale has no range to show for an
// empty series) and resized with its container. Decision markers are DOM elements over the plot,
// not canvas drawings, so their sentence is a real tooltip (title) a person and a test can read.
import { h, clear } from "./dom.js";
import { num } from "./format.js";
import { PALETTE } from "./palette.js";

export { PALETTE }; // pages that took it from here still can

// At most this many decades on a log axis: a StepLR decaying for thousands of epochs reaches
// 1e-200, and uPlot's tick maker fails on hundreds of decades (the rest is below the axis).
const MAX_DECADES = 10;
function logRange(u, min, max) {
  if (min === null || max === null) return [1e-3, 1];
  return uPlot.rangeLog(Math.max(min, max / 10 ** MAX_DECADES), max, 10, true);
}

// Tick steps of an epoch axis: whole epochs only (1, 2, 5, 10, 20, 25, 50, …), so it never shows
// 1.5, even where per-step points put data between them (fractional epochs).
const WHOLE_INCRS = [1, 2, 5, 10, 20, 25, 50].flatMap((m) => [1, 10, 100, 1000, 10000, 100000].map((p) => m * p))
  .sort((a, b) => a - b);

// `xLabel`, `logX` and `empty` let a chart draw against something else than the epoch (a range
// test's loss against its LR, on a log axis); a marker may carry its own `x` and `title` then.
// `yRange(u, min, max) → [lo, hi]` sets a linear y axis's span (re-read on every setData).
// `wholeX` (default: an epoch axis) keeps the x ticks on whole numbers. `logToggle`
// ({onChange(checked)}) puts a "log" checkbox in the title that switches the y axis between
// linear and log (`logY` is where it starts); the page keeps the choice (in its URL).
export function lineChart(container, { title, series, logY = false, stepped = false, height = 240, yLabel = "",
  xLabel = "epoch", logX = false, empty = "no epochs yet", yRange = null, wholeX = xLabel === "epoch" && !logX,
  logToggle = null }) {
  let logNow = logY;
  let steppedNow = stepped;
  const titleText = h("span", { class: "chart-title-text" }, title);
  const toggle = logToggle
    ? h("label", { class: "chart-log-toggle", title: "log scale", style: "float:right;font-weight:normal;cursor:pointer" },
      h("input", { type: "checkbox", checked: logY, "data-log-toggle": "" }), " log")
    : null;
  const head = h("div", { class: "chart-title" }, titleText, toggle);
  const body = h("div", { class: "chart-body" }, h("div", { class: "empty" }, empty));
  clear(container, head, body);
  container.classList.add("chart");
  let plot = null;
  let decisions = [];
  let markers = h("div", { class: "decision-layer" });
  const tip = h("div", { class: "decision-tip", hidden: true });

  function options(width) {
    return {
      width,
      height,
      scales: { x: logX ? { time: false, distr: 3, log: 10 } : { time: false }, y: logNow ? { distr: 3, log: 10, range: logRange } : yRange ? { range: yRange } : {} },
      axes: [
        // uPlot takes an undefined option as set: only a log x axis brings its own formatters.
        { label: xLabel, ...(logX ? { values: (u, vals) => vals.map((v) => (v === null ? "" : num(v, 3))) } : {}),
          ...(wholeX ? { incrs: WHOLE_INCRS, values: (u, vals) => {
            const labels = vals.map((v) => (v === null ? "" : String(v)));
            container.dataset.xTicks = labels.join(","); // what the axis shows (tests read it)
            return labels;
          } } : {}) },
        { label: yLabel, size: 70, values: (u, vals) => vals.map((v) => (v === null ? "" : num(v, 3))) },
      ],
      series: [
        { label: xLabel, ...(logX || wholeX ? { value: (u, v) => num(v) } : {}) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || PALETTE[i % PALETTE.length],
          dash: s.dash,
          width: 2,
          spanGaps: s.spanGaps ?? false, // true: runs on a shared x of their own (compare's time axis)
          // An LR holds from one epoch to the next: draw it as steps, not slopes (per-step
          // points, `setStepped(false)`, are drawn as a line).
          paths: stepped ? (u, ...rest) => (steppedNow ? steppedPaths : linearPaths)(u, ...rest) : undefined,
          points: { show: (u) => u.data[0].length < 60 },
          value: (u, v) => num(v),
        })),
      ],
      legend: { live: true },
      hooks: { draw: [placeMarkers], setSize: [placeMarkers] },
    };
  }

  function placeMarkers(u) {
    for (const el of markers.children) {
      const x = u.valToPos(Number(el.dataset.x ?? el.dataset.epoch), "x");
      el.style.left = `${x}px`;
      el.hidden = !(x >= 0 && x <= u.over.clientWidth);
    }
  }

  function renderMarkers() {
    clear(
      markers,
      decisions.map((d) => {
        const el = h("div", {
          class: `decision-marker decision-${d.kind}`,
          title: d.title ?? `epoch ${d.epoch} · ${d.kind}: ${d.reason}`,
          "data-epoch": d.epoch,
          "data-x": d.x,
          "data-kind": d.kind,
          "data-experiment": d.experiment_id,
          style: d.color ? `color:${d.color}` : undefined,
        });
        // The native title waits about a second; show the sentence at once on hover as well.
        el.addEventListener("mouseenter", () => {
          tip.textContent = el.title;
          tip.hidden = false;
          tip.style.left = `${Math.min(el.offsetLeft + 8, container.clientWidth - 300)}px`;
          tip.style.top = "24px";
        });
        el.addEventListener("mouseleave", () => (tip.hidden = true));
        return el;
      }),
    );
    if (plot) placeMarkers(plot);
  }

  const steppedPaths = uPlot.paths.stepped({ align: 1 });
  const linearPaths = uPlot.paths.linear();

  const resize = new ResizeObserver(() => {
    if (plot) plot.setSize({ width: body.clientWidth, height });
  });
  resize.observe(body);

  // Log axes cannot show zero or negative values (an LR of 0 after min_lr=0, say): leave a gap.
  const clean = (ys) => (logNow ? ys.map((v) => (v !== null && v > 0 ? v : null)) : ys);
  let last = null; // the data shown, to draw again on another y axis

  // uPlot cannot change a scale's distribution in place: the plot is made again.
  if (toggle) {
    toggle.firstChild.addEventListener("change", (event) => {
      logNow = event.target.checked;
      container.dataset.log = logNow ? "1" : "0";
      if (plot) {
        plot.destroy();
        plot = null;
        if (last) chart.setData(...last);
      }
      logToggle.onChange?.(logNow);
    });
  }
  container.dataset.log = logNow ? "1" : "0";

  const chart = {
    setData(xs, ys) {
      last = [xs, ys];
      const data = [xs, ...ys.map(clean)];
      container.dataset.points = String(xs.length); // how far the chart has filled (tests read it)
      if (!xs.length) return;
      if (!plot) {
        clear(body);
        plot = new uPlot(options(body.clientWidth || 600), data, body);
        plot.over.append(markers);
        container.append(tip);
        renderMarkers();
      } else {
        plot.setData(data);
      }
    },
    setDecisions(list) {
      decisions = list;
      renderMarkers();
    },
    // A stepped chart's points are per optimizer step (false) or per epoch (true).
    setStepped(flag) {
      if (steppedNow === flag) return;
      steppedNow = flag;
      if (plot) plot.redraw();
    },
    setTitle(text) {
      titleText.textContent = text;
    },
    destroy() {
      resize.disconnect();
      if (plot) plot.destroy();
    },
  };
  return chart;
}
