"""`glidepath token create|ls|revoke` on the database (as `migrate`), in-process: the first admin
token made before any exists, printed once and working against the API; `show`/`ls` name the
token that made a run; the documented exit codes for a bad name, a name taken, an unknown one."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.cli import app

SPEC = {"dataset": "iris", "model": {"type": "linear"}, "epochs": 1}


# The commands call the service the API tests run on both databases.
@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_token_commands(cli: CliRunner, client: TestClient) -> None:
    made = cli.invoke(app, ["token", "create", "ops", "--role", "admin"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()  # the token alone on stdout, for `TOKEN=$(glidepath token …)`
    assert token.startswith("gp_") and "\n" not in token
    assert "shown this once" in made.stderr
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/experiments").status_code == 401  # the first token closed the API
    assert client.get("/v1/tokens/me", headers=auth).json() == {"name": "ops", "role": "admin"}

    reader = cli.invoke(app, ["token", "create", "dash", "--role", "read"]).stdout.strip()
    r = client.post("/v1/experiments", json=SPEC, headers=auth)
    assert r.status_code == 201
    run = r.json()["id"]
    shown = cli.invoke(app, ["show", str(run), "--token", reader])
    assert shown.exit_code == 0 and "created by" in shown.stdout and "ops" in shown.stdout
    listed = cli.invoke(app, ["ls", "--token", reader])
    assert listed.exit_code == 0 and "by" in listed.stdout and " ops " in listed.stdout

    table = cli.invoke(app, ["token", "ls"])
    assert table.exit_code == 0 and "dash" in table.stdout and "read" in table.stdout
    assert token not in table.stdout
    auth = client.app.state.auth  # type: ignore[attr-defined]
    now = [auth.clock()]  # from the clock its cached entries were stamped with
    auth.clock = lambda: now[0]
    assert cli.invoke(app, ["token", "revoke", "dash"]).exit_code == 0
    now[0] += auth.ttl  # the API reads the table again within its cache's second
    rows = json.loads(cli.invoke(app, ["token", "ls", "--json"]).stdout)
    assert {t["name"]: t["revoked"] for t in rows} == {"ops": False, "dash": True}
    assert next(t for t in rows if t["name"] == "ops")["last_used_at"]  # used above
    assert cli.invoke(app, ["show", str(run), "--token", reader]).exit_code == 2  # 401

    assert cli.invoke(app, ["token", "revoke", "nobody"]).exit_code == 4
    taken = cli.invoke(app, ["token", "create", "dash", "--role", "read"])
    assert taken.exit_code == 2 and "exists" in taken.stderr
    bad = cli.invoke(app, ["token", "create", "a b", "--role", "root"])
    assert bad.exit_code == 2 and "name" in bad.stderr and "role" in bad.stderr
