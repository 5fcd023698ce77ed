"""Following runs until they are final (`submit --wait`, `sweep`/`batch`/`range-test show
--wait`): a tracker per kind of submission, the polling loop that rides out a service outage,
and `follow`, which shows the progress live or line by line and then the tracker's summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from service.cli.options import EXIT_OK, EXIT_RUN_FAILED
from service.cli.render import (
    best_at,
    epoch_parts,
    lr_str,
    num,
    params_str,
    plain,
    print_json,
    status_text,
)
from service.cli.session import err
from service.cli.tables import (
    experiments_table,
    pruning_tables,
    range_test_summary,
    sweep_tables,
    sweep_title,
)
from service.client import ApiError, Client
from service.client.types import (
    FINAL_STATUSES,
    OK_STATUSES,
    EpochRow,
    Experiment,
    RangePoint,
    RangeTest,
    Sweep,
    SweepDecision,
    sweep_run_id,
)
from service.training.status import ExperimentStatus

# While following runs, a service that stops answering is waited for this long before exit 3.
OUTAGE_GRACE_S = 60.0
# The first wait between polls, doubled up to the interval asked for.
FIRST_POLL_S = 0.05
SWEEP_FINAL = frozenset({"finished", "cancelled"})


def poll_until(
    poll: Callable[[], bool],
    interval: float,
    on_outage: Callable[[ApiError], None] = lambda _: None,
) -> None:
    """Call `poll` until it returns True: at once, then after 0.05, 0.1, 0.2 … seconds, up to
    every `interval` seconds. A run that ends in under a second is seen ended soon after (with
    every poll a second apart, `submit --wait` on a 0.8 s run returned 1-2 s after the POST),
    a long one is polled as often as asked. A service that stops answering (after the client's
    own retries) is waited for up to OUTAGE_GRACE_S."""
    down_since: float | None = None
    delay = min(interval, FIRST_POLL_S)
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
        time.sleep(delay)
        delay = min(interval, delay * 2)


def still_trying(exc: ApiError) -> None:
    """`poll_until`'s `on_outage` while the user watches."""
    err(f"service unavailable, still trying: {exc}")


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
    latest: str = ""  # the last epoch's LR and metrics: `lr 0.0125 · val_loss 0.152 · …`


@dataclass
class View:
    title: str
    rows: list[Row]
    final: bool
    unit: str = "epochs"
    metric: str | None = None  # what the rows' `best` is the best of, when they do not say


class Tracker(Protocol):
    def poll(self) -> View: ...
    def summary(self, console: Console) -> None: ...
    def exit_code(self) -> int: ...
    def result(self) -> Any: ...


def _exp_row(e: Experiment, latest: EpochRow | None) -> Row:
    return Row(
        e["id"],
        e["name"],
        e["status"],
        e["epochs_run"],
        e["progress"]["epochs"],
        best_at(e),
        latest=" · ".join(epoch_parts(latest)) if latest else "",
    )


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
        self.latest: dict[int, EpochRow] = {}  # each run's last epoch row read
        self.seen_live: set[int] = set()  # runs seen queued, running or waiting

    def poll(self) -> View:
        if self.batch_id is not None:
            # A page of 500 per request, not a request per run. The batch is what it lists: a
            # run deleted (once ended) has left it, as its event stream and GET /v1/batches
            # say, and a batch with none left has ended.
            self.exps = {
                e["id"]: e
                for e in self.client.iter_experiments(batch_id=self.batch_id, page_size=500)
            }
        else:
            for i in self.ids:
                if i not in self.exps or self.exps[i]["status"] not in FINAL_STATUSES:
                    self.exps[i] = self.client.get_experiment(i)
        exps = self.ordered()
        for e in exps:
            self._read_latest(e)
        ended = all(e["status"] in FINAL_STATUSES for e in exps)
        final = ended and (bool(exps) or self.batch_id is not None)
        return View(self.title, [_exp_row(e, self.latest.get(e["id"])) for e in exps], final)

    def _read_latest(self, e: Experiment) -> None:
        """The run's newest epoch row (its LR and metrics), read once per new epoch of a run
        that is live, or that ended while followed: a run seen only ended (`batch show` of an
        old batch) costs no request, and a batch's requests grow with its running runs."""
        live = e["status"] not in FINAL_STATUSES
        if live:
            self.seen_live.add(e["id"])
        elif e["id"] not in self.seen_live:
            return
        known = self.latest.get(e["id"])
        if e["epochs_run"] < 1 or (known is not None and known["epoch"] >= e["epochs_run"]):
            return
        rows = self.client.metrics(e["id"], after_epoch=e["epochs_run"] - 1, limit=1)["epochs"]
        if rows:
            self.latest[e["id"]] = rows[-1]

    def ordered(self) -> list[Experiment]:
        return [self.exps[i] for i in sorted(self.exps)]

    def summary(self, console: Console) -> None:
        if self.title:
            console.print(plain(self.title))
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


class SweepTracker:
    """A sweep; with a pruner, its summary adds the pruning (rule, rungs, epochs saved) and the
    last `decisions` of its decisions (None: all), and its result every decision."""

    def __init__(self, client: Client, sweep_id: int, decisions: int | None = 20) -> None:
        self.client = client
        self.sweep_id = sweep_id
        self.sweep: Sweep | None = None
        self.limit = decisions

    def decisions(self) -> list[SweepDecision]:
        """The pruner's decisions, asked for only when the sweep has a pruner (not while
        following: once, for the summary or the result)."""
        if self.sweep is None or not self.sweep.get("pruning"):
            return []
        return self.client.sweep_decisions(self.sweep_id)

    def poll(self) -> View:
        s = self.sweep = self.client.get_sweep(self.sweep_id)
        rows = [
            Row(
                sweep_run_id(e),
                e["name"],
                e["status"],
                e.get("epochs_run", 0),
                e.get("epochs", 0),
                num(e.get("score")),
                e.get("stage"),
                params_str(e.get("params") or {}),
            )
            for e in s.get("experiments") or []
        ]
        return View(sweep_title(s), rows, s["status"] in SWEEP_FINAL, metric=s.get("metric"))

    def summary(self, console: Console) -> None:
        if self.sweep is None:
            return
        for part in sweep_tables(self.sweep):
            console.print(part)
        pruning = self.sweep.get("pruning")
        if pruning:
            for part in pruning_tables(pruning, self.decisions(), self.limit):
                console.print(part)

    def exit_code(self) -> int:
        """Diverged trials are results of a sweep, not failures: 1 only for a cancelled sweep,
        a failed or cancelled trial, or no best trial."""
        s = self.sweep
        if s is None or s["status"] == "cancelled" or not s.get("best"):
            return EXIT_RUN_FAILED
        bad = {ExperimentStatus.FAILED, ExperimentStatus.CANCELLED}
        if any(e["status"] in bad for e in s.get("experiments") or []):
            return EXIT_RUN_FAILED
        return EXIT_OK

    def result(self) -> Any:
        """The sweep as the API gives it, with `decisions`: every one, in the order taken."""
        if self.sweep is None:
            return None
        return {**self.sweep, "decisions": self.decisions()}


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
        best = f"lr {lr_str(last['lr'])}" if last else "–"
        if r.get("suggested_lr") is not None:
            best = f"suggested {lr_str(r.get('suggested_lr'))}"
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
    table.add_column(f"best {view.metric}" if view.metric else "best")
    latest = any(r.latest for r in view.rows)
    if latest:
        table.add_column("last epoch")
    for r in view.rows:
        bar = ProgressBar(total=max(r.total, 1), completed=min(r.done, max(r.total, 1)), width=24)
        cells: list[RenderableType] = [str(r.id)]
        cells += [str(r.stage or ""), plain(r.params)] if sweep else [plain(r.name)]
        cells += [status_text(r.status), bar, f"{r.done}/{r.total}", r.best]
        if latest:
            cells.append(plain(r.latest))
        table.add_row(*cells)
    if not view.rows:
        table.add_row("", Text("waiting for the first run…", style="dim"))
    return Group(plain(view.title), table) if view.title else table


def follow(tracker: Tracker, interval: float, console: Console, quiet: bool = False) -> int:
    """Poll `tracker` until its runs are final: a live table on a terminal, else one line per
    status change; then the summary. Returns the exit code."""
    if quiet:
        poll_until(lambda: tracker.poll().final, interval)
        return tracker.exit_code()
    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=True) as live:

            def poll_live() -> bool:
                view = tracker.poll()
                live.update(_progress_table(view))
                return view.final

            poll_until(poll_live, interval, still_trying)
    else:
        seen: dict[int, tuple[str, int | None]] = {}
        titles: list[str] = []

        def poll_lines() -> bool:
            view = tracker.poll()
            if view.title and not view.final and (not titles or titles[-1] != view.title):
                titles.append(view.title)  # the summary repeats the final one
                console.print(plain(view.title))
            for r in view.rows:
                if seen.get(r.id) != (r.status, r.stage):
                    seen[r.id] = (r.status, r.stage)
                    what = r.name if r.stage is None else f"stage {r.stage} {r.params}"
                    line = f"{r.id} {what}: {r.status}"
                    if r.status in FINAL_STATUSES:
                        metric = f"{view.metric} " if view.metric else ""
                        line += f" · {r.done}/{r.total} {view.unit} · best {metric}{r.best}"
                        if r.latest:
                            line += f" · last epoch: {r.latest}"
                    console.print(plain(line))
            return view.final

        poll_until(poll_lines, interval, still_trying)
    tracker.summary(console)
    return tracker.exit_code()


def follow_and_exit(
    tracker: Tracker, interval: float, console: Console, json_out: bool
) -> NoReturn:
    """`--wait`: follow to the end (with --json quietly, then the final state as JSON) and exit
    with the tracker's code."""
    code = follow(tracker, interval, console, quiet=json_out)
    if json_out:
        print_json(tracker.result())
    raise typer.Exit(code)
