"""The worker-fault stack: two workers, short leases, quick re-sends, at most 3 attempts per run;
one per session (PostgreSQL + Redis), shared by test_faults.py and test_hypergradient_run.py
(the restart tests in test_faults.py run servers and stacks of their own). Each test finds its
runs by id and waits for them to end; `stack2` hands it two live workers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.support.stack import Stack, stack_fixture

FAST = {"GLIDEPATH_LEASE_SECONDS": "2", "GLIDEPATH_RESEND_AFTER_SECONDS": "3"}

# PostgreSQL + Redis only: losing workers and machines is the production stack's case (many
# machines, one database); the embedded default's hand-back and resume are tested in-process on
# both backends (tests/db/test_worker_runs.py), and the suite's time on 2 cores is finite.
fault_stack = stack_fixture(
    scope="session", workers=2, postgres_only=True,
    overrides={**FAST, "GLIDEPATH_MAX_ATTEMPTS": "3"},
)  # fmt: skip
_REPLACEMENTS = itertools.count(1)


@pytest.fixture
def stack2(fault_stack: Stack) -> Iterator[Stack]:
    """The fault stack; afterwards, workers the test killed are dropped and fresh ones started
    until two are alive again (they boot while the next test begins)."""
    yield fault_stack
    procs = fault_stack.procs
    for name in [n for n, p in procs.items() if n != "api" and p.poll() is not None]:
        del procs[name]
    for _ in range(sum(1 for n in procs if n != "api"), 2):
        fault_stack.start_worker(f"next{next(_REPLACEMENTS)}")
