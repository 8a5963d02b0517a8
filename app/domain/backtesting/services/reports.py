"""The HTML report of a run (cached) and the short-lived report links that open it without a key."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.backtesting.models import Backtest, BacktestResult
from app.domain.backtesting.report import render_report
from app.domain.backtesting.report_portfolio import render_tear_sheet
from app.domain.backtesting.schemas import ReportTokenOut
from app.domain.backtesting.services.common import BACKTEST_COLS, REPORT_TOKEN_TTL, RESULT_CACHE_TTL
from app.domain.backtesting.services.rendering import backtest_out
from app.domain.backtesting.services.runs import require_completed, stored_result
from app.domain.identity.schemas import Principal
from app.lib.cache import Cache
from app.lib.errors import Unauthenticated
from app.lib.kv import KV


async def _report_html(conn: AsyncConnection, cache: Cache, backtest_id: uuid.UUID) -> str:
    async def load() -> str:
        row = (await conn.execute(select(*BACKTEST_COLS).where(Backtest.id == backtest_id))).one()
        stored, trades = await stored_result(conn, backtest_id)
        if row.kind == "portfolio":
            positions = await conn.scalar(
                select(BacktestResult.positions).where(BacktestResult.backtest_id == backtest_id)
            )
            return render_tear_sheet(backtest_out(row), stored, positions or {}, trades)
        return render_report(backtest_out(row), stored, trades)

    payload = await cache.get_json("backtests", f"{backtest_id}:report", load, ttl=RESULT_CACHE_TTL)
    return msgspec.json.decode(payload, type=str)


async def report_page(
    conn: AsyncConnection, cache: Cache, principal: Principal, backtest_id: uuid.UUID
) -> str:
    await require_completed(conn, principal, backtest_id)
    return await _report_html(conn, cache, backtest_id)


def _token_key(token: str) -> str:
    return "report-token:" + hashlib.sha256(token.encode()).hexdigest()


async def create_report_token(
    conn: AsyncConnection, kv: KV, principal: Principal, backtest_id: uuid.UUID
) -> ReportTokenOut:
    """A link to one backtest's report, for clients that cannot send headers (a browser tab, a headless
    screenshot). Only the token's hash is stored; it expires after REPORT_TOKEN_TTL seconds, is bound to
    this backtest and grants nothing else. Until then the link can be reopened (a reload, a second tab)."""
    await require_completed(conn, principal, backtest_id)
    token = secrets.token_urlsafe(32)
    await kv.set(_token_key(token), str(backtest_id).encode(), ttl=REPORT_TOKEN_TTL)
    expires = datetime.now(UTC) + timedelta(seconds=REPORT_TOKEN_TTL)
    return ReportTokenOut(token=token, url=f"/static/reports/{backtest_id}?token={token}", expires_at=expires)


async def redeem_report_token(
    conn: AsyncConnection, kv: KV, cache: Cache, backtest_id: uuid.UUID, token: str
) -> str:
    stored = await kv.get(_token_key(token))
    if stored is None or stored.decode() != str(backtest_id):
        raise Unauthenticated("Invalid or expired report token")
    await require_completed(conn, None, backtest_id)
    return await _report_html(conn, cache, backtest_id)
