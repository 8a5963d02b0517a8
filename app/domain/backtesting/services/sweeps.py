"""Sweeps: a strategy over every combination of a parameter grid, ranked; the 2-parameter heatmap."""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Any

import msgspec
from saq import Queue
from sqlalchemy import Double, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.models import Backtest, Sweep
from app.domain.backtesting.quotas import enforce_active_quota
from app.domain.backtesting.report_portfolio import render_sweep_heatmap
from app.domain.backtesting.schemas import (
    ASCENDING_METRICS,
    MAX_SWEEP_COMBINATIONS,
    SkippedCombination,
    SweepCreate,
    SweepCreated,
    SweepOut,
    SweepRun,
)
from app.domain.backtesting.services.access import require_queue, sweep_visible
from app.domain.backtesting.services.bars import check_market
from app.domain.backtesting.services.common import FAN_OUT_JOB, job_key, log, sweep_job_key
from app.domain.backtesting.services.rendering import metrics_out
from app.domain.backtesting.services.runs import mark_unqueued, slippage_or_zero
from app.domain.backtesting.services.strategy_params import check_strategy, param_field
from app.domain.backtesting.strategies import parse_params
from app.domain.identity.schemas import Principal
from app.lib.db import tx
from app.lib.errors import Invalid, QueueUnavailable, invalid, not_found
from app.lib.jobs import enqueue


def _combo_label(combo: dict[str, Any]) -> str:
    return msgspec.json.encode(combo).decode()


def expand_grid(data: SweepCreate) -> tuple[list[dict[str, Any]], list[SkippedCombination]]:
    """Every combination of the grid over the base params, validated. Invalid ones are a 422 naming
    the combination and the parameter, or (skip_invalid) dropped and reported."""
    check_strategy(data.strategy)
    errors: list[dict[str, str]] = []
    for name, values in data.grid.items():
        if name in data.params:
            errors.append(
                {"field": f"grid.{name}", "message": f"`{name}` is both fixed in params and swept in grid"}
            )
        seen: set[bytes] = set()
        for v in values:
            enc = msgspec.json.encode(v)
            if enc in seen:
                errors.append(
                    {"field": f"grid.{name}", "message": f"`{name}` lists the value {enc.decode()} twice"}
                )
                break
            seen.add(enc)
    if errors:
        raise Invalid("Invalid parameter grid", errors=errors)
    total = math.prod(len(v) for v in data.grid.values())
    if total > MAX_SWEEP_COMBINATIONS:
        raise invalid(f"The grid has {total} combinations; the limit is {MAX_SWEEP_COMBINATIONS}", "grid")

    names = list(data.grid)
    valid: list[dict[str, Any]] = []
    skipped: list[SkippedCombination] = []
    bad: list[dict[str, str]] = []
    for values in itertools.product(*(data.grid[n] for n in names)):
        combo = dict(zip(names, values, strict=True))
        try:
            valid.append(msgspec.to_builtins(parse_params(data.strategy, {**data.params, **combo})))
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            field = param_field(str(exc))
            prefix = "grid" if field in combo else "params"
            skipped.append(SkippedCombination(params=combo, error=str(exc)))
            bad.append(
                {
                    "field": f"{prefix}.{field}" if field else "grid",
                    "message": f"{_combo_label(combo)}: {exc}",
                }
            )
    if bad and not data.skip_invalid:
        raise Invalid(
            f"{len(bad)} of {total} parameter combinations are invalid (set skip_invalid to run the others)",
            errors=bad[:20],
        )
    if not valid:
        raise Invalid("No valid parameter combination in the grid", errors=bad[:20])
    return valid, skipped


async def create_sweep(
    conn: AsyncConnection,
    queue: Queue | None,
    principal: Principal,
    data: SweepCreate,
    max_active: int | None = None,
) -> SweepCreated:
    queue = require_queue(queue)
    combos, skipped = expand_grid(data)
    await check_market(conn, data.symbol, data.timeframe, data.start, data.end)
    sweep_id = uuid.uuid4()
    rows = []
    for params in combos:
        bid = uuid.uuid4()
        rows.append(
            {
                "id": bid,
                "owner_id": principal.user_id,
                "sweep_id": sweep_id,
                "strategy": data.strategy,
                "params": params,
                "symbol": data.symbol,
                "timeframe": data.timeframe,
                "start": data.start,
                "end": data.end,
                "initial_cash": data.initial_cash,
                "commission": data.commission,
                "slippage_bps": slippage_or_zero(data.slippage_bps),
                "status": "queued",
                "progress": 0.0,
                "job_key": job_key(bid),
            }
        )
    async with tx(conn):
        if max_active is not None:
            await enforce_active_quota(conn, principal.user_id, "sweeps", max_active)
        created_at = (
            await conn.execute(
                insert(Sweep)
                .values(
                    id=sweep_id,
                    owner_id=principal.user_id,
                    strategy=data.strategy,
                    grid=data.grid,
                    rank_by=data.rank_by,
                    total=len(rows),
                )
                .returning(Sweep.created_at)
            )
        ).scalar_one()
        # One executemany: SQLAlchemy batches it into multi-row INSERTs.
        await conn.execute(insert(Backtest), rows)
    key = sweep_job_key(sweep_id)
    try:
        # Enqueueing thousands of runs is the fan-out job's work, so this request stays fast.
        await enqueue(
            queue,
            FAN_OUT_JOB,
            {"sweep_id": str(sweep_id)},
            key=key,
            meta={"user_id": str(principal.user_id), "source": "api"},
        )
    except Exception as exc:
        log.warning("sweep_enqueue_failed", sweep_id=str(sweep_id), error=repr(exc)[:300])
        await mark_unqueued(conn, Backtest.sweep_id == sweep_id, exc)
        raise QueueUnavailable("The job queue is unavailable; the sweep was not started") from exc
    log.info("sweep_submitted", sweep_id=str(sweep_id), runs=len(rows), skipped=len(skipped))
    return SweepCreated(
        id=sweep_id,
        status="queued",
        strategy=data.strategy,
        symbol=data.symbol,
        timeframe=data.timeframe,
        rank_by=data.rank_by,
        total=len(rows),
        skipped=skipped,
        job_key=key,
        created_at=created_at,
    )


async def get_sweep(
    conn: AsyncConnection, principal: Principal, sweep_id: uuid.UUID, limit: int, rank_by: str | None = None
) -> SweepOut:
    sweep = (await conn.execute(select(Sweep).where(Sweep.id == sweep_id, sweep_visible(principal)))).first()
    if sweep is None:
        raise not_found("Sweep")
    market = (
        await conn.execute(
            select(Backtest.symbol, Backtest.timeframe).where(Backtest.sweep_id == sweep_id).limit(1)
        )
    ).first()
    metric = rank_by or sweep.rank_by
    counts = dict.fromkeys(("queued", "running", "completed", "failed", "canceled"), 0)
    for status, n in (
        await conn.execute(
            select(Backtest.status, func.count())
            .where(Backtest.sweep_id == sweep_id)
            .group_by(Backtest.status)
        )
    ).all():
        counts[status] = int(n)
    value = cast(Backtest.metrics[metric].astext, Double)
    order = value.asc() if metric in ASCENDING_METRICS else value.desc()
    rows = (
        await conn.execute(
            select(Backtest.id, Backtest.params, Backtest.metrics)
            .where(Backtest.sweep_id == sweep_id, Backtest.status == "completed")
            .order_by(order.nulls_last(), Backtest.id)
            .limit(limit)
        )
    ).all()
    ranked = []
    for i, r in enumerate(rows, start=1):
        shown = metrics_out(r.metrics)
        ranked.append(
            SweepRun(rank=i, id=r.id, params=r.params, value=(shown or {}).get(metric), metrics=shown)
        )
    active = counts["queued"] + counts["running"]
    total = sum(counts.values())
    if active == 0:
        status = (
            "completed" if counts["completed"] else ("canceled" if counts["canceled"] == total else "failed")
        )
    else:
        status = "queued" if counts["queued"] == total else "running"
    return SweepOut(
        id=sweep.id,
        status=status,
        strategy=sweep.strategy,
        symbol=market.symbol if market else "",
        timeframe=market.timeframe if market else "",
        grid=sweep.grid,
        rank_by=metric,
        total=sweep.total,
        counts=counts,
        progress=(total - active) / total if total else 1.0,
        created_at=sweep.created_at,
        ranked=ranked,
    )


async def sweep_heatmap(
    conn: AsyncConnection, principal: Principal, sweep_id: uuid.UUID, rank_by: str | None = None
) -> str:
    """The HTML heatmap of a sweep over exactly two parameters (the ranking metric per combination)."""
    sweep = (await conn.execute(select(Sweep).where(Sweep.id == sweep_id, sweep_visible(principal)))).first()
    if sweep is None:
        raise not_found("Sweep")
    names = list(sweep.grid)
    if len(names) != 2:
        raise invalid(f"A heatmap needs a sweep over exactly two parameters, not {len(names)}", "grid")
    metric = rank_by or sweep.rank_by
    rows = (
        await conn.execute(
            select(Backtest.params, Backtest.metrics).where(
                Backtest.sweep_id == sweep_id, Backtest.status == "completed"
            )
        )
    ).all()
    runs = [(r.params.get(names[0]), r.params.get(names[1]), (r.metrics or {}).get(metric)) for r in rows]
    return render_sweep_heatmap(
        str(sweep_id), sweep.strategy, metric, names[0], names[1], runs, metric in ASCENDING_METRICS
    )
