from __future__ import annotations

from typing import Annotated, Any, get_args
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPI, OpenAPIFormat, OpenAPIMediaType, OpenAPIType, RequestBody, Schema
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, QueryParameter

from app.domain.identity.guards import requires_admin, requires_market_data
from app.domain.markets import feeds, services
from app.domain.markets.schemas import (
    CandleList,
    CandleLoadAccepted,
    CandleLoadStatus,
    CandleUpload,
    ExchangeCreate,
    ExchangeList,
    ExchangeOut,
    InstrumentCreate,
    InstrumentList,
    InstrumentOut,
    InstrumentPatch,
    LoadResult,
    MarketClock,
    MarketFeedList,
    MarketFeedOut,
    PriceIn,
    PriceOut,
    ReplayCreate,
    SimulationCreate,
    Timeframe,
)
from app.lib.db import DbConn, provide_db
from app.lib.errors import (
    Invalid,
    Malformed,
    TooLarge,
    UnsupportedMediaType,
    body_decode_error,
    field_from_message,
)
from app.lib.http import ApiResponse, TimeQuery, cache_of, connect, json_bytes, query_time
from app.lib.openapi_schema import DECIMAL_PATTERN
from app.lib.pagination import Limit

DB = {"db": Provide(provide_db)}
MAX_UPLOAD = 512 * 1024 * 1024


class ExchangeController(Controller):
    path = "/api/v1/exchanges"
    tags = ["markets"]
    dependencies = DB

    @get("/", summary="List exchanges", responses={200: ResponseSpec(ExchangeList, description="Exchanges")})
    async def list_exchanges(self, request: Request) -> Response[bytes]:
        async def load() -> ExchangeList:
            async with connect(request) as db:
                return ExchangeList(items=await services.list_exchanges(db))

        return json_bytes(await cache_of(request).get_json("exchanges", "all", load))

    @post("/", guards=[requires_admin], status_code=201, summary="Create an exchange (admin)")
    async def create_exchange(self, db: DbConn, request: Request, data: JSONBody[ExchangeCreate]) -> ExchangeOut:
        out = await services.create_exchange(db, data)
        await cache_of(request).invalidate("exchanges")
        return out

    @get("/{code:str}", summary="One exchange")
    async def get_exchange(self, db: DbConn, code: FromPath[str]) -> ExchangeOut:
        return await services.get_exchange(db, code)


class InstrumentController(Controller):
    path = "/api/v1/instruments"
    tags = ["markets"]
    dependencies = DB

    @get("/", summary="List instruments (by symbol)", responses={200: ResponseSpec(InstrumentList, description="Instruments")})
    async def list_instruments(
        self,
        request: Request,
        limit: Limit = 50,
        cursor: Annotated[str | None, Parameter(max_length=64)] = None,
        exchange: Annotated[str | None, Parameter(max_length=32)] = None,
        status: Annotated[str | None, Parameter(max_length=16)] = None,
    ) -> Response[bytes]:
        async def load() -> InstrumentList:
            async with connect(request) as db:
                items, nxt = await services.list_instruments(
                    db, limit=limit, cursor=cursor, exchange=exchange, status=status
                )
            return InstrumentList(items=items, next_cursor=nxt)

        key = f"{limit}:{cursor}:{exchange}:{status}"
        return json_bytes(await cache_of(request).get_json("instruments", key, load))

    @post("/", guards=[requires_admin], status_code=201, summary="Create an instrument (admin)")
    async def create_instrument(self, db: DbConn, request: Request, data: JSONBody[InstrumentCreate]) -> InstrumentOut:
        out = await services.create_instrument(db, data)
        await cache_of(request).invalidate("instruments")
        return out

    @get("/{symbol:str}", summary="One instrument", responses={200: ResponseSpec(InstrumentOut, description="The instrument")})
    async def get_instrument(self, request: Request, symbol: FromPath[str]) -> Response[bytes]:
        async def load() -> InstrumentOut:
            async with connect(request) as db:
                return await services.get_instrument(db, symbol)

        return json_bytes(await cache_of(request).get_json("instruments", f"one:{symbol}", load))

    @patch("/{symbol:str}", guards=[requires_admin], summary="Update rules or halt/resume trading (admin)")
    async def update_instrument(
        self, db: DbConn, request: Request, symbol: FromPath[str], data: JSONBody[InstrumentPatch]
    ) -> InstrumentOut:
        out = await services.update_instrument(db, symbol, data)
        await cache_of(request).invalidate("instruments")
        return out

    @post(
        "/{symbol:str}/candles",
        guards=[requires_market_data],
        status_code=201,
        request_max_body_size=MAX_UPLOAD,
        summary="Bulk-load OHLCV candles (JSON or text/csv with ?timeframe=); all or nothing",
        responses={
            201: ResponseSpec(LoadResult, description="Loaded"),
            202: ResponseSpec(CandleLoadAccepted, description="?async=true: parked; a worker loads it"),
        },
    )
    async def load_candles(
        self,
        db: DbConn,
        request: Request,
        symbol: FromPath[str],
        timeframe: FromQuery[Timeframe | None] = None,
        run_async: Annotated[str | None, QueryParameter(name="async", description="true or false")] = None,
    ) -> Response[Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        # Read here rather than declared `bool`: Litestar's error for a bad value names the argument
        # (`run_async`), not the query parameter a client sent (`async`).
        if run_async is not None and run_async.lower() not in ("true", "false", "1", "0"):
            raise Malformed("`async` must be true or false", "async")
        if run_async is not None and run_async.lower() in ("true", "1"):
            # Large loads as a job: the body is parked in PostgreSQL as it streams in, then a worker loads
            # it (all or nothing, with progress). Only CSV: JSON uploads are capped at 64 MiB anyway.
            if content_type != "text/csv" or timeframe is None:
                raise Invalid("?async=true needs a text/csv body and ?timeframe=", "timeframe")
            accepted = await services.park_candle_upload(db, request.app.state.queue, symbol, timeframe, request.stream())
            return ApiResponse(accepted, status_code=202)
        if content_type == "text/csv":
            if timeframe is None:
                raise Invalid("?timeframe= is required for text/csv uploads", "timeframe")
            result = await services.load_candles_csv(db, symbol, timeframe, request.stream())
        elif content_type in ("application/json", ""):
            import msgspec

            body = await request.body()
            if len(body) > 64 * 1024 * 1024:
                raise TooLarge("JSON candle uploads are limited to 64 MiB; use text/csv for larger loads")
            try:
                upload = msgspec.json.decode(body, type=CandleUpload)
            except msgspec.ValidationError as exc:
                raise Invalid(str(exc), field_from_message(str(exc))) from exc
            except msgspec.DecodeError as exc:
                raise Malformed(f"Malformed JSON: {exc}") from exc
            except (RecursionError, UnicodeDecodeError) as exc:
                raise body_decode_error(exc) from None
            if timeframe is not None and timeframe != upload.timeframe:
                message = f"?timeframe={timeframe} and the body's timeframe {upload.timeframe!r} differ"
                raise Invalid(message, "timeframe")
            result = await services.load_candles_json(db, symbol, upload.timeframe, upload.candles)
        else:
            raise UnsupportedMediaType(
                f"Unsupported content type {content_type!r}; use application/json or text/csv"
            )
        await cache_of(request).invalidate(f"candles:{symbol}", "instruments")
        return ApiResponse(result, status_code=201)

    @get(
        "/{symbol:str}/candles/loads/{upload_id:uuid}",
        guards=[requires_market_data],
        summary="Status and progress of an asynchronous candle load",
    )
    async def candle_load_status(self, request: Request, symbol: FromPath[str], upload_id: FromPath[UUID]) -> CandleLoadStatus:
        return await services.candle_load_status(request.app.state.queue, symbol, upload_id)

    @get(
        "/{symbol:str}/candles",
        summary="Candles in a time range, ascending: the first `limit` from `start`, or without `start` "
        "the newest `limit` up to `end`",
        responses={200: ResponseSpec(CandleList, description="Candles")},
    )
    async def get_candles(
        self,
        request: Request,
        symbol: FromPath[str],
        timeframe: FromQuery[Timeframe] = "1d",
        start: TimeQuery = None,
        end: TimeQuery = None,
        limit: Annotated[int, Parameter(ge=1, le=10_000)] = 1000,
    ) -> Response[bytes]:
        start_time, end_time = query_time(start, "start"), query_time(end, "end")
        if start_time is not None and end_time is not None and end_time < start_time:
            raise Invalid("`end` is before `start`", "end")  # (as a replay's range)

        async def load() -> CandleList:
            async with connect(request) as db:
                items = await services.query_candles(db, symbol, timeframe, start_time, end_time, limit)
            return CandleList(symbol=symbol, timeframe=timeframe, items=items)

        bounds = [t.isoformat() if t else "" for t in (start_time, end_time)]
        key = f"{timeframe}:{bounds[0]}:{bounds[1]}:{limit}"
        return json_bytes(await cache_of(request).get_json(f"candles:{symbol}", key, load))

    @post("/{symbol:str}/price", guards=[requires_market_data], status_code=200, summary="Set the last price; matches resting orders")
    async def set_price(self, db: DbConn, request: Request, symbol: FromPath[str], data: JSONBody[PriceIn]) -> PriceOut:
        out = await services.set_price(db, symbol, data.price, data.ts, data.volume)
        await cache_of(request).invalidate("instruments")
        return out

    @get("/{symbol:str}/price", summary="The last price")
    async def get_price(self, db: DbConn, symbol: FromPath[str]) -> PriceOut:
        return await services.get_price(db, symbol)



def document_feed_symbols(openapi: OpenAPI) -> None:
    """Litestar's schema generation drops a msgspec Meta set on a list's item type (the length bound of
    each symbol of a replay or a simulation); msgspec's own JSON schema keeps it, so copy it from there."""
    import msgspec

    schemas = (openapi.components.schemas if openapi.components is not None else None) or {}
    for struct in (ReplayCreate, SimulationCreate):
        target = schemas.get(struct.__name__)
        symbols = (target.properties or {}).get("symbols") if target is not None else None
        items = getattr(symbols, "items", None)
        own = msgspec.json.schema(struct)["$defs"][struct.__name__]["properties"]["symbols"]["items"]
        if isinstance(items, Schema) and "maxLength" in own:
            items.max_length = own["maxLength"]


CANDLE_UPLOAD_PATH = "/api/v1/instruments/{symbol}/candles"
CANDLE_CSV_HEADER = "ts,open,high,low,close,volume"


def document_candle_upload(openapi: OpenAPI) -> None:
    """The candle upload reads its body itself (JSON or a streamed CSV), so Litestar sees no `data` to
    describe: write both forms into the document (API.md, "Exchanges, instruments, market data")."""
    operation = (openapi.paths or {}).get(CANDLE_UPLOAD_PATH)
    operation = operation.post if operation is not None else None
    if operation is None:
        return
    number = Schema(
        one_of=[
            Schema(type=OpenAPIType.STRING, pattern=DECIMAL_PATTERN),
            Schema(type=OpenAPIType.INTEGER),
        ],
        description="Exact decimal string or integer (prices > 0, volume >= 0)",
    )
    ts = Schema(
        one_of=[
            Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
            Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
            Schema(type=OpenAPIType.INTEGER),
        ],
        description="RFC 3339 time, a date (midnight UTC: daily candles), or epoch seconds; aligned to "
        "the timeframe",
    )
    candle = Schema(
        type=OpenAPIType.OBJECT,
        required=["ts", "open", "high", "low", "close", "volume"],
        properties={"ts": ts, **{name: number for name in ("open", "high", "low", "close", "volume")}},
        additional_properties=False,
    )
    upload = Schema(
        type=OpenAPIType.OBJECT,
        required=["timeframe", "candles"],
        properties={
            "timeframe": Schema(type=OpenAPIType.STRING, enum=list(get_args(Timeframe))),
            "candles": Schema(type=OpenAPIType.ARRAY, items=candle, max_items=1_000_000),
        },
        additional_properties=False,
    )
    csv = Schema(
        type=OpenAPIType.STRING,
        pattern=r"^\ufeff?\s*" + CANDLE_CSV_HEADER,
        description=f"Header `{CANDLE_CSV_HEADER}`, then one candle per line with the same fields as the "
        "JSON form; `?timeframe=` is required (and `?async=true` loads it on a worker)",
    )
    operation.request_body = RequestBody(
        required=True,
        description="All or nothing: any invalid row rejects the batch, naming the row",
        content={
            "application/json": OpenAPIMediaType(schema=upload),
            "text/csv": OpenAPIMediaType(schema=csv),
        },
    )


class MarketController(Controller):
    """The market clock, and replays and simulations: jobs that feed last prices through the price path."""

    path = "/api/v1/market"
    tags = ["market"]
    dependencies = DB

    @get("/clock", summary="Whether each exchange is open now, and its next open and close")
    async def clock(self, db: DbConn) -> MarketClock:
        return await feeds.market_clock(db)

    @post("/replays", guards=[requires_market_data], status_code=202,
          summary="Replay stored candles as last prices, through the price path (a job)")
    async def create_replay(self, db: DbConn, request: Request, data: JSONBody[ReplayCreate]) -> MarketFeedOut:
        return await feeds.create_replay(db, request.app.state.queue, request.user.user_id, data)

    @get("/replays", guards=[requires_market_data], summary="Replays, newest first")
    async def list_replays(
        self, db: DbConn, limit: Limit = 50, status: Annotated[str | None, Parameter(max_length=16)] = None
    ) -> MarketFeedList:
        return MarketFeedList(items=await feeds.list_feeds(db, "replay", limit, status))

    @get("/replays/{feed_id:uuid}", guards=[requires_market_data], summary="A replay: status, progress, counters")
    async def get_replay(self, db: DbConn, feed_id: FromPath[UUID]) -> MarketFeedOut:
        return await feeds.get_feed(db, "replay", feed_id)

    @delete("/replays/{feed_id:uuid}", guards=[requires_market_data], status_code=200,
            summary="Stop a replay (between two price updates)")
    async def stop_replay(self, db: DbConn, request: Request, feed_id: FromPath[UUID]) -> MarketFeedOut:
        return await feeds.stop_feed(db, request.app.state.queue, "replay", feed_id)

    @post("/simulations", guards=[requires_market_data], status_code=202,
          summary="Start a seeded random-walk feed (GBM on the tick grid) until stopped (a job)")
    async def create_simulation(self, db: DbConn, request: Request, data: JSONBody[SimulationCreate]) -> MarketFeedOut:
        return await feeds.create_simulation(db, request.app.state.queue, request.user.user_id, data)

    @get("/simulations", guards=[requires_market_data], summary="Simulations, newest first")
    async def list_simulations(
        self, db: DbConn, limit: Limit = 50, status: Annotated[str | None, Parameter(max_length=16)] = None
    ) -> MarketFeedList:
        return MarketFeedList(items=await feeds.list_feeds(db, "simulation", limit, status))

    @get("/simulations/{feed_id:uuid}", guards=[requires_market_data], summary="A simulation: status, counters")
    async def get_simulation(self, db: DbConn, feed_id: FromPath[UUID]) -> MarketFeedOut:
        return await feeds.get_feed(db, "simulation", feed_id)

    @delete("/simulations/{feed_id:uuid}", guards=[requires_market_data], status_code=200,
            summary="Stop a simulation (between two price updates)")
    async def stop_simulation(self, db: DbConn, request: Request, feed_id: FromPath[UUID]) -> MarketFeedOut:
        return await feeds.stop_feed(db, request.app.state.queue, "simulation", feed_id)
