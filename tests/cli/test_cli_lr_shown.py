"""Learning rates as people read them in the CLI's human output: three significant digits (a
suggestion of 0.031622776601683794 reads 0.0316), and `submit --wait`'s progress showing each
run's current LR beside its epoch and metrics. --json keeps every digit (test_cli_e2e.py)."""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType

from service.cli.render import epoch_parts
from service.cli.tables import decisions_table, range_test_summary
from service.cli.trackers import View, _exp_row, _progress_table
from service.client.types import EpochRow, Experiment, RangeTest

SQRT_TENTH = 0.031622776601683794  # 10 ** -1.5, a range test's typical suggestion


def text(*parts: RenderableType) -> str:
    console = Console(width=200, record=True, color_system=None)
    for part in parts:
        console.print(part)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def test_a_suggested_lr_prints_with_three_significant_digits() -> None:
    r: dict[str, Any] = {
        "id": 7,
        "status": "succeeded",
        "steps": 100,
        "steps_run": 100,
        "points": [
            {"step": 0, "lr": 1.0000000000000001e-05, "loss": 2.3, "smoothed_loss": 2.3},
            {"step": 99, "lr": 9.999999999999998, "loss": 9.0, "smoothed_loss": 4.0},
        ],
        "suggested_lr": SQRT_TENTH,
        "min_loss_lr": 0.31622776601683794,
        "rule": "a tenth of the LR at its minimum",
    }
    out = text(*range_test_summary(RangeTest(**r)))  # type: ignore[typeddict-item]
    assert "suggested lr     0.0316\n" in out
    assert "lr 0.316 (filtered batch losses)" in out
    assert "lr tried         1e-05 → 10\n" in out
    assert "0.03162" not in out


def test_a_decision_shows_old_and_new_lr_rounded() -> None:
    d: dict[str, Any] = {"epoch": 4, "kind": "reduce_lr", "old_lr": 0.1,
                         "new_lr": 0.1 * SQRT_TENTH, "reason": "plateau"}  # fmt: skip
    assert "0.1 → 0.00316" in text(decisions_table([d]))  # type: ignore[list-item]


ROW: EpochRow = {
    "epoch": 3,
    "lr": 0.0125,
    "train_loss": 0.031234,
    "val_loss": 0.15237,
    "val_accuracy": 0.95321,
    "duration_s": 0.1,
    "decision": None,
}


def test_an_epoch_reads_lr_then_losses_then_accuracy_or_mae() -> None:
    assert epoch_parts(ROW) == [
        "lr 0.0125",
        "train_loss 0.03123",
        "val_loss 0.1524",
        "val_accuracy 0.9532",
    ]
    regression: EpochRow = {**ROW, "val_accuracy": None, "val_mae": 12.5, "lr": SQRT_TENTH}
    assert epoch_parts(regression)[0] == "lr 0.0316"
    assert epoch_parts(regression)[-1] == "val_mae 12.5"


def test_wait_progress_shows_the_current_lr_with_epoch_and_metrics() -> None:
    e: dict[str, Any] = {
        "id": 12,
        "name": "digits-sgd",
        "status": "running",
        "epochs_run": 3,
        "progress": {"epochs_run": 3, "epochs": 10, "fraction": 0.3},
        "best_value": 0.15237,
        "best_epoch": 3,
        "best": {"metric": "val_loss", "mode": "min", "value": 0.15237, "epoch": 3},
    }
    running = _exp_row(Experiment(**e), ROW)  # type: ignore[typeddict-item]
    queued = _exp_row(Experiment(**{**e, "id": 13, "status": "queued", "epochs_run": 0}), None)  # type: ignore[typeddict-item]
    out = text(_progress_table(View("", [running, queued], final=False)))
    header = next(line for line in out.splitlines() if "progress" in line)
    assert "last epoch" in header
    line = next(line for line in out.splitlines() if "digits-sgd" in line and "running" in line)
    assert "3/10" in line and "val_loss 0.1524 @ 3" in line
    assert "lr 0.0125 · train_loss 0.03123 · val_loss 0.1524 · val_accuracy 0.9532" in line
