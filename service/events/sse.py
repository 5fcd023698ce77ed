"""The Server-Sent Events wire format (https://html.spec.whatwg.org/#server-sent-events): each
event is `event:`, optional `id:` and `data:` lines and a blank line; a line starting with `:` is
a comment, which clients ignore (the keep-alive)."""

from __future__ import annotations

MEDIA_TYPE = "text/event-stream"
KEEP_ALIVE = b": keep-alive\n\n"


def frame(event: str, data: str, event_id: int | None = None) -> bytes:
    """One event; `data` is one line of JSON (JSON never contains a raw newline)."""
    head = f"event: {event}\n" if event_id is None else f"event: {event}\nid: {event_id}\n"
    return f"{head}data: {data}\n\n".encode()
