"""``CorkedTransport``: the writes of one event-loop turn leave in one write at the end of the turn (a response's
head and body in one send), in order; ``close`` and ``write_eof`` send what is pending first, ``abort`` drops it."""

from __future__ import annotations

import asyncio
from typing import Any

from fota_server.adapters.http_limits import CorkedTransport


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return 0


async def _next_turn() -> None:
    await asyncio.sleep(0)


def test_the_writes_of_one_turn_leave_in_one_write_in_order() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        inner = RecordingTransport()
        corked = CorkedTransport(inner, asyncio.get_running_loop())
        corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        corked.write(memoryview(b"{}"))
        assert inner.calls == []                       # nothing sent within the turn
        await _next_turn()
        corked.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # alone in its turn: sent alone, at the end of it
        await _next_turn()
        corked.writelines([b"a", b"b"])
        await _next_turn()
        await _next_turn()                             # an empty turn sends nothing
        return inner.calls

    assert asyncio.run(scenario()) == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"),
                                       ("write", b"HTTP/1.1 100 Continue\r\n\r\n"), ("write", b"ab")]


def test_close_and_write_eof_send_what_is_pending_first_and_abort_drops_it() -> None:
    async def scenario() -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[tuple[str, Any]], int]:
        loop = asyncio.get_running_loop()
        closed, eof, aborted = RecordingTransport(), RecordingTransport(), RecordingTransport()
        for inner, end in ((closed, "close"), (eof, "write_eof"), (aborted, "abort")):
            corked = CorkedTransport(inner, loop)
            corked.write(b"x")
            corked.write(b"y")
            getattr(corked, end)()
        pending = CorkedTransport(RecordingTransport(), loop)
        pending.write(b"12345")
        size = pending.get_write_buffer_size()
        await _next_turn()
        return closed.calls, eof.calls, aborted.calls, size

    closed, eof, aborted, size = asyncio.run(scenario())
    assert closed == [("write", b"xy"), ("close", None)]
    assert eof == [("write", b"xy"), ("write_eof", None)]
    assert aborted == [("abort", None)]                # and nothing written after it, at the end of the turn
    assert size == 5


def test_everything_else_is_the_transports() -> None:
    async def scenario() -> tuple[bool, Any]:
        inner = RecordingTransport()
        corked = CorkedTransport(inner, asyncio.get_running_loop())
        inner.closing = True
        return corked.is_closing(), corked.get_extra_info("peername")

    assert asyncio.run(scenario()) == (True, ("127.0.0.1", 1))
