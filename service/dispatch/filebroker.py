"""The embedded broker: kombu's file-system transport, with each message written whole before a
consumer can see it.

kombu's own `_put` opens the message under its final name and then writes it, and its `_get`
takes any file with that name it lists (this project polls every 10 ms), so a consumer could
move and read a message still being written: a truncated JSON body, an error in the worker and a
lost doorbell (the database stays right; the run would wait for the reaper's re-send). Here the
body goes to a hidden file in the same folder first and is renamed into place: a rename within
one file system is atomic, so a `.msg` file is complete whenever it is listed. The hidden name
(`.<uuid>.part`) is not `<…>.<queue>.msg`, so kombu's `_get`/`_size` and
`monitoring/queues.depths` ignore it. A process killed between the write and the rename leaves its
hidden file behind; housekeeping removes such files once they are older than any write takes
(`remove_leftovers`): the message they held was never delivered, and the outbox sends it again,
as it does every message not marked sent."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import suppress
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

PART_SUFFIX = ".part"
# A write and its rename take milliseconds; a hidden file this old was left by a killed writer.
LEFTOVER_AFTER_S = 300.0
DRAIN_TIMEOUT_S = 0.2


class Channel(filesystem.Channel):
    # The signature of kombu's file-system `_put`, which its own base class names differently.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Put `payload` onto `queue`: written to a hidden file, then renamed to kombu's name."""
        folder = self.data_folder_out
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        part = os.path.join(folder, f".{uuid.uuid4()}{PART_SUFFIX}")
        try:
            with open(part, "xb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(part, os.path.join(folder, name))
        except OSError as exc:
            with suppress(OSError):
                os.unlink(part)
            raise ChannelError(f"Cannot add file {name!r} to directory {folder!r}") from exc


def remove_leftovers(folder: str | os.PathLike[str], older_than_s: float = LEFTOVER_AFTER_S) -> int:
    """Delete the hidden files killed writers left in `folder` (not messages: those are kept);
    returns how many."""
    removed = 0
    cutoff = time.time() - older_than_s
    with suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(PART_SUFFIX)):
                continue
            with suppress(FileNotFoundError):  # another housekeeper took it first
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
    return removed


class Transport(filesystem.Transport):
    Channel = Channel

    # kombu's two base classes declare drain_events differently; this is the virtual one's.
    def drain_events(self, connection: Any, timeout: Any = None) -> Any:  # type: ignore[override]
        # Celery's solo worker on a transport without an event loop looks for a stop request
        # between two drain_events(timeout=2.0) calls: a SIGTERM or Ctrl-C waited up to 2 s for
        # an idle worker to notice. A shorter wait costs a loop turn per 0.2 s.
        if timeout is not None:
            timeout = min(timeout, DRAIN_TIMEOUT_S)
        return super().drain_events(connection, timeout=timeout)


# How Celery names it (`broker_transport`): kombu resolves a `module:Class` path.
TRANSPORT = f"{__name__}:Transport"
