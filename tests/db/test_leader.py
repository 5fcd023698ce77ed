"""Housekeeping in exactly one API process (service/kit/leader.py, service/housekeeping.py), on
each backend: an advisory lock on PostgreSQL, a flock next to the SQLite file. One holder at a
time; a holder killed with SIGKILL frees it; a process that does not lead takes over when the
leader stops; /readyz says which process answered and whether it leads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fastapi.testclient import TestClient

from service.housekeeping import Housekeeping
from service.kit.leader import leader_lock
from tests.support.backends import in_process
from tests.support.stack import Backend, wait_for

HOLD = """
import sys, time
from service.kit.leader import leader_lock
lock = leader_lock(sys.argv[1], "test")
assert lock.try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_one_holder_at_a_time_and_a_killed_holder_frees_it(backend: Backend) -> None:
    mine, other = (
        leader_lock(backend.database_url, "test"),
        leader_lock(backend.database_url, "test"),
    )
    assert mine.try_acquire() and mine.held()
    assert not other.try_acquire() and not other.held()
    assert leader_lock(backend.database_url, "another").try_acquire()  # locks go by name
    mine.release()
    assert not mine.held()
    assert other.try_acquire()
    other.release()

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, backend.database_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert not mine.try_acquire()
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs: the server or the kernel frees it
        holder.wait()
        wait_for(mine.try_acquire, 5, lambda: "the dead holder's lock was not freed")
    finally:
        holder.kill()
        mine.release()


def test_the_other_process_takes_over_when_the_leader_stops(backend: Backend) -> None:
    with in_process(backend):  # their ticks run on this database
        takes_over(backend)


def takes_over(backend: Backend) -> None:
    threads = [
        Housekeeping(interval_s=0.05, retry_s=0.05, lock=leader_lock(backend.database_url, "t"))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: any(t.leading for t in threads), 5)
        time.sleep(0.2)  # several retries by the other: still one leader
        assert [t.leading for t in threads].count(True) == 1
        leader, other = sorted(threads, key=lambda t: not t.leading)
        leader.stop()
        assert not leader.lock.held()
        wait_for(lambda: other.leading, 2, lambda: "nobody took over")
    finally:
        for t in threads:
            t.stop()


def test_readyz_names_the_process_and_whether_it_leads(client: TestClient) -> None:
    def leads() -> bool:
        process = client.get("/readyz").json()["process"]
        assert process["pid"] == os.getpid()
        return bool(process["housekeeping"])

    wait_for(leads, 5, lambda: "this process never took the housekeeping lock")
