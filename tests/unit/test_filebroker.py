"""The embedded broker writes each message whole before a consumer can list it
(service/dispatch/filebroker.py): kombu's file-system transport created the `.msg` file under its
final name and then wrote it, so a consumer polling the folder could read half a message.

Watched with inotify on a real folder: a message's name must arrive by a rename (IN_MOVED_TO),
never be created in place (IN_CREATE) and then written."""

from __future__ import annotations

import ctypes
import os
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from service.config import settings
from service.dispatch import broker, filebroker

IN_MOVED_TO = 0x80
IN_CREATE = 0x100


class Inotify:
    """The names created in, and moved into, one folder (Linux inotify through libc)."""

    def __init__(self, folder: Path) -> None:
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        watch = self.libc.inotify_add_watch(self.fd, str(folder).encode(), IN_CREATE | IN_MOVED_TO)
        assert watch >= 0, os.strerror(ctypes.get_errno())

    def events(self) -> list[tuple[str, str]]:
        """(`created` or `moved`, name) for each event so far."""
        out: list[tuple[str, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            at = 0
            while at < len(data):
                _, mask, _, size = struct.unpack_from("iIII", data, at)
                name = data[at + 16 : at + 16 + size].rstrip(b"\0").decode()
                out.append(("moved" if mask & IN_MOVED_TO else "created", name))
                at += 16 + size

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def folders(tmp_path: Path) -> Iterator[tuple[Path, Inotify]]:
    queue = tmp_path / "queue"
    for d in (queue, tmp_path / "control"):
        d.mkdir()
    watcher = Inotify(queue)
    yield tmp_path, watcher
    watcher.close()


def queue_name() -> str:
    """A queue of its own: kombu keeps the file-system transport's bindings in one state per
    process, so a queue bound in an earlier test's folder would not be bound in this one's."""
    return f"cpu-{uuid.uuid4().hex[:8]}"


def connect(base: Path) -> Connection:
    options = {
        "data_folder_in": str(base / "queue"),
        "data_folder_out": str(base / "queue"),
        "control_folder": str(base / "control"),
        "store_processed": False,
        "polling_interval": 0.01,
    }
    return Connection("filesystem://", transport=filebroker.TRANSPORT, transport_options=options)


def test_a_message_appears_under_its_name_only_whole(
    folders: tuple[Path, Inotify],
) -> None:
    base, watcher = folders
    body = {"experiment": 42, "padding": "x" * 200_000}  # many pages: a long write
    name = queue_name()
    with connect(base) as conn:
        queue = conn.SimpleQueue(name)
        queue.put(body)
        events = watcher.events()
        msgs = [(how, f) for how, f in events if f.endswith(f".{name}.msg")]
        assert [how for how, _ in msgs] == ["moved"], events
        # Written under a hidden name that no consumer takes for a message, in the same folder.
        parts = [f for how, f in events if how == "created"]
        assert len(parts) == 1 and parts[0].startswith(".")
        assert parts[0].endswith(filebroker.PART_SUFFIX)
        assert queue.qsize() == 1

        got = queue.get(timeout=5)
        assert got.payload == body
        got.ack()
        queue.close()
    assert list((base / "queue").iterdir()) == []  # nothing left behind


def test_a_leftover_part_file_is_no_message(folders: tuple[Path, Inotify]) -> None:
    base, _ = folders
    (base / "queue" / f".left-by-a-crash{filebroker.PART_SUFFIX}").write_bytes(b'{"half')
    with connect(base) as conn:
        queue = conn.SimpleQueue(queue_name())
        assert queue.qsize() == 0
        queue.put({"experiment": 7})
        assert queue.get(timeout=5).payload == {"experiment": 7}
        queue.close()


def test_the_apps_embedded_broker_uses_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(settings, "broker_url", None)
    monkeypatch.setattr(settings, "data_dir", tmp_path)
    with broker.make_celery().connection_for_write() as conn:
        assert isinstance(conn.transport, filebroker.Transport)


def test_housekeeping_removes_the_part_files_killed_writers_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only hidden `.part` files older than any write takes go; messages, and a write under
    way, stay."""
    from service import housekeeping

    monkeypatch.setattr(settings, "broker_url", None)
    monkeypatch.setattr(settings, "data_dir", tmp_path)
    folder = broker.queue_folder()
    folder.mkdir(parents=True)
    old = time.time() - filebroker.LEFTOVER_AFTER_S - 60
    left = folder / f".killed{filebroker.PART_SUFFIX}"
    writing = folder / f".writing{filebroker.PART_SUFFIX}"
    waiting = folder / "1_abc.cpu.msg"  # an old message no worker has taken yet
    for path in (left, writing, waiting):
        path.write_bytes(b"{}")
    os.utime(left, (old, old))
    os.utime(waiting, (old, old))
    assert housekeeping.remove_broker_leftovers() == 1  # a job of every housekeeping tick
    assert sorted(p.name for p in folder.iterdir()) == sorted([writing.name, waiting.name])
    assert filebroker.remove_leftovers(tmp_path / "no-such-folder") == 0
