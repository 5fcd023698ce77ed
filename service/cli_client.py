"""The `glidepath` commands that talk to a running service over HTTP (`service.client.Client`):
submit, watch, ls, show, cancel, and `sweep`/`batch`/`range-test` show. docs/cli.md documents
them; `register(app)` adds them to the CLI in `service/cli.py`.

Exit codes (every command): 0 ok; 1 a run ended failed/diverged/cancelled (with --wait, watch);
2 bad input (unreadable or unparseable file, an API 4xx such as 422); 3 the service is
unreachable or answered 5xx after retries; 4 not found; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import typer
import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from service.client import ApiError, Client, FileError, Submission, load_submission
from service.client.types import (
    FINAL_STATUSES,
    OK_STATUSES,
    Decision,
    EpochRow,
    Experiment,
    LeaderboardEntry,
    RangePoint,
    RangeTest,
    Sweep,
    SweepExperiment,
    sweep_run_id,
)

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

EXIT_HELP = (
    "Exit codes: 0 ok (with --wait/watch: every run ended succeeded or early_stopped); "
    "1 a run ended failed, diverged or cancelled; 2 bad input (file unreadable or unparseable, "
    "API 4xx such as 422); 3 service unreachable or 5xx after retries; 4 not found; "
    "130 interrupted."
)
PANEL = "Client (talk to a running service)"
# While following runs, a service that stops answering is waited for this long before exit 3.
OUTAGE_GRACE_S = 60.0
SWEEP_FINAL = frozenset({"finished", "cancelled"})

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="GLIDEPATH_URL",
        show_envvar=True,
        help="Service URL; default http://127.0.0.1:8000.",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="GLIDEPATH_TOKEN",
        show_envvar=True,
        help="API token, sent as `Authorization: Bearer <token>`.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
IntervalOpt = Annotated[float, typer.Option("--interval", min=0.05, help="Seconds between polls.")]


# -- plumbing ---------------------------------------------------------------------------------


def exit_code_for(exc: ApiError) -> int:
    if exc.status_code == 404:
        return EXIT_NOT_FOUND
    if exc.is_unavailable:
        return EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _report(exc: ApiError) -> None:
    if exc.status_code == 0:
        _err(f"error: {exc}")
        return
    where = f" from {exc.method} {_path(exc.url)}" if exc.method else ""
    _err(f"error: HTTP {exc.status_code}{where}:")
    for line in exc.messages():
        _err(f"  {line}")
    if exc.status_code in (401, 403):
        _err("  (pass --token or set GLIDEPATH_TOKEN)")


def _path(url: str) -> str:
    # "http://host:8000/v1/x?y=1" → "/v1/x?y=1"
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else url


@contextlib.contextmanager
def _handled() -> Iterator[None]:
    """Turn the client's errors into messages and the documented exit codes."""
    try:
        yield
    except KeyboardInterrupt:
        _err("interrupted: runs already queued go on (`glidepath cancel ID…` stops them)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except FileError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ApiError as exc:
        _report(exc)
        raise typer.Exit(exit_code_for(exc)) from None


def _client(url: str | None, token: str | None) -> Client:
    # Retries after 0.25, 0.5 and 1 s (a 503's Retry-After wins); following loops wait longer.
    return Client(url, token=token, retries=3, backoff=0.25)


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped output: wide tables rather than wrapped cells
    return console


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _num(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


def _best(exp: Experiment) -> str:
    if exp.get("best_value") is None:
        return "–"
    return f"{_num(exp['best_value'])} @ {exp.get('best_epoch')}"


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in params.items())


STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "succeeded": "green",
    "early_stopped": "green",
    "finished": "green",
    "ready": "green",
    "diverged": "red",
    "failed": "red",
    "cancelled": "yellow",
}


def _status(s: str) -> Text:
    return Text(s, style=STATUS_STYLE.get(s, ""))


def _t(s: object) -> Text:
    """User data as plain text (a name with brackets is not Rich markup)."""
    return Text("" if s is None else str(s))


def _follow(
    poll: Callable[[], bool],
    interval: float,
    on_outage: Callable[[ApiError], None] = lambda _: None,
) -> None:
    """Call `poll` every `interval` seconds until it returns True. A service that stops
    answering (after the client's own retries) is waited for up to OUTAGE_GRACE_S."""
    down_since: float | None = None
    while True:
        try:
            if poll():
                return
            down_since = None
        except ApiError as exc:
            if not exc.is_unavailable:
                raise
            now = time.monotonic()
            down_since = down_since if down_since is not None else now
            if now - down_since > OUTAGE_GRACE_S:
                raise
            on_outage(exc)
        time.sleep(interval)


# -- following runs to the end (submit --wait, sweep/batch/range-test show --wait) -------------


@dataclass
class Row:
    id: int
    name: str
    status: str
    done: int
    total: int
    best: str
    stage: int | None = None
    params: str = ""


@dataclass
class View:
    title: str
    rows: list[Row]
    final: bool
    unit: str = "epochs"


class Tracker(Protocol):
    def poll(self) -> View: ...
    def summary(self, console: Console) -> None: ...
    def exit_code(self) -> int: ...
    def result(self) -> Any: ...


def _exp_row(e: Experiment) -> Row:
    return Row(
        e["id"],
        e["name"],
        e["status"],
        e["epochs_run"],
        e["progress"]["epochs"],
        _best(e),
    )


def experiments_table(exps: Sequence[Experiment]) -> Table:
    table = Table()
    for col in ("id", "name", "status", "epochs", "best @ epoch", "stop reason / error"):
        table.add_column(col, justify="right" if col in ("id", "epochs") else "left")
    for e in exps:
        why = e.get("error") or e.get("stop_reason") or ""
        table.add_row(
            str(e["id"]),
            _t(e["name"]),
            _status(e["status"]),
            f"{e['epochs_run']}/{e['progress']['epochs']}",
            _best(e),
            _t(why),
        )
    return table


class ExperimentsTracker:
    """One experiment, a list of ids, or a batch (all its experiments, by `batch_id`)."""

    def __init__(
        self,
        client: Client,
        ids: Sequence[int] = (),
        batch_id: str | None = None,
        title: str = "",
    ) -> None:
        self.client = client
        self.ids = list(ids)
        self.batch_id = batch_id
        self.title = title
        self.exps: dict[int, Experiment] = {}

    def poll(self) -> View:
        listed: set[int] = set()
        if self.batch_id is not None:  # a page of 500 per request, not a request per run
            for e in self.client.iter_experiments(batch_id=self.batch_id, page_size=500):
                self.exps[e["id"]] = e
                listed.add(e["id"])
        for i in self.ids:
            if i in listed:
                continue
            if i not in self.exps or self.exps[i]["status"] not in FINAL_STATUSES:
                self.exps[i] = self.client.get_experiment(i)
        exps = self.ordered()
        final = bool(exps) and all(e["status"] in FINAL_STATUSES for e in exps)
        return View(self.title, [_exp_row(e) for e in exps], final)

    def ordered(self) -> list[Experiment]:
        return [self.exps[i] for i in sorted(self.exps)]

    def summary(self, console: Console) -> None:
        if self.title:
            console.print(_t(self.title))
        console.print(experiments_table(self.ordered()))

    def exit_code(self) -> int:
        ok = all(e["status"] in OK_STATUSES for e in self.exps.values())
        return EXIT_OK if ok else EXIT_RUN_FAILED

    def result(self) -> Any:
        exps = self.ordered()
        if self.batch_id is None and len(exps) == 1:
            return exps[0]
        if self.batch_id is not None:
            return {"batch_id": self.batch_id, "experiments": exps}
        return {"experiments": exps}


def _sweep_title(s: Sweep) -> str:
    name = f" {s['name']}" if s.get("name") else ""
    return f"sweep {s['id']}{name} · {s['strategy']} · stage {s.get('stage', 1)} · {s['status']}"


def sweep_tables(s: Sweep) -> list[RenderableType]:
    out: list[RenderableType] = []
    exps: list[SweepExperiment] = s.get("experiments") or []
    out.append(_t(_sweep_title(s)))
    table = Table()
    for col in ("id", "stage", "params", "status", "epochs", f"{s.get('metric', 'score')}"):
        table.add_column(col, justify="right" if col in ("id", "stage", "epochs") else "left")
    for e in exps:
        table.add_row(
            str(sweep_run_id(e)),
            str(e.get("stage", "")),
            _t(_params(e.get("params") or {})),
            _status(e["status"]),
            f"{e.get('epochs_run', 0)}/{e.get('epochs', 0)}",
            _num(e.get("score")),
        )
    out.append(table)
    board: list[LeaderboardEntry] = s.get("leaderboard") or []
    if board:
        out.append(_t(f"leaderboard ({s.get('metric')}, {s.get('mode')})"))
        lb = Table()
        for col in ("rank", "id", "stage", "params", "status", s.get("metric", "score")):
            lb.add_column(col, justify="right" if col in ("rank", "id", "stage") else "left")
        for entry in board[:10]:
            lb.add_row(
                str(entry["rank"]),
                str(entry["experiment_id"]),
                str(entry.get("stage", "")),
                _t(_params(entry.get("params") or {})),
                _status(entry["status"]),
                _num(entry.get("score")),
            )
        out.append(lb)
    best = s.get("best")
    if best:
        out.append(
            Text(
                f"best: experiment {sweep_run_id(best)} ({_params(best.get('params') or {})})"
                f" {s.get('metric')} {_num(best.get('score'))}"
            )
        )
    else:
        out.append(Text("best: none yet"))
    if s.get("rule"):
        out.append(Text(f"rule: {s.get('rule')}"))
    if s.get("note"):
        out.append(Text(f"note: {s.get('note')}"))
    return out


class SweepTracker:
    def __init__(self, client: Client, sweep_id: int) -> None:
        self.client = client
        self.sweep_id = sweep_id
        self.sweep: Sweep | None = None

    def poll(self) -> View:
        s = self.sweep = self.client.get_sweep(self.sweep_id)
        rows = [
            Row(
                sweep_run_id(e),
                e["name"],
                e["status"],
                e.get("epochs_run", 0),
                e.get("epochs", 0),
                _num(e.get("score")),
                e.get("stage"),
                _params(e.get("params") or {}),
            )
            for e in s.get("experiments") or []
        ]
        return View(_sweep_title(s), rows, s["status"] in SWEEP_FINAL)

    def summary(self, console: Console) -> None:
        if self.sweep is not None:
            for part in sweep_tables(self.sweep):
                console.print(part)

    def exit_code(self) -> int:
        """Diverged trials are results of a sweep, not failures: 1 only for a cancelled sweep,
        a failed or cancelled trial, or no best trial."""
        s = self.sweep
        if s is None or s["status"] == "cancelled" or not s.get("best"):
            return EXIT_RUN_FAILED
        bad = {"failed", "cancelled"}
        if any(e["status"] in bad for e in s.get("experiments") or []):
            return EXIT_RUN_FAILED
        return EXIT_OK

    def result(self) -> Any:
        return self.sweep


SPARKS = "▁▂▃▄▅▆▇█"


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
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("LR range test", f"{r['id']} · {r['status']}")
    table.add_row("steps", f"{r.get('steps_run', len(points))}/{r.get('steps', '?')}")
    if points:
        table.add_row("lr tried", f"{_num(points[0]['lr'], 3)} → {_num(points[-1]['lr'], 3)}")
        smoothed = [p.get("smoothed_loss") for p in points]
        finite = [(v, p) for v, p in zip(smoothed, points, strict=True) if v is not None]
        if finite:
            low, at = min(finite, key=lambda vp: vp[0])
            table.add_row("lowest loss", f"{_num(low)} at lr {_num(at['lr'], 3)}")
        table.add_row("smoothed loss", sparkline(smoothed))
    if r.get("stopped"):
        table.add_row("stopped", _t(r.get("stopped")))
    if r.get("error"):
        table.add_row("error", _t(r.get("error")))
    suggested = r.get("suggested_lr")
    table.add_row("suggested lr", Text(_num(suggested), style="bold green" if suggested else ""))
    table.add_row("rule", _t(r.get("rule") or "–"))
    return [table]


class RangeTestTracker:
    def __init__(self, client: Client, range_test_id: int) -> None:
        self.client = client
        self.id = range_test_id
        self.test: RangeTest | None = None
        self.points: list[RangePoint] = []
        self.next_step = 0

    def poll(self) -> View:
        r = self.client.get_range_test(self.id, from_step=self.next_step)
        new = [p for p in r.get("points") or [] if p["step"] >= self.next_step]
        self.points += new
        self.next_step = r.get("next_from_step", new[-1]["step"] + 1 if new else self.next_step)
        r["points"] = points = self.points
        self.test = r
        done = r.get("steps_run", len(points))
        last = points[-1] if points else None
        best = f"lr {_num(last['lr'], 3)}" if last else "–"
        if r.get("suggested_lr") is not None:
            best = f"suggested {_num(r.get('suggested_lr'), 3)}"
        row = Row(r["id"], "lr range test", r["status"], done, r.get("steps", 0), best)
        return View(f"LR range test {r['id']}", [row], r["status"] in FINAL_STATUSES, "steps")

    def summary(self, console: Console) -> None:
        if self.test is not None:
            for part in range_test_summary(self.test):
                console.print(part)

    def exit_code(self) -> int:
        r = self.test
        if r is None or r["status"] not in OK_STATUSES or r.get("suggested_lr") is None:
            return EXIT_RUN_FAILED
        return EXIT_OK

    def result(self) -> Any:
        return self.test


def _progress_table(view: View) -> RenderableType:
    sweep = any(r.stage is not None for r in view.rows)
    table = Table(expand=False)
    table.add_column("id", justify="right")
    if sweep:  # a sweep's run names repeat its params
        table.add_column("stage", justify="right")
        table.add_column("params")
    else:
        table.add_column("name")
    table.add_column("status")
    table.add_column("progress")
    table.add_column(view.unit, justify="right")
    table.add_column("best" if not sweep else "score")
    for r in view.rows:
        bar = ProgressBar(total=max(r.total, 1), completed=min(r.done, max(r.total, 1)), width=24)
        cells: list[RenderableType] = [str(r.id)]
        cells += [str(r.stage or ""), _t(r.params)] if sweep else [_t(r.name)]
        cells += [_status(r.status), bar, f"{r.done}/{r.total}", r.best]
        table.add_row(*cells)
    if not view.rows:
        table.add_row("", Text("waiting for the first run…", style="dim"))
    return Group(_t(view.title), table) if view.title else table


def follow(tracker: Tracker, interval: float, console: Console, quiet: bool = False) -> int:
    """Poll `tracker` until its runs are final: a live table on a terminal, else one line per
    status change; then the summary. Returns the exit code."""
    if quiet:
        _follow(lambda: tracker.poll().final, interval)
        return tracker.exit_code()
    outage = lambda exc: _err(f"service unavailable, still trying: {exc}")  # noqa: E731
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=True) as live:

            def poll_live() -> bool:
                view = tracker.poll()
                live.update(_progress_table(view))
                return view.final

            _follow(poll_live, interval, outage)
    else:
        seen: dict[int, tuple[str, int | None]] = {}
        titles: list[str] = []

        def poll_lines() -> bool:
            view = tracker.poll()
            if view.title and not view.final and (not titles or titles[-1] != view.title):
                titles.append(view.title)  # the summary repeats the final one
                console.print(_t(view.title))
            for r in view.rows:
                if seen.get(r.id) != (r.status, r.stage):
                    seen[r.id] = (r.status, r.stage)
                    what = r.name if r.stage is None else f"stage {r.stage} {r.params}"
                    line = f"{r.id} {what}: {r.status}"
                    if r.status in FINAL_STATUSES:
                        line += f" · {r.done}/{r.total} {view.unit} · best {r.best}"
                    console.print(_t(line))
            return view.final

        _follow(poll_lines, interval, outage)
    tracker.summary(console)
    return tracker.exit_code()


# -- submit -----------------------------------------------------------------------------------


def _announce(sub: Submission, created: Any, console: Console) -> None:
    if sub.kind == "experiment":
        console.print(_t(f"queued experiment {created['id']} ({created.get('name') or '-'})"))
    elif sub.kind == "batch":
        ids = ", ".join(map(str, created["ids"]))
        console.print(
            _t(f"queued batch {created['batch_id']}: {len(created['ids'])} experiments: {ids}")
        )
    elif sub.kind == "sweep":
        ids = ", ".join(map(str, created["ids"]))
        console.print(_t(f"queued sweep {created['sweep_id']}: experiments {ids}"))
    else:
        console.print(_t(f"queued LR range test {created['id']}"))


def submit(
    file: Annotated[
        str,
        typer.Argument(
            help="YAML or JSON file (by extension; `-` reads JSON or YAML from stdin): a spec, "
            "a list of specs or {experiments: [...]}, a sweep {base, strategy, ...}, or "
            "{lr_range_test: {spec, min_lr, max_lr, steps}}.",
            show_default=False,
        ),
    ],
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow the runs to the end with progress bars; a summary."),
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            help="Sent as Idempotency-Key: submitting an experiment or a batch again with the "
            "same key returns the first result instead of queuing it twice.",
        ),
    ] = None,
    interval: IntervalOpt = 1.0,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a spec, a batch, a sweep or an LR range test; print the ids.

    With --json: the API's answer (with --wait: the final state instead)."""
    with _handled():
        sub = load_submission(file)
        console = _console()
        with _client(url, token) as client:
            tracker: Tracker
            created: Any
            if sub.kind == "experiment":
                created = client.create_experiment(sub.body, idempotency_key)
                tracker = ExperimentsTracker(client, [created["id"]])
            elif sub.kind == "batch":
                created = client.create_batch(sub.body, idempotency_key)
                tracker = ExperimentsTracker(
                    client,
                    created["ids"],
                    batch_id=created["batch_id"],
                    title=f"batch {created['batch_id']}",
                )
            elif sub.kind == "sweep":
                created = client.create_sweep(sub.body, idempotency_key)
                tracker = SweepTracker(client, created["sweep_id"])
            else:
                created = client.create_range_test(sub.body, idempotency_key)
                tracker = RangeTestTracker(client, created["id"])
            if json_out and not wait:
                _print_json(created)
                return
            if not json_out:
                _announce(sub, created, console)
            if not wait:
                return
            code = follow(tracker, interval, console, quiet=json_out)
            if json_out:
                _print_json(tracker.result())
        raise typer.Exit(code)


# -- watch ------------------------------------------------------------------------------------


@dataclass
class Watched:
    id: int
    name: str
    epochs: int
    status: str
    after: int = 0
    rows: list[EpochRow] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    seen: set[tuple[int, str]] = field(default_factory=set)
    closed: bool = False  # final, and read after it became final


def _metric_key(rows: Sequence[EpochRow]) -> str:
    for r in rows:
        if r.get("val_mae") is not None:
            return "val_mae"
    return "val_accuracy"


def _metric(r: EpochRow, key: str) -> float | None:
    return r.get("val_mae") if key == "val_mae" else r.get("val_accuracy")


def _epoch_line(w: Watched, r: EpochRow) -> str:
    key = "val_mae" if r.get("val_mae") is not None else "val_accuracy"
    parts = [
        f"{w.id} epoch {r['epoch']:>3}/{w.epochs}",
        f"lr {_num(r['lr'], 4)}",
        f"train_loss {_num(r['train_loss'])}",
        f"val_loss {_num(r['val_loss'])}",
        f"{key} {_num(_metric(r, key))}",
    ]
    if r.get("decision"):
        parts.append(f"[{r['decision']}]")
    return "  ".join(parts)


def _watch_panel(w: Watched, keep: int) -> Panel:
    key = _metric_key(w.rows)
    table = Table(expand=False, box=None, header_style="bold")
    for col in ("epoch", "lr", "train_loss", "val_loss", key, "s", "decision"):
        table.add_column(col, justify="left" if col == "decision" else "right")
    for r in w.rows[-keep:]:
        table.add_row(
            str(r["epoch"]),
            _num(r["lr"], 4),
            _num(r["train_loss"]),
            _num(r["val_loss"]),
            _num(_metric(r, key)),
            f"{r['duration_s']:.2f}",
            Text(r.get("decision") or "", style="yellow"),
        )
    parts: list[RenderableType] = [table]
    for d in w.decisions[-5:]:
        parts.append(Text(f"epoch {d['epoch']} {d['kind']}: {d['reason']}", style="yellow"))
    title = Text.assemble(
        (f"experiment {w.id} ", "bold"),
        _t(w.name),
        " · ",
        _status(w.status),
        f" · {len(w.rows)}/{w.epochs} epochs",
    )
    return Panel(Group(*parts), title=title, title_align="left")


def watch(
    ids: Annotated[list[int], typer.Argument(help="Experiment ids.", show_default=False)],
    interval: IntervalOpt = 1.0,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="JSON lines: one per epoch, decision and status change, then finals."
        ),
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Follow experiments epoch by epoch (lr, losses, accuracy/MAE, decisions with their
    reasons) until all are final, then print a summary."""
    with _handled():
        console = _console()
        with _client(url, token) as client:
            watched = []
            for i in dict.fromkeys(ids):
                e = client.get_experiment(i)
                watched.append(Watched(i, e["name"], e["progress"]["epochs"], e["status"]))
            lines = not console.is_terminal or json_out

            def emit_status(w: Watched, status: str) -> None:
                if json_out:
                    typer.echo(
                        json.dumps({"type": "status", "experiment_id": w.id, "status": status})
                    )
                else:
                    console.print(_t(f"{w.id} {w.name}: {status}"))

            def emit_epoch(w: Watched, r: EpochRow) -> None:
                if json_out:
                    typer.echo(json.dumps({"type": "epoch", "experiment_id": w.id, **r}))
                else:
                    console.print(_t(_epoch_line(w, r)))

            def emit_decision(w: Watched, d: Decision) -> None:
                if json_out:
                    typer.echo(json.dumps({"type": "decision", "experiment_id": w.id, **d}))
                else:
                    console.print(_t(f"{w.id} epoch {d['epoch']} {d['kind']}: {d['reason']}"))

            def step(w: Watched) -> None:
                new: list[EpochRow] = []
                while True:
                    page = client.metrics(w.id, after_epoch=w.after, limit=1000)
                    new += page["epochs"]
                    w.after = page["next_after_epoch"]
                    status = page["status"]
                    if len(page["epochs"]) < 1000:
                        break
                # Read once more after the final status: rows written just before it are in.
                w.closed = status in FINAL_STATUSES and w.status in FINAL_STATUSES
                w.rows += new
                fresh: list[Decision] = []
                if any(r.get("decision") for r in new) or w.closed:
                    for d in client.decisions(w.id)["decisions"]:
                        if (d["epoch"], d["kind"]) not in w.seen:
                            w.seen.add((d["epoch"], d["kind"]))
                            fresh.append(d)
                    w.decisions += fresh
                if lines:  # each decision right after its epoch's row
                    for r in new:
                        emit_epoch(w, r)
                        for d in [d for d in fresh if d["epoch"] == r["epoch"]]:
                            emit_decision(w, d)
                    shown = {r["epoch"] for r in new}
                    for d in fresh:
                        if d["epoch"] not in shown:
                            emit_decision(w, d)
                    if status != w.status:
                        emit_status(w, status)
                w.status = status

            def poll() -> bool:
                for w in watched:
                    if not w.closed:
                        step(w)
                return all(w.closed for w in watched)

            outage = lambda exc: _err(f"service unavailable, still trying: {exc}")  # noqa: E731
            if lines:
                for w in watched:
                    emit_status(w, w.status)
                _follow(poll, interval, outage)
            else:
                with Live(console=console, refresh_per_second=4) as live:

                    def poll_live() -> bool:
                        done = poll()
                        keep = max(4, console.height // len(watched) - 8)
                        live.update(Group(*(_watch_panel(w, keep) for w in watched)))
                        return done

                    _follow(poll_live, interval, outage)
            finals = [client.get_experiment(w.id) for w in watched]
        if json_out:
            for e in finals:
                typer.echo(json.dumps({"type": "final", "experiment_id": e["id"], **e}))
        else:
            console.print(experiments_table(finals))
        ok = all(e["status"] in OK_STATUSES for e in finals)
        raise typer.Exit(EXIT_OK if ok else EXIT_RUN_FAILED)


# -- ls, show, cancel -------------------------------------------------------------------------


def ls(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="queued, running, succeeded, … (repeat or comma-separate)."),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="`key` or `key:value`.")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="A batch id.")] = None,
    sweep: Annotated[int | None, typer.Option("--sweep", help="A sweep id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Page size.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="`next_cursor` of the previous page.")
    ] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List experiments, newest first (one page; the next page's --cursor goes to stderr)."""
    with _handled(), _client(url, token) as client:
        page = client.list_experiments(
            status=status, tag=tag, batch_id=batch, sweep_id=sweep, limit=limit, cursor=cursor
        )
    if json_out:
        _print_json(page)
        return
    table = Table()
    for col in ("id", "name", "status", "epochs", "best @ epoch", "dataset", "group", "created"):
        table.add_column(col, justify="right" if col in ("id", "epochs") else "left")
    for e in page["items"]:
        group = f"batch {e['batch_id']}" if e.get("batch_id") else ""
        if e.get("sweep_id") is not None:
            group = f"sweep {e.get('sweep_id')}"
        table.add_row(
            str(e["id"]),
            _t(e["name"]),
            _status(e["status"]),
            f"{e['epochs_run']}/{e['progress']['epochs']}",
            _best(e),
            _t(e["dataset"]),
            _t(group),
            (e.get("created_at") or "")[:19].replace("T", " "),
        )
    _console().print(table)
    if page["next_cursor"]:
        _err(f"more: glidepath ls --cursor {page['next_cursor']} (same filters)")


def _detail_table(e: Experiment) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, RenderableType]] = [
        ("experiment", Text.assemble(str(e["id"]), " · ", _t(e["name"]))),
        ("status", _status(e["status"])),
        ("dataset", _t(e["dataset"])),
        ("progress", f"{e['epochs_run']}/{e['progress']['epochs']} epochs"),
        ("best", _best(e)),
    ]
    if e.get("batch_id"):
        rows.append(("batch", _t(e.get("batch_id"))))
    if e.get("sweep_id") is not None:
        rows.append(("sweep", _t(e.get("sweep_id"))))
    if e.get("kind") and e.get("kind") != "train":
        rows.append(("kind", _t(e.get("kind"))))
    for key in ("stop_reason", "error", "device", "worker", "steps_per_epoch"):
        value = e.get(key)
        if value not in (None, ""):
            rows.append((key.replace("_", " "), _t(value)))
    if e.get("split_sizes"):
        rows.append(("split", _t(_params(dict(e["split_sizes"] or {})))))
    if e.get("test_metrics"):
        metrics = {k: float(v) for k, v in (e["test_metrics"] or {}).items()}
        rows.append(("test", _t(_params(dict(metrics)))))
    if e.get("tags"):
        rows.append(("tags", _t(_params(dict(e["tags"])))))
    if e.get("cancel_requested") and e["status"] not in FINAL_STATUSES:
        rows.append(("cancel", "requested"))
    for key in ("created_at", "started_at", "finished_at"):
        value = e.get(key)
        if value:
            rows.append((key.split("_")[0], str(value)[:19].replace("T", " ")))
    for k, v in rows:
        table.add_row(k, v)
    return table


def _decisions_table(decisions: Sequence[Decision]) -> Table:
    table = Table(title="decisions", title_justify="left")
    for col in ("epoch", "kind", "lr", "reason"):
        table.add_column(col, justify="right" if col == "epoch" else "left")
    for d in decisions:
        lr = ""
        if d.get("old_lr") is not None and d.get("new_lr") is not None:
            lr = f"{_num(d['old_lr'], 3)} → {_num(d['new_lr'], 3)}"
        table.add_row(str(d["epoch"]), d["kind"], lr, _t(d["reason"]))
    return table


def show(
    experiment_id: Annotated[int, typer.Argument(help="Experiment id.", show_default=False)],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """One experiment: status, progress, best epoch and value, its decisions and its spec."""
    with _handled(), _client(url, token) as client:
        e = client.get_experiment(experiment_id)
        decisions = client.decisions(experiment_id)["decisions"]
    if json_out:
        _print_json({**e, "decisions": decisions})
        return
    console = _console()
    console.print(_detail_table(e))
    if decisions:
        console.print(_decisions_table(decisions))
    console.print(Text("spec", style="bold"))
    console.print(_t(yaml.safe_dump(e["spec"], sort_keys=False).rstrip()))


def cancel(
    ids: Annotated[list[int], typer.Argument(help="Experiment ids.", show_default=False)],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel experiments: queued ones at once, running ones at the next batch boundary."""
    code = EXIT_OK
    answers: list[Experiment] = []
    with _handled(), _client(url, token) as client:
        for i in ids:
            try:
                e = client.cancel(i)
            except ApiError as exc:
                if exc.is_unavailable:
                    raise
                _report(exc)
                code = code or exit_code_for(exc)
                continue
            answers.append(e)
            if json_out:
                continue
            if e["status"] == "cancelled":
                typer.echo(f"{i}: cancelled")
            elif e["status"] in FINAL_STATUSES:
                typer.echo(f"{i}: already {e['status']}; nothing to cancel")
            else:
                typer.echo(f"{i}: cancel requested; stops at the next batch boundary")
    if json_out:
        _print_json(answers)
    raise typer.Exit(code)


# -- sweep / batch / range-test ---------------------------------------------------------------

sweep_app = typer.Typer(help="Sweeps: show, list, cancel.", no_args_is_help=True)
batch_app = typer.Typer(help="Batches: show.", no_args_is_help=True)
range_test_app = typer.Typer(help="LR range tests: show.", no_args_is_help=True)

WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Follow until final (exit code as submit --wait).")
]


def _show_tracked(tracker: Tracker, wait: bool, interval: float, json_out: bool) -> None:
    console = _console()
    if wait:
        code = follow(tracker, interval, console, quiet=json_out)
        if json_out:
            _print_json(tracker.result())
        raise typer.Exit(code)
    tracker.poll()
    if json_out:
        _print_json(tracker.result())
    else:
        tracker.summary(console)


@sweep_app.command("show", epilog=EXIT_HELP)
def sweep_show(
    sweep_id: Annotated[int, typer.Argument(help="Sweep id.", show_default=False)],
    wait: WaitOpt = False,
    interval: IntervalOpt = 1.0,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A sweep: stage, each trial with its params and score, the leaderboard and the best."""
    with _handled(), _client(url, token) as client:
        _show_tracked(SweepTracker(client, sweep_id), wait, interval, json_out)


@sweep_app.command("ls", epilog=EXIT_HELP)
def sweep_ls(json_out: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """All sweeps."""
    with _handled(), _client(url, token) as client:
        sweeps = client.list_sweeps()
    if json_out:
        _print_json(sweeps)
        return
    table = Table()
    for col in ("id", "name", "strategy", "status", "stage", "runs", "created"):
        table.add_column(col, justify="right" if col in ("id", "stage") else "left")
    for s in sweeps:
        table.add_row(
            str(s["id"]),
            _t(s.get("name", "")),
            _t(s.get("strategy", "")),
            _status(s.get("status", "")),
            str(s.get("stage", "")),
            _t(_params(dict(s.get("counts") or {}))),
            str(s.get("created_at") or "")[:19].replace("T", " "),
        )
    _console().print(table)


@sweep_app.command("cancel", epilog=EXIT_HELP)
def sweep_cancel(
    sweep_id: Annotated[int, typer.Argument(help="Sweep id.", show_default=False)],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel a sweep and its unfinished experiments."""
    with _handled(), _client(url, token) as client:
        s = client.cancel_sweep(sweep_id)
    if json_out:
        _print_json(s)
    else:
        typer.echo(f"sweep {sweep_id}: {s.get('status', 'cancel requested')}")


@batch_app.command("show", epilog=EXIT_HELP)
def batch_show(
    batch_id: Annotated[str, typer.Argument(help="Batch id.", show_default=False)],
    wait: WaitOpt = False,
    interval: IntervalOpt = 1.0,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A batch's experiments and their statuses."""
    with _handled(), _client(url, token) as client:
        batch = client.get_batch(batch_id)
        title = f"batch {batch['batch_id']}" + (f" {batch['name']}" if batch.get("name") else "")
        tracker = ExperimentsTracker(client, batch["ids"], batch_id=batch_id, title=title)
        if json_out and not wait:
            _print_json(batch)
            return
        _show_tracked(tracker, wait, interval, json_out)


@range_test_app.command("show", epilog=EXIT_HELP)
def range_test_show(
    range_test_id: Annotated[int, typer.Argument(help="Range test id.", show_default=False)],
    wait: WaitOpt = False,
    interval: IntervalOpt = 1.0,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """An LR range test: steps run, the loss curve, the suggested LR and its rule."""
    with _handled(), _client(url, token) as client:
        _show_tracked(RangeTestTracker(client, range_test_id), wait, interval, json_out)


def register(app: typer.Typer) -> None:
    """Add the client commands to the `glidepath` app."""
    for fn, name in ((submit, "submit"), (watch, "watch"), (ls, "ls"), (show, "show")):
        app.command(name, rich_help_panel=PANEL, epilog=EXIT_HELP)(fn)
    app.command("cancel", rich_help_panel=PANEL, epilog=EXIT_HELP)(cancel)
    app.add_typer(sweep_app, name="sweep", rich_help_panel=PANEL)
    app.add_typer(batch_app, name="batch", rich_help_panel=PANEL)
    app.add_typer(range_test_app, name="range-test", rich_help_panel=PANEL)
