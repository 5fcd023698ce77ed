"""Exit codes, the help text that documents them, and the Typer options the client commands
share."""

from __future__ import annotations

from typing import Annotated

import typer

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

EXIT_HELP = (
    "Exit codes: 0 ok (with --wait/watch: every run ended succeeded, early_stopped or pruned); "
    "1 a run ended failed, diverged or cancelled; 2 bad input (file unreadable or unparseable, "
    "API 4xx such as 422); 3 service unreachable or 5xx after retries; 4 not found; "
    "130 interrupted."
)
PANEL = "Client (talk to a running service)"

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
IntervalOpt = Annotated[
    float,
    # A bound above too: inf or 1e300 seconds overflowed the waits' clock (a traceback).
    typer.Option(
        "--interval",
        min=0.05,
        max=3600,
        help="Seconds between polls (the first ones sooner); `watch` follows live "
        "events and polls only a run whose event stream failed.",
    ),
]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Follow until final (exit code as submit --wait).")
]
