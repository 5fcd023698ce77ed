"""The run fences on a real, migrated database: which worker writes land (`fence`, `heartbeat`,
`release`, `finish`), who may take a run (`claim`), what the reaper does with an expired lease
(`expired`, `requeue_expired`, `housekeeping.reap`), and the per-epoch decide-and-write reading
the decision state stored with the previous epoch.

Every step runs in its own transaction through the repository, as the worker and the reaper do.
Both backends (`backend`: a copy of the session's migrated template), PostgreSQL with the
`postgres` marker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

import pytest
from sqlalchemy import select

from service import housekeeping
from service.dispatch import broker
from service.dispatch.models import OutboxMessage
from service.experiments.models import Decision, EpochRow, Experiment
from service.experiments.repository import ExperimentRepository
from service.kit import db
from service.kit.time import as_utc, utcnow
from service.training import decisions
from service.training.spec import ExperimentSpec
from tests.support.backends import in_process
from tests.support.stack import Backend
from worker.runs import epoch_rows
from worker.runs.epoch_rows import Written
from worker.runs.epochs import Decided, HistoryGap, decide_and_write, rows_of

T = TypeVar("T")
LEASE = 60.0


@pytest.fixture
def database(backend: Backend) -> Iterator[str]:
    """A fresh copy of the migrated schema; `session_scope()` (the worker's, the reaper's)
    points at it."""
    with in_process(backend):
        yield backend.database_url


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str]]:
    """What reached the broker, instead of a broker."""
    out: list[tuple[str, int, str]] = []
    monkeypatch.setattr(broker, "send_task", lambda task, i, queue: out.append((task, i, queue)))
    return out


def tx(fn: Callable[[ExperimentRepository], T]) -> T:
    """One transaction, as the worker and the reaper run each step."""
    with db.session_scope() as session:
        return fn(ExperimentRepository(session))


def new_run(queue: str = "cpu") -> int:
    def add(repo: ExperimentRepository) -> int:
        return repo.add(Experiment(name="r", spec={"dataset": "digits"}, queue=queue), {}).id

    return tx(add)


def run_row(experiment_id: int) -> Experiment:
    row = tx(lambda r: r.get(experiment_id))
    assert row is not None
    return row


def claimed(lease_s: float = LEASE, owner: str = "w1") -> tuple[int, int]:
    experiment_id = new_run()
    attempt = tx(lambda r: r.claim(experiment_id, owner, lease_s))
    assert attempt == 1
    return experiment_id, attempt


def expire(experiment_id: int) -> None:
    """Time passes: the run's lease runs out."""
    with db.session_scope() as session:
        row = session.get(Experiment, experiment_id)
        assert row is not None
        row.lease_expires_at = utcnow() - timedelta(seconds=5)


# --- fence: the write lands only for the current attempt of a running run --------------------


def test_fence_lands_for_the_current_attempt_only(database: str) -> None:
    experiment_id, attempt = claimed()
    assert tx(lambda r: r.fence(experiment_id, attempt, epochs_run=3)) is True
    assert run_row(experiment_id).epochs_run == 3
    assert tx(lambda r: r.fence(experiment_id, attempt + 1, epochs_run=4)) is False
    assert tx(lambda r: r.fence(experiment_id, attempt - 1, epochs_run=5)) is False
    assert tx(lambda r: r.fence(experiment_id + 1000, attempt, epochs_run=6)) is False
    assert run_row(experiment_id).epochs_run == 3


def test_a_released_run_takes_no_more_writes_from_its_old_attempt(database: str) -> None:
    """Released (worker shutdown): queued again with the same attempt number until the next
    claim. A write still in flight from the old worker must not land."""
    experiment_id, attempt = claimed()
    assert tx(lambda r: r.release(experiment_id, attempt)) == "cpu"
    row = run_row(experiment_id)
    assert (row.status, row.attempt, row.lease_owner, row.lease_expires_at) == (
        "queued", attempt, None, None,
    )  # fmt: skip
    assert tx(lambda r: r.fence(experiment_id, attempt, epochs_run=9)) is False
    assert tx(lambda r: r.heartbeat(experiment_id, attempt, LEASE)) == (False, False)
    assert tx(lambda r: r.finish(experiment_id, attempt, "succeeded")) is False
    assert tx(lambda r: r.release(experiment_id, attempt)) is None
    row = run_row(experiment_id)
    assert (row.status, row.epochs_run, row.finished_at) == ("queued", 0, None)


def test_a_finished_run_takes_no_more_writes(database: str) -> None:
    experiment_id, attempt = claimed()
    assert tx(lambda r: r.finish(experiment_id, attempt, "early_stopped", stop_reason="x"))
    row = run_row(experiment_id)
    assert (row.status, row.stop_reason, row.lease_owner, row.lease_expires_at) == (
        "early_stopped", "x", None, None,
    )  # fmt: skip
    assert row.finished_at is not None
    assert tx(lambda r: r.fence(experiment_id, attempt, epochs_run=7)) is False
    assert tx(lambda r: r.finish(experiment_id, attempt, "failed", error="late")) is False
    assert tx(lambda r: r.heartbeat(experiment_id, attempt, LEASE)) == (False, False)
    row = run_row(experiment_id)
    assert (row.status, row.error, row.epochs_run) == ("early_stopped", None, 0)


def test_finishing_ends_the_attempt_and_a_refused_finish_ends_none(database: str) -> None:
    """The attempt's record (`GET /v1/experiments/{id}`'s attempts) ends with the run, in the
    same statement on PostgreSQL; a finish or pause the fence refuses changes no attempt."""

    def attempts(experiment_id: int) -> dict[int, tuple[str | None, object, str]]:
        rows = tx(lambda r: r.attempts(experiment_id))
        return {a.attempt: (a.outcome, as_utc(a.ended_at), a.worker) for a in rows}

    experiment_id, attempt = claimed()
    assert tx(lambda r: r.release(experiment_id, attempt)) == "cpu"
    released = attempts(experiment_id)
    assert released[attempt][0] == "handed_back"
    assert tx(lambda r: r.finish(experiment_id, attempt, "succeeded")) is False
    pause = tx(lambda r: r.fence_and_end(experiment_id, attempt, "waiting", status="waiting"))
    assert pause is False
    assert attempts(experiment_id) == released
    again = tx(lambda r: r.claim(experiment_id, "w2", LEASE))
    assert again == attempt + 1
    assert tx(lambda r: r.finish(experiment_id, again, "failed", error="boom"))
    row = run_row(experiment_id)
    assert (row.status, row.error) == ("failed", "boom")
    ended = attempts(experiment_id)
    assert ended.pop(again)[::2] == ("failed", "w2") and ended == released
    assert tx(lambda r: r.attempts(experiment_id))[-1].ended_at is not None
    # An attempt taken over after its lease expired was never ended: its late finish or pause
    # must not end it either.
    experiment_id, attempt = claimed()
    expire(experiment_id)
    assert tx(lambda r: r.claim(experiment_id, "w3", LEASE)) == attempt + 1
    assert tx(lambda r: r.finish(experiment_id, attempt, "succeeded")) is False
    pause = tx(lambda r: r.fence_and_end(experiment_id, attempt, "waiting", status="waiting"))
    assert pause is False
    assert {a: o for a, (o, _, _) in attempts(experiment_id).items()} == {1: None, 2: None}


def test_a_cancelled_queued_run_takes_no_writes(database: str) -> None:
    experiment_id = new_run()
    tx(lambda r: r.cancel(experiment_id))
    row = run_row(experiment_id)
    assert (row.status, row.cancel_requested) == ("cancelled", True)
    assert row.stop_reason == "cancelled before it started" and row.finished_at is not None
    # attempt 0 is the current attempt number of a never-claimed run; it is still not running.
    assert tx(lambda r: r.fence(experiment_id, 0, epochs_run=1)) is False


# --- heartbeat and cancel --------------------------------------------------------------------


def test_heartbeat_extends_the_lease_and_reports_a_cancel(database: str) -> None:
    experiment_id, attempt = claimed(lease_s=5)
    before = as_utc(run_row(experiment_id).lease_expires_at)
    assert before is not None
    assert tx(lambda r: r.heartbeat(experiment_id, attempt, 600)) == (True, False)
    after = as_utc(run_row(experiment_id).lease_expires_at)
    assert after is not None and after - before > timedelta(seconds=500)
    tx(lambda r: r.cancel(experiment_id))
    row = run_row(experiment_id)
    assert (row.status, row.cancel_requested) == ("running", True)  # stops at its next batch
    assert tx(lambda r: r.heartbeat(experiment_id, attempt, 600)) == (True, True)
    assert tx(lambda r: r.heartbeat(experiment_id, attempt + 1, 600)) == (False, False)


# --- claim -----------------------------------------------------------------------------------


def test_claim_takes_a_queued_run_once(database: str) -> None:
    experiment_id = new_run()
    assert tx(lambda r: r.claim(experiment_id, "w1", LEASE)) == 1
    row = run_row(experiment_id)
    assert (row.status, row.lease_owner, row.attempt) == ("running", "w1", 1)
    started = row.started_at
    assert started is not None
    expires = as_utc(row.lease_expires_at)
    assert expires is not None and timedelta(seconds=50) < expires - utcnow() <= timedelta(60)
    # A duplicate message, a second worker: the lease is live, nobody else takes it.
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) is None
    assert run_row(experiment_id).lease_owner == "w1"
    assert tx(lambda r: r.claim(experiment_id + 1000, "w2", LEASE)) is None


def test_claim_takes_over_an_expired_lease_with_a_new_attempt(database: str) -> None:
    experiment_id, attempt = claimed()
    first_start = run_row(experiment_id).started_at
    expire(experiment_id)
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) == attempt + 1
    row = run_row(experiment_id)
    assert (row.status, row.lease_owner, row.attempt) == ("running", "w2", 2)
    assert row.started_at == first_start  # the run started when it was first claimed
    # The old worker is fenced out.
    assert tx(lambda r: r.fence(experiment_id, attempt, epochs_run=1)) is False
    assert tx(lambda r: r.fence(experiment_id, attempt + 1, epochs_run=1)) is True


def test_claim_after_release_is_the_next_attempt(database: str) -> None:
    experiment_id, attempt = claimed()
    assert tx(lambda r: r.release(experiment_id, attempt)) == "cpu"
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) == attempt + 1


def test_claim_never_takes_a_run_with_a_cancel_requested(database: str) -> None:
    # Running, cancel requested, lease expired (its worker died): the reaper ends it, no worker
    # may start it again.
    experiment_id, _ = claimed()
    tx(lambda r: r.cancel(experiment_id))
    expire(experiment_id)
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) is None
    row = run_row(experiment_id)
    assert (row.status, row.attempt, row.lease_owner) == ("running", 1, "w1")
    # Cancelled while queued.
    queued = new_run()
    tx(lambda r: r.cancel(queued))
    assert tx(lambda r: r.claim(queued, "w2", LEASE)) is None
    assert run_row(queued).status == "cancelled"


def test_claim_never_takes_a_finished_run(database: str) -> None:
    experiment_id, attempt = claimed()
    assert tx(lambda r: r.finish(experiment_id, attempt, "succeeded"))
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) is None
    assert run_row(experiment_id).status == "succeeded"


# --- expired, requeue_expired, reap ----------------------------------------------------------


def test_expired_lists_running_runs_past_their_lease(database: str) -> None:
    live, _ = claimed()
    dead, dead_attempt = claimed()
    expire(dead)
    cancelled, _ = claimed()
    tx(lambda r: r.cancel(cancelled))
    expire(cancelled)
    queued = new_run()
    assert tx(lambda r: r.expired()) == [
        (dead, dead_attempt, False, "cpu"),
        (cancelled, 1, True, "cpu"),
    ]
    assert tx(lambda r: r.expired(limit=1)) == [(dead, dead_attempt, False, "cpu")]
    assert live not in {i for i, *_ in tx(lambda r: r.expired())}
    assert queued not in {i for i, *_ in tx(lambda r: r.expired())}


def test_requeue_expired_leaves_a_renewed_lease_alone(database: str) -> None:
    """The reaper read the run as expired; its worker's heartbeat landed before the update."""
    experiment_id, attempt = claimed()
    expire(experiment_id)
    assert tx(lambda r: r.heartbeat(experiment_id, attempt, LEASE)) == (True, False)
    assert tx(lambda r: r.requeue_expired(experiment_id, attempt, status="queued")) is False
    row = run_row(experiment_id)
    assert (row.status, row.lease_owner) == ("running", "w1")
    assert tx(lambda r: r.fence(experiment_id, attempt, epochs_run=2)) is True


def test_requeue_expired_leaves_a_reclaimed_run_alone(database: str) -> None:
    experiment_id, attempt = claimed()
    expire(experiment_id)
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) == attempt + 1
    expire(experiment_id)
    # The reaper's snapshot named the old attempt: nothing happens to the new one.
    assert tx(lambda r: r.requeue_expired(experiment_id, attempt, status="queued")) is False
    row = run_row(experiment_id)
    assert (row.status, row.lease_owner, row.attempt) == ("running", "w2", 2)


def test_reap_requeues_a_lost_run_and_sends_it_again(
    database: str, sent: list[tuple[str, int, str]]
) -> None:
    experiment_id = new_run(queue="gpu0")
    assert tx(lambda r: r.claim(experiment_id, "w1", LEASE)) == 1
    live, _ = claimed()
    expire(experiment_id)
    assert housekeeping.reap(max_attempts=3) == 1
    row = run_row(experiment_id)
    assert (row.status, row.lease_owner, row.lease_expires_at, row.attempt) == (
        "queued", None, None, 1,
    )  # fmt: skip
    assert sent == [("glidepath.run_experiment", experiment_id, "gpu0")]
    with db.session_scope() as session:
        messages = session.scalars(select(OutboxMessage.experiment_id)).all()
    assert messages == [experiment_id]
    assert run_row(live).status == "running"
    # The lost worker is fenced out; the next claim is attempt 2.
    assert tx(lambda r: r.fence(experiment_id, 1, epochs_run=1)) is False
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) == 2
    assert housekeeping.reap(max_attempts=3) == 0


def test_reap_ends_a_cancelled_run_and_fails_one_lost_too_often(
    database: str, sent: list[tuple[str, int, str]]
) -> None:
    cancelled, _ = claimed()
    tx(lambda r: r.cancel(cancelled))
    expire(cancelled)
    worn = new_run()
    for attempt in (1, 2):
        assert tx(lambda r: r.claim(worn, "w", LEASE)) == attempt
        expire(worn)
    assert housekeeping.reap(max_attempts=2) == 2
    row = run_row(cancelled)
    assert (row.status, row.stop_reason) == ("cancelled", "cancelled; its worker was lost")
    assert row.finished_at is not None and row.lease_owner is None
    row = run_row(worn)
    assert row.status == "failed" and row.finished_at is not None
    assert row.error == (
        "its worker was lost 2 times (GLIDEPATH_MAX_ATTEMPTS=2); last lease expired without a "
        "heartbeat"
    )
    assert sent == []


def test_only_lost_workers_count_against_max_attempts(
    database: str, sent: list[tuple[str, int, str]]
) -> None:
    """Attempts that ended with a hand-back or a pause at a pruner's rung are no loss: a run on
    its third attempt whose worker is lost for the first time goes back to the queue."""
    run = new_run()
    for attempt, outcome in ((1, "handed_back"), (2, "waiting")):
        assert tx(lambda r: r.claim(run, "w", LEASE)) == attempt
        tx(lambda r, a=attempt: r.release(run, a))
        tx(lambda r, a=attempt, o=outcome: r.end_attempt(run, a, o))
    assert tx(lambda r: r.claim(run, "w", LEASE)) == 3
    expire(run)
    assert housekeeping.reap(max_attempts=2) == 1
    assert run_row(run).status == "queued"


def test_a_worker_taking_over_a_run_lost_too_often_fails_it_as_the_reaper_would(
    database: str, sent: list[tuple[str, int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker may take an expired lease over before the reaper looks: it applies the reaper's
    rules to that run first, so a run lost GLIDEPATH_MAX_ATTEMPTS times fails either way (a
    takeover used to start attempt 4 and train on)."""
    from service.config import settings
    from worker.runs.finish import NOT_CLAIMED
    from worker.runs.lifecycle import run_experiment

    monkeypatch.setattr(settings, "max_attempts", 3)
    worn = new_run()
    for attempt in (1, 2, 3):  # each claim after the first takes an expired lease over
        assert tx(lambda r: r.claim(worn, "w", LEASE)) == attempt
        expire(worn)
    assert run_experiment(worn, owner="w4").status == NOT_CLAIMED
    row = run_row(worn)
    assert (row.status, row.attempt, row.lease_owner) == ("failed", 3, None)
    assert row.error is not None and row.error.startswith("its worker was lost 3 times")
    assert sent == []


def test_reap_skips_a_lease_renewed_after_it_looked(
    database: str, sent: list[tuple[str, int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reaper lists expired leases, then updates them one by one; a heartbeat that lands in
    between wins: the run stays with its worker and nothing is sent."""
    experiment_id, attempt = claimed()
    expire(experiment_id)
    snapshot = tx(lambda r: r.expired())
    assert snapshot == [(experiment_id, attempt, False, "cpu")]
    assert tx(lambda r: r.heartbeat(experiment_id, attempt, LEASE)) == (True, False)
    monkeypatch.setattr(ExperimentRepository, "expired", lambda self, **_: snapshot)
    assert housekeeping.reap(max_attempts=3) == 0
    row = run_row(experiment_id)
    assert (row.status, row.lease_owner, row.attempt) == ("running", "w1", attempt)
    assert sent == []


# --- decide_and_write reads the stored state -------------------------------------------------

SPEC = ExperimentSpec.model_validate(
    {
        "dataset": "digits",
        "base_lr": 0.1,
        "epochs": 10,
        "solver": {"type": "SGD", "params": {}},
        "scheduler": {
            "type": "ReduceLROnPlateau",
            "params": {"mode": "min", "factor": 0.5, "patience": 1},
            "monitor": "val_loss",
            "interval": "epoch",
        },
        "early_stopping": {"monitor": "val_loss", "patience": 3},
    }
)


def metrics(val_loss: float) -> dict[str, float | None]:
    return {"train_loss": 0.5, "val_loss": val_loss, "val_accuracy": 0.5}


def epochs_written(experiment_id: int) -> list[tuple[int, float, str | None, int]]:
    rows = tx(lambda r: r.epochs(experiment_id))
    return [(e.epoch, e.lr, e.decision, e.attempt) for e in rows]


def assert_reduced_then_stopped(experiment_id: int) -> None:
    """What val_loss 0.8, 0.9, 0.85, 0.95 leaves stored under SPEC: the LR halved after epoch 3,
    early stopping after epoch 4, the best epoch 1, each decision with its LRs."""
    assert epochs_written(experiment_id) == [
        (1, 0.1, None, 1), (2, 0.1, None, 1), (3, 0.1, "reduce_lr", 1), (4, 0.05, "early_stop", 1),
    ]  # fmt: skip
    row = run_row(experiment_id)
    assert (row.epochs_run, row.best_epoch, row.best_value) == (4, 1, 0.8)
    with db.session_scope() as session:
        kinds = session.execute(
            select(Decision.epoch, Decision.kind, Decision.old_lr, Decision.new_lr)
            .where(Decision.experiment_id == experiment_id)
            .order_by(Decision.epoch)
        ).all()
    assert [tuple(k) for k in kinds] == [(3, "reduce_lr", 0.1, 0.05), (4, "early_stop", None, None)]


def test_decide_and_write_continues_from_the_stored_state(database: str) -> None:
    experiment_id, attempt = claimed()
    lr, got = 0.1, []
    for epoch, value in enumerate([0.8, 0.9, 0.85, 0.95], 1):
        decision, _ = decide_and_write(experiment_id, attempt, SPEC, epoch, lr, 1.0, metrics(value))
        assert decision is not None
        got.append(decision.label)
        lr = decision.lr_next
    # Epoch 3 is the second epoch without improving on epoch 1 (patience 1): halve the LR;
    # epoch 4 is early stopping's third.
    assert got == [None, None, "reduce_lr", "early_stop"]
    assert_reduced_then_stopped(experiment_id)
    # The stored state is the state a replay of the stored rows reaches.
    rows = tx(lambda r: r.epochs(experiment_id))
    history = [(e.epoch, e.lr, metrics(e.val_loss or 0.0)) for e in rows]
    _, replayed = decisions.replay(SPEC, history)
    assert rows[-1].state == (replayed.to_json() if replayed else None)


def test_decide_and_write_uses_the_state_of_the_previous_epoch_row(database: str) -> None:
    """A resumed worker has no state in memory: what epoch N decides comes from epoch N-1's
    row alone. A stored state that has waited one bad epoch already reduces at the next."""
    experiment_id, attempt = claimed()
    stored = decisions.State(
        lr=0.1, plateau_best=0.5, plateau_best_epoch=1, plateau_bad_epochs=1,
        stop_best=0.5, stop_best_epoch=1, stop_wait=1, best_value=0.5, best_epoch=1,
    )  # fmt: skip
    tx(lambda r: r.write_epoch(
        {"experiment_id": experiment_id, "epoch": 2, "lr": 0.1, "duration_s": 1.0,
         "attempt": attempt, "state": stored.to_json(), **metrics(0.6)}, [],
    ))  # fmt: skip
    decision, state = decide_and_write(experiment_id, attempt, SPEC, 3, 0.1, 1.0, metrics(0.7))
    assert decision is not None and decision.label == "reduce_lr"
    assert (state.best_epoch, state.best_value, state.stop_wait) == (1, 0.5, 2)
    row = run_row(experiment_id)
    assert (row.epochs_run, row.best_epoch, row.best_value) == (3, 1, 0.5)


def test_decide_and_write_refuses_to_decide_over_a_gap(database: str) -> None:
    experiment_id, attempt = claimed()
    decide_and_write(experiment_id, attempt, SPEC, 1, 0.1, 1.0, metrics(0.8))
    with pytest.raises(HistoryGap):
        decide_and_write(experiment_id, attempt, SPEC, 3, 0.1, 1.0, metrics(0.7))
    assert [e[0] for e in epochs_written(experiment_id)] == [1]
    assert run_row(experiment_id).epochs_run == 1


def test_decide_and_write_by_a_stale_attempt_writes_nothing(database: str) -> None:
    experiment_id, attempt = claimed()
    decide_and_write(experiment_id, attempt, SPEC, 1, 0.1, 1.0, metrics(0.8))
    expire(experiment_id)
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) == attempt + 1
    decision, _ = decide_and_write(experiment_id, attempt, SPEC, 2, 0.1, 1.0, metrics(0.1))
    assert decision is None
    assert epochs_written(experiment_id) == [(1, 0.1, None, 1)]
    row = run_row(experiment_id)
    assert (row.epochs_run, row.best_epoch, row.best_value) == (1, 1, 0.8)


def write_many(experiment_id: int, attempt: int, epochs: list[Decided]) -> Written:
    """Decided epochs stored in one transaction, as the worker's epoch writer stores them."""
    return epoch_rows.write(experiment_id, attempt, rows_of(experiment_id, attempt, epochs))


def test_epochs_written_together_store_what_one_by_one_writes_store(database: str) -> None:
    """Short epochs share a transaction (worker/runs/training.py): the same rows, decisions and
    progress as one transaction per epoch, fenced as one; a stale attempt writes none of them."""
    experiment_id, attempt = claimed()
    state, lr, decided = decisions.initial_state(SPEC, 0.1), 0.1, []
    for epoch, value in enumerate([0.8, 0.9, 0.85, 0.95], 1):
        decision, state = decisions.step(SPEC, state, epoch, metrics(value), lr)
        decided.append(Decided(epoch, lr, 1.0, metrics(value), None, decision, state))
        lr = decision.lr_next
    assert write_many(experiment_id, attempt, decided[:1])
    assert write_many(experiment_id, attempt, decided[1:])
    assert_reduced_then_stopped(experiment_id)
    expire(experiment_id)
    assert tx(lambda r: r.claim(experiment_id, "w2", LEASE)) == attempt + 1
    later = [replace(d, epoch=d.epoch + 4) for d in decided]
    assert write_many(experiment_id, attempt, later) is Written.LOST
    assert len(epochs_written(experiment_id)) == 4
    assert run_row(experiment_id).epochs_run == 4


def test_an_epoch_written_twice_keeps_one_row(database: str) -> None:
    """A retried epoch (the same attempt after a transient error) replaces its row."""
    experiment_id, attempt = claimed()
    decide_and_write(experiment_id, attempt, SPEC, 1, 0.1, 1.0, metrics(0.8))
    decide_and_write(experiment_id, attempt, SPEC, 1, 0.1, 2.0, metrics(0.7))
    with db.session_scope() as session:
        rows = session.execute(
            select(EpochRow.epoch, EpochRow.val_loss, EpochRow.duration_s).where(
                EpochRow.experiment_id == experiment_id
            )
        ).all()
    assert [tuple(r) for r in rows] == [(1, 0.7, 2.0)]


def test_cancel_touches_only_its_own_run(database: str) -> None:
    mine, other = new_run(), new_run()
    running, _ = claimed()
    tx(lambda r: r.cancel(mine))
    assert run_row(mine).status == "cancelled"
    assert (run_row(other).status, run_row(other).cancel_requested) == ("queued", False)
    assert (run_row(running).status, run_row(running).cancel_requested) == ("running", False)


def test_cancelling_a_finished_run_changes_nothing(database: str) -> None:
    experiment_id, attempt = claimed()
    assert tx(lambda r: r.finish(experiment_id, attempt, "succeeded"))
    tx(lambda r: r.cancel(experiment_id))
    row = run_row(experiment_id)
    assert (row.status, row.cancel_requested, row.stop_reason) == ("succeeded", False, None)


def test_requeue_expired_marks_the_run_updated(database: str) -> None:
    experiment_id, attempt = claimed()
    expire(experiment_id)
    before = as_utc(run_row(experiment_id).updated_at)
    assert before is not None
    assert tx(lambda r: r.requeue_expired(experiment_id, attempt, status="queued"))
    after = as_utc(run_row(experiment_id).updated_at)
    assert after is not None and after > before
