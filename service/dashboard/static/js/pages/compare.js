// `/compare?ids=1,2,3`: several runs overlaid on one epoch axis (`GET /v1/experiments/compare`,
// null-padded series), one metric at a time, with each run's decisions marked in its colour.
import { api, FINAL_STATUSES } from "../api.js";
import { lineChart, PALETTE } from "../charts.js";
import { clear, errorBox, h, link } from "../dom.js";
import { num, statusBadge } from "../format.js";
import { poll } from "../poll.js";

const METRICS = ["lr", "train_loss", "val_loss", "val_accuracy", "val_mae"];
const POLL_MS = 2000;

export async function renderCompare(root, query) {
  const ids = (query.get("ids") || "").split(",").map((s) => s.trim()).filter((s) => /^\d+$/.test(s)).map(Number);
  const metric = METRICS.includes(query.get("metric")) ? query.get("metric") : "lr";
  const idsInput = h("input", { name: "ids", value: ids.join(","), placeholder: "1,2,3", size: 30 });
  const metricSelect = h("select", { name: "metric", id: "metric" }, METRICS.map((m) => h("option", { value: m }, m)));
  metricSelect.value = metric;
  const go = () => {
    const q = new URLSearchParams({ ids: idsInput.value.replace(/\s+/g, ""), metric: metricSelect.value });
    location.href = `/compare?${q}`;
  };
  metricSelect.addEventListener("change", go);
  const notice = h("div");
  const chartEl = h("div", { id: "compare-chart" });
  const table = h("tbody");

  clear(root,
    h("h1", {}, "Compare experiments"),
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); go(); } },
      h("label", {}, "ids ", idsInput), h("label", {}, "metric ", metricSelect),
      h("button", { type: "submit", class: "ghost" }, "Show")),
    notice, chartEl,
    h("table", { id: "compare-runs" }, h("thead", {}, h("tr", {}, ["", "run", "status", "epochs", `last ${metric}`, "decisions"].map((t) => h("th", {}, t)))), table));

  if (!ids.length) {
    clear(notice, h("p", { class: "muted" }, "Give experiment ids (comma-separated), or pick runs on the experiments list."));
    return;
  }

  let chart = null;
  poll(async () => {
    let data;
    try {
      data = await api.compare(ids);
    } catch (err) {
      clear(notice, errorBox(err));
      return err.status !== 404 && err.status !== 422; // an unknown id will not appear by waiting
    }
    clear(notice);
    const colour = (i) => PALETTE[i % PALETTE.length];
    if (!chart) {
      chart = lineChart(chartEl, {
        title: metric === "lr" ? "learning rate (log scale)" : metric,
        series: data.series.map((s, i) => ({ label: `#${s.experiment_id} ${s.name}`, color: colour(i) })),
        logY: metric === "lr",
        stepped: metric === "lr",
        height: 360,
      });
    }
    chart.setData(data.epochs, data.series.map((s) => s[metric]));
    chart.setDecisions(data.series.flatMap((s, i) => s.decisions.map((d) => ({ ...d, experiment_id: s.experiment_id, color: colour(i) }))));
    clear(table, data.series.map((s, i) => {
      const last = [...s[metric]].reverse().find((v) => v !== null);
      return h("tr", { "data-id": s.experiment_id },
        h("td", {}, h("span", { style: `color:${colour(i)}` }, "■")),
        h("td", {}, link(`/experiments/${s.experiment_id}`, `#${s.experiment_id} ${s.name}`)),
        h("td", {}, statusBadge(s.status)),
        h("td", { class: "num" }, s.lr.filter((v) => v !== null).length),
        h("td", { class: "num" }, num(last)),
        h("td", {}, s.decisions.map((d) => h("div", { title: d.reason }, `epoch ${d.epoch}: ${d.kind.replace("_", " ")}`))));
    }));
    return !data.series.every((s) => FINAL_STATUSES.has(s.status));
  }, POLL_MS);
}
