"""Every resource method of the client against a live server process, as a bot would use them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from tradedesk_client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RiskLimitBreached,
    TradeUpdate,
    Unauthorized,
    Unprocessable,
)
from tradedesk_client import models as m

from app.domain.markets.synthetic import generate_candles

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


async def make_market(admin: AsyncClient, price: str = "100", bars: int = 120) -> str:
    code = _name("CX")
    exchange = await admin.exchanges.create(
        code, "Client test exchange", maker_fee_rate="0.0005", taker_fee_rate="0.001", slippage_bps="0"
    )
    assert exchange.code == code and exchange.taker_fee_rate == Decimal("0.001")
    symbol = _name("C")
    instrument = await admin.instruments.create(symbol, code, symbol, "USD", tick_size="0.01", lot_size="1")
    assert instrument.tick_size == Decimal("0.01") and instrument.last_price is None
    rows = generate_candles(bars=bars, seed=7, timeframe="1d", start=datetime(2024, 1, 1, tzinfo=UTC))
    await admin.candles.upload(
        symbol,
        "1d",
        [
            {
                "ts": c.ts.isoformat(),
                "open": str(c.open),
                "high": str(c.high),
                "low": str(c.low),
                "close": str(c.close),
                "volume": str(c.volume),
            }
            for c in rows
        ],
    )
    await admin.instruments.set_price(symbol, price)
    return symbol


async def wait_backtest(td: AsyncClient, backtest_id, within: float = 60) -> m.Backtest:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        bt = await td.backtests.get(backtest_id)
        if bt.status in ("completed", "failed"):
            return bt
        assert asyncio.get_running_loop().time() < deadline, bt
        await asyncio.sleep(0.2)


async def test_every_resource_method_against_a_live_server(server):
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin)
        assert symbol in {i.symbol for i in await admin.instruments.list()}
        assert (await admin.instruments.get(symbol)).last_price == Decimal("100")
        assert (await admin.instruments.update(symbol, min_notional="1")).min_notional == Decimal("1")
        exchange = (await admin.instruments.get(symbol)).exchange
        assert exchange in {e.code for e in await admin.exchanges.list()}
        assert (await admin.exchanges.get(exchange)).name == "Client test exchange"
        candles = await admin.candles.get(symbol, "1d", limit=500)
        assert len(candles.items) == 120 and isinstance(candles.items[0].close, Decimal)
        price = await admin.instruments.price(symbol)
        assert price.price == Decimal("100") and price.symbol == symbol
        trader = await admin.users.create(f"client-{uuid.uuid4().hex[:8]}@example.com", "trader")
        risk_manager = await admin.users.create(f"risk-{uuid.uuid4().hex[:8]}@example.com", "risk_manager")

    async with AsyncClient(server.url, api_key=trader.api_key) as td:
        assert (await td.users.me()).id == trader.id
        extra = await td.keys.create("second key")
        assert extra.api_key and extra.id in {k.id for k in await td.keys.list()}
        await td.keys.revoke(extra.id)

        account = await td.accounts.create("client bot", "100000")
        assert account.cash == Decimal("100000")
        assert (await td.accounts.get(account.id)).name == "client bot"
        other = await td.accounts.create("second", "5000")
        page = await td.accounts.list(limit=1)
        assert len(page.items) == 1 and page.next_cursor
        assert {a.id async for a in td.accounts.iter(limit=1)} == {account.id, other.id}

        assert (await td.orders.validate(account.id, symbol, "buy", "market", quantity=5)).accepted
        order = await td.orders.place(
            account.id, symbol, "buy", "market", quantity=5, client_order_id="client-1"
        )
        assert order.status == "filled" and order.filled_quantity == Decimal("5")
        again = await td.orders.place(
            account.id, symbol, "buy", "market", quantity=5, client_order_id="client-1"
        )
        assert again.id == order.id  # the server's client_order_id rule, seen through the client
        resting = await td.orders.place(account.id, symbol, "buy", "limit", quantity=2, limit_price="90.00")
        assert resting.status == "accepted"
        assert (await td.orders.get(account.id, resting.id)).limit_price == Decimal("90")
        listed = await td.orders.list(account.id, status="accepted")
        assert [o.id for o in listed.items] == [resting.id]
        assert {o.id async for o in td.orders.iter(account.id, limit=1)} == {order.id, resting.id}
        assert (await td.orders.cancel(account.id, resting.id)).status == "canceled"
        with pytest.raises(Conflict):
            await td.orders.cancel(account.id, resting.id)
        fills = await td.orders.fills(account.id, order.id)
        assert len(fills) == 1 and fills[0].quantity == Decimal("5") and fills[0].price == Decimal("100")
        assert [e.status_to for e in await td.orders.events(account.id, order.id)][-1] == "filled"
        positions = await td.positions.list(account.id)
        assert [(p.symbol, p.quantity) for p in positions] == [(symbol, Decimal("5"))]
        assert [f.id for f in (await td.fills.list(account.id)).items] == [fills[0].id]
        assert [f.id async for f in td.fills.iter(account.id, symbol=symbol)] == [fills[0].id]
        performance = await td.accounts.performance(account.id)
        assert performance.account_id == account.id

        with pytest.raises(NotFound) as missing:
            await td.accounts.get(uuid.uuid4())
        assert missing.value.status == 404 and missing.value.problem["status"] == 404
        with pytest.raises(Unprocessable) as off_tick:
            await td.orders.place(account.id, symbol, "buy", "limit", quantity=1, limit_price="90.001")
        assert "limit_price" in off_tick.value.field_errors()
        with pytest.raises(Forbidden):
            await td.jobs.create("system.echo")

        strategies = await td.backtests.strategies()
        assert "sma_cross" in {s.name for s in strategies}
        backtest = await td.backtests.create(
            "sma_cross", symbol, "1d", "10000", params={"fast": 5, "slow": 20}, commission="0.001"
        )
        assert backtest.status == "queued"
        backtest = await wait_backtest(td, backtest.id)
        assert backtest.status == "completed", backtest.error
        trades = [t async for t in td.backtests.trades(backtest.id)]
        assert all(isinstance(t.entry_price, Decimal) for t in trades)
        equity = await td.backtests.equity(backtest.id, max_points=50)
        assert equity.backtest_id == backtest.id and 0 < len(equity.items) <= 50
        token = await td.backtests.report_token(backtest.id)
        assert token.token and token.url
        assert backtest.id in {b.id async for b in td.backtests.iter()}
        assert backtest.id in {b.id for b in (await td.backtests.list(status="completed")).items}
        sweep = await td.backtests.sweep(
            "sma_cross", symbol, "1d", "10000", {"fast": [5, 10], "slow": [20, 30]}
        )
        assert sweep.total == 4
        deadline = asyncio.get_running_loop().time() + 60
        while (ranked := await td.backtests.get_sweep(sweep.id)).status != "completed":
            assert asyncio.get_running_loop().time() < deadline, ranked
            await asyncio.sleep(0.3)
        assert len(ranked.ranked) == 4 and ranked.ranked[0].rank == 1
        portfolio = await td.backtests.portfolio(
            [symbol],
            "1d",
            "10000",
            m.TargetWeights(weights={symbol: 0.5}, rebalance="weekly"),
            commission=m.Commission(rate=Decimal("0.001"), minimum=Decimal("1")),
            exits=m.Exits(trailing_stop_pct=10.0),
        )
        assert portfolio.kind == "portfolio" and portfolio.symbols == [symbol]
        portfolio = await wait_backtest(td, portfolio.id)
        assert portfolio.status == "completed", portfolio.error
        positions = await td.backtests.positions(portfolio.id, max_points=20)
        assert positions.symbols == [symbol] and 0 < positions.points <= 20
        assert all(isinstance(q, Decimal) for p in positions.items for q in p.quantities.values())
        rules = m.RulesAllocation(entry="close > sma(close, 5)", exit="close < sma(close, 5)")
        with pytest.raises(BadRequest) as mixed:
            await td.backtests.portfolio([symbol], "1d", "10000", rules, strategy="sma_cross")
        assert "strategy" in mixed.value.field_errors()

    async with AsyncClient(server.url, api_key=risk_manager.api_key) as rm:
        limit = await rm.risk.create_limit(account.id, "max_order_quantity", "3")
        assert limit.value == Decimal("3")
        assert [x.id for x in await rm.risk.limits(account.id)] == [limit.id]
        assert (await rm.risk.get_limit(account.id, limit.id)).limit_type == "max_order_quantity"
        assert (await rm.risk.update_limit(account.id, limit.id, value="4")).value == Decimal("4")
    async with AsyncClient(server.url, api_key=trader.api_key) as td:
        with pytest.raises(RiskLimitBreached) as breach:
            await td.orders.place(account.id, symbol, "buy", "market", quantity=5)
        assert breach.value.limit_type == "max_order_quantity" and breach.value.limit_value == Decimal(4)
        assert breach.value.limit_id == limit.id  # (a UUID, as the model's id)
        assert len((await td.risk.violations(account.id)).items) == 1
        metrics = await td.risk.metrics(account.id)
        assert metrics.gross_exposure == Decimal("500") and metrics.limits[0].id == limit.id
        assert (await td.risk.monitor(account.id))["account_id"] == str(account.id)
        assert isinstance((await td.risk.alerts(account.id)).items, list)
    async with AsyncClient(server.url, api_key=risk_manager.api_key) as rm:
        await rm.risk.delete_limit(account.id, limit.id)
        # Desk scale: a group with a limit, a stress test, a saved scenario, the overview, portfolio VaR.
        group = await rm.risk.create_group(f"Desk {uuid.uuid4().hex[:8]}")
        assert (await rm.risk.set_account_group(account.id, group.id)).group_id == group.id
        glimit = await rm.risk.create_group_limit(group.id, "max_gross_exposure", "1000000")
        assert [x.id for x in await rm.risk.group_limits(group.id)] == [glimit.id]
        glimit = await rm.risk.update_group_limit(group.id, glimit.id, value="2000000")
        assert glimit.value == Decimal("2000000") and isinstance(glimit.warn_at_pct, Decimal)
        assert group.id in [g.id async for g in rm.risk.groups()]
        stressed = await rm.risk.stress([{"name": "down 10%", "shocks": {"*": -0.1}}], accounts=[account.id])
        ((one,),) = [r.accounts for r in stressed.results]
        assert one.account_id == account.id and one.pnl == Decimal("-50")  # long 5 at 100
        assert stressed.results[0].groups[0].group_id == group.id
        saved = await rm.risk.create_scenario(f"crash {uuid.uuid4().hex[:8]}", shocks={symbol: -0.2})
        ran = await rm.risk.run_scenario(saved.id, accounts=[account.id])
        assert ran.results[0].accounts[0].pnl == Decimal("-100")
        assert (await rm.risk.get_scenario(saved.id)).shocks == {symbol: -0.2}
        assert saved.id in [x.id async for x in rm.risk.scenarios()]
        await rm.risk.delete_scenario(saved.id)
        overview = await rm.risk.overview()
        assert isinstance(overview.firm.equity, Decimal) and overview.firm.accounts >= 1
        assert group.id in [g.id for g in overview.groups]
        var = await rm.risk.portfolio_var(group_id=group.id)
        assert var.group_id == group.id and var.accounts == 1
        assert (await rm.risk.set_account_group(account.id, None)).group_id is None
        await rm.risk.delete_group_limit(group.id, glimit.id)
        await rm.risk.delete_group(group.id)
        state = await rm.accounts.set_trading_state(account.id, "halted", "client test")
        assert state.state == "halted" and state.previous_state == "active"
    async with AsyncClient(server.url, api_key=trader.api_key) as td:
        with pytest.raises(Unprocessable):
            await td.orders.place(account.id, symbol, "buy", "market", quantity=1)
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        job = await admin.jobs.create("system.echo", {"message": "ping"})
        assert (await admin.jobs.get(job.key)).function == "system.echo"
        assert "queued" in await admin.jobs.stats()
        assert "status" in await admin.jobs.health()
    async with AsyncClient(server.url, api_key="td_not_a_key_0123456789abcdef0123456789") as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.users.me()


async def test_blocking_client(server):
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=30)

    def bot() -> tuple[m.Order, list[m.Position], list[m.Order]]:
        with Client(server.url, api_key=server.admin_key) as td:
            account = td.accounts.create("sync bot", "10000")
            order = td.orders.place(account.id, symbol, "buy", "market", quantity=3)
            td.orders.place(account.id, symbol, "sell", "limit", quantity=1, limit_price="150")
            return order, td.positions.list(account.id), list(td.orders.iter(account.id, limit=1))

    order, positions, orders = await asyncio.to_thread(bot)
    assert order.status == "filled" and positions[0].quantity == Decimal("3") and len(orders) == 2

    def streaming_bot() -> tuple[list[tuple[int, str]], dict[str, int]]:
        with Client(server.url, api_key=server.admin_key) as td:
            account = td.accounts.create("sync streamer", "10000")
            seen = []
            with td.stream([f"trade_updates:{account.id}"], yield_control=True) as stream:
                messages = iter(stream)
                assert next(messages)["type"] == "subscribed"
                td.orders.place(account.id, symbol, "buy", "market", quantity=2)
                for message in messages:
                    if isinstance(message, TradeUpdate):
                        seen.append((message.seq, message.event))
                        if message.event == "fill":
                            break
                return seen, dict(stream.last_seq)

    seen, last_seq = await asyncio.to_thread(streaming_bot)
    assert seen == [(1, "new"), (2, "accepted"), (3, "fill")]
    assert list(last_seq.values()) == [3]


async def test_contingent_order_helpers_against_a_live_server(server):
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=5)
        trader = await admin.users.create(f"client-{uuid.uuid4().hex[:8]}@example.com", "trader")
        risk_manager = await admin.users.create(f"risk-{uuid.uuid4().hex[:8]}@example.com", "risk_manager")
    async with AsyncClient(server.url, api_key=trader.api_key) as td:
        account = await td.accounts.create("contingent bot", "100000")
        entry = await td.orders.bracket(account.id, symbol, "buy", 4, limit_price="95", take_profit="110",
                                        stop_loss="90", stop_loss_limit="89.50")
        assert entry.order_class == "bracket" and entry.status == "accepted"
        assert sorted((leg.leg, leg.status, leg.type) for leg in entry.legs or []) == [
            ("stop_loss", "held", "stop_limit"), ("take_profit", "held", "limit")]
        again = await td.orders.get(account.id, entry.id, nested=True)
        assert {leg.id for leg in again.legs or []} == {leg.id for leg in entry.legs or []}
        assert (await td.orders.get(account.id, entry.id)).legs is None
        listed = {o.id: o for o in (await td.orders.list(account.id, nested=True)).items}
        assert {leg.id for leg in listed[entry.id].legs or []} == {leg.id for leg in entry.legs or []}
        assert {o.id: o.legs async for o in td.orders.iter(account.id, nested=True)} == {
            i: o.legs for i, o in listed.items()}
        assert all(o.legs is None for o in (await td.orders.list(account.id)).items)
        await td.orders.place(account.id, symbol, "buy", "market", quantity=6)
        oco = await td.orders.oco(account.id, symbol, "sell", 3, take_profit="120", stop_loss="80")
        assert oco.leg == "take_profit" and oco.reduce_only and (oco.legs or [])[0].leg == "stop_loss"
        trail = await td.orders.trailing_stop(account.id, symbol, "sell", 3, trail_percent="2")
        assert trail.type == "trailing_stop" and trail.hwm == Decimal("100")
        assert trail.stop_price == Decimal("98")
    async with AsyncClient(server.url, api_key=risk_manager.api_key) as rm:
        halted = await rm.accounts.set_trading_state(account.id, "halted", "client test")
        legs = {o.id for o in (entry.legs or []) + (oco.legs or [])}
        assert set(halted.canceled_orders) == {entry.id, oco.id, trail.id, *legs}


async def test_order_operations_through_the_client(server):
    """Notional and reduce-only orders, replace, cancel-all, the client_order_id lookup and closing
    positions, through the client's resource methods and its shortcuts."""
    async with AsyncClient(server.url, api_key=server.admin_key) as admin:
        symbol = await make_market(admin, bars=2)
        trader = await admin.users.create(f"ops-{uuid.uuid4().hex[:8]}@example.com", "trader")
    async with AsyncClient(server.url, api_key=trader.api_key) as td:
        account = await td.accounts.create("ops bot", "100000")
        bought = await td.orders.place(account.id, symbol, "buy", "market", notional="1050")
        assert bought.quantity == Decimal("10") and bought.notional == Decimal("1050")
        with pytest.raises(Unprocessable) as exc:
            await td.orders.place(account.id, symbol, "buy", "market", quantity=1, reduce_only=True)
        assert exc.value.slug == "reduce-only"
        resting = await td.orders.place(
            account.id, symbol, "sell", "limit", quantity=4, limit_price="120", client_order_id="tp-1",
            reduce_only=True,
        )
        replaced = await td.replace_order(account.id, resting.id, quantity=3, limit_price="125")
        assert (replaced.id, replaced.version, replaced.quantity) == (resting.id, 2, Decimal("3"))
        assert (await td.get_order_by_client_id(account.id, "tp-1")).limit_price == Decimal("125")
        with pytest.raises(NotFound):
            await td.orders.get_by_client_id(account.id, "nope")
        result = await td.cancel_all_orders(account.id, symbol=symbol)
        assert result.canceled == [resting.id] and result.failed == []
        closed = await td.close_position(account.id, symbol, percentage=50)
        assert closed.reduce_only and closed.side == "sell" and closed.quantity == Decimal("5")
        everything = await td.close_all_positions(account.id, cancel_orders=True)
        assert [o.quantity for o in everything.orders] == [Decimal("5")] and everything.failed == []
    with Client(server.url, api_key=trader.api_key) as blocking:
        assert blocking.cancel_all_orders(account.id).canceled == []
