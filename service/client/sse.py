"""Reading Server-Sent Events (https://html.spec.whatwg.org/#server-sent-events) from a stream's
lines: what `Client.events` yields and `glidepath watch` follows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    event: str  # epoch, decision, status, end
    data: str
    id: str | None = None  # the stream's last event id once this event is dispatched

    def json(self) -> Any:
        return json.loads(self.data)


def parse(lines: Iterable[str]) -> Iterator[Event | None]:
    """Each event as its blank line ends it; None for each comment line (the keep-alive), so a
    reader can tell a quiet stream from a dead one."""
    event, last_id = "", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            yield None
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
