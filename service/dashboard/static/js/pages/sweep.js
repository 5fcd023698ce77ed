// `/sweeps/{id}`: the sweep's status, stage, ranking rule and note, its leaderboard and runs, and
// a link that overlays its runs on the compare page.
import { api } from "../api.js";
import { clear, errorBox, h, link } from "../dom.js";
import { num, paramsText, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";

const POLL_MS = 2000;
const MAX_COMPARE = 50; // the compare API's bound

export async function renderSweep(root, id) {
  const body = h("div");
  clear(root, body);

  const runRow = (r, withRank) => h("tr", { "data-id": r.experiment_id },
    withRank ? h("td", { class: "num" }, r.rank) : null,
    h("td", {}, link(`/experiments/${r.experiment_id}`, `#${r.experiment_id}`)),
    h("td", {}, r.name),
    h("td", {}, statusBadge(r.status)),
    h("td", {}, paramsText(r.params)),
    h("td", { class: "num" }, num(r.score)),
    h("td", { class: "num" }, `${r.epochs_run}/${r.epochs}`),
    h("td", { class: "num" }, r.stage));
  const heads = (withRank) => h("thead", {}, h("tr", {},
    [withRank ? "rank" : null, "id", "name", "status", "params", "score", "epochs", "stage"].filter(Boolean).map((t) => h("th", {}, t))));

  poll(async () => {
    let s;
    try {
      s = await api.sweep(id);
    } catch (err) {
      clear(body, errorBox(err));
      return err.status !== 404; // a missing sweep will not appear by waiting
    }
    document.title = `sweep #${s.id} · Glidepath`;
    const ids = s.leaderboard.map((r) => r.experiment_id).slice(0, MAX_COMPARE);
    clear(body,
      h("div", { class: "toolbar" },
        h("h1", { class: "grow", id: "title" }, `Sweep #${s.id} ${s.name || ""} `, statusBadge(s.status)),
        ids.length ? h("a", { class: "button", id: "compare-link", href: `/compare?ids=${ids.join(",")}&metric=${s.metric}` },
          `Compare ${ids.length} runs`) : null,
        link(`/?sweep=${s.id}`, "in the list")),
      h("div", { class: "card" }, h("dl", { class: "facts" },
        h("dt", {}, "strategy"), h("dd", {}, `${s.strategy}, stage ${s.stage}`),
        h("dt", {}, "metric"), h("dd", {}, `${s.metric} (${s.mode})`),
        h("dt", {}, "rule"), h("dd", { id: "rule" }, s.rule),
        h("dt", {}, "note"), h("dd", { id: "note" }, s.note || "—"),
        h("dt", {}, "runs"), h("dd", {}, Object.entries(s.counts).map(([k, v]) => `${v} ${k}`).join(", ")),
        h("dt", {}, "best"), h("dd", { id: "best" }, s.best
          ? [link(`/experiments/${s.best.experiment_id}`, `#${s.best.experiment_id}`), ` ${paramsText(s.best.params)}: ${s.metric} ${num(s.best.score)}`]
          : "—"),
        h("dt", {}, "created"), h("dd", {}, when(s.created_at)))),
      h("h2", {}, "Leaderboard"),
      h("table", { id: "leaderboard" }, heads(true), h("tbody", {}, s.leaderboard.map((r) => runRow(r, true)))),
      h("h2", {}, "All runs"),
      h("table", { id: "sweep-runs" }, heads(false), h("tbody", {}, s.experiments.map((r) => runRow(r, false)))));
    return s.status === "running";
  }, POLL_MS);
}
