"""Database plumbing: declarative base, engine factory, the per-request connection dependency.

Services work with SQLAlchemy Core on an `AsyncConnection` and own their transaction boundaries: order
placement must lock the account row and commit once, so an implicit session-per-request commit (as
advanced-alchemy's plugin does) would hide the one boundary that matters.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy import DateTime, MetaData, Numeric, event, exc, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.lib.decimals import decode_numeric
from app.lib.settings import Settings

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Money and quantities: unconstrained NUMERIC keeps each value's exact scale ("0.01" stays "0.01" in the
# API); inputs are limited to 18 decimal places and |x| < 1e20 at the edge (app/lib/validation.py).
Money = Numeric()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        Decimal: Money,
        datetime: DateTime(timezone=True),
        uuid.UUID: UUID(as_uuid=True),
    }


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def created_at_col() -> Mapped[datetime]:
    return mapped_column(server_default=func.now(), nullable=False)


def utcnow() -> datetime:
    return datetime.now(UTC)


def async_url(url: str) -> str:
    """Accept plain `postgresql://` URLs from the environment and point them at asyncpg."""
    for prefix in ("postgresql+psycopg://", "postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same database as a libpq URL (psycopg for the SAQ PostgreSQL queue, pg_dump, psql)."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def create_engine(settings: Settings, url: str | None = None, **overrides: Any) -> AsyncEngine:
    target = url or settings.database_url
    if target is None:
        raise RuntimeError("DATABASE_URL is not configured (the CLI starts an embedded PostgreSQL)")
    options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        # See _discard_closed_connections: a free check instead of SQLAlchemy's pre-ping.
        "pool_pre_ping": False,
        "pool_recycle": 1800,
        "connect_args": {
            # Fail fast instead of hanging when PostgreSQL is down or restarting.
            "timeout": 5,
            "command_timeout": max(settings.db_statement_timeout_ms / 1000, 1),
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": "tradedesk",
            },
        },
    }
    options.update(overrides)
    engine = create_async_engine(async_url(target), **options)
    event.listen(engine.sync_engine, "connect", _numeric_codec_on_connect)
    event.listen(engine.sync_engine, "checkout", _discard_closed_connections)
    event.listen(engine.sync_engine, "handle_error", _broken_protocol_is_a_disconnect)
    return engine


async def create_order_pool(settings: Settings, url: str | None = None) -> asyncpg.Pool:
    """A plain asyncpg pool for the order hot paths (placement, its dry run, the orders list).

    Those handlers talk to asyncpg directly anyway (app/domain/trading/placement.py); checking their
    connection out of SQLAlchemy's pool and back cost ~60 us of Python per order (greenlet hops, pool
    events, the Connection wrapper), about a tenth of the whole request. Same server settings and
    timeouts as the engine. Connections open lazily (min_size 0), like SQLAlchemy's, so the API starts
    while PostgreSQL is still down. A released connection is only rolled back if a transaction is still
    open, instead of asyncpg's default reset (RESET ALL; UNLISTEN *; ...: a round trip per release): the
    order path sets no session state, LISTENs nothing and takes no advisory locks.

    NUMERIC travels in PostgreSQL's text format on these connections (see _numeric_as_text).
    """
    target = url or settings.database_url
    if target is None:
        raise RuntimeError("DATABASE_URL is not configured (the CLI starts an embedded PostgreSQL)")
    return await asyncpg.create_pool(
        libpq_url(async_url(target)),
        min_size=0,
        max_size=settings.db_order_pool_size,
        max_inactive_connection_lifetime=300,
        reset=_rollback_only,
        init=_numeric_as_text,
        timeout=5,
        command_timeout=max(settings.db_statement_timeout_ms / 1000, 1),
        server_settings={"statement_timeout": str(settings.db_statement_timeout_ms), "application_name": "tradedesk"},
    )


async def _numeric_as_text(connection: Any) -> None:
    """Send and receive NUMERIC as text: `str(Decimal)` out, `decode_numeric(str)` in (C `Decimal(str)`
    behind one prefix test), both exact.

    asyncpg's binary NUMERIC codec builds every parameter from `Decimal.as_tuple()` (a named tuple per
    value) and every result digit group by digit group; a placement binds 17 numerics. Measured on this
    machine: the placement write's client-side cost 47 -> 35 us, a 100-row orders page 381 -> 291 us.
    The scale survives both ways ("1.50" stays "1.50"), as with the binary format. The SQLAlchemy engine's
    connections use the same codec (see _numeric_codec_on_connect): the binary decoder returns 100000 as
    Decimal("1.0E+5"), which answers would show in exponent form; `decode_numeric` also keeps a zero at a
    fine scale ("0.00000000") from printing as "0E-8" (app/lib/decimals.py).
    """
    await connection.set_type_codec(
        "numeric", encoder=str, decoder=decode_numeric, schema="pg_catalog", format="text"
    )


def _numeric_codec_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Every new SQLAlchemy connection reads and writes NUMERIC like the order pool (_numeric_as_text)."""
    dbapi_connection.run_async(_numeric_as_text)


async def _rollback_only(_connection: Any) -> None:
    """asyncpg has already rolled back an open transaction before calling this; nothing else to reset."""


def _discard_closed_connections(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling without a round trip.

    SQLAlchemy's pre-ping on asyncpg is BEGIN; SELECT; ROLLBACK: three round trips on every checkout,
    more than the query of a typical read. asyncpg marks a connection closed as soon as its socket
    reports EOF, which is what a PostgreSQL restart or pg_terminate_backend produce, so checking
    `is_closed()` catches those for free; raising DisconnectionError makes the pool replace the
    connection and retry the checkout. A silently dead peer is bounded by the connect/command timeouts.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("connection closed by the server")


def _broken_protocol_is_a_disconnect(context: Any) -> None:
    """pg_terminate_backend (or a restart) on an idle pooled connection sends a FATAL message before
    closing the socket. asyncpg, not expecting a message while idle, parks its protocol in an error state,
    and only the EOF one loop turn later marks the connection closed: a checkout in between gets a
    connection whose next statement fails with InternalClientError ("another operation is in
    progress"). SQLAlchemy's own check (`is_closed()`) misses that turn, so the connection would go back to
    the pool; calling it a disconnect invalidates it (and the pool's older connections, dead as well after
    a restart) at once.
    """
    original = context.original_exception
    if type(original).__name__ == "InternalClientError" and type(original).__module__.startswith("asyncpg"):
        context.is_disconnect = True


async def provide_db(state: State) -> AsyncIterator[AsyncConnection]:
    """Litestar dependency: one pooled connection per request, returned to the pool afterwards."""
    async with state.engine.connect() as conn:
        yield conn


# Litestar 2.23+ wants dependencies marked explicitly; `db: DbConn` is the one marker handlers use.
DbConn = NamedDependency[AsyncConnection]


def order_connection(state: State) -> Any:
    """`async with order_connection(request.app.state) as conn:` a raw asyncpg connection from the order
    pool (see create_order_pool), waiting at most `DB_POOL_TIMEOUT` for one, like SQLAlchemy's pool (a
    TimeoutError, which is a 503). Taken in the handler rather than through a Litestar generator
    dependency like `provide_db`: the framework's set-up and clean-up of generator dependencies measured
    ~12 us per request in-process, a tenth of the whole framework-and-middleware share of a placement."""
    return state.order_pool.acquire(timeout=state.settings.db_pool_timeout)


async def begin(conn: AsyncConnection):
    """Start the service's own transaction. A transaction already open on entry can only be SQLAlchemy's
    implicit one from an earlier read (autobegin); it is ended first so reads never block writes."""
    if conn.in_transaction():
        await conn.rollback()
    return await conn.begin()


# What a transaction's writers deferred to its commit: (discard, flush) pairs called with the connection,
# registered by the composition root (app/server/wiring.py: the stream messages of
# app/domain/streams/publish.py), so that this module knows no domain.
_TX_OUTBOXES: list[tuple[Callable[[Any], None], Callable[[Any], None]]] = []


def on_transaction_end(discard: Callable[[Any], None], flush: Callable[[Any], None]) -> None:
    """Have `tx` call `flush(conn)` once its transaction committed and `discard(conn)` when it did not."""
    if (discard, flush) not in _TX_OUTBOXES:
        _TX_OUTBOXES.append((discard, flush))


def transaction_outboxes() -> list[tuple[Callable[[Any], None], Callable[[Any], None]]]:
    return list(_TX_OUTBOXES)


@asynccontextmanager
async def tx(conn: AsyncConnection) -> AsyncIterator[Any]:
    """A service's transaction. What its writers deferred (stream messages: `on_transaction_end`) is
    published once it has committed, and dropped if it rolls back: a subscriber never sees a write that
    did not happen."""
    if conn.in_transaction():
        await conn.rollback()
    for discard, _ in _TX_OUTBOXES:
        discard(conn)
    try:
        async with conn.begin() as trans:
            yield trans
    except BaseException:
        for discard, _ in _TX_OUTBOXES:
            discard(conn)
        raise
    for _, flush in _TX_OUTBOXES:
        flush(conn)


async def raw_connection(conn: AsyncConnection | Any) -> Any:
    """The asyncpg connection to run hand-written SQL on: `conn` itself when it already is one (the order
    pool's, on the HTTP hot paths), else the one under a SQLAlchemy connection (jobs, tests)."""
    if isinstance(conn, AsyncConnection):
        return await driver_connection(conn)
    return conn


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy connection, for hot paths that manage their own
    transaction with asyncpg (SQLAlchemy must not have a transaction open on `conn`).

    A checked-out, valid connection already holds its pooled DBAPI connection: reading it needs no I/O,
    so it is taken directly instead of through `get_raw_connection()`, which spawns a greenlet just to
    read that attribute (~15 us per request). An invalidated connection takes the async path, which
    reconnects."""
    sync = conn.sync_connection
    if sync is not None and not sync.invalidated and not sync.closed:
        return sync.connection.driver_connection
    raw = await conn.get_raw_connection()
    return raw.driver_connection
