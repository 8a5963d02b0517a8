from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from app.domain.backtesting import (
    portfolio_service,
    portfolio_tasks,  # noqa: F401  (registers the portfolio job)
    services,
    tasks,  # noqa: F401  (registers the jobs that services enqueue)
    walkforward_service,
    walkforward_tasks,  # noqa: F401  (registers the window job)
)
from app.domain.backtesting.portfolio_schemas import (
    BacktestSubmission,
    PortfolioCreate,
    PositionsOut,
    WalkForwardCreate,
    WalkForwardOut,
)
from app.domain.backtesting.report import SECURITY_HEADERS
from app.domain.backtesting.schemas import (
    RANKABLE,
    BacktestOut,
    BacktestPage,
    EquityOut,
    ReportTokenOut,
    StatusName,
    StrategyList,
    SweepCreate,
    SweepCreated,
    SweepOut,
    TradePage,
)
from app.lib.db import DbConn, provide_db
from app.lib.errors import invalid
from app.lib.http import cache_of, json_bytes
from app.lib.pagination import Cursor, Limit

MaxPoints = Annotated[int, Parameter(ge=2, le=services.STORED_EQUITY_POINTS)]
ReportToken = Annotated[str, Parameter(min_length=16, max_length=128)]


def _html(body: str) -> Response[str]:
    # Litestar adds "; charset=utf-8" to text/* media types itself (naming it here sent it twice).
    return Response(body, media_type="text/html", headers=SECURITY_HEADERS)


class StrategyController(Controller):
    path = "/api/v1/strategies"
    tags = ["backtests"]

    @get(
        "/",
        summary="Strategies with their description, parameter JSON schema and defaults",
        responses={200: ResponseSpec(StrategyList, description="Strategies")},
    )
    async def list_strategies(self, request: Request) -> Response[bytes]:
        async def load() -> StrategyList:
            return services.list_strategies()

        # The registry changes only with a deploy; the TTL bounds how long a new strategy stays hidden.
        return json_bytes(await cache_of(request).get_json("strategies", "all", load, ttl=300))


class BacktestController(Controller):
    path = "/api/v1/backtests"
    tags = ["backtests"]
    dependencies = {"db": Provide(provide_db)}

    @post(
        "/",
        status_code=202,
        summary="Submit a backtest (one symbol and a strategy, or a portfolio: `symbols` + `allocation`); "
        "it runs on a worker (poll GET for progress)",
    )
    async def create(self, db: DbConn, request: Request, data: JSONBody[BacktestSubmission]) -> BacktestOut:
        queue = request.app.state.queue
        quota = request.app.state.settings.backtests_max_active_per_user
        form = data.form()  # decoding built it once already: this cannot fail
        if isinstance(form, PortfolioCreate):
            return await portfolio_service.create_portfolio_backtest(db, queue, request.user, form, quota)
        return await services.create_backtest(db, queue, request.user, form, quota)

    @get("/", summary="My backtests, newest first")
    async def list_backtests(
        self,
        db: DbConn,
        request: Request,
        limit: Limit = 50,
        cursor: Cursor = None,
        status: FromQuery[StatusName | None] = None,
        sweep_id: FromQuery[UUID | None] = None,
    ) -> BacktestPage:
        items, nxt = await services.list_backtests(db, request.user, limit, cursor, status, sweep_id)
        return BacktestPage(items=items, next_cursor=nxt)

    @get("/{backtest_id:uuid}", summary="Status, progress, metrics, error, input hash and timings")
    async def get_backtest(self, db: DbConn, request: Request, backtest_id: FromPath[UUID]) -> BacktestOut:
        return await services.get_backtest(db, request.user, backtest_id)

    @delete(
        "/{backtest_id:uuid}",
        status_code=200,
        summary="Cancel a queued or running backtest (409 if finished)",
    )
    async def cancel(self, db: DbConn, request: Request, backtest_id: FromPath[UUID]) -> BacktestOut:
        return await services.cancel_backtest(db, request.app.state.queue, request.user, backtest_id)

    @get(
        "/{backtest_id:uuid}/trades", summary="Trades of a completed backtest (newest first unless sort=asc)"
    )
    async def trades(
        self,
        db: DbConn,
        request: Request,
        backtest_id: FromPath[UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
        sort: FromQuery[Literal["asc", "desc"]] = "desc",
    ) -> TradePage:
        items, nxt, total = await services.backtest_trades(db, request.user, backtest_id, limit, cursor, sort)
        return TradePage(items=items, next_cursor=nxt, total=total)

    @get(
        "/{backtest_id:uuid}/equity",
        summary="Equity curve and drawdown, downsampled to max_points",
        responses={200: ResponseSpec(EquityOut, description="Equity series")},
    )
    async def equity(
        self, db: DbConn, request: Request, backtest_id: FromPath[UUID], max_points: MaxPoints = 1000
    ) -> Response[bytes]:
        payload = await services.backtest_equity(db, cache_of(request), request.user, backtest_id, max_points)
        return json_bytes(payload)

    @get(
        "/{backtest_id:uuid}/positions",
        summary="A portfolio backtest's quantity per symbol over time, sampled to max_points",
        responses={200: ResponseSpec(PositionsOut, description="Positions over time")},
    )
    async def positions(
        self, db: DbConn, request: Request, backtest_id: FromPath[UUID], max_points: MaxPoints = 500
    ) -> Response[bytes]:
        payload = await portfolio_service.backtest_positions(
            db, cache_of(request), request.user, backtest_id, max_points
        )
        return json_bytes(payload)

    @get(
        "/{backtest_id:uuid}/report", summary="Self-contained HTML report with charts", media_type="text/html"
    )
    async def report(self, db: DbConn, request: Request, backtest_id: FromPath[UUID]) -> Response[str]:
        return _html(await services.report_page(db, cache_of(request), request.user, backtest_id))

    @post(
        "/{backtest_id:uuid}/report-token",
        status_code=201,
        summary="A 5-minute link to the report for a browser (no API key in the URL), reopenable until then",
    )
    async def report_token(self, db: DbConn, request: Request, backtest_id: FromPath[UUID]) -> ReportTokenOut:
        return await services.create_report_token(db, request.app.state.kv, request.user, backtest_id)

    @post("/sweeps", status_code=202, summary="Run a strategy over every combination of a parameter grid")
    async def create_sweep(self, db: DbConn, request: Request, data: JSONBody[SweepCreate]) -> SweepCreated:
        quota = request.app.state.settings.sweeps_max_active_per_user
        return await services.create_sweep(db, request.app.state.queue, request.user, data, quota)

    @post(
        "/walkforward",
        status_code=202,
        summary="Walk-forward: each window's grid runs on its training bars on the workers, the best on its "
        "test bars; the result stitches the out-of-sample equity",
    )
    async def create_walkforward(
        self, db: DbConn, request: Request, data: JSONBody[WalkForwardCreate]
    ) -> WalkForwardOut:
        return await walkforward_service.create_walkforward(db, request.app.state.queue, request.user, data)

    @get(
        "/walkforward/{walkforward_id:uuid}",
        summary="Windows with chosen parameters, metrics, stitched equity",
    )
    async def get_walkforward(
        self, db: DbConn, request: Request, walkforward_id: FromPath[UUID]
    ) -> WalkForwardOut:
        return await walkforward_service.get_walkforward(db, request.user, walkforward_id)

    @get(
        "/sweeps/{sweep_id:uuid}/heatmap",
        summary="Self-contained HTML heatmap of a 2-parameter sweep's ranking metric",
        media_type="text/html",
    )
    async def sweep_heatmap(
        self,
        db: DbConn,
        request: Request,
        sweep_id: FromPath[UUID],
        rank_by: Annotated[str | None, Parameter(max_length=32)] = None,
    ) -> Response[str]:
        if rank_by is not None and rank_by not in RANKABLE:
            raise invalid(f"rank_by must be one of: {', '.join(RANKABLE)}", "rank_by")
        return _html(await services.sweep_heatmap(db, request.user, sweep_id, rank_by))

    @get("/sweeps/{sweep_id:uuid}", summary="Counts by status and the completed runs ranked by a metric")
    async def get_sweep(
        self,
        db: DbConn,
        request: Request,
        sweep_id: FromPath[UUID],
        limit: Limit = 50,
        # Decoded as text so that an unknown metric is a 422 naming the allowed ones; documented as the enum.
        rank_by: Annotated[
            str | None, Parameter(max_length=32, schema_extra={"enum": list(RANKABLE)})
        ] = None,
    ) -> SweepOut:
        if rank_by is not None and rank_by not in RANKABLE:
            raise invalid(f"rank_by must be one of: {', '.join(RANKABLE)}", "rank_by")
        return await services.get_sweep(db, request.user, sweep_id, limit, rank_by)


class SharedReportController(Controller):
    """The report opened with a token from POST .../report-token instead of an API key.

    It lives under /static/ because that is the prefix the API-key middleware lets through without a
    key; the token is the credential here (5 minutes, this backtest's report only).
    """

    path = "/static/reports"
    tags = ["backtests"]
    dependencies = {"db": Provide(provide_db)}

    @get(
        "/{backtest_id:uuid}",
        summary="A backtest report opened with a report token",
        media_type="text/html",
        include_in_schema=True,
    )
    async def shared_report(
        self, db: DbConn, request: Request, backtest_id: FromPath[UUID], token: FromQuery[ReportToken]
    ) -> Response[str]:
        html = await services.redeem_report_token(
            db, request.app.state.kv, cache_of(request), backtest_id, token
        )
        return _html(html)
