"""`Client` (blocking) and `AsyncClient`: the same resources over httpx, with the retry rules of
`_transport`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from tradedesk_client import resources as r
from tradedesk_client._transport import Call, RetryPolicy, decode, parse_retry_after, should_retry
from tradedesk_client.errors import TransportError

API_PREFIX = "/api/v1"
USER_AGENT = "tradedesk-client/0.1"


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _after(call: Call, after_seq: int) -> Call:
    return Call(
        call.method, call.path, params={**(call.params or {}), "after_seq": after_seq}, model=call.model
    )


def _with_cursor(call: Call, cursor: str | None) -> Call:
    params = dict(call.params or {})
    params["cursor"] = cursor
    return Call(call.method, call.path, params=params, model=call.model)


class _Resources:
    """The resource namespaces, bound to a runner (the client itself)."""

    def _bind(self) -> None:
        self.accounts = r.Accounts(self)
        self.orders = r.Orders(self)
        self.positions = r.Positions(self)
        self.fills = r.Fills(self)
        self.exchanges = r.Exchanges(self)
        self.instruments = r.Instruments(self)
        self.candles = r.Candles(self)
        self.risk = r.Risk(self)
        self.backtests = r.Backtests(self)
        self.jobs = r.Jobs(self)
        self.users = r.Users(self)
        self.keys = r.Keys(self)
        self.market = r.Market(self)
        self.activities = r.Activities(self)

    # Shortcuts for the order operations bots use most (the same calls as the resource methods).
    def replace_order(self, account_id: r.Id, order_id: r.Id, **fields: Any) -> Any:
        return self.orders.replace(account_id, order_id, **fields)

    def cancel_all_orders(self, account_id: r.Id, *, symbol: str | None = None) -> Any:
        return self.orders.cancel_all(account_id, symbol=symbol)

    def get_order_by_client_id(self, account_id: r.Id, client_order_id: str) -> Any:
        return self.orders.get_by_client_id(account_id, client_order_id)

    def close_position(self, account_id: r.Id, symbol: str, **options: Any) -> Any:
        return self.positions.close(account_id, symbol, **options)

    def close_all_positions(self, account_id: r.Id, *, cancel_orders: bool = False) -> Any:
        return self.positions.close_all(account_id, cancel_orders=cancel_orders)


class Client(_Resources):
    """Blocking client. `Client("http://127.0.0.1:8000", api_key=KEY)`; use as a context manager or
    call `close()`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
        )
        self._bind()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def run(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                if not should_retry(self.retry, attempt, None):
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
            if response is not None and not should_retry(self.retry, attempt, response):
                return decode(call, response)
            retry_after = (
                parse_retry_after(response.headers.get("retry-after")) if response is not None else None
            )
            time.sleep(self.retry.delay(attempt, retry_after))

    def run_items(self, call: Call) -> list[Any]:
        return self.run(call).items

    def paginate(self, call: Call) -> Iterator[Any]:
        cursor = None
        while True:
            page = self.run(_with_cursor(call, cursor))
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    def paginate_seq(self, call: Call) -> Iterator[Any]:
        page = self.run(call)
        while True:
            yield from page.items
            if page.next_after_seq is None:
                return
            page = self.run(_after(call, page.next_after_seq))

    def stream(self, streams: list[str], *, since: dict[str, int] | None = None, **options: Any) -> Any:
        """Live messages of `streams`, as `AsyncClient.stream` delivers them (every trade update exactly
        once, in `seq` order per account), for a plain `for` loop: `with td.stream([...]) as s: for m in
        s: ...` (`stream.BlockingStream`: the socket is read on a thread of its own)."""
        from tradedesk_client.stream import BlockingStream, Stream

        return BlockingStream(Stream(self.base_url, self.api_key, streams, since=since, **options))


class AsyncClient(_Resources):
    """Asyncio client: the same methods as `Client`, each awaited; `iter*` methods are async iterators;
    `stream()` gives the live trade updates with exact resume."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.base_url + API_PREFIX,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
        )
        self._bind()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def run(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            try:
                response = await self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                if not should_retry(self.retry, attempt, None):
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
            if response is not None and not should_retry(self.retry, attempt, response):
                return decode(call, response)
            retry_after = (
                parse_retry_after(response.headers.get("retry-after")) if response is not None else None
            )
            await asyncio.sleep(self.retry.delay(attempt, retry_after))

    async def run_items(self, call: Call) -> list[Any]:
        return (await self.run(call)).items

    async def paginate(self, call: Call) -> AsyncIterator[Any]:
        cursor = None
        while True:
            page = await self.run(_with_cursor(call, cursor))
            for item in page.items:
                yield item
            cursor = page.next_cursor
            if not cursor:
                return

    async def paginate_seq(self, call: Call) -> AsyncIterator[Any]:
        page = await self.run(call)
        while True:
            for item in page.items:
                yield item
            if page.next_after_seq is None:
                return
            page = await self.run(_after(call, page.next_after_seq))

    def stream(self, streams: list[str], *, since: dict[str, int] | None = None, **options: Any) -> Any:
        """Live messages of `streams` (e.g. `["trade_updates"]`), reconnecting and resuming by itself so
        that every trade update is seen exactly once, in `seq` order per account (see `stream.Stream`)."""
        from tradedesk_client.stream import Stream

        return Stream(self.base_url, self.api_key, streams, since=since, **options)
