"""The high-water mark /metrics reads new rows by (service/monitoring/tail.py), over a table
held in a dict: each row comes back exactly once, whatever order ids commit in; ids that never
commit are given up after GAP_SECONDS; and the HTTP figures of several processes add up in
multiprocess mode."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.monitoring import http_metrics
from service.monitoring.tail import GAP_SECONDS, GAP_WINDOW, Tail

ROOT = Path(__file__).resolve().parents[2]


class Table:
    def __init__(self) -> None:
        self.rows: dict[int, str] = {}

    def after(self, mark: int) -> Sequence[Sequence[Any]]:
        return [(i, self.rows[i]) for i in sorted(self.rows) if i > mark]

    def by_ids(self, ids: Collection[int]) -> Sequence[Sequence[Any]]:
        return [(i, self.rows[i]) for i in sorted(ids) if i in self.rows]

    def commit(self, *ids: int) -> None:
        self.rows.update((i, f"row {i}") for i in ids)


def read(tail: Tail, table: Table, now: float = 0.0) -> list[int]:
    return sorted(r[0] for r in tail.read(table.after, table.by_ids, now))


def test_each_row_is_read_once_whatever_order_ids_commit_in() -> None:
    table, tail = Table(), Tail()
    assert read(tail, table) == []
    table.commit(1, 2, 4)  # 3 was handed out, its transaction not yet committed
    assert read(tail, table) == [1, 2, 4]
    assert read(tail, table) == []
    table.commit(3, 6)
    assert read(tail, table) == [3, 6]
    table.commit(5)
    assert read(tail, table) == [5]
    assert read(tail, table) == [] and not tail.gaps


def test_an_id_that_never_commits_is_given_up() -> None:
    table, tail = Table(), Tail()
    table.commit(1, 3)  # 2: rolled back, or an INSERT ... ON CONFLICT that updated
    assert read(tail, table, now=0.0) == [1, 3]
    assert read(tail, table, now=GAP_SECONDS - 1) == [] and set(tail.gaps) == {2}
    assert read(tail, table, now=GAP_SECONDS) == [] and not tail.gaps
    table.commit(2)  # too late: no transaction stays open that long
    assert read(tail, table, now=GAP_SECONDS + 1) == []


def test_old_holes_at_the_first_read_are_not_waited_for() -> None:
    """Rows deleted long ago (ended runs removed) leave holes far below the newest id."""
    table, tail = Table(), Tail()
    table.commit(1, 2 * GAP_WINDOW + 10)
    assert read(tail, table) == [1, 2 * GAP_WINDOW + 10]
    assert len(tail.gaps) == GAP_WINDOW - 1 and min(tail.gaps) == GAP_WINDOW + 11


@pytest.mark.timeout(60)
def test_http_figures_of_several_processes_add_up_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes answer requests through the middleware; a scrape of a third sums them."""
    one_request = textwrap.dedent("""
        import asyncio
        from service.monitoring.http_metrics import HttpMetrics

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def receive():
            return {"type": "http.request"}

        async def send(message):
            pass

        scope = {"type": "http", "method": "GET", "path": "/x", "root_path": ""}
        asyncio.run(HttpMetrics(app)(scope, receive, send))
    """)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", one_request], cwd=ROOT, env=env)
             for _ in range(2)]  # fmt: skip
    assert [p.wait() for p in procs] == [0, 0]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = generate_latest(http_metrics.source()).decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    counts = [s.value for s in samples if s.name == "glidepath_http_requests_total"
              and s.labels == {"method": "GET", "route": "unmatched", "status": "200"}]  # fmt: skip
    assert counts == [2.0]
