"""Rich output: the console, JSON, and the small formatters the tables share."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.client.types import EpochRow, Experiment
from service.training.status import ExperimentStatus

STATUS_STYLE = {
    ExperimentStatus.QUEUED: "dim",
    ExperimentStatus.RUNNING: "cyan",
    ExperimentStatus.WAITING: "blue",  # paused at a pruner's rung, its worker freed
    ExperimentStatus.SUCCEEDED: "green",
    ExperimentStatus.EARLY_STOPPED: "green",
    ExperimentStatus.DIVERGED: "red",
    ExperimentStatus.FAILED: "red",
    ExperimentStatus.CANCELLED: "yellow",
    ExperimentStatus.PRUNED: "magenta",  # stopped by its sweep's pruner: a result, not a failure
    # a sweep's or a batch's own statuses
    "finished": "green",
    "ready": "green",
}

# A sweep pruner's decision about a run.
DECISION_STYLE = {"continue": "green", "stop": "magenta"}


def new_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped output: wide tables rather than wrapped cells
    return console


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def num(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}g}"


# Learning rates in human output: three significant digits (a suggestion of
# 0.031622776601683794 reads 0.0316); --json keeps every digit.
LR_DIGITS = 3


def lr_str(v: float | None) -> str:
    return num(v, LR_DIGITS)


def epoch_parts(r: EpochRow) -> list[str]:
    """An epoch row's LR and metrics, one `name value` each: `lr 0.0125`, `train_loss 0.03`,
    `val_loss 0.152`, then `val_accuracy` (or `val_mae` for regression)."""
    mae = r.get("val_mae")
    if mae is not None:
        last = f"val_mae {num(mae)}"
    else:
        last = f"val_accuracy {num(r.get('val_accuracy'))}"
    return [
        f"lr {lr_str(r['lr'])}",
        f"train_loss {num(r['train_loss'])}",
        f"val_loss {num(r['val_loss'])}",
        last,
    ]


def best_at(exp: Experiment) -> str:
    """An experiment's best value, the metric it is the best of, and its epoch:
    `val_loss 0.1445 @ 10`."""
    if exp.get("best_value") is None:
        return "–"
    best = exp.get("best")
    metric = f"{best['metric']} " if best else ""  # an older API names none
    return f"{metric}{num(exp['best_value'])} @ {exp.get('best_epoch')}"


def best_line(exp: Experiment) -> str:
    """`show`'s best: `val_loss 0.1445 at epoch 10 (lowest)`."""
    best = exp.get("best")
    if not best:
        return best_at(exp)
    order = "highest" if best["mode"] == "max" else "lowest"
    return f"{best['metric']} {num(best['value'])} at epoch {best['epoch']} ({order})"


def epochs_of(exp: Experiment) -> str:
    """Epochs run of the planned: `3/10`."""
    return f"{exp['epochs_run']}/{exp['progress']['epochs']}"


def params_str(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={num(v) if isinstance(v, float) else v}" for k, v in params.items())


def timestamp(value: object) -> str:
    """An ISO time to the second, with a space for the `T`; "" for none."""
    return str(value or "")[:19].replace("T", " ")


def status_text(s: str) -> Text:
    return Text(s, style=STATUS_STYLE.get(s, ""))


def plain(s: object) -> Text:
    """User data as plain text (a name with brackets is not Rich markup)."""
    return Text("" if s is None else str(s))


def columns_table(
    columns: Sequence[str], right: Collection[str] = (), title: str | None = None
) -> Table:
    """A table with these columns: those in `right` right-justified, the others left."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    return table


def fields_table() -> Table:
    """Name and value, one pair a row: no header, no borders, the names bold."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    return table
