from __future__ import annotations

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from app.domain.trading import bulk, replace, services
from app.domain.trading.schemas import (
    CancelAllOut,
    CloseAllOut,
    FillPage,
    OrderCreate,
    OrderEventList,
    OrderOut,
    OrderPage,
    OrderReplace,
    PositionList,
    Side,
    StatusName,
    ValidateOut,
)
from app.lib.db import DbConn, order_connection, provide_db
from app.lib.errors import Malformed
from app.lib.http import ApiResponse
from app.lib.pagination import Cursor, Limit
from app.lib.request import decimal_query


class OrderController(Controller):
    path = "/api/v1/accounts/{account_id:uuid}"
    tags = ["orders"]
    dependencies = {"db": Provide(provide_db)}

    @post(
        "/orders",
        status_code=201,
        summary="Place an order (201; an idempotent client_order_id replay is 200)",
        responses={200: ResponseSpec(OrderOut, description="Replay: this client_order_id already placed this order")},
    )
    async def place_order(
        self, request: Request, account_id: FromPath[UUID], data: JSONBody[OrderCreate]
    ) -> Response[OrderOut]:
        async with order_connection(request.app.state) as conn:
            order, created = await services.place_order(
                conn, request.user, account_id, data, caches=request.app.state.placement_caches
            )
        return ApiResponse(order, status_code=201 if created else 200)  # type: ignore[arg-type]

    @post("/orders/validate", status_code=200, summary="Run every pre-trade check without placing anything")
    async def validate_order(
        self, request: Request, account_id: FromPath[UUID], data: JSONBody[OrderCreate]
    ) -> ValidateOut:
        async with order_connection(request.app.state) as conn:
            # (the caches' hints: an account with limits is read in full at once, as its orders are)
            result, _ = await services.place_order(
                conn, request.user, account_id, data, dry_run=True, caches=request.app.state.placement_caches
            )
        return result  # type: ignore[return-value]

    @get(
        "/orders",
        summary="Orders, newest first (keyset pagination); with client_order_id, that one order or 404",
        responses={
            200: ResponseSpec(OrderPage | OrderOut, description="A page; with client_order_id, the one order")
        },
    )
    async def list_orders(
        self, request: Request, account_id: FromPath[UUID], limit: Limit = 50, cursor: Cursor = None,
        status: FromQuery[StatusName | None] = None, symbol: Annotated[str | None, Parameter(max_length=32)] = None,
        side: FromQuery[Side | None] = None, nested: FromQuery[bool] = False,
        client_order_id: Annotated[str | None, Parameter(min_length=1, max_length=64)] = None,
    ) -> OrderPage | OrderOut:
        if client_order_id is not None:
            if cursor is not None or status is not None or symbol is not None or side is not None:
                detail = "client_order_id finds one order: it takes no other filter or cursor"
                raise Malformed(detail, "client_order_id")
            async with order_connection(request.app.state) as conn:
                return await services.order_by_client_id(conn, request.user, account_id, client_order_id)
        async with order_connection(request.app.state) as conn:
            items, nxt = await services.list_orders(
                conn, request.user, account_id, limit=limit, cursor=cursor, status=status, symbol=symbol, side=side,
                nested=nested,
            )
        return OrderPage(items=items, next_cursor=nxt)

    @delete("/orders", status_code=200, summary="Cancel every open order (held legs too), or one symbol's")
    async def cancel_all_orders(
        self, db: DbConn, request: Request, account_id: FromPath[UUID],
        symbol: Annotated[str | None, Parameter(max_length=32)] = None,
    ) -> CancelAllOut:
        return await bulk.cancel_all(db, request.user, account_id, symbol)

    @patch("/orders/{order_id:uuid}", summary="Replace an open order in place (same id, version + 1)")
    async def replace_order(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], order_id: FromPath[UUID],
        data: JSONBody[OrderReplace],
    ) -> OrderOut:
        return await replace.replace_order(db, request.user, account_id, order_id, data)

    @get("/orders/{order_id:uuid}", summary="One order (`nested=true`: with its group's exit legs)")
    async def get_order(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], order_id: FromPath[UUID],
        nested: FromQuery[bool] = False,
    ) -> OrderOut:
        return await services.get_order(db, request.user, account_id, order_id, nested=nested)

    @delete("/orders/{order_id:uuid}", status_code=200, summary="Cancel an open order (409 if already final)")
    async def cancel_order(self, db: DbConn, request: Request, account_id: FromPath[UUID], order_id: FromPath[UUID]) -> OrderOut:
        return await services.cancel_order(db, request.user, account_id, order_id)

    @get("/orders/{order_id:uuid}/fills", summary="Fills of one order")
    async def order_fills(self, db: DbConn, request: Request, account_id: FromPath[UUID], order_id: FromPath[UUID]) -> FillPage:
        return FillPage(items=await services.order_fills(db, request.user, account_id, order_id))

    @get("/orders/{order_id:uuid}/events", summary="The order's audit trail")
    async def order_events(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], order_id: FromPath[UUID]
    ) -> OrderEventList:
        return OrderEventList(items=await services.order_events(db, request.user, account_id, order_id))

    @get("/fills", summary="Fills of the account, newest first")
    async def account_fills(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], limit: Limit = 50, cursor: Cursor = None,
        symbol: Annotated[str | None, Parameter(max_length=32)] = None,
    ) -> FillPage:
        items, nxt = await services.account_fills(db, request.user, account_id, limit=limit, cursor=cursor, symbol=symbol)
        return FillPage(items=items, next_cursor=nxt)

    @delete("/positions/{symbol:str}", status_code=201,
            summary="Close (part of) a position with a reduce-only market order (all of it by default)")
    async def close_position(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], symbol: FromPath[str],
        quantity: FromQuery[Decimal | None] = None, percentage: FromQuery[Decimal | None] = None,
        cancel_orders: FromQuery[bool] = False,
    ) -> OrderOut:
        quantity = decimal_query(request, "quantity", quantity)
        percentage = decimal_query(request, "percentage", percentage)
        return await bulk.close_position(db, request.user, account_id, symbol, quantity=quantity,
                                         percentage=percentage, cancel_orders=cancel_orders)

    @delete("/positions", status_code=200, summary="Close every position (cancel_orders: cancel orders too)")
    async def close_all_positions(
        self, db: DbConn, request: Request, account_id: FromPath[UUID],
        cancel_orders: FromQuery[bool] = False,
    ) -> CloseAllOut:
        return await bulk.close_all(db, request.user, account_id, cancel_orders=cancel_orders)

    @get("/positions", summary="Positions with market value and PnL")
    async def positions(self, db: DbConn, request: Request, account_id: FromPath[UUID]) -> PositionList:
        return PositionList(items=await services.positions(db, request.user, account_id))
