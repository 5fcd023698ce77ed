"""The `sweep`, `batch` and `range-test` sub-commands."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.options import (
    EXIT_HELP,
    IntervalOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    WaitOpt,
)
from service.cli.render import new_console, print_json
from service.cli.session import connected
from service.cli.tables import range_tests_table, sweeps_table
from service.cli.trackers import (
    ExperimentsTracker,
    RangeTestTracker,
    SweepTracker,
    Tracker,
    follow_and_exit,
)

sweep_app = typer.Typer(help="Sweeps: show, list, cancel.", no_args_is_help=True)
batch_app = typer.Typer(help="Batches: show.", no_args_is_help=True)
range_test_app = typer.Typer(help="LR range tests: show, list.", no_args_is_help=True)


def _show_tracked(tracker: Tracker, wait: bool, interval: float, json_out: bool) -> None:
    console = new_console()
    if wait:
        follow_and_exit(tracker, interval, console, json_out)
    tracker.poll()
    if json_out:
        print_json(tracker.result())
    else:
        tracker.summary(console)


def _decisions_limit(value: str) -> int | None:
    """`--decisions`: a count, or `all` (None)."""
    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise typer.BadParameter(f"{value!r} is neither a count (0 or more) nor 'all'")
    return n


@sweep_app.command("show", epilog=EXIT_HELP)
def sweep_show(
    sweep_id: Annotated[int, typer.Argument(help="Sweep id.", show_default=False)],
    decisions: Annotated[
        str,
        typer.Option(
            "--decisions",
            "-d",
            metavar="N|all",
            help="A pruned sweep: how many of its pruner's decisions to list, the last ones "
            "(`all`: every one). --json always has every one.",
        ),
    ] = "20",
    wait: WaitOpt = False,
    interval: IntervalOpt = 1.0,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """A sweep: stage, each trial with its params and score, the leaderboard and the best; with
    a pruner, its rule, the rungs, the runs it pruned, the epochs saved and its decisions."""
    limit = _decisions_limit(decisions)
    with connected(url, token) as client:
        _show_tracked(SweepTracker(client, sweep_id, limit), wait, interval, json_out)


@sweep_app.command("ls", epilog=EXIT_HELP)
def sweep_ls(json_out: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """All sweeps."""
    with connected(url, token) as client:
        sweeps = client.list_sweeps()
    if json_out:
        print_json(sweeps)
        return
    new_console().print(sweeps_table(sweeps))


@sweep_app.command("cancel", epilog=EXIT_HELP)
def sweep_cancel(
    sweep_id: Annotated[int, typer.Argument(help="Sweep id.", show_default=False)],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel a sweep and its unfinished experiments."""
    with connected(url, token) as client:
        s = client.cancel_sweep(sweep_id)
    if json_out:
        print_json(s)
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
    with connected(url, token) as client:
        batch = client.get_batch(batch_id)
        title = f"batch {batch['batch_id']}" + (f" {batch['name']}" if batch.get("name") else "")
        tracker = ExperimentsTracker(client, batch["ids"], batch_id=batch_id, title=title)
        if json_out and not wait:
            print_json(batch)
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
    with connected(url, token) as client:
        _show_tracked(RangeTestTracker(client, range_test_id), wait, interval, json_out)


@range_test_app.command("ls", epilog=EXIT_HELP)
def range_test_ls(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", help="Only tests in this status; repeat for several."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """LR range tests, newest first: status, data, LR span, steps run and the suggested LR."""
    with connected(url, token) as client:
        tests = client.list_range_tests(status or (), limit)
    if json_out:
        print_json(tests)
        return
    new_console().print(range_tests_table(tests))
