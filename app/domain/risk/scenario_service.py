"""Saved stress scenarios: `/api/v1/risk/scenarios` (CRUD, run by id) and the daily job's run.

A saved scenario is one scenario of `POST /api/v1/risk/stress` (`shocks` or a `historical` window) kept
under a unique name. Running it by id is that stress test with this one scenario, under the same access
rules (a trader: their own accounts). Risk managers and admins create, change and delete them (a trader
gets 403) and see `last_run`; everyone may list, read and run them.

`run_daily` (job `risk.run_saved_scenarios`, scheduled like any job with a cron schedule) stresses every
account of the firm under every `daily` scenario, up to 50 scenarios per stress run, and keeps each
scenario's firm-level summary in `last_run` (the full per-account answer is what running by id returns).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity.schemas import Principal
from app.domain.risk.models import RiskScenario
from app.domain.risk.schemas import (
    HistoricalWindow,
    SavedScenarioCreate,
    SavedScenarioOut,
    SavedScenarioPatch,
    ScenarioRunIn,
    ScenarioRunSummary,
    StressOut,
    StressRequest,
    StressScenario,
    StressScenarioResult,
)
from app.domain.risk.stress_service import check_shocks, stress_test
from app.lib.db import tx, utcnow
from app.lib.errors import Invalid, RoleRequired, conflict, not_found
from app.lib.pagination import decode_cursor, encode_cursor

_KINDS = ("shocks", "historical")
# At most this many scenarios per stress run (the request limit of POST /api/v1/risk/stress).
RUN_CHUNK = 50

_COLS = (
    RiskScenario.id,
    RiskScenario.name,
    RiskScenario.shocks,
    RiskScenario.historical_start,
    RiskScenario.historical_end,
    RiskScenario.daily,
    RiskScenario.created_by,
    RiskScenario.created_at,
    RiskScenario.updated_at,
    RiskScenario.last_run,
)


def _raise_if_name_taken(exc: IntegrityError, name: str | None) -> None:
    if "uq_risk_scenarios_name" in str(exc.orig):
        raise conflict("A saved scenario with this name already exists", name=name) from exc


def _one_kind(shocks: Any, historical: Any, *, required: bool) -> None:
    """The exactly-one rule, a 422 naming both fields (a rule the schema cannot state, as API.md says)."""
    if shocks is not None and historical is not None or (required and shocks is None and historical is None):
        raise Invalid(
            "A scenario needs exactly one of `shocks` and `historical`",
            errors=[{"field": f, "message": "exactly one of shocks and historical"} for f in _KINDS],
        )


def _ensure_risk_manager(principal: Principal) -> None:
    if not principal.can_read_all_accounts:
        raise RoleRequired("Changing saved scenarios requires the risk_manager or admin role")


def _out(row: Any, principal: Principal) -> SavedScenarioOut:
    historical = (
        HistoricalWindow(start=row.historical_start, end=row.historical_end)
        if row.historical_start is not None
        else None
    )
    last_run = None
    if row.last_run is not None and principal.can_read_all_accounts:
        last_run = msgspec.convert(row.last_run, ScenarioRunSummary, strict=False)
    return SavedScenarioOut(
        id=row.id,
        name=row.name,
        kind="shocks" if row.shocks is not None else "historical",
        shocks=row.shocks,
        historical=historical,
        daily=row.daily,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_run=last_run,
    )


def _scenario(row: Any) -> StressScenario:
    if row.shocks is not None:
        return StressScenario(name=row.name, shocks=row.shocks)
    window = HistoricalWindow(row.historical_start, row.historical_end)
    return StressScenario(name=row.name, historical=window)


def _definition(shocks: dict[str, float] | None, historical: HistoricalWindow | None) -> dict[str, Any]:
    return {
        "shocks": shocks,
        "historical_start": historical.start if historical else None,
        "historical_end": historical.end if historical else None,
    }


async def _row(conn: AsyncConnection, scenario_id: uuid.UUID, *, lock: bool = False) -> Any:
    stmt = select(*_COLS).where(RiskScenario.id == scenario_id)
    row = (await conn.execute(stmt.with_for_update() if lock else stmt)).one_or_none()
    if row is None:
        raise not_found("Scenario")
    return row


async def create_scenario(
    conn: AsyncConnection, principal: Principal, data: SavedScenarioCreate
) -> SavedScenarioOut:
    _ensure_risk_manager(principal)
    _one_kind(data.shocks, data.historical, required=True)
    async with tx(conn):
        await check_shocks(conn, [data], field="")
        try:
            async with conn.begin_nested():
                row = (
                    await conn.execute(
                        insert(RiskScenario)
                        .values(
                            id=uuid.uuid4(),
                            name=data.name,
                            daily=data.daily,
                            created_by=principal.user_id,
                            **_definition(data.shocks, data.historical),
                        )
                        .returning(*_COLS)
                    )
                ).one()
        except IntegrityError as exc:
            _raise_if_name_taken(exc, data.name)
            raise
    return _out(row, principal)


async def list_scenarios(
    conn: AsyncConnection, principal: Principal, *, limit: int, cursor: str | None
) -> tuple[list[SavedScenarioOut], str | None]:
    stmt = select(*_COLS)
    if cursor:
        ts, last = decode_cursor(cursor)
        stmt = stmt.where(func.row(RiskScenario.created_at, RiskScenario.id) < func.row(ts, last))
    order = (RiskScenario.created_at.desc(), RiskScenario.id.desc())
    rows = (await conn.execute(stmt.order_by(*order).limit(limit + 1))).all()
    items = [_out(r, principal) for r in rows[:limit]]
    return items, encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None


async def get_scenario(
    conn: AsyncConnection, principal: Principal, scenario_id: uuid.UUID
) -> SavedScenarioOut:
    return _out(await _row(conn, scenario_id), principal)


async def update_scenario(
    conn: AsyncConnection, principal: Principal, scenario_id: uuid.UUID, data: SavedScenarioPatch
) -> SavedScenarioOut:
    _ensure_risk_manager(principal)
    if all(v is None for v in msgspec.structs.astuple(data)):
        raise Invalid("the body names no field to change", "body")
    _one_kind(data.shocks, data.historical, required=False)
    async with tx(conn):
        await _row(conn, scenario_id, lock=True)
        values: dict[str, Any] = {"updated_at": utcnow()}
        if data.name is not None:
            values["name"] = data.name
        if data.daily is not None:
            values["daily"] = data.daily
        if data.shocks is not None or data.historical is not None:
            await check_shocks(conn, [data], field="")
            values.update(_definition(data.shocks, data.historical))
            values["last_run"] = values["last_run_at"] = None  # a summary of another definition
        try:
            async with conn.begin_nested():
                row = (
                    await conn.execute(
                        update(RiskScenario)
                        .where(RiskScenario.id == scenario_id)
                        .values(**values)
                        .returning(*_COLS)
                    )
                ).one()
        except IntegrityError as exc:
            _raise_if_name_taken(exc, data.name)
            raise
    return _out(row, principal)


async def delete_scenario(conn: AsyncConnection, principal: Principal, scenario_id: uuid.UUID) -> None:
    _ensure_risk_manager(principal)
    async with tx(conn):
        gone = await conn.execute(delete(RiskScenario).where(RiskScenario.id == scenario_id))
        if gone.rowcount == 0:
            raise not_found("Scenario")


async def run_scenario(
    conn: AsyncConnection, principal: Principal, scenario_id: uuid.UUID, data: ScenarioRunIn | None
) -> StressOut:
    row = await _row(conn, scenario_id)
    data = data or ScenarioRunIn()
    request = StressRequest(scenarios=[_scenario(row)], accounts=data.accounts, groups=data.groups)
    return await stress_test(conn, principal, request)


def summary(result: StressScenarioResult, as_of: Any) -> ScenarioRunSummary:
    breaching = [a for a in result.accounts if a.breaches]
    return ScenarioRunSummary(
        as_of=as_of,
        accounts=len(result.accounts),
        firm_pnl=result.firm_pnl,
        firm_equity=result.firm_equity,
        firm_equity_after=result.firm_equity_after,
        accounts_breaching=len(breaching),
        breaches=sum(len(a.breaches) for a in breaching),
        missing_history=result.missing_history,
    )


async def run_daily(conn: AsyncConnection) -> dict[str, int]:
    """Stress the firm under every `daily` saved scenario and keep each one's summary (`last_run`)."""
    rows = (
        await conn.execute(
            select(*_COLS).where(RiskScenario.daily).order_by(RiskScenario.created_at, RiskScenario.id)
        )
    ).all()
    if conn.in_transaction():
        await conn.rollback()
    nil = uuid.UUID(int=0)  # the job itself: reads the firm as a risk manager does
    system = Principal(user_id=nil, role="risk_manager", key_id=nil, email="risk-job@tradedesk.invalid")
    accounts = 0
    for start in range(0, len(rows), RUN_CHUNK):
        chunk = rows[start : start + RUN_CHUNK]
        out = await stress_test(conn, system, StressRequest(scenarios=[_scenario(r) for r in chunk]))
        async with tx(conn):
            for row, result in zip(chunk, out.results, strict=True):
                accounts = len(result.accounts)
                await conn.execute(
                    update(RiskScenario)
                    .where(RiskScenario.id == row.id, RiskScenario.name == result.scenario)
                    .values(last_run_at=out.as_of, last_run=msgspec.to_builtins(summary(result, out.as_of)))
                )
    return {"scenarios": len(rows), "accounts": accounts}
