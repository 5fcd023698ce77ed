"""What the token check costs a request: GET /v1/experiments/{id}/metrics (the polling hot path)
on the API in-process (httpx's ASGI transport, no network, no lifespan), one request at a time,
on a fresh embedded database (SQLite, migrated):

- open: no token exists (the baseline, measured in the same run);
- table token: a `tokens` row, its lookup cached for a second (what every request pays);
- table token, cache dropped before each request (a read of the table per request: the worst
  case, what a request pays once a second per token and API process);
- env token: one from GLIDEPATH_API_TOKENS (no table read).

Prints each case's median and p99 latency, its ratio to open, and how many times the table was
read for the cached case.

    .venv/bin/python benchmarks/auth_overhead.py [--requests 2000] [--rounds 10]

"open" is the same app with the guard's store answering "no token exists" (the path an open API
takes), so the cases interleave on one database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["GLIDEPATH_DATA_DIR"] = tempfile.mkdtemp(prefix="glidepath-auth-bench-")
os.environ.pop("GLIDEPATH_DATABASE_URL", None)
os.environ.pop("GLIDEPATH_API_TOKENS", None)

import httpx

from service.config import settings
from service.experiments.models import Experiment
from service.kit import migrate
from service.kit.auth import Found
from service.kit.db import session_scope
from service.tokens import service as tokens
from service.tokens.schemas import TokenIn


class CountingTokens(tokens.DatabaseTokens):
    def __init__(self) -> None:
        self.reads = 0

    def find(self, token_digest: str) -> Found | None:
        self.reads += 1
        return super().find(token_digest)


class NoTokens(tokens.DatabaseTokens):
    """The table as an open API sees it (no row): the guard's open path, cached like the rest."""

    def has_tokens(self) -> bool:
        return False


async def measure(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int,
    before: Callable[[], None] | None = None,
) -> list[float]:  # fmt: skip
    out = []
    for _ in range(n):
        if before is not None:
            before()
        t0 = time.perf_counter()
        r = await client.get(path, headers=headers)
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return out


def line(name: str, xs: list[float], base: float | None) -> str:
    median = statistics.median(xs) * 1000
    p99 = sorted(xs)[int(len(xs) * 0.99) - 1] * 1000
    ratio = f"{median / base:.2f}x" if base else "1.00x"
    return f"{name:<34} median {median:6.3f} ms  p99 {p99:6.3f} ms  {ratio} of open"


async def main(n: int, rounds: int) -> None:
    from service.app import create_app

    migrate.upgrade()
    with session_scope() as session:
        run = Experiment(name="bench", spec={"epochs": 1}, status="queued", queue="cpu")
        session.add(run)
        session.flush()
        run_id = run.id
        token = tokens.create(session, TokenIn(name="bench", role="read")).token
    app = create_app()
    auth = app.state.auth
    store, empty = CountingTokens(), NoTokens()
    path = f"/v1/experiments/{run_id}/metrics"
    bearer = {"Authorization": f"Bearer {token}"}
    env = {"Authorization": "Bearer bench-env-token"}
    cases: dict[str, list[float]] = {"open": [], "cached": [], "uncached": [], "env": []}

    def use(chosen: tokens.DatabaseTokens, env_tokens: str = "") -> None:
        auth.store = chosen
        settings.api_tokens = env_tokens
        auth.forget()

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        use(store)
        await measure(client, path, bearer, 200)  # warm up imports and the pool
        # Rounds of each case in turn, so a busy moment of the machine weighs on all alike.
        per = max(1, n // rounds)
        for _ in range(rounds):
            use(empty)
            cases["open"] += await measure(client, path, {}, per)
            use(store)
            cases["cached"] += await measure(client, path, bearer, per)
            cases["uncached"] += await measure(client, path, bearer, per // 4, before=auth.forget)
            use(store, "bench-env-token")
            cases["env"] += await measure(client, path, env, per)
        use(store)
        store.reads = 0
        started = time.monotonic()
        await measure(client, path, bearer, n)
        seconds, reads = time.monotonic() - started, store.reads

    base = statistics.median(cases["open"]) * 1000
    print(f"GET /v1/experiments/{{id}}/metrics one at a time, in-process, SQLite; {rounds} rounds")
    print(line("open (no token exists)", cases["open"], None))
    print(line("table token, cached", cases["cached"], base))
    print(line("table token, a table read each", cases["uncached"], base))
    print(line("env token", cases["env"], base))
    print(f"table reads for {n} requests with one table token over {seconds:.1f} s: {reads}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per case")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
