"""The tables of experiments, decisions, sweeps and range tests (`ls`, `show`, the summaries
after following runs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from service.cli.render import (
    DECISION_STYLE,
    best_at,
    best_line,
    columns_table,
    epochs_of,
    fields_table,
    lr_str,
    num,
    params_str,
    plain,
    status_text,
    timestamp,
)
from service.client.types import (
    FINAL_STATUSES,
    Attempt,
    Decision,
    Experiment,
    LeaderboardEntry,
    LRTrace,
    RangeTest,
    RangeTestSummary,
    Sweep,
    SweepDecision,
    SweepExperiment,
    SweepPruning,
    Worker,
    sweep_run_id,
)

SPARKS = "▁▂▃▄▅▆▇█"


# -- experiments ------------------------------------------------------------------------------


# The columns every experiments table starts with, and their cells.
EXPERIMENT_COLUMNS = ("id", "name", "status", "epochs", "best @ epoch")


def _experiment_cells(e: Experiment) -> list[RenderableType]:
    return [str(e["id"]), plain(e["name"]), status_text(e["status"]), epochs_of(e), best_at(e)]


def experiments_table(exps: Sequence[Experiment]) -> Table:
    """The summary of followed runs, and `watch`'s finals."""
    table = columns_table((*EXPERIMENT_COLUMNS, "stop reason / error"), right=("id", "epochs"))
    for e in exps:
        why = e.get("error") or e.get("stop_reason") or ""
        table.add_row(*_experiment_cells(e), plain(why))
    return table


def experiments_page_table(exps: Sequence[Experiment]) -> Table:
    """A page of `ls`."""
    table = columns_table(
        (*EXPERIMENT_COLUMNS, "dataset", "group", "created", "by"), right=("id", "epochs")
    )
    for e in exps:
        group = f"batch {e['batch_id']}" if e.get("batch_id") else ""
        if e.get("sweep_id") is not None:
            group = f"sweep {e.get('sweep_id')}"
        table.add_row(
            *_experiment_cells(e),
            plain(e["dataset"]),
            plain(group),
            timestamp(e.get("created_at")),
            plain(e.get("created_by") or ""),  # the token's name; empty when the API was open
        )
    return table


def experiment_table(e: Experiment) -> Table:
    """One experiment, a field a row (`show`)."""
    # Why a run that ended early stopped (its sentence holds the stop reason).
    stopped = e["progress"].get("stopped")
    progress = f"{epochs_of(e)} epochs" + (f", {stopped}" if stopped else "")
    rows: list[tuple[str, RenderableType]] = [
        ("experiment", Text.assemble(str(e["id"]), " · ", plain(e["name"]))),
        ("status", status_text(e["status"])),
        ("dataset", plain(e["dataset"])),
        ("progress", plain(progress)),
        ("best", plain(best_line(e))),
    ]
    if e.get("batch_id"):
        rows.append(("batch", plain(e.get("batch_id"))))
    if e.get("sweep_id") is not None:
        rows.append(("sweep", plain(e.get("sweep_id"))))
    if e.get("kind") and e.get("kind") != "train":
        rows.append(("kind", plain(e.get("kind"))))
    for key in ("stop_reason", "error", "device", "worker", "steps_per_epoch", "param_count"):
        value = e.get(key)
        if key == "stop_reason" and stopped and value and str(value) in stopped:
            continue  # already said by the progress row
        if value not in (None, ""):
            rows.append((key.replace("_", " "), plain(value)))
    for kind, p in (e.get("plugins") or {}).items():
        rows.append((f"{kind} plugin", plain(f"{p['name']} ({p['package']} {p['version']})")))
    if e.get("split_sizes"):
        rows.append(("split", plain(params_str(dict(e["split_sizes"] or {})))))
    if e.get("test_metrics"):
        metrics = {k: float(v) for k, v in (e["test_metrics"] or {}).items()}
        rows.append(("test", plain(params_str(dict(metrics)))))
    if e.get("tags"):
        rows.append(("tags", plain(params_str(dict(e["tags"])))))
    if e.get("cancel_requested") and e["status"] not in FINAL_STATUSES:
        rows.append(("cancel", "requested"))
    model = e.get("model")
    if model:
        rows.append(("model", plain(f"{size_str(model['size'])}, sha256 {model['sha256'][:12]}… "
                                    f"(glidepath download {e['id']})")))  # fmt: skip
    for key in ("created_at", "started_at", "finished_at"):
        value = e.get(key)
        if value:
            rows.append((key.split("_")[0], timestamp(value)))
    if e.get("created_by"):
        rows.append(("created by", plain(e.get("created_by"))))
    table = fields_table()
    for k, v in rows:
        table.add_row(k, v)
    return table


def size_str(n: int) -> str:
    """Bytes for a person: `812 B`, `3.4 kB`, `12.1 MB` (powers of 1000)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # not reached


def attempts_table(attempts: Sequence[Attempt]) -> Table:
    """Each worker's attempt at a run, oldest first (`show`)."""
    table = columns_table(
        ("attempt", "worker", "started", "ended", "outcome", "resumed from epoch"),
        right=("attempt", "resumed from epoch"),
        title="attempts",
    )
    for a in attempts:
        resumed, outcome = a.get("resumed_from_epoch"), a.get("outcome")
        table.add_row(
            str(a["attempt"]),
            plain(a["worker"]),
            timestamp(a.get("started_at")),
            timestamp(a.get("ended_at")) or "-",
            status_text(outcome) if outcome else plain("running"),
            "-" if resumed is None else str(resumed),
        )
    return table


def _plugins_cell(plugins: dict[str, Any]) -> str:
    names = [
        f"{kind[:-1]} {name} ({p['package']} {p['version']})"
        for kind in ("models", "datasets")
        for name, p in plugins.get(kind, {}).items()
    ]
    return "\n".join(names) or "-"


def workers_table(workers: Sequence[Worker]) -> Table:
    """The registry (`workers`): one row per worker process."""
    table = Table(title="workers")
    for column in ("worker", "state", "devices", "plugins", "running", "last seen"):
        table.add_column(column)
    for w in workers:
        devices = ", ".join(str(d.get("model") or d["name"]) if d["kind"] == "cuda" else "cpu"
                            for d in w["devices"])  # fmt: skip
        style = {"alive": "green", "lost": "red"}.get(w["state"], "dim")
        table.add_row(plain(w["id"]), Text(w["state"], style=style), plain(devices),
                      plain(_plugins_cell(w["plugins"])),
                      plain(w["current_run"] if w["current_run"] is not None else "-"),
                      timestamp(w["last_seen"]))  # fmt: skip
    return table


def decisions_table(decisions: Sequence[Decision]) -> Table:
    table = columns_table(("epoch", "kind", "lr", "reason"), right=("epoch",), title="decisions")
    for d in decisions:
        lr = ""
        if d.get("old_lr") is not None and d.get("new_lr") is not None:
            lr = f"{lr_str(d['old_lr'])} → {lr_str(d['new_lr'])}"
        table.add_row(str(d["epoch"]), d["kind"], lr, plain(d["reason"]))
    return table


def lr_heading(trace: LRTrace) -> str:
    """What `lr_table` shows: `experiment 12 · LR per step · computed · 920 steps, 100 shown…`."""
    unit = "steps" if trace["resolution"] == "step" else "epochs"
    heading = (f"experiment {trace['experiment_id']} · LR per {trace['resolution']} · "
               f"{trace['source']} · {trace['total_points']} {unit}")  # fmt: skip
    if trace["downsampled"]:
        heading += f", {len(trace['points'])} shown (first, last, each bucket's min and max)"
    return heading


def lr_table(trace: LRTrace) -> Table:
    """A run's LR per epoch (with its range over the epoch's steps) or per step (`lr`)."""
    if trace["resolution"] == "step":
        table = columns_table(("step", "epoch", "lr"), right=("step", "epoch", "lr"))
        for p in trace["points"]:
            table.add_row(str(p.get("step")), str(p["epoch"]), num(p["lr"], 6))
        return table
    table = columns_table(("epoch", "lr", "min", "max"), right=("epoch", "lr", "min", "max"))
    for p in trace["points"]:
        table.add_row(str(p["epoch"]), num(p["lr"], 6), num(p.get("lr_min"), 6),
                      num(p.get("lr_max"), 6))  # fmt: skip
    return table


# -- sweeps -----------------------------------------------------------------------------------


def sweep_title(s: Sweep) -> str:
    name = f" {s['name']}" if s.get("name") else ""
    return f"sweep {s['id']}{name} · {s['strategy']} · stage {s.get('stage', 1)} · {s['status']}"


def sweep_tables(s: Sweep) -> list[RenderableType]:
    """A sweep's trials, its leaderboard (top 10), the best trial, its rule and note."""
    out: list[RenderableType] = []
    exps: list[SweepExperiment] = s.get("experiments") or []
    out.append(plain(sweep_title(s)))
    table = columns_table(
        ("id", "stage", "params", "status", "epochs", f"best {s.get('metric', 'score')}"),
        right=("id", "stage", "epochs"),
    )
    for e in exps:
        table.add_row(
            str(sweep_run_id(e)),
            str(e.get("stage", "")),
            plain(params_str(e.get("params") or {})),
            status_text(e["status"]),
            f"{e.get('epochs_run', 0)}/{e.get('epochs', 0)}",
            num(e.get("score")),
        )
    out.append(table)
    board: list[LeaderboardEntry] = s.get("leaderboard") or []
    if board:
        out.append(plain(f"leaderboard ({s.get('metric')}, {s.get('mode')})"))
        lb = columns_table(
            ("rank", "id", "stage", "params", "status", f"best {s.get('metric', 'score')}"),
            right=("rank", "id", "stage"),
        )
        for entry in board[:10]:
            lb.add_row(
                str(entry["rank"]),
                str(entry["experiment_id"]),
                str(entry.get("stage", "")),
                plain(params_str(entry.get("params") or {})),
                status_text(entry["status"]),
                num(entry.get("score")),
            )
        out.append(lb)
    best = s.get("best")
    if best:
        out.append(
            Text(
                f"best: experiment {sweep_run_id(best)} ({params_str(best.get('params') or {})})"
                f" {s.get('metric')} {num(best.get('score'))}"
            )
        )
    else:
        out.append(Text("best: none yet"))
    if s.get("rule"):
        out.append(Text(f"rule: {s.get('rule')}"))
    if s.get("note"):
        out.append(Text(f"note: {s.get('note')}"))
    return out


def pruned_line(p: SweepPruning) -> str:
    """`pruned 8 runs; 21 of 81 epochs trained, 60 saved`."""
    runs = "run" if p["pruned"] == 1 else "runs"
    return (f"pruned {p['pruned']} {runs}; {p['epochs_run']} of {p['epochs_unpruned']} epochs "
            f"trained, {p['epochs_saved']} saved")  # fmt: skip


def rungs_table(p: SweepPruning) -> Table:
    """The synchronous rungs decided so far: of the runs that reached each, how many went on."""
    table = columns_table(("stage", "bracket", "epoch", "reached", "continued", "decided"),
                          right=("stage", "bracket", "epoch", "reached", "continued"),
                          title="rungs")  # fmt: skip
    for g in p["rungs"]:
        table.add_row(str(g["stage"]), str(g["bracket"]), str(g["epoch"]), str(g["reached"]),
                      str(g["continued"]), timestamp(g.get("decided_at")))  # fmt: skip
    return table


def sweep_decisions_table(decisions: Sequence[SweepDecision], limit: int | None = None) -> Table:
    """A pruner's decisions in the order taken: the last `limit` of them (None: every one)."""
    shown = list(decisions) if limit is None else list(decisions)[max(0, len(decisions) - limit) :]
    title = "decisions"
    if len(shown) < len(decisions):
        title += f" (the last {len(shown)} of {len(decisions)}; --decisions all shows every one)"
    table = columns_table(("epoch", "run", "value", "cutoff", "decision", "reason"),
                          right=("epoch", "run", "value", "cutoff"), title=title)  # fmt: skip
    for d in shown:
        table.add_row(str(d["epoch"]), str(d["experiment_id"]), num(d.get("value")),
                      num(d.get("cutoff")), Text(d["decision"], style=DECISION_STYLE.get(
                          d["decision"], "")), plain(d["reason"]))  # fmt: skip
    return table


def pruning_tables(
    p: SweepPruning, decisions: Sequence[SweepDecision], limit: int | None = None
) -> list[RenderableType]:
    """A pruned sweep: the pruner's rule, its rungs, what it saved, and its decisions."""
    out: list[RenderableType] = [plain(f"pruner: {p['rule']}")]
    if p["rungs"]:
        out.append(rungs_table(p))
    elif p["type"] in ("successive_halving", "hyperband"):
        out.append(plain("rungs: none decided yet"))
    out.append(plain(pruned_line(p)))
    if decisions:
        out.append(sweep_decisions_table(decisions, limit))
    else:
        out.append(plain("decisions: none yet"))
    return out


def sweeps_table(sweeps: Sequence[Sweep]) -> Table:
    """`sweep ls`."""
    table = columns_table(
        ("id", "name", "strategy", "status", "stage", "runs", "created"),
        right=("id", "stage"),
    )
    for s in sweeps:
        table.add_row(
            str(s["id"]),
            plain(s.get("name", "")),
            plain(s.get("strategy", "")),
            status_text(s.get("status", "")),
            str(s.get("stage", "")),
            plain(params_str(dict(s.get("counts") or {}))),
            timestamp(s.get("created_at")),
        )
    return table


# -- LR range tests ---------------------------------------------------------------------------


def range_tests_table(tests: Sequence[RangeTestSummary]) -> Table:
    """`range-test ls`."""
    table = columns_table(
        ("id", "name", "status", "data", "lr span", "steps", "suggested lr", "created", "by"),
        right=("id", "steps", "suggested lr"),
    )
    for t in tests:
        table.add_row(
            str(t["id"]),
            plain(t.get("name", "")),
            status_text(t.get("status", "")),
            plain(f"{t.get('dataset', '')} · {t.get('model', '')}"),
            f"{lr_str(t.get('min_lr'))} → {lr_str(t.get('max_lr'))}",
            f"{t.get('steps_run', 0)}/{t.get('steps', 0)}",
            lr_str(t.get("suggested_lr")),
            timestamp(t.get("created_at")),
            plain(t.get("created_by") or "–"),
        )
    return table


def sparkline(values: Sequence[float | None], width: int = 60) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    step = max(1, math.ceil(len(values) / width))
    sampled = [values[i] for i in range(0, len(values), step)]
    lo, hi = min(finite), max(finite)
    if finite[0] > lo:  # crop a diverging tail at 1.5× the starting value, as plots do
        hi = min(hi, lo + 1.5 * (finite[0] - lo))
    span = (hi - lo) or 1.0
    return "".join(
        " "
        if v is None or not math.isfinite(v)
        else SPARKS[max(0, min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS))))]
        for v in sampled
    )


def range_test_summary(r: RangeTest) -> list[RenderableType]:
    points = r.get("points") or []
    table = fields_table()
    table.add_row("LR range test", f"{r['id']} · {r['status']}")
    table.add_row("steps", f"{r.get('steps_run', len(points))}/{r.get('steps', '?')}")
    if points:
        table.add_row("lr tried", f"{lr_str(points[0]['lr'])} → {lr_str(points[-1]['lr'])}")
        smoothed = [p.get("smoothed_loss") for p in points]
        finite = [(v, p) for v, p in zip(smoothed, points, strict=True) if v is not None]
        if finite:
            low, at = min(finite, key=lambda vp: vp[0])
            # The EMA lags the batch losses: its lowest point sits later (higher LR) than the
            # minimum the suggestion rule finds on the filtered losses, shown when known.
            table.add_row("lowest smoothed", f"{num(low)} at lr {lr_str(at['lr'])}")
    if r.get("min_loss_lr") is not None:
        table.add_row("loss minimum", f"lr {lr_str(r['min_loss_lr'])} (filtered batch losses)")
        table.add_row("smoothed loss", sparkline(smoothed))
    if r.get("stopped"):
        table.add_row("stopped", plain(r.get("stopped")))
    if r.get("error"):
        table.add_row("error", plain(r.get("error")))
    suggested = r.get("suggested_lr")
    table.add_row("suggested lr", Text(lr_str(suggested), style="bold green" if suggested else ""))
    table.add_row("rule", plain(r.get("rule") or "–"))
    return [table]
