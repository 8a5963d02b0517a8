from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, get, post, put
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from app.domain.accounts import services
from app.domain.accounts.schemas import (
    AccountCreate,
    AccountOut,
    AccountPage,
    TradingStateIn,
    TradingStateOut,
)
from app.domain.identity.guards import requires_risk_manager
from app.lib.db import DbConn, provide_db
from app.lib.pagination import Cursor, Limit


class AccountController(Controller):
    path = "/api/v1/accounts"
    tags = ["accounts"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", status_code=201, summary="Open a paper account")
    async def create_account(self, db: DbConn, request: Request, data: JSONBody[AccountCreate]) -> AccountOut:
        return await services.create_account(db, request.user, data)

    @get("/", summary="My accounts (risk_manager/admin: all accounts)")
    async def list_accounts(
        self, db: DbConn, request: Request, limit: Limit = 50,
        cursor: Cursor = None,
    ) -> AccountPage:
        items, nxt = await services.list_accounts(db, request.user, limit, cursor)
        return AccountPage(items=items, next_cursor=nxt)

    @get("/{account_id:uuid}", summary="Account with cash, equity, buying power and PnL")
    async def get_account(self, db: DbConn, request: Request, account_id: FromPath[UUID]) -> AccountOut:
        return await services.get_account(db, request.user, account_id)

    @put("/{account_id:uuid}/trading-state", guards=[requires_risk_manager], summary="Halt, reduce-only or resume trading")
    async def set_trading_state(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], data: JSONBody[TradingStateIn]
    ) -> TradingStateOut:
        return await services.set_trading_state(
            db, request.user, account_id, data.state, data.reason, data.cancel_open_orders
        )
