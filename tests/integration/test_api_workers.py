"""`glidepath api --workers 2` on PostgreSQL, as an operator runs it: both processes answer on
the one port, exactly one runs housekeeping, and when that one is killed (SIGKILL: no clean-up)
the other takes over within its retry interval; /metrics counts the HTTP requests of both. The
production stack only: the embedded lock (a flock) is checked in-process in
tests/db/test_leader.py."""

from __future__ import annotations

import os
import re
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import Stack, stack_fixture, wait_for

pytestmark = pytest.mark.integration

RETRY_S = 0.3
stack = stack_fixture(
    scope="function", workers=0, postgres_only=True, api_workers=2,
    overrides={"GLIDEPATH_HOUSEKEEPING_RETRY_S": str(RETRY_S)},
)  # fmt: skip


def elected(stack: Stack) -> list[int]:
    """The pids that logged taking the housekeeping lock, in order."""
    log = (stack.log_dir / "api.log").read_text()
    return [int(pid) for pid in re.findall(r"housekeeping_elected\s.*pid=(\d+)", log)]


def healthz_requests(text: str) -> float:
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return sum(s.value for s in samples if s.name == "glidepath_http_requests_total"
               and s.labels["route"] == "/healthz")  # fmt: skip


def test_two_processes_answer_and_one_runs_housekeeping_till_it_dies(stack: Stack) -> None:
    leads: dict[int, bool] = {}  # pid → the last /readyz answer it gave

    def answers() -> bool:
        # A new connection each time: whichever process accepts it first answers.
        process = httpx.get(f"{stack.url}/readyz", timeout=5).json()["process"]
        leads[process["pid"]] = process["housekeeping"]
        return len(leads) == 2 and sum(leads.values()) == 1

    wait_for(answers, 20, lambda: f"{leads}\n{stack.logs()}")
    [leader] = [pid for pid, lead in leads.items() if lead]
    assert elected(stack) == [leader]

    # /metrics through the one port, whichever process answers: the HTTP requests of both
    # (multiprocess mode, the folder `glidepath api` made for them), not its own share.
    for _ in range(10):
        assert httpx.get(f"{stack.url}/healthz", timeout=5).status_code == 200
    scraped = [healthz_requests(httpx.get(f"{stack.url}/metrics", timeout=5).text)
               for _ in range(6)]  # fmt: skip
    assert scraped == [10.0] * 6, scraped

    os.kill(leader, signal.SIGKILL)
    [survivor] = set(leads) - {leader}
    wait_for(lambda: elected(stack)[1:] == [survivor], 5 * RETRY_S + 2, stack.logs)
    assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200
