"""Many Server-Sent Events subscribers in one process (asyncio + httpx streams), each recording
when every epoch reached it: the live-events integration test and benchmarks/sse_fanout.py."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Followed:
    """What one subscriber received, in order."""

    # When its replay ended (the replay's status event arrived): from then on it follows live.
    # time.monotonic(): system-wide on Linux, so comparable across client processes.
    connected: float = 0.0
    epochs: list[int] = field(default_factory=list)  # each epoch event's id, in arrival order
    arrivals: dict[int, float] = field(default_factory=dict)  # epoch → when it first arrived
    decisions: int = 0
    statuses: list[str] = field(default_factory=list)
    final: dict[str, Any] | None = None
    error: str = ""


async def follow(
    http: httpx.AsyncClient, path: str, on_ready: Callable[[], None] = lambda: None
) -> Followed:
    """Read one stream to its end (or a failure, recorded in `error`); `on_ready` is called
    when its replay is in."""
    out = Followed()
    try:
        async with http.stream("GET", path) as response:
            if response.status_code != 200:
                out.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return out
            event, data, eid = "", "", ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line.startswith("id: "):
                    eid = line[4:]
                elif not line and event:
                    now = time.monotonic()
                    if event == "epoch":
                        epoch = int(eid)
                        out.epochs.append(epoch)
                        out.arrivals.setdefault(epoch, now)
                    elif event == "decision":
                        out.decisions += 1
                    elif event == "status":
                        status = json.loads(data)
                        if not out.connected:
                            out.connected = now
                            on_ready()
                        out.statuses.append(status["status"])
                        out.final = status
                    event, data, eid = "", "", ""
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    return out


async def follow_many(
    base_url: str, path: str, n: int, timeout: float = 120,
    all_in: Callable[[], None] = lambda: None,
) -> list[Followed]:  # fmt: skip
    """`n` subscribers of `path`, connected at once, each on its own connection; `all_in` is
    called once every replay is in (all of them follow live from then on)."""
    waiting = n

    def ready() -> None:
        nonlocal waiting
        waiting -= 1
        if waiting == 0:
            all_in()

    async with clients(base_url, n) as http:
        followed = asyncio.gather(*(follow(h, path, ready) for h in http))
        return await asyncio.wait_for(followed, timeout)


@asynccontextmanager
async def clients(base_url: str, n: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """A client (a connection pool of one) per subscriber: httpx's pool does work in the number
    of connections it holds on every request, so one pool of 1,000 streams was the bottleneck.
    They share one TLS context (each would load the CA bundle), unused over plain HTTP."""
    context = ssl.create_default_context()
    # Reads wait as long as the run lasts (keep-alives come every GLIDEPATH_EVENTS_KEEPALIVE_S).
    timeouts = httpx.Timeout(30.0, read=None)
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=timeouts, verify=context)
            )
            for _ in range(n)
        ]


def skews(followed: list[Followed]) -> dict[int, float]:
    """Per epoch that every subscriber received live (after the last one's replay): the time
    between the first and the last subscriber receiving it."""
    all_in = max(f.connected for f in followed)
    common = set.intersection(*(set(f.arrivals) for f in followed)) if followed else set()
    out = {}
    for epoch in sorted(common):
        times = [f.arrivals[epoch] for f in followed]
        if min(times) > all_in:
            out[epoch] = max(times) - min(times)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
