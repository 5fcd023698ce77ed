"""The `glidepath` command. `processes.py` starts the service's processes (up, api, worker,
migrate); the rest talk to a running service over HTTP (`service.client.Client`): submit, watch,
ls, show, cancel, download, delete, workers, preview, `sweep`/`batch`/`range-test` show, and
`datasets ls|upload`.
docs/cli.md documents them.

Exit codes (every command): 0 ok; 1 a run ended failed/diverged/cancelled (with --wait, watch);
2 bad input (unreadable or unparseable file, an API 4xx such as 422); 3 the service is
unreachable or answered 5xx after retries; 4 not found; 130 interrupted (Ctrl-C).

options.py: exit codes and shared options · session.py: the Client, errors → exit codes ·
render.py: formatters · tables.py: the tables · trackers.py: following runs to the end ·
commands.py: submit, ls, show, lr, cancel, download, delete, workers · watch.py: watch ·
preview.py: preview · groups.py: sweep, batch, range-test · datasets.py: datasets.
"""

from __future__ import annotations

import typer

from service.cli import processes
from service.cli.commands import cancel, delete, download, lr, ls, show, submit, workers
from service.cli.datasets import datasets_app
from service.cli.groups import batch_app, range_test_app, sweep_app
from service.cli.options import EXIT_HELP, PANEL
from service.cli.preview import preview
from service.cli.tokens import token_app
from service.cli.watch import watch

__all__ = ["app"]

app = typer.Typer(
    help="Glidepath: run PyTorch experiments and see what the learning rate did.",
    no_args_is_help=True,
    add_completion=False,
)


def _register_client_commands(app: typer.Typer) -> None:
    for fn in (submit, watch, ls, show, lr, cancel, download, delete, workers, preview):
        app.command(fn.__name__, rich_help_panel=PANEL, epilog=EXIT_HELP)(fn)
    app.add_typer(sweep_app, name="sweep", rich_help_panel=PANEL)
    app.add_typer(batch_app, name="batch", rich_help_panel=PANEL)
    app.add_typer(range_test_app, name="range-test", rich_help_panel=PANEL)
    app.add_typer(datasets_app, name="datasets", rich_help_panel=PANEL)


processes.register(app)
app.add_typer(token_app, name="token")  # on the database, as `migrate`
_register_client_commands(app)
