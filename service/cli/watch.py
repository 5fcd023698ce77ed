"""`glidepath watch`: follow experiments epoch by epoch, as live panels on a terminal, else as
lines (or JSON lines), then the finals. Each run is followed over its event stream (GET
/v1/experiments/{id}/events: every epoch as soon as it is stored); a run whose stream fails
(an older server, a proxy that buffers) is polled instead."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from service.cli.options import EXIT_OK, EXIT_RUN_FAILED, IntervalOpt, TokenOpt, UrlOpt
from service.cli.render import epoch_parts, lr_str, new_console, num, plain, status_text
from service.cli.session import connected
from service.cli.tables import experiments_table
from service.cli.trackers import poll_until, still_trying
from service.client import Client
from service.client.sse import Event
from service.client.types import FINAL_STATUSES, OK_STATUSES, Decision, EpochRow

PAGE = 1000  # epoch rows per metrics request


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
    polled: bool = False  # its event stream failed: polled instead


def _read(client: Client, w: Watched) -> tuple[list[EpochRow], list[Decision], str]:
    """The rows and decisions new since the last read, and the status now; `w.status` is left
    for the caller to update."""
    new: list[EpochRow] = []
    while True:
        page = client.metrics(w.id, after_epoch=w.after, limit=PAGE)
        new += page["epochs"]
        w.after = page["next_after_epoch"]
        status = page["status"]
        if len(page["epochs"]) < PAGE:
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
    return new, fresh, status


def _stream(client: Client, w: Watched, out: queue.Queue[tuple[Watched, Event | None]]) -> None:
    """A thread: the run's events into `out`; None when its stream failed (poll it instead)."""
    try:
        for event in client.events(w.id):
            out.put((w, event))
    except Exception:  # unreachable, refused, not an event stream: whatever it is, poll instead
        out.put((w, None))


def _apply(w: Watched, event: Event) -> tuple[list[EpochRow], list[Decision], str]:
    """An event as a read's (new rows, fresh decisions, status). An epoch at or before the last
    one is a rewrite (the run resumed from an earlier checkpoint): the rows and decisions from
    it on are replaced."""
    data: Any = event.json()
    if event.event == "epoch":
        row: EpochRow = data
        if row["epoch"] <= w.after:
            w.rows = [r for r in w.rows if r["epoch"] < row["epoch"]]
            w.decisions = [d for d in w.decisions if d["epoch"] < row["epoch"]]
            w.seen = {(e, k) for e, k in w.seen if e < row["epoch"]}
        w.rows.append(row)
        w.after = row["epoch"]
        return [row], [], w.status
    if event.event == "decision":
        decision: Decision = data
        key = (decision["epoch"], decision["kind"])
        if key in w.seen:
            return [], [], w.status
        w.seen.add(key)
        w.decisions.append(decision)
        return [], [decision], w.status
    if event.event == "status":
        w.closed = data["status"] in FINAL_STATUSES  # the stream ends after it
        return [], [], str(data["status"])
    return [], [], w.status


# -- lines (not a terminal, or --json) --------------------------------------------------------


def _metric_key(rows: Sequence[EpochRow]) -> str:
    for r in rows:
        if r.get("val_mae") is not None:
            return "val_mae"
    return "val_accuracy"


def _metric(r: EpochRow, key: str) -> float | None:
    return r.get("val_mae") if key == "val_mae" else r.get("val_accuracy")


def _epoch_line(w: Watched, r: EpochRow) -> str:
    parts = [f"{w.id} epoch {r['epoch']:>3}/{w.epochs}", *epoch_parts(r)]
    if r.get("decision"):
        parts.append(f"[{r['decision']}]")
    return "  ".join(parts)


class _Lines:
    """One line (or JSON line) per epoch, decision and status change."""

    def __init__(self, console: Console, json_out: bool) -> None:
        self.console = console
        self.json_out = json_out

    def status(self, w: Watched, status: str) -> None:
        if self.json_out:
            typer.echo(json.dumps({"type": "status", "experiment_id": w.id, "status": status}))
        else:
            self.console.print(plain(f"{w.id} {w.name}: {status}"))

    def epoch(self, w: Watched, r: EpochRow) -> None:
        if self.json_out:
            typer.echo(json.dumps({"type": "epoch", "experiment_id": w.id, **r}))
        else:
            self.console.print(plain(_epoch_line(w, r)))

    def decision(self, w: Watched, d: Decision) -> None:
        if self.json_out:
            typer.echo(json.dumps({"type": "decision", "experiment_id": w.id, **d}))
        else:
            self.console.print(plain(f"{w.id} epoch {d['epoch']} {d['kind']}: {d['reason']}"))

    def read(self, w: Watched, new: list[EpochRow], fresh: list[Decision], status: str) -> None:
        """What one read brought: each decision right after its epoch's row."""
        for r in new:
            self.epoch(w, r)
            for d in [d for d in fresh if d["epoch"] == r["epoch"]]:
                self.decision(w, d)
        shown = {r["epoch"] for r in new}
        for d in fresh:
            if d["epoch"] not in shown:
                self.decision(w, d)
        if status != w.status:
            self.status(w, status)


# -- live panels (a terminal) -----------------------------------------------------------------


def _watch_panel(w: Watched, keep: int) -> Panel:
    key = _metric_key(w.rows)
    table = Table(expand=False, box=None, header_style="bold")
    for col in ("epoch", "lr", "train_loss", "val_loss", key, "s", "decision"):
        table.add_column(col, justify="left" if col == "decision" else "right")
    for r in w.rows[-keep:]:
        table.add_row(
            str(r["epoch"]),
            lr_str(r["lr"]),
            num(r["train_loss"]),
            num(r["val_loss"]),
            num(_metric(r, key)),
            f"{r['duration_s']:.2f}",
            Text(r.get("decision") or "", style="yellow"),
        )
    parts: list[RenderableType] = [table]
    for d in w.decisions[-5:]:
        parts.append(Text(f"epoch {d['epoch']} {d['kind']}: {d['reason']}", style="yellow"))
    title = Text.assemble(
        (f"experiment {w.id} ", "bold"),
        plain(w.name),
        " · ",
        status_text(w.status),
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
    console = new_console()
    with connected(url, token) as client:
        watched = []
        for i in dict.fromkeys(ids):
            e = client.get_experiment(i)
            watched.append(Watched(i, e["name"], e["progress"]["epochs"], e["status"]))
        lines = _Lines(console, json_out) if not console.is_terminal or json_out else None
        events: queue.Queue[tuple[Watched, Event | None]] = queue.Queue()
        for w in watched:
            if w.status in FINAL_STATUSES:
                w.polled = True  # ended already: one read of its rows
            else:
                threading.Thread(target=_stream, args=(client, w, events), daemon=True).start()

        def poll() -> bool:
            """What the streams brought (waiting up to `interval` for it), then a read of each
            run that is polled."""
            try:
                arrived = [events.get(timeout=interval)]
                while not events.empty():
                    arrived.append(events.get_nowait())
            except queue.Empty:
                arrived = []
            for w, event in arrived:
                if event is None:
                    w.polled = True
                    continue
                new, fresh, status = _apply(w, event)
                if lines is not None:
                    lines.read(w, new, fresh, status)
                w.status = status
            for w in watched:
                if w.polled and not w.closed:
                    new, fresh, status = _read(client, w)
                    if lines is not None:
                        lines.read(w, new, fresh, status)
                    w.status = status
            return all(w.closed for w in watched)

        if lines is not None:
            for w in watched:
                lines.status(w, w.status)
            poll_until(poll, 0, still_trying)  # poll() waits `interval` for events
        else:
            with Live(console=console, refresh_per_second=4) as live:

                def poll_live() -> bool:
                    done = poll()
                    keep = max(4, console.height // len(watched) - 8)
                    live.update(Group(*(_watch_panel(w, keep) for w in watched)))
                    return done

                poll_until(poll_live, 0, still_trying)
        finals = [client.get_experiment(w.id) for w in watched]
        if json_out:
            for e in finals:
                typer.echo(json.dumps({"type": "final", "experiment_id": e["id"], **e}))
        else:
            console.print(experiments_table(finals))
        ok = all(e["status"] in OK_STATUSES for e in finals)
        raise typer.Exit(EXIT_OK if ok else EXIT_RUN_FAILED)
