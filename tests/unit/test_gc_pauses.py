"""A server's full garbage collections stay short: what survives a slow one is frozen (moved
where no collection walks), a fast one changes nothing (service/kit/gc_pauses.py)."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

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


def test_a_worker_freezes_what_it_warmed_up_once_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's full collection walked ~460k objects (~160 ms, a stall in whatever run it fell
    in) until its ready handler froze them, as the API does when it starts."""
    from worker import celery_app as module

    # Its ready handler's other work (the broker, the writer process, the registry) is not
    # what this checks.
    monkeypatch.setattr(module.dispatch, "warm", lambda: None)
    monkeypatch.setattr(module.epoch_writer, "prestart", lambda: None)
    monkeypatch.setattr(module.checks, "warm", lambda: None)
    monkeypatch.setattr(module.registry, "start", lambda queues: None)

    queues = SimpleNamespace(consume_from={})  # what the handler reads of Celery's sender
    sender = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=queues)))
    gc.unfreeze()
    try:
        module._register(sender)
        assert gc.get_freeze_count() > 0
        assert any(isinstance(cb, FreezeSlowCollections) for cb in gc.callbacks)
    finally:
        for cb in [c for c in gc.callbacks if isinstance(c, FreezeSlowCollections)]:
            gc.callbacks.remove(cb)
        gc.unfreeze()
