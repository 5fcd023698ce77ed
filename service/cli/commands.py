"""The top-level client commands: submit, ls, show, cancel, download, delete (`watch` is in
watch.py)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.text import Text

from service.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    IntervalOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
)
from service.cli.render import new_console, plain, print_json
from service.cli.session import connected, err, exit_code_for, handled, report
from service.cli.tables import (
    attempts_table,
    decisions_table,
    experiment_table,
    experiments_page_table,
    lr_heading,
    lr_table,
    size_str,
    workers_table,
)
from service.cli.trackers import (
    ExperimentsTracker,
    RangeTestTracker,
    SweepTracker,
    Tracker,
    follow_and_exit,
)
from service.client import ApiError, Client, Submission, load_submission
from service.client.types import FINAL_STATUSES, Experiment
from service.training.status import ExperimentStatus

T = TypeVar("T")


# -- submit -----------------------------------------------------------------------------------


def _create(client: Client, sub: Submission, idempotency_key: str | None) -> tuple[Any, Tracker]:
    """Send the submission: the API's answer, and a tracker of what it queued."""
    created: Any
    if sub.kind == "experiment":
        created = client.create_experiment(sub.body, idempotency_key)
        return created, ExperimentsTracker(client, [created["id"]])
    if sub.kind == "batch":
        created = client.create_batch(sub.body, idempotency_key)
        title = f"batch {created['batch_id']}"
        return created, ExperimentsTracker(
            client, created["ids"], batch_id=created["batch_id"], title=title
        )
    if sub.kind == "sweep":
        created = client.create_sweep(sub.body, idempotency_key)
        return created, SweepTracker(client, created["sweep_id"])
    created = client.create_range_test(sub.body, idempotency_key)
    return created, RangeTestTracker(client, created["id"])


def _announce(sub: Submission, created: Any, console: Console) -> None:
    if sub.kind == "experiment":
        console.print(plain(f"queued experiment {created['id']} ({created.get('name') or '-'})"))
    elif sub.kind == "batch":
        ids = ", ".join(map(str, created["ids"]))
        console.print(
            plain(f"queued batch {created['batch_id']}: {len(created['ids'])} experiments: {ids}")
        )
    elif sub.kind == "sweep":
        ids = ", ".join(map(str, created["ids"]))
        console.print(plain(f"queued sweep {created['sweep_id']}: experiments {ids}"))
    else:
        console.print(plain(f"queued LR range test {created['id']}"))


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
    with handled():
        sub = load_submission(file)
    console = new_console()
    with connected(url, token) as client:
        created, tracker = _create(client, sub, idempotency_key)
        if json_out and not wait:
            print_json(created)
            return
        if not json_out:
            _announce(sub, created, console)
        if wait:
            follow_and_exit(tracker, interval, console, json_out)


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
    with connected(url, token) as client:
        page = client.list_experiments(
            status=status, tag=tag, batch_id=batch, sweep_id=sweep, limit=limit, cursor=cursor
        )
    if json_out:
        print_json(page)
        return
    new_console().print(experiments_page_table(page["items"]))
    if page["next_cursor"]:
        err(f"more: glidepath ls --cursor {page['next_cursor']} (same filters)")


def show(
    experiment_id: Annotated[int, typer.Argument(help="Experiment id.", show_default=False)],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """One experiment: status, progress, best epoch and value, its model, its attempts (worker,
    start, end, outcome, resumed from epoch), its decisions and its spec."""
    with connected(url, token) as client:
        e = client.get_experiment(experiment_id)
        decisions = client.decisions(experiment_id)["decisions"]
    if json_out:
        print_json({**e, "decisions": decisions})
        return
    console = new_console()
    console.print(experiment_table(e))
    if e.get("attempts"):
        console.print(attempts_table(e.get("attempts") or []))
    if decisions:
        console.print(decisions_table(decisions))
    console.print(Text("spec", style="bold"))
    console.print(plain(yaml.safe_dump(e["spec"], sort_keys=False).rstrip()))


TABLE_POINTS = 100  # per step, a table shows at most this many points unless told otherwise


class Resolution(StrEnum):
    EPOCH = "epoch"
    STEP = "step"


def lr(
    experiment_id: Annotated[int, typer.Argument(help="Experiment id.", show_default=False)],
    resolution: Annotated[
        Resolution,
        typer.Option("--resolution", "-r",
                     help="epoch: each epoch's LR with its min and max over the epoch's steps; "
                     "step: every optimizer step's."),
    ] = Resolution.EPOCH,
    max_points: Annotated[
        int | None,
        typer.Option("--max-points", "-n", min=1, max=1_000_000,
                     help="Downsample to at most N points: the first and last, and each "
                     f"bucket's min and max. Default: all (a per-step table: {TABLE_POINTS})."),
    ] = None,
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:  # fmt: skip
    """The LR a run used, per epoch or per optimizer step: recorded, or (per step, for
    schedules that do not depend on data) computed by the worker's own schedule code."""
    if max_points is None and resolution == Resolution.STEP and not json_out:
        max_points = TABLE_POINTS
    with connected(url, token) as client:
        trace = client.lr(experiment_id, str(resolution), max_points)
    if json_out:
        print_json(trace)
        return
    console = new_console()
    console.print(plain(lr_heading(trace)))
    console.print(lr_table(trace))


def workers(
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """The worker registry: each worker's state, devices, plugins (with package versions) and
    the run it holds."""
    with connected(url, token) as client:
        found = client.workers()
    if json_out:
        print_json(found)
        return
    new_console().print(workers_table(found))
    errors = {f"{w['id']} {k}": v for w in found for k, v in w["plugins"].get("errors", {}).items()}
    for where, why in errors.items():
        err(f"not offered: {where}: {why}")


def each_id(ids: list[int], call: Callable[[int], T], done: Callable[[int, T], None]) -> int:
    """`call` for each id, then `done` with its answer, as it goes. An id the API refuses (404,
    409) is reported and the others still done; the exit code is the first refusal's. An
    unreachable service stops them all (session.py turns it into exit 3)."""
    code = EXIT_OK
    for i in ids:
        try:
            answer = call(i)
        except ApiError as exc:
            if exc.is_unavailable:
                raise
            report(exc)
            code = code or exit_code_for(exc)
            continue
        done(i, answer)
    return code


def cancel(
    ids: Annotated[list[int], typer.Argument(help="Experiment ids.", show_default=False)],
    json_out: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel experiments: queued ones at once, running ones at the next batch boundary."""
    answers: list[Experiment] = []

    def done(i: int, e: Experiment) -> None:
        answers.append(e)
        if json_out:
            return
        if e["status"] == ExperimentStatus.CANCELLED:
            typer.echo(f"{i}: cancelled")
        elif e["status"] in FINAL_STATUSES:
            typer.echo(f"{i}: already {e['status']}; nothing to cancel")
        else:
            typer.echo(f"{i}: cancel requested; stops at the next batch boundary")

    with connected(url, token) as client:
        code = each_id(ids, client.cancel, done)
    if json_out:
        print_json(answers)
    raise typer.Exit(code)


# -- download, delete -------------------------------------------------------------------------


def download(
    experiment_id: Annotated[int, typer.Argument(help="Experiment id.", show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write it (a file, or a folder to write experiment-<id>.safetensors "
            "in); default experiment-<id>.safetensors here.",
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download an ended run's final model (safetensors: the weights, with the spec and test
    metrics in its metadata); print the path and its size.

    The file appears only once complete and checked against the sha256 the service recorded.
    A run that has no model (queued, running, diverged, failed) exits 2 with the reason."""
    with connected(url, token) as client:
        try:
            path = client.download_model(experiment_id, output)
        except OSError as exc:
            err(f"error: cannot write {output or f'experiment-{experiment_id}.safetensors'}: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    size = path.stat().st_size
    typer.echo(f"{path} ({size_str(size)}, {size:,} bytes)")


def delete(
    ids: Annotated[list[int], typer.Argument(help="Experiment ids.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete ended experiments: their rows, model and checkpoints, for good.

    Asks first unless --yes (no answer, or not yes: nothing is deleted, exit 2). A queued or
    running one is refused (cancel it first); the others are still deleted."""
    if not yes:
        listed = ", ".join(map(str, ids))
        try:
            sure = typer.confirm(f"Delete experiment{'s' if len(ids) > 1 else ''} {listed} "
                                 "with their models, for good?", default=False)  # fmt: skip
        except typer.Abort:  # no answer (end of input)
            sure = False
        if not sure:
            err("nothing deleted (pass --yes to skip the question)")
            raise typer.Exit(EXIT_BAD_INPUT)
    with connected(url, token) as client:
        code = each_id(ids, client.delete_experiment, lambda i, _: typer.echo(f"{i}: deleted"))
    raise typer.Exit(code)
