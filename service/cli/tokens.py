"""`glidepath token create|ls|revoke`: API tokens, on the database directly (as `migrate` does,
from GLIDEPATH_DATABASE_URL or the embedded DATA_DIR), so the first admin token can be made
before any token exists. docs/access.md says how to use them.

The service modules are imported inside the commands: `glidepath --help` and the client
commands load no SQLAlchemy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.options import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, JsonOpt
from service.cli.render import columns_table, new_console, plain, print_json, timestamp
from service.cli.session import err

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

token_app = typer.Typer(
    help="API tokens with roles (read, submit, admin), on the database directly.",
    no_args_is_help=True,
)

DB_HELP = "Database: GLIDEPATH_DATABASE_URL, else the embedded one under GLIDEPATH_DATA_DIR."


@contextlib.contextmanager
def _session() -> Iterator[Session]:
    """One transaction on the service's database; its errors as exit codes: 2 a bad name or
    role or a name taken, 4 no such token, 3 a database that cannot be reached or is not
    migrated."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from service.kit.db import session_scope
    from service.kit.errors import GlidepathError, NotFound

    try:
        with session_scope() as session:
            yield session
    except NotFound as exc:
        err(f"error: {exc}")
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except GlidepathError as exc:
        err(f"error: {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        err(f"error: the database cannot be used ({first}); is it up, and migrated "
            "(`glidepath migrate`)?")  # fmt: skip
        raise typer.Exit(EXIT_UNAVAILABLE) from None


@token_app.command("create", epilog=DB_HELP)
def create(
    name: Annotated[str, typer.Argument(help="Unique name: letters, digits, . _ - @.",
                                        show_default=False)],
    role: Annotated[str, typer.Option("--role", "-r", help="read, submit or admin.",
                                      show_default=False)],
) -> None:  # fmt: skip
    """Make a token and print it, this once (stdout: the token alone; only its hash is kept)."""
    from pydantic import ValidationError

    from service.tokens import service
    from service.tokens.schemas import TokenIn

    try:
        request = TokenIn.model_validate({"name": name, "role": role})
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            err(f"error: {where}: {e['msg']}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    with _session() as session:
        created = service.create(session, request)
    typer.echo(created.token)
    err(f"token {created.name!r} ({created.role.value}): shown this once; send it as "
        "`Authorization: Bearer <token>` or set GLIDEPATH_TOKEN")  # fmt: skip


@token_app.command("ls", epilog=DB_HELP)
def ls(json_out: JsonOpt = False) -> None:
    """Every token (revoked ones too): name, role, created, last used (to the minute), revoked."""
    from service.tokens import service

    with _session() as session:
        tokens = service.list_all(session).items
    if json_out:
        print_json([t.model_dump(mode="json") for t in tokens])
        return
    table = columns_table(("name", "role", "created", "last used", "revoked"))
    for t in tokens:
        table.add_row(
            plain(t.name),
            t.role.value,
            timestamp(t.created_at),
            timestamp(t.last_used_at) or "never",
            timestamp(t.revoked_at),
        )
    new_console().print(table)


@token_app.command("revoke", epilog=DB_HELP)
def revoke(
    name: Annotated[str, typer.Argument(help="The token's name.", show_default=False)],
) -> None:
    """Revoke a token: every API process refuses it within a second or two."""
    from service.tokens import service

    with _session() as session:
        service.revoke(session, name)
    typer.echo(f"revoked token {name!r}")
