"""A server's full garbage collections stay short: what survives a slow one is frozen (moved
where no collection walks), a fast one changes nothing (service/kit/gc_pauses.py)."""

from __future__ import annotations

import gc

from service.kit.gc_pauses import FreezeSlowCollections


def test_a_slow_full_collection_freezes_its_survivors_and_a_fast_one_does_not() -> None:
    kept = [{"n": i} for i in range(20_000)]  # long-lived objects, tracked by the collector
    slow, fast = FreezeSlowCollections(slow_s=0.0), FreezeSlowCollections(slow_s=3600.0)
    gc.callbacks.append(fast)
    try:
        before = gc.get_freeze_count()
        gc.collect(1)  # not a full collection: nothing to do with it
        gc.collect()
        assert (fast.freezes, gc.get_freeze_count()) == (0, before)
        gc.callbacks.append(slow)
        gc.collect()
        assert slow.freezes == 1
        assert gc.get_freeze_count() >= before + len(kept)
    finally:
        for cb in (slow, fast):
            if cb in gc.callbacks:
                gc.callbacks.remove(cb)
        gc.unfreeze()
