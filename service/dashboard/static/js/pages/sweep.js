// `/sweeps/{id}`: the sweep's status, stage, ranking rule and note, its leaderboard and runs, and
// a link that overlays its runs on the compare page. With a pruner: its rule, the rungs decided,
// the runs it pruned and the epochs saved against the same sweep unpruned, and every decision
// with its reason; pruned runs are marked in the tables. Above the tables, the score against each
// swept value and parallel coordinates over the swept fields (sweep_charts.js).
import { api } from "../api.js";
import { clear, errorBox, h, link } from "../dom.js";
import { countsText, num, paramsText, statusBadge, when } from "../format.js";
import { poll } from "../poll.js";
import { follow } from "../sse.js";
import { sweepCharts } from "../sweep_charts.js";

const POLL_MS = 2000;
const RELOAD_MS = 1000; // while its runs' events arrive, the sweep is read again at most this often
const MAX_COMPARE = 50; // the compare API's bound
const DECISIONS_SHOWN = 200; // the last ones, until "show all" is clicked

export async function renderSweep(root, id) {
  const body = h("div");
  clear(root, body);
  let showAll = false;
  let last = null; // the latest {s, decisions}, re-rendered when "show all" is clicked

  // A pruned run's row is greyed and says why it stopped (its pruner decision) on hover.
  const runRow = (r, withRank, stops) => h("tr", {
    "data-id": r.experiment_id,
    "data-status": r.status,
    class: r.status === "pruned" ? "run-pruned" : null,
    title: stops.get(r.experiment_id) || null,
  },
    withRank ? h("td", { class: "num" }, r.rank) : null,
    h("td", {}, link(`/experiments/${r.experiment_id}`, `#${r.experiment_id}`)),
    h("td", {}, r.name),
    h("td", {}, statusBadge(r.status)),
    h("td", {}, paramsText(r.params)),
    h("td", { class: "num" }, num(r.score)),
    h("td", { class: "num" }, `${r.epochs_run}/${r.epochs}`),
    h("td", { class: "num" }, r.stage));
  // The score column is named by the sweep's metric: each run's best value of it.
  const heads = (withRank, metric) => h("thead", {}, h("tr", {},
    [withRank ? "rank" : null, "id", "name", "status", "params", `best ${metric}`, "epochs", "stage"].filter(Boolean).map((t) => h("th", {}, t))));

  function pruningBlock(p, decisions) {
    const share = p.epochs_unpruned ? Math.round((100 * p.epochs_saved) / p.epochs_unpruned) : 0;
    const shown = showAll ? decisions : decisions.slice(-DECISIONS_SHOWN);
    const first = decisions.length - shown.length; // the index of the first row shown
    return [
      h("h2", {}, "Pruning"),
      h("div", { class: "card", id: "pruning" }, h("dl", { class: "facts" },
        h("dt", {}, "pruner"), h("dd", {}, `${p.type} on ${p.metric} (${p.mode})`),
        h("dt", {}, "rule"), h("dd", { id: "pruning-rule" }, p.rule),
        h("dt", {}, "pruned"), h("dd", { id: "pruned" }, `${p.pruned} run${p.pruned === 1 ? "" : "s"}`),
        h("dt", {}, "epochs"), h("dd", { id: "epochs-saved" },
          h("span", { class: "progress saved-bar", title: `${p.epochs_run} of ${p.epochs_unpruned} epochs trained` },
            h("span", { style: `width:${100 - share}%` })),
          ` ${p.epochs_run} of ${p.epochs_unpruned} epochs trained, ${p.epochs_saved} saved (${share}% of the sweep unpruned)`))),
      p.rungs.length
        ? h("table", { id: "rungs" },
          h("thead", {}, h("tr", {}, ["stage", "bracket", "rung epoch", "reached", "continued", "pruned", "decided"].map((t) => h("th", {}, t)))),
          h("tbody", {}, p.rungs.map((g) => h("tr", { "data-epoch": g.epoch, "data-bracket": g.bracket },
            h("td", { class: "num" }, g.stage),
            h("td", { class: "num" }, g.bracket),
            h("td", { class: "num" }, g.epoch),
            h("td", { class: "num" }, g.reached),
            h("td", { class: "num" }, g.continued),
            h("td", { class: "num" }, g.reached - g.continued),
            h("td", {}, when(g.decided_at))))))
        : h("p", { class: "muted", id: "rungs" }, p.type === "asha" || p.type === "median"
          ? "No rungs to wait at: this pruner decides each run on its own as it reaches an epoch."
          : "No rung decided yet."),
      h("h2", {}, `Decisions (${decisions.length})`),
      decisions.length
        ? h("table", { id: "sweep-decisions" },
          h("thead", {}, h("tr", {}, ["#", "epoch", "run", "value", "cutoff", "compared", "decision", "reason"].map((t) => h("th", {}, t)))),
          h("tbody", {}, shown.map((d, i) => h("tr", { "data-decision": d.decision, "data-id": d.experiment_id },
            h("td", { class: "num" }, first + i + 1),
            h("td", { class: "num" }, d.epoch),
            h("td", {}, link(`/experiments/${d.experiment_id}`, `#${d.experiment_id}`)),
            h("td", { class: "num" }, num(d.value)),
            h("td", { class: "num" }, num(d.cutoff)),
            h("td", { class: "num" }, d.compared),
            h("td", { class: `decision-${d.decision}` }, d.decision),
            h("td", { class: "reason" }, d.reason)))))
        : h("p", { class: "muted" }, "No decision yet."),
      first > 0
        ? h("p", {}, h("button", { type: "button", class: "ghost", id: "all-decisions", onclick: () => { showAll = true; render(); } },
          `Show all ${decisions.length} decisions (the last ${shown.length} are shown)`))
        : null,
    ];
  }

  function render() {
    const { s, decisions } = last;
    document.title = `sweep #${s.id} · Glidepath`;
    const ids = s.leaderboard.map((r) => r.experiment_id).slice(0, MAX_COMPARE);
    // Each pruned run's stop, for its row's tooltip.
    const stops = new Map(decisions.filter((d) => d.decision === "stop").map((d) => [d.experiment_id, d.reason]));
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
        h("dt", {}, "runs"), h("dd", { id: "counts" }, countsText(s.counts)),
        h("dt", {}, "best"), h("dd", { id: "best" }, s.best
          ? [link(`/experiments/${s.best.experiment_id}`, `#${s.best.experiment_id}`), ` ${paramsText(s.best.params)}: ${s.metric} ${num(s.best.score)}`]
          : "—"),
        h("dt", {}, "created"), h("dd", {}, when(s.created_at)))),
      sweepCharts(s, body.clientWidth || undefined),
      s.pruning ? pruningBlock(s.pruning, decisions) : null,
      h("h2", {}, "Leaderboard"),
      h("table", { id: "leaderboard" }, heads(true, s.metric), h("tbody", {}, s.leaderboard.map((r) => runRow(r, true, stops)))),
      h("h2", {}, "All runs"),
      h("table", { id: "sweep-runs" }, heads(false, s.metric), h("tbody", {}, s.experiments.map((r) => runRow(r, false, stops)))));
  }

  async function load() {
    let s;
    let decisions = [];
    try {
      s = await api.sweep(id);
      if (s.pruning) decisions = await api.sweepDecisions(id);
    } catch (err) {
      clear(body, errorBox(err));
      // An unknown id (404) or one the API refuses (422: past the database's integers) will not
      // change by waiting: stop. A network error, a 5xx or a 429 may: keep polling.
      return err.status !== 404 && err.status !== 422;
    }
    last = { s, decisions };
    render();
    return s.status === "running";
  }

  if (!(await load())) return;
  // Live: the sweep's runs' events (GET /v1/events?sweep_id=) say when something changed; the
  // sweep is then read again (at most every RELOAD_MS), and once more at the end. Polled where
  // the stream fails.
  let reloadTimer = null;
  const reloadSoon = (now = false) => {
    if (reloadTimer && !now) return;
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(async () => {
      await load();
      reloadTimer = null;
    }, now ? 0 : RELOAD_MS);
  };
  follow(`/v1/events?sweep_id=${id}`, {
    status: () => reloadSoon(),
    end: () => reloadSoon(true),
  }, { fallback: () => poll(load, POLL_MS) });
}
