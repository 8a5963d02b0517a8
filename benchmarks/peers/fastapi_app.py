"""Peer for the benchmarks: the same three endpoints written the idiomatic FastAPI way.

FastAPI + Pydantic v2 + SQLAlchemy 2 async ORM (asyncpg) over the tables our Alembic migrations create:
a session per request and the caller resolved through ``Depends``, Pydantic request and response models,
ORM objects and the unit of work for writes. It is meant to be what a competent team would ship, not a
strawman: the database work matches ours (one key lookup memoized for 1 s like ours, owner check, the
account row locked for the whole placement, one commit). Serve with::

    DATABASE_URL=postgresql://... granian --interface asgi --workers 1 --loop uvloop --no-ws \
        benchmarks.peers.fastapi_app:app
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Numeric, String, func, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, joinedload, mapped_column, relationship

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/td_peers")
# Same pool and key-memo settings (and defaults) as our app reads, so both get identical resources.
POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
MAX_OVERFLOW = int(os.environ.get("DB_MAX_OVERFLOW", "10"))
KEY_CACHE_SECONDS = float(os.environ.get("API_KEY_CACHE_SECONDS", "1.0"))
FEE_QUANTUM = Decimal("1E-8")
AVG_QUANTUM = Decimal("1E-10")


def _asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


# --------------------------------------------------------------------------------------------- models


class Base(DeclarativeBase):
    type_annotation_map = {
        # Unconstrained NUMERIC like the migrations: each value keeps its own scale ("0.01" stays "0.01").
        Decimal: Numeric(),
        datetime: DateTime(timezone=True),
        uuid.UUID: PgUUID(as_uuid=True),
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(server_default="true")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    user: Mapped[User] = relationship(lazy="joined")


class Exchange(Base):
    __tablename__ = "exchanges"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    maker_fee_rate: Mapped[Decimal]
    taker_fee_rate: Mapped[Decimal]


class Instrument(Base):
    __tablename__ = "instruments"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    exchange_code: Mapped[str] = mapped_column(ForeignKey("exchanges.code"))
    tick_size: Mapped[Decimal]
    lot_size: Mapped[Decimal]
    min_quantity: Mapped[Decimal]
    min_notional: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(16))
    last_price: Mapped[Decimal | None]
    exchange: Mapped[Exchange] = relationship()


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    cash: Mapped[Decimal]
    reserved_cash: Mapped[Decimal]
    realized_pnl: Mapped[Decimal]
    fees_paid: Mapped[Decimal]
    allow_short: Mapped[bool]
    trading_state: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Position(Base):
    __tablename__ = "positions"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"), primary_key=True)
    quantity: Mapped[Decimal]
    avg_entry_price: Mapped[Decimal]
    realized_pnl: Mapped[Decimal] = mapped_column(default=Decimal(0))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class Order(Base):
    __tablename__ = "orders"
    # created_at/updated_at come from the database: fetch them in the INSERT's RETURNING.
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(ForeignKey("instruments.symbol"))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(16))
    time_in_force: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal]
    filled_quantity: Mapped[Decimal] = mapped_column(default=Decimal(0))
    avg_fill_price: Mapped[Decimal | None]
    limit_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(16))
    reject_reason: Mapped[str | None]
    fees: Mapped[Decimal] = mapped_column(default=Decimal(0))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    fills: Mapped[list[Fill]] = relationship(back_populates="order", lazy="raise")
    events: Mapped[list[OrderEvent]] = relationship(back_populates="order", lazy="raise")


class Fill(Base):
    __tablename__ = "fills"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal]
    fee: Mapped[Decimal]
    liquidity: Mapped[str] = mapped_column(String(8))
    order: Mapped[Order] = relationship(back_populates="fills")


class OrderEvent(Base):
    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(24))
    status_from: Mapped[str | None] = mapped_column(String(16))
    status_to: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None]
    fill_id: Mapped[uuid.UUID | None]
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    order: Mapped[Order] = relationship(back_populates="events")


# -------------------------------------------------------------------------------------------- schemas


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=32)
    side: Literal["buy", "sell"]
    type: Literal["market", "limit", "stop", "stop_limit"]
    quantity: Decimal = Field(gt=0)
    limit_price: Decimal | None = Field(default=None, gt=0)
    stop_price: Decimal | None = Field(default=None, gt=0)
    time_in_force: Literal["gtc", "ioc", "fok", "day"] = "gtc"
    client_order_id: str | None = Field(default=None, min_length=1, max_length=64)


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    client_order_id: str | None
    account_id: uuid.UUID
    symbol: str
    side: str
    type: str
    quantity: Decimal
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: str
    status: str
    reject_reason: str | None
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None = None


class Principal(BaseModel):
    user_id: uuid.UUID
    role: str

    @property
    def reads_all_accounts(self) -> bool:
        return self.role in ("admin", "risk_manager")


# ------------------------------------------------------------------------------------- dependencies

engine = create_async_engine(_asyncpg_url(DATABASE_URL), pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
bearer = HTTPBearer(auto_error=False)
_key_cache: dict[str, tuple[float, Principal | None, datetime | None]] = {}


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    key = credentials.credentials if credentials else x_api_key
    if not key:
        raise _unauthorized("Missing API key")
    digest = hashlib.sha256(key.encode()).hexdigest()
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached is None or cached[0] < now:
        api_key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        principal = None
        if api_key is not None and api_key.revoked_at is None and api_key.user.is_active:
            principal = Principal(user_id=api_key.user_id, role=api_key.user.role)
        if len(_key_cache) > 10_000:
            _key_cache.clear()
        cached = (now + KEY_CACHE_SECONDS, principal, api_key.expires_at if api_key else None)
        _key_cache[digest] = cached
    _, principal, expires_at = cached
    if principal is None or (expires_at is not None and expires_at <= datetime.now(UTC)):
        raise _unauthorized("Invalid, expired or revoked API key")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def _account_not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, "Account not found")


def _visible(stmt: Any, principal: Principal) -> Any:
    return stmt if principal.reads_all_accounts else stmt.where(Account.owner_id == principal.user_id)


def _encode_cursor(order: Order) -> str:
    raw = f"{order.created_at.isoformat()}|{order.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        ts, oid = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|", 1)
        return datetime.fromisoformat(ts), uuid.UUID(oid)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Invalid cursor") from None


# -------------------------------------------------------------------------------------------- domain


def average_cost(
    q0: Decimal, avg0: Decimal, signed_qty: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """(new quantity, new average entry, realised PnL of this fill) under average-cost accounting."""
    q1 = q0 + signed_qty
    if q0 == 0 or (q0 > 0) == (signed_qty > 0):
        avg = (abs(q0) * avg0 + abs(signed_qty) * price) / abs(q1)
        if avg.as_tuple().exponent < -10:
            avg = avg.quantize(AVG_QUANTUM, rounding=ROUND_HALF_EVEN)
        return q1, avg, Decimal(0)
    closed = min(abs(signed_qty), abs(q0))
    pnl = (price - avg0) * closed if q0 > 0 else (avg0 - price) * closed
    if q1 == 0:
        return q1, Decimal(0), pnl
    return q1, (avg0 if (q1 > 0) == (q0 > 0) else price), pnl


def _reject(detail: str) -> HTTPException:
    return HTTPException(422, detail)


# ---------------------------------------------------------------------------------------------- app


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(title="Tradedesk FastAPI peer", lifespan=lifespan)


def _problem(status_code: int, title: str, headers: dict | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status_code, **extra}
    return JSONResponse(body, status_code, headers=headers, media_type="application/problem+json")


@app.exception_handler(HTTPException)
async def http_problem(_: Request, exc: HTTPException) -> JSONResponse:
    return _problem(exc.status_code, str(exc.detail), headers=exc.headers)


@app.exception_handler(RequestValidationError)
async def validation_problem(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]} for e in exc.errors()]
    return _problem(422, "Validation failed", errors=errors)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/v1/accounts/{account_id}/orders", response_model=OrderPage)
async def list_orders(
    account_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Any:
    if await session.scalar(_visible(select(Account.id).where(Account.id == account_id), principal)) is None:
        raise _account_not_found()
    stmt = (
        select(Order)
        .where(Order.account_id == account_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        stmt = stmt.where(tuple_(Order.created_at, Order.id) < _decode_cursor(cursor))
    orders = (await session.scalars(stmt)).all()
    next_cursor = _encode_cursor(orders[limit - 1]) if len(orders) > limit else None
    return {"items": orders[:limit], "next_cursor": next_cursor}


@app.post(
    "/api/v1/accounts/{account_id}/orders", response_model=OrderOut, status_code=status.HTTP_201_CREATED
)
async def place_order(
    account_id: uuid.UUID,
    body: OrderCreate,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
) -> Any:
    if body.type != "market":
        raise _reject("This benchmark peer only implements market orders")
    # Autobegun transaction (the auth lookup may already have started it); committed once at the end.
    # Everything that reads or moves the account's money is serialised on its row lock.
    account = await session.scalar(
        _visible(select(Account).where(Account.id == account_id), principal).with_for_update()
    )
    if account is None:
        raise _account_not_found()
    if body.client_order_id is not None:
        existing = await session.scalar(
            select(Order).where(Order.account_id == account_id, Order.client_order_id == body.client_order_id)
        )
        if existing is not None:
            same = (existing.symbol, existing.side, existing.type, existing.quantity) == (
                body.symbol,
                body.side,
                body.type,
                body.quantity,
            )
            if not same:
                raise HTTPException(status.HTTP_409_CONFLICT, "client_order_id reused with different fields")
            response.status_code = status.HTTP_200_OK
            return existing
    if account.trading_state != "active":
        raise _reject("Account is not active for trading")
    instrument = await session.get(Instrument, body.symbol, options=[joinedload(Instrument.exchange)])
    if instrument is None:
        raise _reject("Unknown instrument")
    if instrument.status != "trading":
        raise _reject("Instrument is halted")
    if instrument.last_price is None:
        raise _reject("Instrument has no last price")
    if body.quantity % instrument.lot_size != 0 or body.quantity < instrument.min_quantity:
        raise _reject("Quantity is off the lot size or below the minimum")
    price = instrument.last_price
    notional = body.quantity * price
    if notional < instrument.min_notional:
        raise _reject("Order notional below the instrument minimum")
    fee = (notional * instrument.exchange.taker_fee_rate).quantize(FEE_QUANTUM, rounding=ROUND_HALF_EVEN)
    position = await session.get(Position, (account_id, body.symbol), with_for_update=True)
    held = position.quantity if position else Decimal(0)
    if body.side == "buy":
        if notional + fee > account.cash - account.reserved_cash:
            raise _reject("Insufficient buying power")
        signed, cash_delta = body.quantity, -notional - fee
    else:
        if not account.allow_short and body.quantity > held:
            raise _reject("Insufficient position to sell")
        signed, cash_delta = -body.quantity, notional - fee
    if position is None:
        position = Position(
            account_id=account_id,
            symbol=body.symbol,
            quantity=Decimal(0),
            avg_entry_price=Decimal(0),
            realized_pnl=Decimal(0),
        )
        session.add(position)
    position.quantity, position.avg_entry_price, pnl = average_cost(
        held, position.avg_entry_price, signed, price
    )
    position.realized_pnl += pnl
    account.cash += cash_delta
    account.fees_paid += fee
    account.realized_pnl += pnl
    account.updated_at = func.now()

    order = Order(
        id=uuid.uuid4(),
        account_id=account_id,
        client_order_id=body.client_order_id,
        symbol=body.symbol,
        side=body.side,
        type=body.type,
        time_in_force=body.time_in_force,
        quantity=body.quantity,
        filled_quantity=body.quantity,
        avg_fill_price=price,
        limit_price=body.limit_price,
        stop_price=body.stop_price,
        status="filled",
        fees=fee,
    )
    fill = Fill(
        id=uuid.uuid4(),
        order=order,
        account_id=account_id,
        symbol=body.symbol,
        side=body.side,
        quantity=body.quantity,
        price=price,
        fee=fee,
        liquidity="taker",
    )
    order.events = [
        OrderEvent(account_id=account_id, type="created", status_from=None, status_to="new"),
        OrderEvent(account_id=account_id, type="accepted", status_from="new", status_to="accepted"),
        OrderEvent(
            account_id=account_id,
            type="filled",
            status_from="accepted",
            status_to="filled",
            fill_id=fill.id,
        ),
    ]
    session.add_all([order, fill])
    await session.commit()
    return order
