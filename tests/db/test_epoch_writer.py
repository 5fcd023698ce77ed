"""The worker's epoch writer process (worker/runs/epoch_writer.py) on a real, migrated database,
both backends: what it stores, what it refuses (a fenced-out attempt), what a writer killed at
any moment costs (nothing: the write is sent again), how its errors reach the run, and that it
never outlives the process that started it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text

from service.experiments.models import EpochRow
from service.training import decisions
from service.training.spec import ExperimentSpec
from tests.db.test_fences import claimed, run_row, tx
from tests.support.backends import in_process
from tests.support.stack import Backend
from worker.runs import epoch_writer
from worker.runs.epoch_rows import EpochRows, Written
from worker.runs.epochs import Decided, rows_of

SPEC = ExperimentSpec.model_validate({"dataset": "digits", "epochs": 50, "base_lr": 0.1})


@pytest.fixture
def database(backend: Backend) -> Iterator[str]:
    with in_process(backend):
        yield backend.database_url


@pytest.fixture(scope="module")
def writer() -> Iterator[epoch_writer.Writer]:
    """One writer for the module's tests: its start, a fresh interpreter, is paid once. Each
    test has a database of its own, so the writer also follows the database each write names."""
    w = epoch_writer.Writer().start()
    yield w
    w.stop()


def decided(experiment_id: int, attempt: int, first: int, n: int, **extra: float) -> EpochRows:
    """The rows of epochs `first`..`first + n - 1`, decided as a run decides them."""
    state, out = decisions.initial_state(SPEC, 0.1), []
    for epoch in range(first, first + n):
        metrics: dict[str, float | None] = {"train_loss": 1 / epoch, "val_loss": 2 / epoch}
        decision, state = decisions.step(SPEC, state, epoch, {**metrics, **extra}, 0.1)
        out.append(Decided(epoch, 0.1, 0.01, {**metrics, **extra}, None, decision, state))
    return rows_of(experiment_id, attempt, out)


def send(w: epoch_writer.Writer, database: str, experiment_id: int, attempt: int, first: int,
         n: int, **extra: float) -> epoch_writer.Pending:  # fmt: skip
    """Hand epochs `first`..`first + n - 1` of the run's `attempt` to writer `w`."""
    return w.send(database, experiment_id, attempt,
                  decided(experiment_id, attempt, first, n, **extra))  # fmt: skip


@contextlib.contextmanager
def row_locked(database: str, experiment_id: int) -> Iterator[None]:
    """Hold the run's row (PostgreSQL) or the database's write lock (SQLite): a write waits."""
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(text("SELECT id FROM experiments WHERE id = :i FOR UPDATE"),
                             {"i": experiment_id})  # fmt: skip
            yield
            conn.rollback()
    finally:
        engine.dispose()


def stored(experiment_id: int) -> list[tuple[int, float]]:
    return tx(lambda r: [(row.epoch, row.val_loss) for row in r.session.scalars(
        select(EpochRow).where(EpochRow.experiment_id == experiment_id).order_by(EpochRow.epoch)
    )])  # fmt: skip


def test_the_writer_stores_epochs_and_the_runs_progress(
    database: str, writer: epoch_writer.Writer
) -> None:
    experiment_id, attempt = claimed()
    assert send(writer, database, experiment_id, attempt, 1, 3).result() is Written.STORED
    assert send(writer, database, experiment_id, attempt, 4, 2).result() is Written.STORED
    assert stored(experiment_id) == [(e, 2 / e) for e in range(1, 6)]
    assert run_row(experiment_id).epochs_run == 5


def test_a_write_tells_the_run_its_cancel_was_requested(
    database: str, writer: epoch_writer.Writer
) -> None:
    """The run learns of a cancel from the write behind its training (its rows still stored),
    not only from its lease's heartbeat up to 2 s later."""
    experiment_id, attempt = claimed()
    assert send(writer, database, experiment_id, attempt, 1, 1).result() is Written.STORED
    tx(lambda r: r.cancel(experiment_id))
    assert send(writer, database, experiment_id, attempt, 2, 1).result() is Written.CANCEL
    assert stored(experiment_id) == [(1, 2.0), (2, 1.0)]


def test_a_write_of_an_attempt_that_lost_the_run_is_refused(
    database: str, writer: epoch_writer.Writer
) -> None:
    experiment_id, attempt = claimed()
    assert send(writer, database, experiment_id, attempt + 1, 1, 2).result() is Written.LOST
    assert stored(experiment_id) == []
    assert run_row(experiment_id).epochs_run == 0


def test_a_write_that_fails_raises_the_writers_error_in_the_run(
    database: str, writer: epoch_writer.Writer
) -> None:
    experiment_id, attempt = claimed()
    pending = send(writer, database, experiment_id, attempt, 1, 1, no_such_column=1.0)
    with pytest.raises(epoch_writer.WriterFailed, match="no_such_column"):
        pending.result()
    assert stored(experiment_id) == [] and run_row(experiment_id).epochs_run == 0
    # The writer goes on with the next write.
    assert send(writer, database, experiment_id, attempt, 1, 1).result() is Written.STORED


def test_a_finish_handed_to_a_writer_whose_worker_died_is_stored(database: str) -> None:
    """A run finished behind its worker (runs/finish.py `finish_run_behind`): the worker hands
    the writer its last epochs with the final status and moves on. Killed right after, its end
    of the pipe closes; the writer still stores what it was handed (after the epoch rows, in
    the same transaction), then exits."""
    from dataclasses import replace

    experiment_id, attempt = claimed()
    w = epoch_writer.Writer().start()
    finish = {"status": "succeeded", "stop_reason": None, "test_metrics": {"test_loss": 0.5}}
    batch = replace(decided(experiment_id, attempt, 1, 3), finish=finish)
    w.send(database, experiment_id, attempt, batch)
    assert w._pipe is not None and w._proc is not None
    w._pipe.close()  # the worker is gone: no answer will be read
    w._proc.wait(120)  # it exits once its pipe is closed (its interpreter may still be starting)
    row = run_row(experiment_id)
    assert (row.status, row.epochs_run, row.test_metrics) == ("succeeded", 3, {"test_loss": 0.5})
    assert row.finished_at is not None and row.lease_owner is None
    assert stored(experiment_id) == [(e, 2 / e) for e in range(1, 4)]


@pytest.mark.parametrize("when", ["idle", "while writing"])
def test_a_writer_killed_at_any_moment_loses_no_epoch(database: str, when: str) -> None:
    """SIGKILL the writer between writes, or after a write was handed over and before it could
    commit (the test holds the run's row): the write is sent to a new writer, and every epoch
    is stored exactly once."""
    experiment_id, attempt = claimed()
    w = epoch_writer.Writer().start()
    try:
        assert send(w, database, experiment_id, attempt, 1, 2).result()
        first = w._proc
        assert first is not None
        if when == "idle":
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            pending = send(w, database, experiment_id, attempt, 3, 2)
        else:
            # Without the lock the writer can answer before the kill lands (it did, in CI).
            with row_locked(database, experiment_id):
                pending = send(w, database, experiment_id, attempt, 3, 2)
                time.sleep(0.2)  # mostly: taken, and waiting for the row
                os.kill(first.pid, signal.SIGKILL)
                first.wait()
        assert pending.result() is Written.STORED
        assert w._proc is not None and w._proc.pid != first.pid  # a new writer took it
        assert stored(experiment_id) == [(e, 2 / e) for e in range(1, 5)]
        assert run_row(experiment_id).epochs_run == 4
        counted = tx(lambda r: r.session.scalar(
            select(func.count()).select_from(EpochRow)
            .where(EpochRow.experiment_id == experiment_id)
        ))  # fmt: skip
        assert counted == 4
    finally:
        w.stop()


def test_a_writer_with_an_answer_due_is_not_kept_for_the_next_run(
    database: str,
) -> None:
    """A run that ended between a write and its answer (an error) gives back a writer whose
    next answer is that write's: it is stopped, and the next run gets a fresh one."""
    experiment_id, attempt = claimed()
    w = epoch_writer.take()
    send(w, database, experiment_id, attempt, 1, 1)
    epoch_writer.give_back(w)
    assert not w.alive()
    fresh = epoch_writer.take()
    try:
        assert fresh is not w
        assert send(fresh, database, experiment_id, attempt, 2, 1).result() is Written.STORED
    finally:
        epoch_writer.give_back(fresh)


def gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped counts: here, it was orphaned)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_writer_exits_when_its_worker_is_killed() -> None:
    """The writer ignores SIGTERM (a warm shutdown still stores what the run decided) and exits
    once its worker's end of the pipe closes: here, the worker SIGKILLed."""
    code = (
        "import os, sys, time; from worker.runs import epoch_writer; "
        "w = epoch_writer.take(); print(w._proc.pid, flush=True); time.sleep(60)"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        child = int(worker.stdout.readline())
        os.kill(child, signal.SIGTERM)  # ignored
        time.sleep(0.5)
        os.kill(child, 0)  # still there
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 30  # its interpreter may still be starting
        while not gone(child):
            assert time.monotonic() < deadline, f"writer {child} outlived its worker"
            time.sleep(0.1)
    finally:
        worker.kill()
