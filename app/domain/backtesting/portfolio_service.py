"""Portfolio backtests: validation at submit, aligned bar loading, plan building and the positions view.

Everything a run needs is checked before a row or a job exists, each failure a 422 naming the field:
an unknown symbol (`symbols[i]`, `benchmark`), a symbol without two candles in the range, symbols whose
candles do not line up with the first symbol's (count, first and last timestamp; the worker checks
every timestamp), weights over the leverage or negative without `allow_short`, weights for symbols not
in `symbols`, an unknown strategy or parameter, a rule that does not parse (its position named).

A portfolio run is a `backtests` row with `kind = 'portfolio'`; its whole request (normalised) is its
`params`, which is what the worker runs and what the input hash covers together with the bars.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from saq import Queue
from sqlalchemy import BigInteger, Double, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.models import Backtest, BacktestResult
from app.domain.backtesting.portfolio import (
    Commission,
    Exits,
    PortfolioBars,
    SignalPlan,
    WeightPlan,
    rebalance_bars,
)
from app.domain.backtesting.portfolio_schemas import (
    MAX_WEIGHT,
    CommissionModel,
    PortfolioCreate,
    PositionsOut,
    PositionsPoint,
    Signals,
    TargetWeights,
)
from app.domain.backtesting.quotas import enforce_active_quota
from app.domain.backtesting.rules_lang import RuleError, evaluate, parse_condition
from app.domain.backtesting.schemas import BacktestOut
from app.domain.backtesting.services import (
    BACKTEST_COLS,
    backtest_out,
    candle_range,
    check_params,
    enqueue_run,
    job_key,
    money,
    require_completed,
    require_queue,
)
from app.domain.backtesting.strategies import STRATEGIES, UnknownStrategyError, get_strategy, parse_params
from app.domain.backtesting.strategies.base import hold_events
from app.domain.identity.schemas import Principal
from app.domain.markets.models import Candle, Instrument
from app.lib.cache import Cache
from app.lib.db import tx
from app.lib.decimals import json_builtins
from app.lib.errors import invalid
from app.lib.log import get_logger

log = get_logger("app.backtests")

PORTFOLIO_RUN_JOB = "backtest.run_portfolio"
PORTFOLIO_LABEL = "portfolio"


# ------------------------------------------------------------------------------------------------ validation


def _check_weight_rows(rows: list[tuple[str, dict[str, float]]], data: PortfolioCreate) -> None:
    known = set(data.symbols)
    for field, weights in rows:
        for sym in weights:
            if sym not in known:
                raise invalid(f"{sym!r} has a weight but is not in `symbols`", f"{field}.{sym}")
        for sym, w in weights.items():
            if not -MAX_WEIGHT <= w <= MAX_WEIGHT:  # (nan fails both)
                bounds = f"[-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}]"
                raise invalid(f"weight {w} for {sym} is outside {bounds}", f"{field}.{sym}")
            if w < 0 and not data.allow_short:
                raise invalid(f"negative weight {w} for {sym} needs `allow_short: true`", f"{field}.{sym}")
        gross = sum(abs(w) for w in weights.values())
        if gross > data.leverage + 1e-9:
            raise invalid(
                f"weights sum to {gross:g} (absolute), above the leverage {data.leverage:g}; "
                "set `leverage` to allow it",
                field,
            )


def normalised_spec(data: PortfolioCreate) -> dict[str, Any]:
    """The request as the worker will run it (defaults filled, params parsed), or a 422."""
    alloc = data.allocation
    spec = json_builtins(data)  # (decimals as given, but in plain notation: "1E+5" is stored as "100000")
    if isinstance(alloc, TargetWeights):
        if alloc.weights is not None:  # type: ignore[union-attr]
            _check_weight_rows([("allocation.weights", alloc.weights)], data)  # type: ignore[union-attr]
        else:
            entries = alloc.schedule or []  # type: ignore[union-attr]
            _check_weight_rows(
                [(f"allocation.schedule[{i}].weights", e.weights) for i, e in enumerate(entries)], data
            )
            for i in range(1, len(entries)):
                if entries[i].ts <= entries[i - 1].ts:
                    raise invalid(
                        "schedule entries must be in increasing `ts` order", f"allocation.schedule[{i}].ts"
                    )
    elif isinstance(alloc, Signals):
        if alloc.strategy not in STRATEGIES:  # type: ignore[union-attr]
            raise invalid(str(UnknownStrategyError(alloc.strategy)), "allocation.strategy")  # type: ignore[union-attr]
        spec["allocation"]["params"] = check_params(alloc.strategy, alloc.params, "allocation.params")  # type: ignore[union-attr]
    else:
        for name in ("entry", "exit"):
            try:
                parse_condition(getattr(alloc, name))
            except RuleError as exc:
                raise invalid(f"`{name}` rule: {exc}", f"allocation.{name}", position=exc.position) from exc
    if not isinstance(alloc, TargetWeights) and alloc.sizing == "percent_equity":
        if alloc.percent > 100 * data.leverage:  # type: ignore[union-attr, operator]
            raise invalid("`percent` above 100 needs `leverage`", "allocation.percent")
    return spec


async def check_portfolio_market(
    conn: AsyncConnection,
    symbols: list[str],
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    benchmark: str | None = None,
) -> int:
    """Instruments exist; each symbol (and the benchmark) has two candles in the range, and they line
    up with the first symbol's: same count, first and last timestamp. Returns the bar count."""
    wanted = [*symbols, *([benchmark] if benchmark else [])]
    found = set((await conn.scalars(select(Instrument.symbol).where(Instrument.symbol.in_(wanted)))).all())
    for i, sym in enumerate(symbols):
        if sym not in found:
            raise invalid(f"Unknown instrument {sym!r}", f"symbols[{i}]")
    if benchmark and benchmark not in found:
        raise invalid(f"Unknown instrument {benchmark!r}", "benchmark")
    where = [Candle.symbol.in_(wanted), Candle.timeframe == timeframe]
    if start is not None:
        where.append(Candle.ts >= start)
    if end is not None:
        where.append(Candle.ts <= end)
    rows = (
        await conn.execute(
            select(Candle.symbol, func.count(), func.min(Candle.ts), func.max(Candle.ts))
            .where(*where)
            .group_by(Candle.symbol)
        )
    ).all()
    stats = {r[0]: (int(r[1]), r[2], r[3]) for r in rows}
    fields = [(sym, f"symbols[{i}]") for i, sym in enumerate(symbols)]
    if benchmark:
        fields.append((benchmark, "benchmark"))
    first = stats.get(symbols[0])
    for sym, field in fields:
        got = stats.get(sym)
        if got is None or got[0] < 2:
            raise invalid(f"{sym} has fewer than two {timeframe} candles in the requested range", field)
        if first is not None and got != first:
            raise invalid(
                f"{sym}'s {timeframe} candles do not line up with {symbols[0]}'s "
                f"({got[0]} bars {got[1]:%Y-%m-%d %H:%M} .. {got[2]:%Y-%m-%d %H:%M} against "
                f"{first[0]} bars {first[1]:%Y-%m-%d %H:%M} .. {first[2]:%Y-%m-%d %H:%M})",
                field,
            )
    return first[0] if first is not None else 0


async def create_portfolio_backtest(
    conn: AsyncConnection,
    queue: Queue | None,
    principal: Principal,
    data: PortfolioCreate,
    max_active: int | None = None,
) -> BacktestOut:
    queue = require_queue(queue)
    spec = normalised_spec(data)
    await check_portfolio_market(conn, data.symbols, data.timeframe, data.start, data.end, data.benchmark)
    backtest_id = uuid.uuid4()
    key = job_key(backtest_id)
    rate = data.commission.rate if isinstance(data.commission, CommissionModel) else data.commission
    async with tx(conn):
        if max_active is not None:  # the same per-user quota as single backtests
            await enforce_active_quota(conn, principal.user_id, "backtests", max_active)
        row = (
            await conn.execute(
                insert(Backtest)
                .values(
                    id=backtest_id,
                    owner_id=principal.user_id,
                    kind="portfolio",
                    strategy=data.allocation.__struct_config__.tag,  # type: ignore[attr-defined]
                    params=spec,
                    symbol=PORTFOLIO_LABEL,
                    timeframe=data.timeframe,
                    start=data.start,
                    end=data.end,
                    initial_cash=data.initial_cash,
                    commission=rate,
                    slippage_bps=data.slippage_bps or 0,
                    status="queued",
                    progress=0.0,
                    job_key=key,
                )
                .returning(*BACKTEST_COLS)
            )
        ).one()
    await enqueue_run(conn, queue, principal, backtest_id, PORTFOLIO_RUN_JOB)
    log.info("portfolio_backtest_submitted", backtest_id=str(backtest_id), symbols=len(data.symbols))
    return backtest_out(row)


# ------------------------------------------------------------------------------------------------ bars


def spec_range(spec: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """A stored request's `start` and `end` (kept in it as ISO text) as datetimes for the candle query."""

    def when(value: Any) -> datetime | None:
        return datetime.fromisoformat(value) if isinstance(value, str) else value

    return when(spec.get("start")), when(spec.get("end"))


async def load_portfolio_bars(
    conn: AsyncConnection, symbols: list[str], timeframe: str, start: datetime | None, end: datetime | None
) -> PortfolioBars:
    """Aligned bars of ``symbols`` (columns in that order), one array row per symbol from one query.

    Raises ``ValueError`` naming the symbol whose timestamps differ from the first symbol's.
    """
    where = candle_range(symbols[0], timeframe, start, end)
    where[0] = Candle.symbol.in_(symbols)
    epoch = cast(func.extract("epoch", Candle.ts), BigInteger)
    inner = (
        select(
            Candle.symbol.label("symbol"),
            epoch.label("ts"),
            *(
                cast(c, Double).label(c.key)
                for c in (Candle.open, Candle.high, Candle.low, Candle.close, Candle.volume)
            ),
        )
        .where(*where)
        .order_by(Candle.symbol, Candle.ts)
        .subquery()
    )
    rows = (
        await conn.execute(
            select(
                inner.c.symbol,
                *(func.array_agg(inner.c[n]) for n in ("ts", "open", "high", "low", "close", "volume")),
            ).group_by(inner.c.symbol)
        )
    ).all()
    by_symbol = {r[0]: r for r in rows}
    missing = [s for s in symbols if s not in by_symbol]
    if missing:
        raise ValueError(f"no {timeframe} candles for {missing[0]} in the range")
    ts = np.asarray(by_symbol[symbols[0]][1], dtype=np.int64)
    for sym in symbols[1:]:
        other = np.asarray(by_symbol[sym][1], dtype=np.int64)
        if other.shape != ts.shape or not np.array_equal(other, ts):
            raise ValueError(f"{sym}'s {timeframe} candles do not line up with {symbols[0]}'s")
    cols = {
        name: np.column_stack([np.asarray(by_symbol[s][k], dtype=np.float64) for s in symbols])
        for k, name in enumerate(("open", "high", "low", "close", "volume"), start=2)
    }
    return PortfolioBars(symbols=tuple(symbols), ts=ts, **cols)


# ------------------------------------------------------------------------------------------------ plans


def _weights_vector(weights: dict[str, float], symbols: tuple[str, ...]) -> list[float]:
    return [float(weights.get(s, 0.0)) for s in symbols]


def build_plan(bars: PortfolioBars, allocation: dict[str, Any]) -> WeightPlan | SignalPlan:
    """The engine plan of a normalised allocation (see ``normalised_spec``)."""
    kind = allocation["type"]
    if kind == "target_weights":
        if allocation.get("weights") is not None:
            decisions = rebalance_bars(bars.ts, allocation["rebalance"])
            row = _weights_vector(allocation["weights"], bars.symbols)
            return WeightPlan(decisions, np.tile(np.asarray(row), (decisions.size, 1)))
        # A schedule entry's decision bar: the last bar at or before its ts; an entry dated before the
        # first bar decides on the first bar (the weights in force when the data starts: a schedule
        # begun before a range's `start` is not dropped for it).
        entries = allocation["schedule"]
        stamps = np.asarray([_epoch(e["ts"]) for e in entries], dtype=np.int64)
        idx = np.maximum(np.searchsorted(bars.ts, stamps, side="right") - 1, 0)
        # Two entries on one bar: the later one is the decision.
        rows = [
            (int(i), _weights_vector(e["weights"], bars.symbols)) for i, e in zip(idx, entries, strict=True)
        ]
        decided = {i: w for i, w in rows}
        bars_sorted = sorted(decided)
        weights = np.asarray([decided[i] for i in bars_sorted], dtype=np.float64).reshape(
            len(bars_sorted), bars.m
        )
        return WeightPlan(np.asarray(bars_sorted, dtype=np.int64), weights)
    sizing = allocation.get("sizing", "equal_weight")
    percent = float(allocation.get("percent") or 0.0)
    if kind == "signals":
        spec = get_strategy(allocation["strategy"])
        params = parse_params(allocation["strategy"], allocation.get("params") or {})
        direction = np.column_stack([spec.signals(bars.column(j), params) for j in range(bars.m)])
    elif kind == "rules":
        entry, exit_ = parse_condition(allocation["entry"]), parse_condition(allocation["exit"])
        cols = []
        for j in range(bars.m):
            series = bars.series(j)
            cols.append(hold_events(bars.n, (evaluate(entry, series), 1), (evaluate(exit_, series), 0)))
        direction = np.column_stack(cols)
    else:
        raise ValueError(f"unknown allocation type {kind!r}")
    return SignalPlan(direction.astype(np.int8), sizing, percent)


def _epoch(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def engine_options(spec: dict[str, Any], lot_sizes: list[float]) -> dict[str, Any]:
    """Keyword arguments of ``run_portfolio`` from a normalised spec (costs, exits, shorting...)."""
    commission = spec.get("commission")
    if isinstance(commission, dict):
        model = Commission(**{k: float(v) for k, v in commission.items()})
    else:
        model = Commission(rate=float(commission or 0))
    exits = spec.get("exits") or {}
    return {
        "initial_cash": float(spec["initial_cash"]),
        "commission": model,
        "slippage_bps": float(spec.get("slippage_bps") or 0),
        "allow_short": bool(spec.get("allow_short")),
        "leverage": float(spec.get("leverage") or 1.0),
        "whole_units": bool(spec.get("whole_units")),
        "lot_size": lot_sizes,
        "exits": Exits(**exits),
        "periods_per_year": spec.get("periods_per_year"),
    }


# ------------------------------------------------------------------------------------------------ reads


async def backtest_positions(
    conn: AsyncConnection, cache: Cache, principal: Principal, backtest_id: uuid.UUID, max_points: int
) -> bytes:
    await require_completed(conn, principal, backtest_id)

    async def load() -> PositionsOut:
        stored = await conn.scalar(
            select(BacktestResult.positions).where(BacktestResult.backtest_id == backtest_id)
        )
        if stored is None:
            raise invalid("This backtest is not a portfolio backtest; it has no positions", "backtest_id")
        ts = stored["ts"]
        qty = stored["quantities"]
        picks = np.unique(np.linspace(0, len(ts) - 1, min(max_points, len(ts))).round().astype(int)).tolist()
        items = [
            PositionsPoint(
                ts=datetime.fromtimestamp(int(ts[i]), UTC),
                quantities={s: money(q) or "0" for s, q in zip(stored["symbols"], qty[i], strict=True)},
            )
            for i in picks
        ]
        return PositionsOut(
            backtest_id=backtest_id,
            symbols=list(stored["symbols"]),
            bars=int(stored["bars"]),
            points=len(items),
            items=items,
        )

    return await cache.get_json("backtests", f"{backtest_id}:positions:{max_points}", load, ttl=600)
