"""A request's Content-Type as the routes read it: one answer for the error handlers (is this a
415?) and the NUL check (is this body JSON?), so a type one reads as JSON the other does too."""

from __future__ import annotations

from email.message import Message


def media_type(value: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json` ('' when absent). A value that is
    no media type (`;;;`, `json`) is named as sent: the email parser would call it text/plain."""
    if not value or not value.strip():
        return ""
    if value.split(";", 1)[0].count("/") != 1:
        return repr(value.strip())
    message = Message()
    message["content-type"] = value
    return message.get_content_type()


def reads_json(media: str) -> bool:
    """What FastAPI parses as a JSON body: application/json and any application/…+json."""
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
