"""A command's `Client`, and the client's errors turned into messages and the documented exit
codes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from service.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
)
from service.client import ApiError, Client, FileError


def exit_code_for(exc: ApiError) -> int:
    if exc.status_code == 404:
        return EXIT_NOT_FOUND
    if exc.is_unavailable:
        return EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT


def err(msg: str) -> None:
    typer.echo(msg, err=True)


def report(exc: ApiError) -> None:
    if exc.status_code == 0:
        err(f"error: {exc}")
        return
    where = f" from {exc.method} {_path(exc.url)}" if exc.method else ""
    err(f"error: HTTP {exc.status_code}{where}:")
    for line in exc.messages():
        err(f"  {line}")
    # Whether or not a token was sent: the API's message says which (none, unknown, revoked,
    # or the role it lacks).
    if exc.status_code == 401:
        err("  (pass a valid token: --token or GLIDEPATH_TOKEN)")
    elif exc.status_code == 403:
        err("  (use a token with that role: --token or GLIDEPATH_TOKEN)")


def _path(url: str) -> str:
    # "http://host:8000/v1/x?y=1" → "/v1/x?y=1"
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else url


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Turn the client's errors into messages and the documented exit codes."""
    try:
        yield
    except KeyboardInterrupt:
        err("interrupted: runs already queued go on (`glidepath cancel ID…` stops them)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except FileError as exc:
        err(f"error: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ApiError as exc:
        report(exc)
        raise typer.Exit(exit_code_for(exc)) from None


def new_client(url: str | None, token: str | None) -> Client:
    # Retries after 0.25, 0.5 and 1 s (a 503's Retry-After wins); following loops wait longer.
    return Client(url, token=token, retries=3, backoff=0.25)


@contextlib.contextmanager
def connected(url: str | None, token: str | None) -> Iterator[Client]:
    """A client for one command, closed at the end; its errors as in `handled`."""
    with handled(), new_client(url, token) as client:
        yield client
