"""This worker's row in the registry (service/workers): its manifest, written when it starts and
refreshed by a heartbeat thread with the run it holds, so the API can check specs against what
the workers offer and `GET /v1/workers` shows who runs what."""

from __future__ import annotations

import os
import platform
import socket
import threading
from typing import Any

import torch

from service.kit.db import session_scope
from service.kit.logging import get_logger
from service.workers.queues import consumed
from service.workers.repository import WorkerRepository
from service.workers.service import HEARTBEAT_SECONDS
from worker.runs.budget import MB, device_memory
from worker.runs.plugins import here

log = get_logger(__name__)


def worker_id() -> str:
    """host:pid: the registry's key and the name this process holds leases under."""
    return f"{socket.gethostname()}:{os.getpid()}"


def devices() -> list[dict[str, Any]]:
    """What a run's `device: auto` may land on here: each visible GPU, then the CPU."""
    out = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            cuda = torch.device(f"cuda:{i}")
            out.append({"name": str(cuda), "kind": "cuda",
                        "model": torch.cuda.get_device_name(cuda),
                        "memory_mb": device_memory(cuda) // MB})  # fmt: skip
    try:
        ram_mb: int | None = device_memory(torch.device("cpu")) // MB
    except (ValueError, OSError, AttributeError):  # not every platform says
        ram_mb = None
    out.append({"name": "cpu", "kind": "cpu", "model": platform.processor() or platform.machine(),
                "memory_mb": ram_mb, "cores": os.cpu_count()})  # fmt: skip
    return out


def queues(bases: list[str]) -> list[str]:
    """The device queues this worker was started with, plus one per combination of the plugins
    installed here (capability routing, service/workers/queues.py)."""
    offered = here()
    return consumed(bases, offered.models, offered.datasets)


COALESCE_SECONDS = 0.05


class Registration(threading.Thread):
    """Registers this worker, then beats every HEARTBEAT_SECONDS until `close`."""

    current_run: int | None = None  # set by the run lifecycle; read by the next beat

    def __init__(self, queue_names: list[str]) -> None:
        super().__init__(name="registry", daemon=True)
        self.id = worker_id()
        self.queue_names = queue_names
        self.register_later = False  # the registration failed, or the row was forgotten
        self._done = threading.Event()
        self._wake = threading.Event()  # beat now, not at the next HEARTBEAT_SECONDS

    def register(self) -> None:
        with session_scope() as session:
            WorkerRepository(session).register(
                self.id, host=socket.gethostname(), pid=os.getpid(), queues=self.queue_names,
                devices=devices(), plugins=here().manifest(), current_run=self.current_run,
            )  # fmt: skip
        log.info("worker_registered", worker=self.id, queues=self.queue_names,
                 models=sorted(here().models), datasets=sorted(here().datasets),
                 plugin_errors=here().errors or None)  # fmt: skip

    def beat(self) -> None:
        with session_scope() as session:
            if not WorkerRepository(session).beat(self.id, self.current_run):
                self.register_later = True
        if self.register_later:
            self.register_later = False
            self.register()

    def run(self) -> None:
        while not self._done.is_set():
            if self._wake.wait(HEARTBEAT_SECONDS):
                # One beat for a run's end and the next run's claim: the next claim follows within
                # milliseconds when runs are queued.
                self._done.wait(COALESCE_SECONDS)
            self._wake.clear()  # before the beat reads current_run: a later change wakes again
            if self._done.is_set():
                break
            try:
                self.beat()
            except Exception:  # the database is briefly away: the next beat tries again
                log.warning("registry_heartbeat_failed", exc_info=True)

    def beat_soon(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._done.set()
        self._wake.set()
        if self.is_alive():
            self.join(5)  # no beat after the row says stopped
        try:
            with session_scope() as session:
                WorkerRepository(session).stopped(self.id)
        except Exception:
            log.warning("registry_stop_failed", exc_info=True)


_registration: Registration | None = None


def start(queue_names: list[str]) -> None:
    """Register this process and start its heartbeat (once per process)."""
    global _registration
    if _registration is not None:
        return
    _registration = Registration(queue_names)
    try:
        _registration.register()
    except Exception:  # the heartbeat registers it once the database answers
        log.warning("worker_register_failed", exc_info=True)
        _registration.register_later = True
    _registration.start()


def stop() -> None:
    global _registration
    if _registration is not None:
        _registration.close()
        _registration = None


def holding(run_id: int | None) -> None:
    """The run this worker now holds (None: idle), written right away so that the registry is
    current without waiting for the next beat: by the heartbeat thread, off the run's path (a
    transaction at each claim and each end), or here when there is none."""
    if _registration is None:
        return
    _registration.current_run = run_id
    if _registration.is_alive():
        _registration.beat_soon()
        return
    try:
        with session_scope() as session:
            WorkerRepository(session).beat(_registration.id, run_id)
    except Exception:  # the heartbeat writes it soon
        log.warning("registry_update_failed", exc_info=True)
