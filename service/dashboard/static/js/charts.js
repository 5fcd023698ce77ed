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

// `xLabel`, `logX` and `empty` let a chart draw against something else than the epoch (a range
// test's loss against its LR, on a log axis); a marker may carry its own `x` and `title` then.
// `yRange(u, min, max) → [lo, hi]` sets a linear y axis's span (re-read on every setData).
export function lineChart(container, { title, series, logY = false, stepped = false, height = 240, yLabel = "",
  xLabel = "epoch", logX = false, empty = "no epochs yet", yRange = null }) {
  const head = h("div", { class: "chart-title" }, title);
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
      scales: { x: logX ? { time: false, distr: 3, log: 10 } : { time: false }, y: logY ? { distr: 3, log: 10, range: logRange } : yRange ? { range: yRange } : {} },
      axes: [
        // uPlot takes an undefined option as set: only a log x axis brings its own formatters.
        { label: xLabel, ...(logX ? { values: (u, vals) => vals.map((v) => (v === null ? "" : num(v, 3))) } : {}) },
        { label: yLabel, size: 70, values: (u, vals) => vals.map((v) => (v === null ? "" : num(v, 3))) },
      ],
      series: [
        { label: xLabel, ...(logX ? { value: (u, v) => num(v) } : {}) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || PALETTE[i % PALETTE.length],
          dash: s.dash,
          width: 2,
          spanGaps: s.spanGaps ?? false, // true: runs on a shared x of their own (compare's time axis)
          // An LR holds from one epoch to the next: draw it as steps, not slopes.
          paths: stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
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

  const resize = new ResizeObserver(() => {
    if (plot) plot.setSize({ width: body.clientWidth, height });
  });
  resize.observe(body);

  // Log axes cannot show zero or negative values (an LR of 0 after min_lr=0, say): leave a gap.
  const clean = (ys) => (logY ? ys.map((v) => (v !== null && v > 0 ? v : null)) : ys);

  return {
    setData(xs, ys) {
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
    destroy() {
      resize.disconnect();
      if (plot) plot.destroy();
    },
  };
}
