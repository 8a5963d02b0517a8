"""The raw client: one keep-alive HTTP/1.1 connection on asyncio streams, requests pre-encoded."""

from __future__ import annotations

import asyncio
import ssl

from app.tools.loadtest.ops import Op


class RawConnection:
    """One keep-alive HTTP/1.1 connection; reconnects lazily after any error or `Connection: close`."""

    __slots__ = ("host", "port", "ssl", "reader", "writer", "started_ns")

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> None:
        self.host, self.port, self.ssl = host, port, ssl_ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.started_ns = 0  # start of the request in flight, 0 when idle (read by the watchdog)

    async def request(self, head: bytes, body: bytes | None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        reader, writer = self.reader, self.writer
        if body is None:
            writer.write(head + b"\r\n")
        else:
            writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        lower = raw.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            data = await reader.readexactly(int(lower[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            data = await self._chunked(reader)
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:  # no framing: the body runs to the end of the connection
            data = await reader.read()
            self.close()
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, data

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None


def request_head(op: Op, host_header: str, headers: dict[str, str]) -> bytes:
    lines = [f"{op.method} {op.path} HTTP/1.1", f"Host: {host_header}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if op.body is not None:
        lines.append("Content-Type: application/json")
    # Bodiless heads end with the blank line added at send time; bodies append Content-Length first.
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")
