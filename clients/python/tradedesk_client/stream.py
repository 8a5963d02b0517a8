"""The live stream (`/api/v1/stream`, WebSocket) with reconnects and exact resume.

Every `trade_update` carries `seq`, per account, gap-free and in commit order. The stream remembers the
last `seq` it delivered for each account; after any disconnect (network, server restart, a slow-consumer
close 4008, a stream that went silent past `idle_timeout`) it reconnects with backoff and jitter and
subscribes with `since` = those sequence numbers, so the server replays exactly what was missed. A
duplicate (`seq` already delivered) is dropped, and a gap (a `seq` beyond the next one, which the server
never sends) triggers a resubscribe from the last delivered `seq` rather than a silent loss.

Accounts that had no update yet: the server's `subscribed` answer carries each readable account's current
`seq` (`"seqs"`), which the stream records as where it stands, so an account's first update that happens
while disconnected is replayed too.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec

from tradedesk_client.errors import TradedeskError
from tradedesk_client.models import TradeUpdate

# WebSocket close codes of the contract.
CLOSE_UNAUTHORISED = 4401
CLOSE_TOO_MANY = 4429
CLOSE_SLOW_CONSUMER = 4008


class StreamError(TradedeskError):
    """The server refused the stream for good (bad key, an unknown stream, resume too old)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class _Envelope(msgspec.Struct):
    type: str


_envelope = msgspec.json.Decoder(_Envelope)
_trade_update = msgspec.json.Decoder(TradeUpdate)
_any = msgspec.json.Decoder()
_encode = msgspec.json.encode


class _Resubscribe(Exception):
    pass


class Stream:
    """Async iterator of stream messages: `TradeUpdate` for trade updates, dicts for the rest
    (`account`, `risk_alert`, `group_risk_alert`, `violation`, `price`, `bar`; heartbeats and
    acknowledgements are consumed here unless `yield_control=True`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        streams: list[str],
        *,
        since: dict[str, int] | None = None,
        idle_timeout: float = 45.0,
        max_backoff: float = 10.0,
        open_timeout: float = 10.0,
        yield_control: bool = False,
    ) -> None:
        self.url = base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/api/v1/stream"
        self.api_key = api_key
        self.streams = list(streams)
        self.last_seq: dict[str, int] = {str(k): v for k, v in (since or {}).items()}
        self.idle_timeout = idle_timeout
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.yield_control = yield_control
        self.reconnects = 0
        self.duplicates_dropped = 0
        self._closed = False

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    def _backoff(self, failures: int) -> float:
        return random.uniform(0, min(self.max_backoff, 0.1 * 2**failures))

    async def _messages(self) -> AsyncIterator[Any]:
        import websockets
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        failures = 0
        first = True
        while not self._closed:
            if not first:
                self.reconnects += 1
                await asyncio.sleep(self._backoff(failures))
            first = False
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            try:
                async with websockets.connect(
                    self.url, additional_headers=headers, open_timeout=self.open_timeout, max_size=2**24
                ) as ws:
                    subscribe: dict[str, Any] = {"action": "subscribe", "streams": self.streams}
                    if self.last_seq:
                        subscribe["since"] = dict(self.last_seq)
                    await ws.send(_encode(subscribe).decode())  # a text frame, as the protocol says
                    while not self._closed:
                        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns a message that
                        # arrives as the iterating task is cancelled and drops the cancellation, so
                        # a consumer cancelling its reader while updates flow never saw it end.
                        async with asyncio.timeout(self.idle_timeout):
                            raw = await ws.recv()
                        kind = _envelope.decode(raw).type
                        if kind == "trade_update":
                            update = _trade_update.decode(raw)
                            account = str(update.account_id)
                            last = self.last_seq.get(account)
                            if last is not None and update.seq <= last:
                                self.duplicates_dropped += 1
                                continue
                            if last is not None and update.seq != last + 1:
                                raise _Resubscribe
                            self.last_seq[account] = update.seq
                            failures = 0
                            yield update
                            continue
                        message = _any.decode(raw)
                        if kind == "subscribed":
                            for account_id, seq in (message.get("seqs") or {}).items():
                                self.last_seq.setdefault(str(account_id), int(seq))
                            failures = 0
                        elif kind == "error":
                            raise StreamError(str(message.get("code")), str(message.get("message")))
                        if kind in ("subscribed", "heartbeat") and not self.yield_control:
                            continue
                        yield message
            except StreamError:
                raise
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code == CLOSE_UNAUTHORISED:
                    raise StreamError("unauthorized", "the server refused the API key") from exc
                failures += 1 if code != CLOSE_SLOW_CONSUMER else 0
                if code == CLOSE_TOO_MANY:
                    failures += 3
            except InvalidStatus as exc:
                if exc.response.status_code in (401, 403):
                    raise StreamError("unauthorized", "the server refused the API key") from exc
                failures += 1
            except (_Resubscribe, TimeoutError, OSError, EOFError, WebSocketException):
                failures += 1  # a refused or broken handshake, a silent stream, a gap: reconnect


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class BlockingStream:
    """The blocking client's stream (`Client.stream`): a `Stream` run on an event loop of its own in a
    background thread, its messages handed to the iterating thread through a bounded queue. A consumer
    that stops reading stops the reading of the socket too (the server's slow-consumer rule then applies,
    and the resume after its close is exact as ever). `close()` (or leaving a `with` block) ends the
    iteration; `last_seq`, `reconnects` and `duplicates_dropped` are the stream's."""

    def __init__(self, stream: Stream, buffer: int = 1000) -> None:
        self._stream = stream
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=buffer)
        self._thread: threading.Thread | None = None

    @property
    def last_seq(self) -> dict[str, int]:
        return self._stream.last_seq

    @property
    def reconnects(self) -> int:
        return self._stream.reconnects

    @property
    def duplicates_dropped(self) -> int:
        return self._stream.duplicates_dropped

    def __enter__(self) -> BlockingStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.close()
        try:  # (wake an iteration waiting for the next message)
            self._queue.put_nowait(_End())
        except queue.Full:
            pass

    def __iter__(self) -> Iterator[Any]:
        if self._thread is None:
            self._thread = threading.Thread(target=asyncio.run, args=(self._pump(),), daemon=True)
            self._thread.start()
        while not self._stream._closed:
            item = self._queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    def _hand_over(self, item: Any) -> None:
        while not self._stream._closed:
            try:
                self._queue.put(item, timeout=0.25)
                return
            except queue.Full:
                continue

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        end = _End()
        try:
            async for message in self._stream:
                await loop.run_in_executor(None, self._hand_over, message)
        except BaseException as exc:  # (handed to the iterating thread, raised there)
            end = _End(exc)
        await loop.run_in_executor(None, self._hand_over, end)
