"""Short garbage-collection pauses for a long-lived server process.

CPython's full collection walks every tracked object, and an API process holds ~10^6 that live as
long as it does (torch, scikit-learn, the app): under load each full collection held every
request up for 0.2-0.7 s (benchmarks/poll_load.py, p99 of 200 pollers). `gc.freeze()` moves the
objects alive at a moment into a generation no collection walks. The app freezes once started;
modules imported later (scikit-learn on a first built-in dataset, the optimizers on a first spec)
bring hundreds of thousands more, so a full collection that takes longer than `SLOW_S` freezes
what survived it too. Those are long-lived objects by then; a slow collection is rare once they
are frozen (it takes another burst of imports), so little short-lived garbage is frozen with
them. Objects outside reference cycles are still freed as ever, frozen or not."""

from __future__ import annotations

import gc
import time
from typing import Any

from service.kit.logging import get_logger

log = get_logger(__name__)

SLOW_S = 0.05


class FreezeSlowCollections:
    """A `gc.callbacks` entry: freeze the survivors of each full collection slower than
    `slow_s`."""

    def __init__(self, slow_s: float = SLOW_S) -> None:
        self.slow_s = slow_s
        self.started = 0.0
        self.freezes = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        if took > self.slow_s:
            gc.freeze()
            self.freezes += 1
            log.info("gc_frozen", took_ms=round(took * 1000), frozen=gc.get_freeze_count())


def install(slow_s: float = SLOW_S) -> FreezeSlowCollections:
    """Freeze what is alive now, and the survivors of slow full collections from now on."""
    gc.freeze()
    for cb in gc.callbacks:
        if isinstance(cb, FreezeSlowCollections):
            return cb
    cb = FreezeSlowCollections(slow_s)
    gc.callbacks.append(cb)
    return cb
