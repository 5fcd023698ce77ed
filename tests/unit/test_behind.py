"""service/kit/behind.py: the threads that mark outbox messages sent and delete dropped
checkpoints behind their commits."""

from __future__ import annotations

import threading
from functools import partial

import structlog

from service.kit.behind import Lane


def test_a_lane_runs_its_jobs_in_order_and_wait_returns_once_they_are_done() -> None:
    lane, done = Lane("test-order"), list[int]()
    for i in range(50):
        lane.put(partial(done.append, i))
    assert lane.wait(5)
    assert done == list(range(50))


def test_a_job_that_raises_is_logged_and_the_next_ones_still_run() -> None:
    lane, done = Lane("test-raises"), list[str]()

    def fails() -> None:
        raise RuntimeError("store away")

    with structlog.testing.capture_logs() as logged:
        lane.put(fails)
        lane.put(lambda: done.append("after"))
        assert lane.wait(5)
    assert done == ["after"]
    assert [(e["event"], e["lane"]) for e in logged] == [("job_failed", "test-raises")]


def test_a_blocked_lane_does_not_hold_back_another() -> None:
    """Slow checkpoint deletes (a cancelled sweep's, on S3) never delay a batch's sends."""
    slow, fast, release = Lane("test-slow"), Lane("test-fast"), threading.Event()
    slow.put(lambda: release.wait(10))
    ran = list[int]()
    fast.put(lambda: ran.append(1))
    assert fast.wait(5) and ran == [1]
    assert not slow.wait(0.2)  # still on its first job
    release.set()
    assert slow.wait(5)


def test_start_runs_the_thread_before_any_job_and_only_one() -> None:
    lane = Lane("test-start")
    lane.start()
    lane.start()
    assert [t.name for t in threading.enumerate()].count("test-start") == 1
    assert lane.wait(5)
