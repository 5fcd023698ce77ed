"""`glidepath preview FILE`: a spec file's LR schedule, epoch by epoch, without training, from
POST /v1/schedules/preview (the worker's own schedule walk and decisions): composed schedules,
lambdas and plateau decisions over given metric values included."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli.options import EXIT_BAD_INPUT, JsonOpt, TokenOpt, UrlOpt
from service.cli.render import new_console, num, plain, print_json
from service.cli.session import connected, err, handled
from service.client import FileError, load_submission

# What of a spec shapes its LR: the rest (dataset, model, ...) does not enter the preview.
SCHEDULE_FIELDS = ("base_lr", "scheduler", "warmup", "solver", "early_stopping", "epochs")
SPARK = "▁▂▃▄▅▆▇█"


def preview_body(spec: dict[str, Any], steps_per_epoch: int,
                 monitor_values: list[float | None] | None) -> dict[str, Any]:  # fmt: skip
    body = {k: spec[k] for k in SCHEDULE_FIELDS if spec.get(k) is not None}
    body.setdefault("epochs", 20)  # the spec's default
    body.setdefault("base_lr", 0.01)
    body["steps_per_epoch"] = steps_per_epoch
    if monitor_values is not None:
        body["monitor_values"] = monitor_values
    return body


def parse_monitor(text: str) -> list[float | None]:
    """--monitor's comma-separated values. `nan`, `inf`, `-inf` (or past float's range) and
    `null` are null: what the API takes for a non-finite metric, a diverged epoch (JSON has no
    NaN to send). Raises ValueError naming the value that is not a number."""
    values: list[float | None] = []
    for i, part in enumerate(text.split(","), start=1):
        word = part.strip()
        if not word:
            continue
        if word.lower() == "null":
            values.append(None)
            continue
        try:
            x = float(word)
        except ValueError:
            raise ValueError(f"value {i}, {word!r}, is not a number") from None
        values.append(x if math.isfinite(x) else None)
    return values


def sparkline(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[round((v - lo) / span * (len(SPARK) - 1))] for v in values)


def preview(
    file: Annotated[str, typer.Argument(help="YAML or JSON experiment spec (`-`: stdin).",
                                        show_default=False)],
    steps_per_epoch: Annotated[int, typer.Option(
        "--steps-per-epoch", min=1,
        help="Batches per epoch, what per-step schedules and warmups count (a run's is "
             "ceil(train rows / batch_size); `glidepath show ID` prints it).")] = 1,
    monitor: Annotated[str | None, typer.Option(
        "--monitor", help="Comma-separated values of the monitored metric, one per epoch: the "
                          "plateau and early-stopping decisions taken over them (nan, inf or "
                          "null: a non-finite value, where the run diverges).")] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:  # fmt: skip
    """The LR a spec's schedule gives each epoch, and the decisions over --monitor values."""
    with handled():
        sub = load_submission(file)
        if sub.kind != "experiment":
            raise FileError(f"{file}: preview takes one experiment spec, not a {sub.kind}")
    values = None
    if monitor is not None:
        try:
            values = parse_monitor(monitor)
        except ValueError as exc:
            err(f"error: --monitor: {exc} (comma-separated numbers; nan, inf or null: diverged)")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    with connected(url, token) as client:
        out = client.preview_schedule(preview_body(sub.body, steps_per_epoch, values))
    if json_out:
        print_json(out)
        return
    console = new_console()
    decided = {d["epoch"]: d["reason"] for d in out["decisions"]}
    # plain(): a name such as "[/x]" is text, not Rich markup (that raised MarkupError).
    table = Table("epoch", "lr", "decision", title=plain(sub.body.get("name") or file))
    for epoch, lr in enumerate(out["lr"], start=1):
        table.add_row(str(epoch), num(lr, 6), decided.get(epoch, ""))
    console.print(table)
    console.print(f"lr {sparkline(out['lr'])}  {num(min(out['lr']), 4)} … {num(max(out['lr']), 4)}")
