"""The figures /metrics reads from the database and the broker, as Prometheus metric families.

Every API process answers the same, whichever one a scrape reaches: the counts come from the
database, not from the process that happened to see an event (workers are other processes).
Workers by state are counted afresh at each scrape (a few rows). Runs by status, the counters
and the histograms (epochs, decisions, queue wait) are summed incrementally, each row read once
through a high-water mark on its id (tail.py): runs by status from the ledger of status changes
the database's triggers keep (RunStatusChange). A steady scrape reads only what is new. A process
that starts later reads the history once at its first scrape and then agrees with the others.

The accumulators are plain numbers, not prometheus_client metrics: in multiprocess mode those
would be summed over the API processes, which each hold the whole database's figures."""

from __future__ import annotations

import bisect
import math
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from service.monitoring import queues
from service.monitoring.repository import MonitoringRepository, Probe, Row
from service.monitoring.tail import GAP_WINDOW, Tail, signature
from service.training.status import ExperimentStatus
from service.workers import service as workers

# Seconds from a run's creation to its first start: a free worker takes a run within
# milliseconds; a busy fleet makes runs wait minutes to hours.
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600,
                      86400)  # fmt: skip
# One epoch: from a tiny model's milliseconds to an hour of a large one.
EPOCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
                 3600)  # fmt: skip
# What the training core decides (decisions.Event.kind) and what a sweep's pruner stops with:
# shown at 0 before the first one, so a rate() has a series to start from.
DECISION_KINDS = ("reduce_lr", "early_stop", "diverged", "pruned")
# A pruner's stop is counted as a run entering `pruned` in the status ledger, a final status
# only the pruner sets, so each counts once, a deleted run's too; the run's own `pruned`
# decision row (service/sweeps/pruning.py) is passed over, and a resumed run told its stop
# again (the row written again) does not count twice.
PRUNED = ExperimentStatus.PRUNED.value
DEFAULT_QUEUE = "cpu"  # Celery's task_default_queue (dispatch/broker.py)


@dataclass
class Histogram:
    """Bucket counts (not cumulative), their sum and count."""

    bounds: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: a bound includes itself
        self.total += value

    def add(self, cumulative: Sequence[int], total: float) -> None:
        """Counts summed elsewhere: at or below each bound, then of all; and their sum."""
        previous = 0
        for i, c in enumerate(cumulative):
            self.counts[i] += c - previous
            previous = c
        self.total += total

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, n in zip([*map(_fmt, self.bounds), "+Inf"], self.counts, strict=True):
            cumulative += n
            buckets.append((bound, float(cumulative)))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


def _fmt(bound: float) -> str:
    return repr(float(bound))


@dataclass
class Figures:
    """What this process has summed from one database so far."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: Tail = field(default_factory=Tail)
    epochs: Tail = field(default_factory=Tail)
    decisions: Tail = field(default_factory=Tail)
    status_changes: Tail = field(default_factory=Tail)
    by_status: Counter[str] = field(default_factory=Counter)  # runs holding each status
    caught_up: bool = False  # the history below the tails' windows is summed (_catch_up)
    waiting: set[int] = field(default_factory=set)  # runs seen queued, not yet started
    queued_seen: tuple[int, int, int] | None = None  # the signature of the queued ids last read
    queue_names: set[str] = field(default_factory=lambda: {DEFAULT_QUEUE})
    queue_wait: Histogram = field(default_factory=lambda: Histogram(QUEUE_WAIT_BUCKETS))
    epoch_duration: Histogram = field(default_factory=lambda: Histogram(EPOCH_BUCKETS))
    decision_kinds: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(
        DECISION_KINDS, 0)))  # fmt: skip


# Per database engine: tests and tools point one process at several databases in turn.
_figures: weakref.WeakKeyDictionary[Engine, Figures] = weakref.WeakKeyDictionary()
_figures_lock = threading.Lock()


def figures_for(engine: Engine) -> Figures:
    with _figures_lock:
        found = _figures.get(engine)
        if found is None:
            found = _figures[engine] = Figures()
        return found


def collect(session: Session) -> list[Metric]:
    """One scrape's metric families. Concurrent scrapes of one process take turns, so none
    counts a row twice."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    figures = figures_for(engine)
    repo = MonitoringRepository(session)
    with figures.lock:
        probe = repo.probe()
        if not figures.caught_up:
            _catch_up(repo, figures, probe)
        _read_runs(repo, figures, probe)
        now = time.monotonic()
        for row in figures.epochs.read(repo.epochs_after, repo.epochs_by_ids, now, probe.top_epoch):
            figures.epoch_duration.observe(float(row[1]))
        for row in figures.decisions.read(
            repo.decisions_after, repo.decisions_by_ids, now, probe.top_decision
        ):
            if row[1] != PRUNED:
                figures.decision_kinds[str(row[1])] += 1
        for row in figures.status_changes.read(
            repo.status_changes_after, repo.status_changes_by_ids, now, probe.top_status_change
        ):
            figures.by_status[str(row[1])] += int(row[2])
            if row[1] == PRUNED and int(row[2]) > 0:  # a deleted pruned run un-decides nothing
                figures.decision_kinds[PRUNED] += int(row[2])
        worker_rows = repo.workers()
        for row in worker_rows:
            figures.queue_names.update(row[3] or [])
        return [
            *_run_families(figures.by_status),
            *_queue_families(figures),
            _counter(
                "glidepath_epochs",
                "Epochs trained (a row written per epoch; one redone after a resume counts again).",
                float(sum(figures.epoch_duration.counts)),
            ),
            figures.epoch_duration.family(
                "glidepath_epoch_duration_seconds", "Wall time of one training epoch."
            ),
            _decisions_family(figures.decision_kinds),
            *_worker_families(worker_rows),
        ]


def _catch_up(repo: MonitoringRepository, figures: Figures, probe: Probe) -> None:
    """A process's first scrape: the epochs, decisions and status changes below the newest
    GAP_WINDOW ids are summed by the database, one pass each (a hundred thousand rows read one
    by one take a second); the tails read the rest row by row. The ranges do not overlap, so no
    row counts twice whatever commits in between. Runs (for their queue wait) are read row by
    row: one per run, not per epoch."""
    upto = probe.top_epoch - GAP_WINDOW
    if upto > 0:
        figures.epoch_duration.add(*repo.epoch_histogram(upto, EPOCH_BUCKETS))
        figures.epochs.mark = upto
    upto = probe.top_decision - GAP_WINDOW
    if upto > 0:
        figures.decision_kinds.update(
            {k: n for k, n in repo.decision_kinds(upto).items() if k != PRUNED}
        )
        figures.decisions.mark = upto
    upto = probe.top_status_change - GAP_WINDOW
    if upto > 0:
        figures.by_status.update(repo.status_totals(upto))
        figures.decision_kinds[PRUNED] += repo.entered(PRUNED, upto)
        figures.status_changes.mark = upto
    figures.caught_up = True


def _read_runs(repo: MonitoringRepository, figures: Figures, probe: Probe) -> None:
    """Each run's wait, from its creation to its first start, observed once it has started.
    The runs still queued at the last look are looked at again only when the set of queued runs
    has changed (its signature, tail.signature)."""
    new = figures.runs.read(repo.runs_after, repo.runs_by_ids, time.monotonic(), probe.top_run)
    for _id, queue, status, created_at, started_at in new:
        figures.queue_names.add(str(queue))
        if started_at is not None:
            figures.queue_wait.observe(_seconds(created_at, started_at))
        elif status == ExperimentStatus.QUEUED:
            figures.waiting.add(int(_id))
            figures.queued_seen = None  # a new one: look at the queued runs again
        # else: it ended (cancelled) before any worker took it, and never waited for one
    # A run the tail found waiting forces a look (queued_seen = None); else every waiting run
    # was in the set last read, and an unchanged signature says none has left since.
    if figures.waiting and probe.queued_signature != figures.queued_seen:
        still = repo.queued_ids()
        figures.queued_seen = signature(still)
        left = figures.waiting - still
        figures.waiting &= still
        for _id, _queue, _status, created_at, started_at in repo.runs_by_ids(left):
            if started_at is not None:
                figures.queue_wait.observe(_seconds(created_at, started_at))


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _run_families(by_status: dict[str, int]) -> Iterator[Metric]:
    runs = GaugeMetricFamily("glidepath_runs", "Runs stored, by status.", labels=["status"])
    for status in ExperimentStatus:
        runs.add_metric([status.value], float(by_status.get(status.value, 0)))
    yield runs


def _queue_families(figures: Figures) -> Iterator[Metric]:
    yield figures.queue_wait.family(
        "glidepath_queue_wait_seconds", "Time from a run's creation to its first start."
    )
    found = queues.depths(figures.queue_names)
    up = GaugeMetricFamily("glidepath_broker_up", "1 when the broker's queues could be read.")
    up.add_metric([], 0.0 if found is None else 1.0)
    yield up
    if found is not None:
        depth = GaugeMetricFamily(
            "glidepath_queue_depth", "Task messages waiting in the broker.", labels=["queue"]
        )
        for name in sorted(found):
            depth.add_metric([name], float(found[name]))
        yield depth


def _decisions_family(kinds: Counter[str]) -> Metric:
    family = CounterMetricFamily(
        "glidepath_decisions", "Decisions taken, by kind.", labels=["kind"]
    )
    for kind in sorted(kinds):
        family.add_metric([kind], float(kinds[kind]))
    return family


def _worker_families(rows: Sequence[Row]) -> Iterator[Metric]:
    states: Counter[str] = Counter(dict.fromkeys(workers.STATES, 0))
    busy = 0
    for stopped_at, last_seen, current_run, _queues in rows:
        state = workers.state_of(stopped_at, last_seen)
        states[state] += 1
        busy += state == "alive" and current_run is not None
    family = GaugeMetricFamily(
        "glidepath_workers", "Registered worker processes, by state.", labels=["state"]
    )
    for state in workers.STATES:
        family.add_metric([state], float(states[state]))
    yield family
    yield GaugeMetricFamily(
        "glidepath_workers_busy", "Alive workers holding a run.", value=float(busy)
    )
