"""The worker's epoch rows are stored by a child process, the writer, not by a thread of the
training process.

Why a process: a thread's transactions run SQLAlchemy's Python under the GIL, which the training
thread takes back between every two torch ops. Each hand-over waits, so the thread cost the
training more than its own CPU: 8 ms epochs (digits, MLP [64]) trained 6–9 % slower with one
writer thread on SQLite, and 2–3 % with no writes during the run (benchmarks/run_overhead.py
--set GLIDEPATH_EPOCH_WRITE_SECONDS=30). W&B's client logs through a service process for the
same reason. The training process now only pickles the decided epochs onto a pipe.

One writer serves one run at a time (a sink takes it for the run and gives it back; a worker
process runs one run at a time, so one writer is started once and reused). It writes with
`epoch_rows.write` (one fenced transaction, retried across a database restart) and answers
whether the attempt still held the run. It ignores SIGINT and SIGTERM, so a worker's warm
shutdown can still store what it decided, and exits when its pipe closes: when the worker ends
or is killed. A writer that died is started again and the write sent again: each write is
idempotent (fenced upserts). The pipe carries only our own processes' objects (never a user's
bytes), pickled by multiprocessing."""

from __future__ import annotations

import atexit
import contextvars
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection as Pipe

from sqlalchemy.engine import Connection, Engine

from service.kit.db import make_engine
from service.kit.logging import configure, get_logger
from worker.runs import epoch_rows
from worker.runs.epoch_rows import EpochRows, Written
from worker.runs.retry import with_db_retry

log = get_logger(__name__)


class WriterFailed(RuntimeError):
    """A write failed in the writer (its message is the writer's error), or the writer died
    twice on one write."""


@dataclass(frozen=True)
class _Request:
    database_url: str
    experiment_id: int
    attempt: int
    batch: EpochRows


class Writer:
    """A writer process and its pipe. `send` hands one write over; its `Pending` tells when it
    is done and whether the attempt still held the run."""

    def __init__(self) -> None:
        self._pipe: Pipe | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.busy = False  # a write was sent and its answer not yet read

    def start(self) -> Writer:
        # A fresh interpreter (not a fork: forking a process with torch's threads or CUDA is
        # unsafe; not multiprocessing's spawn either, which re-imports the caller's __main__).
        ours, theirs = socket.socketpair()
        code = f"from worker.runs.epoch_writer import serve; serve({theirs.fileno()})"
        proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=[theirs.fileno()])
        theirs.close()  # held only by the child now: its exit closes our end's peer
        self._pipe, self._proc = Pipe(ours.detach()), proc
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def send(self, database_url: str, experiment_id: int, attempt: int,
             batch: EpochRows) -> Pending:  # fmt: skip
        request = _Request(database_url, experiment_id, attempt, batch)
        self.busy = True
        try:
            self._ready().send(request)
        except (BrokenPipeError, EOFError, OSError):
            self.resend(request)  # died idle: the request was not taken
        return Pending(self, request)

    def resend(self, request: _Request) -> None:
        """Stop this writer (if it is not gone already), start another, and send it `request`."""
        self.stop()
        self.busy = True
        self._ready().send(request)

    def _ready(self) -> Pipe:
        if not self.alive():
            self.stop()
            self.start()
        assert self._pipe is not None
        return self._pipe

    def stop(self) -> None:
        """Close the pipe (the writer exits after the write it is doing) and forget it."""
        if self._pipe is not None:
            self._pipe.close()
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._pipe = self._proc = None
        self.busy = False


class Pending:
    """One write handed to a writer."""

    def __init__(self, writer: Writer, request: _Request) -> None:
        self.writer, self.request = writer, request

    def done(self) -> bool:
        pipe = self.writer._pipe
        try:
            return pipe is None or pipe.poll()  # the answer is there, or the writer is gone
        except (EOFError, OSError):
            return True

    def result(self) -> Written:
        """Whether the attempt still held the run (the rows are stored: true) and whether a
        cancel is requested; waits for the answer. A writer that died meanwhile is started
        again and the write sent once more."""
        for resend in (False, True):
            try:
                if resend:
                    self.writer.resend(self.request)
                pipe = self.writer._pipe
                assert pipe is not None
                ok, answer = pipe.recv()
                self.writer.busy = False
            except (EOFError, BrokenPipeError, OSError, AssertionError):
                log.warning("epoch_writer_lost", experiment_id=self.request.experiment_id,
                            resending=not resend)  # fmt: skip
                continue
            if not ok:
                raise WriterFailed(answer)
            return Written(answer)
        raise WriterFailed(f"the epoch writer died twice on experiment "
                           f"{self.request.experiment_id}'s write")  # fmt: skip


_idle: list[Writer] = []
_lock = threading.Lock()


_answering: list[threading.Thread] = []  # each awaits a writer's answer to a run's final write


def keep_when_answered(writer: Writer, pending: Pending,
                       answered: Callable[[Written | None], None]) -> None:  # fmt: skip
    """Give `writer` back once `pending` is answered, handing the answer to `answered` (None:
    the write failed, logged here), on a thread: a run's final write (runs/finish.py
    `finish_run_behind`) commits while its worker takes its next run. `take` waits for it first."""

    def settle() -> None:
        written: Written | None = None
        try:
            written = pending.result()
        except WriterFailed:
            log.exception("epoch_write_failed", experiment_id=pending.request.experiment_id)
        try:
            answered(written)
        finally:
            give_back(writer)

    # In the caller's context: its log events carry the run's bound fields (worker, attempt).
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(settle,), name="epoch-writer-answer",
                              daemon=True)  # fmt: skip
    with _lock:
        _answering.append(thread)
    thread.start()


def _await_answers() -> None:
    with _lock:
        threads, _answering[:] = list(_answering), []
    for thread in threads:
        thread.join()


def take() -> Writer:
    """A writer for one run: an idle one of this process's, or a new one; a writer still
    awaiting a finished run's answer is waited for (milliseconds), not replaced."""
    _await_answers()
    with _lock:
        while _idle:
            writer = _idle.pop()
            if writer.alive():
                return writer
    return Writer().start()


def give_back(writer: Writer) -> None:
    """Keep it for the next run, unless an answer is still due (the run ended by an error
    between a write and its answer): that one is stopped."""
    if writer.busy:
        writer.stop()
        return
    with _lock:
        _idle.append(writer)


@atexit.register
def _stop_all() -> None:
    _await_answers()
    with _lock:
        writers, _idle[:] = list(_idle), []
    for writer in writers:
        writer.stop()


def prestart() -> None:
    """Start this process's first writer now (a worker's start), not in its first run."""
    give_back(take())


def serve(fd: int) -> None:
    """The writer's loop (in the child): one request at a time, until the pipe closes."""
    pipe = Pipe(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure()
    database = _Database()
    while True:
        try:
            request: _Request = pipe.recv()
        except (EOFError, OSError):
            return  # the worker ended or was killed
        batch = request.batch
        what = f"experiment {request.experiment_id} epochs {batch.first}-{batch.epochs_run}"
        try:
            write = partial(database.write, request)
            answer: tuple[bool, object] = (True, int(with_db_retry(write, what)))
        except Exception as exc:
            log.exception("epoch_write_failed", experiment_id=request.experiment_id)
            answer = (False, f"{type(exc).__name__}: {exc}")
        try:
            pipe.send(answer)
        except (BrokenPipeError, OSError):
            return


class _Database:
    """The writer's engine and the connection it holds (no pool checkout per write): one
    database at a time (tests switch between theirs)."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.engine: Engine | None = None
        self.conn: Connection | None = None

    def write(self, request: _Request) -> Written:
        if request.database_url != self.url or self.conn is None:
            if self.engine is not None:
                self.engine.dispose()
            self.url, self.engine = request.database_url, make_engine(request.database_url)
            self.conn = None
            self.conn = self.engine.connect()  # a refused connection is retried like a write
        return epoch_rows.write(request.experiment_id, request.attempt, request.batch, self.conn)
