"""The API's resources, written once for both clients.

Each method describes its call; the client that owns the resource runs it. With `Client` a method returns
the result, with `AsyncClient` it returns an awaitable of it, and `iter_*` methods return an iterator or
an async iterator over every item of every cursor page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import msgspec

from tradedesk_client import models as m
from tradedesk_client._transport import Call

T = TypeVar("T")
Id = uuid.UUID | str
Number = Decimal | int | str


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class ActivityPage(msgspec.Struct, Generic[T]):
    items: list[T]
    next_after_seq: int | None = None


class Items(msgspec.Struct, Generic[T]):
    items: list[T]


def _dec(value: Number | None) -> str | None:
    if value is None:
        return None
    text = format(Decimal(str(value)), "f")
    return text


def _id(value: Id | None) -> str | None:
    return None if value is None else str(value)


def _ids(values: Iterable[Id] | None) -> list[str] | None:
    return None if values is None else [str(v) for v in values]


def _plain(value: Any) -> Any:
    """A mapping as JSON types (datetimes as ISO text), for bodies the models do not describe."""
    return None if value is None else msgspec.to_builtins(value)


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left at None, decimals as plain-notation strings."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Decimal | int) and not isinstance(value, bool) and key not in _INTEGER_FIELDS:
            value = _dec(value)
        out[key] = value
    return out


def _commission(value: Number | m.Commission | None) -> Any:
    if isinstance(value, m.Commission):
        return {k: _dec(v) for k, v in msgspec.structs.asdict(value).items()}
    return value


_INTEGER_FIELDS = frozenset(
    {
        "grace_seconds",
        "timeout",
        "retries",
        "periods_per_year",
        "train_bars",
        "test_bars",
        "step_bars",
        "interval_ms",
    }
)


class _Resource:
    def __init__(self, runner: Any) -> None:
        self._runner = runner

    def _run(self, call: Call) -> Any:
        return self._runner.run(call)

    def _unwrap(self, call: Call) -> Any:
        return self._runner.run_items(call)

    def _iter(self, call: Call) -> Any:
        return self._runner.paginate(call)


class Accounts(_Resource):
    def create(
        self,
        name: str,
        initial_cash: Number,
        *,
        base_currency: str = "USD",
        allow_short: bool = False,
        idempotency_key: str | None = None,
    ) -> m.Account:
        body = _body(
            name=name, initial_cash=initial_cash, base_currency=base_currency, allow_short=allow_short
        )
        return self._run(
            Call("POST", "/accounts", body=body, model=m.Account, idempotency_key=idempotency_key)
        )

    def get(self, account_id: Id) -> m.Account:
        return self._run(Call("GET", f"/accounts/{account_id}", model=m.Account))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[m.Account]:
        return self._run(
            Call("GET", "/accounts", params={"limit": limit, "cursor": cursor}, model=Page[m.Account])
        )

    def iter(self, *, limit: int = 500) -> Iterable[m.Account]:
        return self._iter(Call("GET", "/accounts", params={"limit": limit}, model=Page[m.Account]))

    def set_trading_state(
        self, account_id: Id, state: m.TradingStateName, reason: str, **extra: Any
    ) -> m.TradingState:
        body = _body(state=state, reason=reason, **extra)
        return self._run(
            Call("PUT", f"/accounts/{account_id}/trading-state", body=body, model=m.TradingState)
        )

    def performance(self, account_id: Id, **params: Any) -> m.AccountPerformance:
        return self._run(
            Call("GET", f"/accounts/{account_id}/performance", params=params, model=m.AccountPerformance)
        )


class Orders(_Resource):
    def place(
        self,
        account_id: Id,
        symbol: str,
        side: m.Side,
        type: str = "market",
        quantity: Number | None = None,
        *,
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        time_in_force: str = "gtc",
        client_order_id: str | None = None,
        notional: Number | None = None,
        reduce_only: bool | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> m.Order:
        """Place an order. Retries (after a timeout, a 503 or a 429) can never place it twice: the call keeps
        one `Idempotency-Key` across its retries. `extra` passes fields this client version does not name.
        `notional` (market orders) sizes the order by cash instead of `quantity`; `reduce_only` lets it
        only shrink the position."""
        body = _body(
            symbol=symbol,
            side=side,
            type=type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
            notional=notional,
            reduce_only=reduce_only,
            **extra,
        )
        return self._run(
            Call(
                "POST",
                f"/accounts/{account_id}/orders",
                body=body,
                model=m.Order,
                idempotency_key=idempotency_key,
            )
        )

    def bracket(
        self,
        account_id: Id,
        symbol: str,
        side: m.Side,
        quantity: Number,
        *,
        take_profit: Number,
        stop_loss: Number,
        stop_loss_limit: Number | None = None,
        type: str = "limit",
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        order_class: str = "bracket",
        **extra: Any,
    ) -> m.Order:
        """An entry with a take-profit (limit) and a stop-loss (stop, or stop-limit with `stop_loss_limit`)
        on the closing side, held until the entry fills. The answer is the entry with its `legs`."""
        return self.place(
            account_id, symbol, side, type, quantity, limit_price=limit_price, stop_price=stop_price,
            order_class=order_class, take_profit={"limit_price": _dec(take_profit)},
            stop_loss=_body(stop_price=stop_loss, limit_price=stop_loss_limit), **extra,
        )

    def oco(
        self,
        account_id: Id,
        symbol: str,
        side: m.Side,
        quantity: Number,
        *,
        take_profit: Number,
        stop_loss: Number,
        stop_loss_limit: Number | None = None,
        **extra: Any,
    ) -> m.Order:
        """Two exits of an existing position (`side`: the closing side); the first to fill cancels the
        other. The answer is the take-profit leg with the stop-loss in `legs`."""
        return self.place(
            account_id, symbol, side, "limit", quantity, order_class="oco",
            take_profit={"limit_price": _dec(take_profit)},
            stop_loss=_body(stop_price=stop_loss, limit_price=stop_loss_limit), **extra,
        )

    def trailing_stop(
        self,
        account_id: Id,
        symbol: str,
        side: m.Side,
        quantity: Number,
        *,
        trail_price: Number | None = None,
        trail_percent: Number | None = None,
        **extra: Any,
    ) -> m.Order:
        """A stop that follows the best price since acceptance by `trail_price` or `trail_percent`."""
        return self.place(
            account_id, symbol, side, "trailing_stop", quantity, trail_price=trail_price,
            trail_percent=trail_percent, **extra,
        )

    def validate(
        self,
        account_id: Id,
        symbol: str,
        side: m.Side,
        type: str = "market",
        quantity: Number | None = None,
        **extra: Any,
    ) -> m.Validation:
        """Every pre-trade check without placing anything; a refusal raises `Unprocessable` /
        `RiskLimitBreached`."""
        body = _body(symbol=symbol, side=side, type=type, quantity=quantity, **extra)
        return self._run(
            Call("POST", f"/accounts/{account_id}/orders/validate", body=body, model=m.Validation)
        )

    def get(self, account_id: Id, order_id: Id, *, nested: bool = False) -> m.Order:
        """One order; `nested=True` adds its group's exit legs (`legs`)."""
        params = {"nested": "true"} if nested else None
        path = f"/accounts/{account_id}/orders/{order_id}"
        return self._run(Call("GET", path, params=params, model=m.Order))

    def list(
        self,
        account_id: Id,
        *,
        status: str | None = None,
        symbol: str | None = None,
        side: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        nested: bool = False,
    ) -> Page[m.Order]:
        """A page of orders, newest first; `nested=True` gives each group's entry its exit legs (`legs`)."""
        params = {"status": status, "symbol": symbol, "side": side, "limit": limit, "cursor": cursor,
                  "nested": "true" if nested else None}
        return self._run(Call("GET", f"/accounts/{account_id}/orders", params=params, model=Page[m.Order]))

    def iter(
        self,
        account_id: Id,
        *,
        status: str | None = None,
        symbol: str | None = None,
        side: str | None = None,
        limit: int = 500,
        nested: bool = False,
    ) -> Iterable[m.Order]:
        params = {"status": status, "symbol": symbol, "side": side, "limit": limit,
                  "nested": "true" if nested else None}
        return self._iter(Call("GET", f"/accounts/{account_id}/orders", params=params, model=Page[m.Order]))

    def cancel(self, account_id: Id, order_id: Id) -> m.Order:
        return self._run(Call("DELETE", f"/accounts/{account_id}/orders/{order_id}", model=m.Order))

    def replace(
        self,
        account_id: Id,
        order_id: Id,
        *,
        quantity: Number | None = None,
        limit_price: Number | None = None,
        stop_price: Number | None = None,
        trail_price: Number | None = None,
        trail_percent: Number | None = None,
        time_in_force: str | None = None,
    ) -> m.Order:
        """Replace an open order in place (same id, `version` + 1); only the fields given change."""
        body = _body(
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            trail_price=trail_price,
            trail_percent=trail_percent,
            time_in_force=time_in_force,
        )
        return self._run(
            Call("PATCH", f"/accounts/{account_id}/orders/{order_id}", body=body, model=m.Order)
        )

    def cancel_all(self, account_id: Id, *, symbol: str | None = None) -> m.CancelAllResult:
        """Cancel every open order (held legs too), or those of one symbol."""
        return self._run(
            Call(
                "DELETE",
                f"/accounts/{account_id}/orders",
                params={"symbol": symbol},
                model=m.CancelAllResult,
            )
        )

    def get_by_client_id(self, account_id: Id, client_order_id: str) -> m.Order:
        """The order placed with this `client_order_id` (`NotFound` if none)."""
        return self._run(
            Call(
                "GET",
                f"/accounts/{account_id}/orders",
                params={"client_order_id": client_order_id},
                model=m.Order,
            )
        )

    def fills(self, account_id: Id, order_id: Id) -> list[m.Fill]:
        return self._unwrap(
            Call("GET", f"/accounts/{account_id}/orders/{order_id}/fills", model=Page[m.Fill])
        )

    def events(self, account_id: Id, order_id: Id) -> list[m.OrderEvent]:
        return self._unwrap(
            Call("GET", f"/accounts/{account_id}/orders/{order_id}/events", model=Items[m.OrderEvent])
        )


class Positions(_Resource):
    def list(self, account_id: Id) -> list[m.Position]:
        return self._unwrap(Call("GET", f"/accounts/{account_id}/positions", model=Items[m.Position]))

    def close(
        self,
        account_id: Id,
        symbol: str,
        *,
        quantity: Number | None = None,
        percentage: Number | None = None,
        cancel_orders: bool | None = None,
    ) -> m.Order:
        """Close the position (or `quantity` / `percentage` of it) with a reduce-only market order."""
        params = {"quantity": _dec(quantity), "percentage": _dec(percentage), "cancel_orders": cancel_orders}
        return self._run(
            Call("DELETE", f"/accounts/{account_id}/positions/{symbol}", params=params, model=m.Order)
        )

    def close_all(self, account_id: Id, *, cancel_orders: bool = False) -> m.CloseAllResult:
        """Close every position; with `cancel_orders` the account's open orders are canceled first."""
        return self._run(
            Call(
                "DELETE",
                f"/accounts/{account_id}/positions",
                params={"cancel_orders": cancel_orders},
                model=m.CloseAllResult,
            )
        )


class Fills(_Resource):
    def list(
        self,
        account_id: Id,
        *,
        symbol: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[m.Fill]:
        params = {"symbol": symbol, "limit": limit, "cursor": cursor}
        return self._run(Call("GET", f"/accounts/{account_id}/fills", params=params, model=Page[m.Fill]))

    def iter(self, account_id: Id, *, symbol: str | None = None, limit: int = 500) -> Iterable[m.Fill]:
        params = {"symbol": symbol, "limit": limit}
        return self._iter(Call("GET", f"/accounts/{account_id}/fills", params=params, model=Page[m.Fill]))


class Exchanges(_Resource):
    def list(self) -> list[m.Exchange]:
        return self._unwrap(Call("GET", "/exchanges", model=Page[m.Exchange]))

    def get(self, code: str) -> m.Exchange:
        return self._run(Call("GET", f"/exchanges/{code}", model=m.Exchange))

    def create(self, code: str, name: str, **fields: Any) -> m.Exchange:
        return self._run(
            Call("POST", "/exchanges", body=_body(code=code, name=name, **fields), model=m.Exchange)
        )


class Instruments(_Resource):
    def list(self, *, exchange: str | None = None, status: str | None = None) -> list[m.Instrument]:
        return self._unwrap(
            Call(
                "GET",
                "/instruments",
                params={"exchange": exchange, "status": status, "limit": 500},
                model=Page[m.Instrument],
            )
        )

    def get(self, symbol: str) -> m.Instrument:
        return self._run(Call("GET", f"/instruments/{symbol}", model=m.Instrument))

    def create(
        self,
        symbol: str,
        exchange: str,
        base_asset: str,
        quote_asset: str,
        tick_size: Number,
        lot_size: Number,
        **fields: Any,
    ) -> m.Instrument:
        body = _body(
            symbol=symbol,
            exchange=exchange,
            base_asset=base_asset,
            quote_asset=quote_asset,
            tick_size=tick_size,
            lot_size=lot_size,
            **fields,
        )
        return self._run(Call("POST", "/instruments", body=body, model=m.Instrument))

    def update(self, symbol: str, **fields: Any) -> m.Instrument:
        return self._run(Call("PATCH", f"/instruments/{symbol}", body=_body(**fields), model=m.Instrument))

    def price(self, symbol: str) -> m.Price:
        return self._run(Call("GET", f"/instruments/{symbol}/price", model=m.Price))

    def set_price(
        self, symbol: str, price: Number, *, ts: datetime | None = None, volume: Number | None = None
    ) -> m.Price:
        body = _body(price=price, ts=ts.isoformat() if ts else None, volume=volume)
        return self._run(Call("POST", f"/instruments/{symbol}/price", body=body, model=m.Price))


class Candles(_Resource):
    def get(
        self,
        symbol: str,
        timeframe: str = "1d",
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        limit: int | None = None,
    ) -> m.CandleList:
        """Candles in ascending time order: the first `limit` (server default 1,000, at most 10,000)
        from `start`, or without `start` the newest `limit` up to `end` (the last N bars)."""
        params = {"timeframe": timeframe, "start": start, "end": end, "limit": limit}
        return self._run(Call("GET", f"/instruments/{symbol}/candles", params=params, model=m.CandleList))

    def upload(self, symbol: str, timeframe: str, candles: Iterable[m.Candle | Mapping[str, Any]]) -> Any:
        rows = [msgspec.to_builtins(c) if isinstance(c, m.Candle) else dict(c) for c in candles]
        body = {"timeframe": timeframe, "candles": rows}
        return self._run(Call("POST", f"/instruments/{symbol}/candles", body=body))


class Risk(_Resource):
    def limits(self, account_id: Id) -> list[m.RiskLimit]:
        return self._unwrap(
            Call("GET", f"/accounts/{account_id}/risk/limits", params={"limit": 500}, model=Page[m.RiskLimit])
        )

    def create_limit(self, account_id: Id, limit_type: str, value: Number, **fields: Any) -> m.RiskLimit:
        body = _body(limit_type=limit_type, value=value, **fields)
        return self._run(Call("POST", f"/accounts/{account_id}/risk/limits", body=body, model=m.RiskLimit))

    def get_limit(self, account_id: Id, limit_id: Id) -> m.RiskLimit:
        return self._run(Call("GET", f"/accounts/{account_id}/risk/limits/{limit_id}", model=m.RiskLimit))

    def update_limit(self, account_id: Id, limit_id: Id, **fields: Any) -> m.RiskLimit:
        return self._run(
            Call(
                "PATCH",
                f"/accounts/{account_id}/risk/limits/{limit_id}",
                body=_body(**fields),
                model=m.RiskLimit,
            )
        )

    def delete_limit(self, account_id: Id, limit_id: Id) -> None:
        return self._run(Call("DELETE", f"/accounts/{account_id}/risk/limits/{limit_id}"))

    def metrics(self, account_id: Id, *, lookback: int | None = None) -> m.RiskMetrics:
        return self._run(
            Call(
                "GET",
                f"/accounts/{account_id}/risk/metrics",
                params={"lookback": lookback},
                model=m.RiskMetrics,
            )
        )

    def monitor(self, account_id: Id) -> dict[str, Any]:
        return self._run(Call("POST", f"/accounts/{account_id}/risk/monitor"))

    def violations(self, account_id: Id, **params: Any) -> Page[m.Violation]:
        return self._run(
            Call("GET", f"/accounts/{account_id}/risk/violations", params=params, model=Page[m.Violation])
        )

    def alerts(self, account_id: Id, **params: Any) -> Page[m.Alert]:
        return self._run(
            Call("GET", f"/accounts/{account_id}/risk/alerts", params=params, model=Page[m.Alert])
        )

    def acknowledge(self, account_id: Id, alert_id: Id) -> m.Alert:
        return self._run(
            Call("POST", f"/accounts/{account_id}/risk/alerts/{alert_id}/acknowledge", model=m.Alert)
        )

    # --- desk scale: groups, stress tests, the overview, portfolio VaR (docs/RISK.md) -----------------------

    def stress(
        self,
        scenarios: Iterable[Mapping[str, Any]],
        *,
        accounts: Iterable[Id] | None = None,
        groups: Iterable[Id] | None = None,
    ) -> m.StressResult:
        """Revalue accounts under scenarios: each `{"name", "shocks": {"SYM": -0.1, "*": -0.05}}` or
        `{"name", "historical": {"start", "end"}}`; without `accounts`/`groups`, every account the caller
        can read (a trader: their own)."""
        body = _body(scenarios=list(scenarios), accounts=_ids(accounts), groups=_ids(groups))
        return self._run(Call("POST", "/risk/stress", body=body, model=m.StressResult))

    def overview(self) -> m.RiskOverview:
        """Firm and group totals, the top limit utilisations, open alerts (risk_manager/admin)."""
        return self._run(Call("GET", "/risk/overview", model=m.RiskOverview))

    def portfolio_var(self, *, group_id: Id | None = None, lookback: int | None = None) -> m.PortfolioVar:
        """Parametric VaR of a group's accounts (firm-wide without `group_id`), with each account's
        component."""
        params = {"group_id": group_id, "lookback": lookback}
        return self._run(Call("GET", "/risk/var", params=params, model=m.PortfolioVar))

    def groups(self, *, limit: int = 500) -> Iterable[m.RiskGroup]:
        return self._iter(Call("GET", "/risk/groups", params={"limit": limit}, model=Page[m.RiskGroup]))

    def create_group(self, name: str, *, parent_id: Id | None = None, is_firm: bool = False) -> m.RiskGroup:
        body = _body(name=name, parent_id=_id(parent_id), is_firm=is_firm or None)
        return self._run(Call("POST", "/risk/groups", body=body, model=m.RiskGroup))

    def get_group(self, group_id: Id) -> m.RiskGroup:
        return self._run(Call("GET", f"/risk/groups/{group_id}", model=m.RiskGroup))

    def update_group(self, group_id: Id, **fields: Any) -> m.RiskGroup:
        return self._run(Call("PATCH", f"/risk/groups/{group_id}", body=_body(**fields), model=m.RiskGroup))

    def delete_group(self, group_id: Id) -> None:
        return self._run(Call("DELETE", f"/risk/groups/{group_id}"))

    def set_account_group(self, account_id: Id, group_id: Id | None) -> m.AccountGroup:
        """Put the account in a group, or take it out with None."""
        body = {"group_id": _id(group_id)}
        return self._run(Call("PUT", f"/accounts/{account_id}/risk/group", body=body, model=m.AccountGroup))

    def group_limits(self, group_id: Id) -> list[m.GroupLimit]:
        return self._unwrap(
            Call("GET", f"/risk/groups/{group_id}/limits", params={"limit": 500}, model=Page[m.GroupLimit])
        )

    def create_group_limit(self, group_id: Id, limit_type: str, value: Number, **fields: Any) -> m.GroupLimit:
        body = _body(limit_type=limit_type, value=value, **fields)
        return self._run(Call("POST", f"/risk/groups/{group_id}/limits", body=body, model=m.GroupLimit))

    def update_group_limit(self, group_id: Id, limit_id: Id, **fields: Any) -> m.GroupLimit:
        path = f"/risk/groups/{group_id}/limits/{limit_id}"
        return self._run(Call("PATCH", path, body=_body(**fields), model=m.GroupLimit))

    def delete_group_limit(self, group_id: Id, limit_id: Id) -> None:
        return self._run(Call("DELETE", f"/risk/groups/{group_id}/limits/{limit_id}"))

    def group_alerts(self, group_id: Id, **params: Any) -> Page[m.GroupAlert]:
        """Alerts on the group's limits, newest first (`acknowledged`, `severity`, `limit`, `cursor`)."""
        call = Call("GET", f"/risk/groups/{group_id}/alerts", params=params, model=Page[m.GroupAlert])
        return self._run(call)

    def acknowledge_group_alert(self, group_id: Id, alert_id: Id) -> m.GroupAlert:
        path = f"/risk/groups/{group_id}/alerts/{alert_id}/acknowledge"
        return self._run(Call("POST", path, model=m.GroupAlert))

    def scenarios(self, *, limit: int = 500) -> Iterable[m.SavedScenario]:
        call = Call("GET", "/risk/scenarios", params={"limit": limit}, model=Page[m.SavedScenario])
        return self._iter(call)

    def create_scenario(
        self,
        name: str,
        *,
        shocks: Mapping[str, float] | None = None,
        historical: Mapping[str, Any] | None = None,
        daily: bool | None = None,
    ) -> m.SavedScenario:
        """Save a scenario (exactly one of `shocks` and `historical`); `daily`: the monitoring job runs it."""
        body = _body(name=name, shocks=_plain(shocks), historical=_plain(historical), daily=daily)
        return self._run(Call("POST", "/risk/scenarios", body=body, model=m.SavedScenario))

    def get_scenario(self, scenario_id: Id) -> m.SavedScenario:
        return self._run(Call("GET", f"/risk/scenarios/{scenario_id}", model=m.SavedScenario))

    def update_scenario(self, scenario_id: Id, **fields: Any) -> m.SavedScenario:
        body = _body(**{k: _plain(v) for k, v in fields.items()})
        return self._run(Call("PATCH", f"/risk/scenarios/{scenario_id}", body=body, model=m.SavedScenario))

    def delete_scenario(self, scenario_id: Id) -> None:
        return self._run(Call("DELETE", f"/risk/scenarios/{scenario_id}"))

    def run_scenario(
        self, scenario_id: Id, *, accounts: Iterable[Id] | None = None, groups: Iterable[Id] | None = None
    ) -> m.StressResult:
        body = _body(accounts=_ids(accounts), groups=_ids(groups)) or None
        return self._run(Call("POST", f"/risk/scenarios/{scenario_id}/run", body=body, model=m.StressResult))


class Backtests(_Resource):
    def strategies(self) -> list[m.Strategy]:
        return self._unwrap(Call("GET", "/strategies", model=Items[m.Strategy]))

    def create(
        self,
        strategy: str,
        symbol: str,
        timeframe: str,
        initial_cash: Number,
        *,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> m.Backtest:
        body = _body(
            strategy=strategy,
            symbol=symbol,
            timeframe=timeframe,
            initial_cash=initial_cash,
            params=dict(params or {}),
            **fields,
        )
        return self._run(
            Call("POST", "/backtests", body=body, model=m.Backtest, idempotency_key=idempotency_key)
        )

    def portfolio(
        self,
        symbols: list[str],
        timeframe: str,
        initial_cash: Number,
        allocation: m.Allocation,
        *,
        commission: Number | m.Commission | None = None,
        exits: m.Exits | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> m.Backtest:
        """Submit a portfolio backtest: `allocation` is a `TargetWeights`, `SignalsAllocation` or
        `RulesAllocation`; `fields` are the other `BacktestRequest` settings (benchmark, leverage, ...)."""
        body = _body(
            symbols=list(symbols),
            timeframe=timeframe,
            initial_cash=initial_cash,
            allocation=msgspec.to_builtins(allocation),
            commission=_commission(commission),
            exits=None if exits is None else msgspec.to_builtins(exits),
            **fields,
        )
        return self._run(
            Call("POST", "/backtests", body=body, model=m.Backtest, idempotency_key=idempotency_key)
        )

    def get(self, backtest_id: Id) -> m.Backtest:
        return self._run(Call("GET", f"/backtests/{backtest_id}", model=m.Backtest))

    def list(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        sweep_id: Id | None = None,
    ) -> Page[m.Backtest]:
        params = {"status": status, "limit": limit, "cursor": cursor, "sweep_id": sweep_id}
        return self._run(Call("GET", "/backtests", params=params, model=Page[m.Backtest]))

    def iter(self, *, status: str | None = None, limit: int = 500) -> Iterable[m.Backtest]:
        return self._iter(
            Call("GET", "/backtests", params={"status": status, "limit": limit}, model=Page[m.Backtest])
        )

    def trades(self, backtest_id: Id) -> Iterable[m.BacktestTrade]:
        return self._iter(
            Call(
                "GET", f"/backtests/{backtest_id}/trades", params={"limit": 500}, model=Page[m.BacktestTrade]
            )
        )

    def equity(self, backtest_id: Id, *, max_points: int | None = None) -> m.BacktestEquity:
        return self._run(
            Call(
                "GET",
                f"/backtests/{backtest_id}/equity",
                params={"max_points": max_points},
                model=m.BacktestEquity,
            )
        )

    def positions(self, backtest_id: Id, *, max_points: int | None = None) -> m.BacktestPositions:
        return self._run(
            Call(
                "GET",
                f"/backtests/{backtest_id}/positions",
                params={"max_points": max_points},
                model=m.BacktestPositions,
            )
        )

    def report_token(self, backtest_id: Id) -> m.ReportToken:
        return self._run(Call("POST", f"/backtests/{backtest_id}/report-token", model=m.ReportToken))

    def sweep(
        self,
        strategy: str,
        symbol: str,
        timeframe: str,
        initial_cash: Number,
        grid: Mapping[str, list[Any]],
        **fields: Any,
    ) -> m.SweepCreated:
        body = _body(
            strategy=strategy,
            symbol=symbol,
            timeframe=timeframe,
            initial_cash=initial_cash,
            grid={k: list(v) for k, v in grid.items()},
            **fields,
        )
        return self._run(Call("POST", "/backtests/sweeps", body=body, model=m.SweepCreated))

    def get_sweep(self, sweep_id: Id, *, limit: int | None = None, rank_by: str | None = None) -> m.Sweep:
        return self._run(
            Call(
                "GET",
                f"/backtests/sweeps/{sweep_id}",
                params={"limit": limit, "rank_by": rank_by},
                model=m.Sweep,
            )
        )


class Jobs(_Resource):
    def create(self, function: str, kwargs: Mapping[str, Any] | None = None, **fields: Any) -> m.JobAccepted:
        body = _body(function=function, kwargs=dict(kwargs or {}), **fields)
        return self._run(Call("POST", "/jobs", body=body, model=m.JobAccepted))

    def get(self, key: str) -> m.Job:
        return self._run(Call("GET", f"/jobs/{key}", model=m.Job))

    def abort(self, key: str) -> m.Job:
        return self._run(Call("DELETE", f"/jobs/{key}", model=m.Job))

    def stats(self) -> dict[str, Any]:
        return self._run(Call("GET", "/jobs"))

    def health(self) -> dict[str, Any]:
        return self._run(Call("GET", "/jobs/health"))


class Users(_Resource):
    def me(self) -> m.User:
        return self._run(Call("GET", "/users/me", model=m.User))

    def create(self, email: str, role: str = "trader") -> m.UserCreated:
        return self._run(Call("POST", "/users", body=_body(email=email, role=role), model=m.UserCreated))


class Keys(_Resource):
    def list(self) -> list[m.ApiKey]:
        return self._unwrap(Call("GET", "/auth/keys", params={"limit": 500}, model=Page[m.ApiKey]))

    def create(self, name: str, *, expires_at: datetime | None = None) -> m.ApiKeyCreated:
        body = _body(name=name, expires_at=expires_at.isoformat() if expires_at else None)
        return self._run(Call("POST", "/auth/keys", body=body, model=m.ApiKeyCreated))

    def revoke(self, key_id: Id) -> None:
        return self._run(Call("DELETE", f"/auth/keys/{key_id}"))

    def rotate(self, key_id: Id, *, grace_seconds: int | None = None) -> m.ApiKeyCreated:
        return self._run(
            Call(
                "POST",
                f"/auth/keys/{key_id}/rotate",
                body=_body(grace_seconds=grace_seconds),
                model=m.ApiKeyCreated,
            )
        )


class Market(_Resource):
    """Replays of stored candles and simulated live feeds (admin or market-data role), and the clock."""

    def replay(
        self,
        symbols: list[str],
        timeframe: str = "1d",
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        speed: float | str = "max",
        path: str = "ohlc",
    ) -> m.MarketFeed:
        body = _body(symbols=list(symbols), timeframe=timeframe, start=_iso(start), end=_iso(end), path=path)
        body["speed"] = speed
        return self._run(Call("POST", "/market/replays", body=body, model=m.MarketFeed))

    def get_replay(self, replay_id: str) -> m.MarketFeed:
        return self._run(Call("GET", f"/market/replays/{replay_id}", model=m.MarketFeed))

    def stop_replay(self, replay_id: str) -> m.MarketFeed:
        return self._run(Call("DELETE", f"/market/replays/{replay_id}", model=m.MarketFeed))

    def simulate(
        self,
        symbols: list[str],
        *,
        interval_ms: int = 1000,
        annual_volatility: float = 0.5,
        drift: float = 0.0,
        seed: int | None = None,
    ) -> m.MarketFeed:
        body = {
            "symbols": list(symbols),
            "interval_ms": interval_ms,
            "annual_volatility": annual_volatility,
            "drift": drift,
            **({"seed": seed} if seed is not None else {}),
        }
        return self._run(Call("POST", "/market/simulations", body=body, model=m.MarketFeed))

    def get_simulation(self, simulation_id: str) -> m.MarketFeed:
        return self._run(Call("GET", f"/market/simulations/{simulation_id}", model=m.MarketFeed))

    def stop_simulation(self, simulation_id: str) -> m.MarketFeed:
        return self._run(Call("DELETE", f"/market/simulations/{simulation_id}", model=m.MarketFeed))

    def clock(self) -> dict[str, Any]:
        return self._run(Call("GET", "/market/clock"))


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


class Activities(_Resource):
    """An account's trade updates as a list (the stream's durable log), ascending by `seq`."""

    def list(
        self, account_id: Id, *, after_seq: int | None = None, limit: int | None = None
    ) -> m.ActivityPage:
        params = {"after_seq": after_seq, "limit": limit}
        return self._run(
            Call("GET", f"/accounts/{account_id}/activities", params=params, model=m.ActivityPage)
        )

    def iter(self, account_id: Id, *, after_seq: int = 0, limit: int = 500) -> Iterable[m.TradeUpdate]:
        return self._runner.paginate_seq(
            Call(
                "GET",
                f"/accounts/{account_id}/activities",
                params={"after_seq": after_seq, "limit": limit},
                model=m.ActivityPage,
            )
        )
