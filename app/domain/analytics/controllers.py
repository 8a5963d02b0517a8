from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from app.domain.analytics import services
from app.domain.analytics.schemas import (
    AccountPerformanceOut,
    Frequency,
    PerformanceIn,
    PerformanceOut,
)
from app.lib.db import DbConn, provide_db
from app.lib.http import TimeQuery, query_time

# A million points as JSON numbers is ~20 MB; the app-wide body limit is sized for ordinary requests.
MAX_ANALYTICS_BODY = 32 * 1024 * 1024


class AnalyticsController(Controller):
    path = "/api/v1"
    tags = ["analytics"]
    dependencies = {"db": Provide(provide_db)}

    @post(
        "/analytics/performance",
        status_code=200,
        request_max_body_size=MAX_ANALYTICS_BODY,
        summary="Performance metrics of an equity or return series (stateless)",
    )
    async def performance(self, data: JSONBody[PerformanceIn]) -> PerformanceOut:
        return await services.performance(data)

    @get(
        "/accounts/{account_id:uuid}/performance",
        summary="Performance metrics over the account's equity history",
    )
    async def account_performance(
        self,
        db: DbConn,
        request: Request,
        account_id: FromPath[UUID],
        frequency: FromQuery[Frequency] = "1d",
        periods_per_year: Annotated[int, Parameter(ge=1, le=100_000_000)] = 252,
        risk_free_rate: Annotated[float, Parameter(gt=-1, le=10)] = 0.0,
        start: TimeQuery = None,
        end: TimeQuery = None,
    ) -> AccountPerformanceOut:
        start_time, end_time = query_time(start, "start"), query_time(end, "end")
        return await services.account_performance(
            db,
            request.user,
            account_id,
            frequency=frequency,
            periods_per_year=periods_per_year,
            risk_free_rate=risk_free_rate,
            start=start_time,
            end=end_time,
        )
