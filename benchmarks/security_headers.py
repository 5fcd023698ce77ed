"""What the hardening costs a request (#16): the security-headers middleware and strict spec
validation, each against its baseline measured in the same run, in-process, one at a time.

- headers: an ASGI app that answers a small JSON body, bare (the baseline) and wrapped in
  `SecurityHeaders` (kit/security_headers.py), called directly (no HTTP, no network): the
  middleware's own cost per response; beside it the request-id middleware (kit/request_id.py,
  the same shape of work: a header added to each response) for scale.
- validation: `ExperimentSpec.model_validate` of a typical spec (scheduler, early stopping,
  tags) in the strict mode requests use now, against the same model made lax (pydantic's
  default, what it was): what a submit's shape check costs more or less.

Prints medians over rounds (interleaved) and the ratio to the baseline.

    .venv/bin/python benchmarks/security_headers.py [--calls 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import ConfigDict
from starlette.types import Message, Receive, Scope, Send

from service.kit.request_id import RequestId
from service.kit.security_headers import SecurityHeaders
from service.training.spec import ExperimentSpec

BODY = b'{"experiment_id":1,"status":"running","epochs":[],"next_after_epoch":12}'
SPEC: dict[str, Any] = {
    "name": "bench",
    "dataset": "digits",
    "model": {"type": "mlp", "hidden": [64, 64], "dropout": 0.1},
    "solver": {"type": "SGD", "params": {"momentum": 0.9, "nesterov": True}},
    "base_lr": 0.1,
    "scheduler": {"type": "ReduceLROnPlateau", "params": {"factor": 0.5, "patience": 2}},
    "early_stopping": {"patience": 5, "min_delta": 0.001},
    "epochs": 30,
    "batch_size": 64,
    "seed": 7,
    "tags": {"suite": "bench", "owner": "ops"},
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


async def calls(asgi: Any, n: int) -> float:
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_: Message) -> None:
        return None

    start = time.perf_counter()
    for _ in range(n):
        await asgi(scope, receive, send)
    return (time.perf_counter() - start) / n


class LaxSpec(ExperimentSpec):
    model_config = ConfigDict(extra="forbid", strict=False, allow_inf_nan=False)


def validations(model: type[ExperimentSpec], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        model.model_validate(SPEC)
    return (time.perf_counter() - start) / n


def report(name: str, base: list[float], case: list[float], unit: float, label: str) -> None:
    b, c = statistics.median(base), statistics.median(case)
    print(f"{name:<11} baseline {b / unit:8.2f} {label}   hardened {c / unit:8.2f} {label}   "
          f"ratio {c / b:5.2f}x   (+{(c - b) / unit:.2f} {label})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    wrapped = SecurityHeaders(app)
    runs: dict[str, list[float]] = {k: [] for k in ("bare", "headers", "rid", "lax", "strict")}
    request_id = RequestId(app)
    steps: list[tuple[str, Callable[[], float]]] = [
        ("bare", lambda: asyncio.run(calls(app, args.calls))),
        ("headers", lambda: asyncio.run(calls(wrapped, args.calls))),
        ("rid", lambda: asyncio.run(calls(request_id, args.calls))),
        ("lax", lambda: validations(LaxSpec, args.calls // 10)),
        ("strict", lambda: validations(ExperimentSpec, args.calls // 10)),
    ]
    for _name, step in steps:
        step()  # warm
    for _ in range(args.rounds):
        for name, step in steps:
            runs[name].append(step())
    print(f"{args.rounds} rounds, {args.calls} responses / {args.calls // 10} validations each")
    report("headers", runs["bare"], runs["headers"], 1e-6, "us/response")
    report("request id", runs["bare"], runs["rid"], 1e-6, "us/response")
    report("validation", runs["lax"], runs["strict"], 1e-6, "us/spec")


if __name__ == "__main__":
    main()
