"""Request ids (kit/request_id.py): a sane `X-Request-ID` is echoed; otherwise each response gets
a new id of 32 hex digits, never the same twice, in this process or in one forked from it."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import MutableMapping
from typing import Any

from service.kit.request_id import RequestId, new_id

HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def answered_id(headers: list[tuple[bytes, bytes]]) -> str:
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    asyncio.run(RequestId(_ok)(scope, receive, send))
    return dict(sent[0]["headers"])[b"x-request-id"].decode()


def test_a_sane_id_is_echoed_and_any_other_replaced_by_a_new_one() -> None:
    assert answered_id([(b"x-request-id", b"poll-1")]) == "poll-1"
    made = [answered_id([(b"x-request-id", b"no spaces allowed")]), answered_id([])]
    made += [answered_id([]) for _ in range(1000)]
    assert all(HEX32.match(i) for i in made) and len(set(made)) == len(made)


def test_a_forked_process_makes_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, then gone
        os.write(write, b"".join(new_id() for _ in range(3)))
        os._exit(0)
    os.close(write)
    child = os.read(read, 96).decode()
    os.waitpid(pid, 0)
    os.close(read)
    ours = [new_id().decode() for _ in range(3)]  # what a copy of this process would make next
    assert len(child) == 96 and all(HEX32.match(i) for i in ours)
    assert not {child[i : i + 32] for i in (0, 32, 64)} & set(ours)
