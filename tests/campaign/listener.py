"""A tiny HTTP(S) listener on 127.0.0.1 for callback tests."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, Awaitable, Callable


class Listener:
    """A tiny HTTP(S) server on 127.0.0.1 that records JSON bodies; ``answer`` picks the status."""

    def __init__(self, answer: Callable[[dict[str, Any]], Awaitable[int]] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._answer = answer
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self, tls: ssl.SSLContext | None = None) -> "Listener":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                body = json.loads(await reader.readexactly(length))
                status = await self._answer(body) if self._answer else 200
                if status == 200:
                    self.bodies.append(body)
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
