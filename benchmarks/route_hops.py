"""What a sync FastAPI route with a session dependency costs in thread-pool hops, against the same
work in one hop: two routes of one uvicorn process (httptools, as `glidepath api` serves) run the
same query on the same engine, and one client alternates between them, so both see the same
machine at the same moment.

- three hops: `def route(session: SessionDep)` with a sync generator dependency, the way the
  API's routes took their session until 2026-12-02: the dependency's entry, the route and the
  dependency's exit each run on the thread pool (and, with a `response_model`, FastAPI's check
  of a sync route's return value: a fourth);
- one hop: `async def route()` that runs session, query and commit in one `run_in_threadpool`,
  the way every route does now (`await in_session(work)`, service/kit/deps.py).

    .venv/bin/python benchmarks/route_hops.py [--database-url URL] [--requests 3000]

The default database is PostgreSQL at GLIDEPATH_TEST_PG's server (the API's engine,
`service.kit.db.make_engine`); `sqlite:///…` works too.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

APP = """
import os
import socket
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.kit.db import make_engine

engine = make_engine(os.environ["ROUTE_HOPS_DB"])
QUERY = text("SELECT 1")
app = FastAPI()


def get_session() -> Iterator[Session]:
    session = Session(engine)
    try:
        yield session
        session.commit()
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@app.get("/three")
def three(session: SessionDep) -> dict[str, Any]:
    return {"n": session.execute(QUERY).scalar()}


def work() -> dict[str, Any]:
    with Session(engine) as session:
        n = session.execute(QUERY).scalar()
        session.commit()
        return {"n": n}


@app.get("/one")
async def one() -> dict[str, Any]:
    return await run_in_threadpool(work)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: int) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default = os.environ.get(
        "GLIDEPATH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    ap.add_argument("--database-url", default=default)
    ap.add_argument("--requests", type=int, default=3000, help="of each route")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="glidepath-hops-") as tmp:
        Path(tmp, "hops_app.py").write_text(APP)
        env = {**os.environ, "ROUTE_HOPS_DB": args.database_url}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hops_app:app", "--port", str(port),
             "--http", "httptools", "--log-level", "warning"],
            cwd=tmp, env=env,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        client.get("/one").raise_for_status()
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise
                        time.sleep(0.1)
                for _ in range(200):  # warm both
                    client.get("/one")
                    client.get("/three")
                took: dict[str, list[float]] = {"one": [], "three": []}
                for i in range(args.requests):
                    for route in ("one", "three") if i % 2 else ("three", "one"):
                        t0 = time.perf_counter()
                        client.get(f"/{route}").raise_for_status()
                        took[route].append((time.perf_counter() - t0) * 1000)
        finally:
            server.terminate()
            server.wait(10)
    one, three = took["one"], took["three"]
    for label, xs in (("one hop", one), ("three hops", three)):
        print(f"  {label:<11} p50 {pct(xs, 50):6.2f} ms  p90 {pct(xs, 90):6.2f} ms  "
              f"p99 {pct(xs, 99):6.2f} ms")  # fmt: skip
    print(f"  three hops / one hop: p50 {pct(three, 50) / pct(one, 50):.2f}x, "
          f"p99 {pct(three, 99) / pct(one, 99):.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
