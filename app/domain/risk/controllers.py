from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from app.domain.risk import services, stress_service
from app.domain.risk.schemas import (
    AlertOut,
    AlertPage,
    LimitAuditPage,
    LimitCreate,
    LimitOut,
    LimitPage,
    LimitPatch,
    MetricsOut,
    MonitorResult,
    Phase,
    Severity,
    StressOut,
    StressRequest,
    ViolationPage,
)
from app.lib.db import DbConn, provide_db
from app.lib.pagination import Limit

Cursor = Annotated[str | None, Parameter(max_length=200)]
Lookback = Annotated[int, Parameter(ge=2, le=5000, description="daily closes per held symbol")]


class RiskController(Controller):
    """Limits, metrics, monitoring, violations and alerts of one account.

    Access is decided in the services, not by guards: a caller who cannot see the account must get 404
    before anyone is told they lack the role (403).
    """

    path = "/api/v1/accounts/{account_id:uuid}/risk"
    tags = ["risk"]
    dependencies = {"db": Provide(provide_db)}

    @get("/limits", summary="Risk limits of the account, newest first")
    async def list_limits(
        self,
        db: DbConn,
        request: Request,
        account_id: FromPath[UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> LimitPage:
        items, nxt = await services.list_limits(db, request.user, account_id, limit=limit, cursor=cursor)
        return LimitPage(items=items, next_cursor=nxt)

    @post("/limits", status_code=201, summary="Create a risk limit (risk_manager/admin)")
    async def create_limit(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], data: JSONBody[LimitCreate]
    ) -> LimitOut:
        return await services.create_limit(db, request.user, account_id, data)

    @get("/limits/{limit_id:uuid}", summary="One risk limit")
    async def get_limit(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], limit_id: FromPath[UUID]
    ) -> LimitOut:
        return await services.get_limit(db, request.user, account_id, limit_id)

    @patch("/limits/{limit_id:uuid}", summary="Change a risk limit (risk_manager/admin)")
    async def update_limit(
        self,
        db: DbConn,
        request: Request,
        account_id: FromPath[UUID],
        limit_id: FromPath[UUID],
        data: JSONBody[LimitPatch],
    ) -> LimitOut:
        return await services.update_limit(db, request.user, account_id, limit_id, data)

    @delete("/limits/{limit_id:uuid}", status_code=204, summary="Remove a risk limit (risk_manager/admin)")
    async def delete_limit(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], limit_id: FromPath[UUID]
    ) -> None:
        await services.delete_limit(db, request.user, account_id, limit_id)

    @get("/limits/{limit_id:uuid}/audit", summary="Who changed the limit, from what to what (newest first)")
    async def limit_audit(
        self,
        db: DbConn,
        request: Request,
        account_id: FromPath[UUID],
        limit_id: FromPath[UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> LimitAuditPage:
        items, nxt = await services.limit_audit(
            db, request.user, account_id, limit_id, limit=limit, cursor=cursor
        )
        return LimitAuditPage(items=items, next_cursor=nxt)

    @get("/metrics", summary="Exposure, leverage, PnL, drawdown, VaR/CVaR, volatility and limit utilisation")
    async def metrics(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], lookback: Lookback = 250
    ) -> MetricsOut:
        return await services.risk_metrics(db, request.user, account_id, lookback=lookback)

    @post("/monitor", status_code=200, summary="Run the post-trade check now")
    async def monitor(self, db: DbConn, request: Request, account_id: FromPath[UUID]) -> MonitorResult:
        return await services.run_monitor(db, request.user, account_id)

    @get("/violations", summary="Limit violations (pre- and post-trade), newest first")
    async def violations(
        self,
        db: DbConn,
        request: Request,
        account_id: FromPath[UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
        phase: FromQuery[Phase | None] = None,
        limit_type: Annotated[str | None, Parameter(max_length=32)] = None,
    ) -> ViolationPage:
        items, nxt = await services.list_violations(
            db, request.user, account_id, limit=limit, cursor=cursor, phase=phase, limit_type=limit_type
        )
        return ViolationPage(items=items, next_cursor=nxt)

    @get("/alerts", summary="Risk alerts, newest first")
    async def alerts(
        self,
        db: DbConn,
        request: Request,
        account_id: FromPath[UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
        acknowledged: FromQuery[bool | None] = None,
        severity: FromQuery[Severity | None] = None,
    ) -> AlertPage:
        items, nxt = await services.list_alerts(
            db,
            request.user,
            account_id,
            limit=limit,
            cursor=cursor,
            acknowledged=acknowledged,
            severity=severity,
        )
        return AlertPage(items=items, next_cursor=nxt)

    @post(
        "/alerts/{alert_id:uuid}/acknowledge",
        status_code=200,
        summary="Acknowledge an alert (409 if already)",
    )
    async def acknowledge(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], alert_id: FromPath[UUID]
    ) -> AlertOut:
        return await services.acknowledge_alert(db, request.user, account_id, alert_id)


class DeskRiskController(Controller):
    """Risk across accounts: stress tests (and, for risk managers, the desk's overview)."""

    path = "/api/v1/risk"
    tags = ["risk"]
    dependencies = {"db": Provide(provide_db)}

    @post(
        "/stress",
        status_code=200,
        summary="Revalue accounts under price scenarios (shocks or a historical window)",
        description="A trader may stress only their own accounts (another's is 404); without `accounts`, "
        "every account the caller can read. See docs/RISK.md for the rules.",
    )
    async def stress(self, db: DbConn, request: Request, data: JSONBody[StressRequest]) -> StressOut:
        return await stress_service.stress_test(db, request.user, data)
