from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from app.domain.risk import (
    group_alerts,
    group_reports,
    group_service,
    scenario_service,
    services,
    stress_service,
)
from app.domain.risk.schemas import (
    AccountGroupIn,
    AccountGroupOut,
    AlertOut,
    AlertPage,
    GroupAlertOut,
    GroupAlertPage,
    GroupCreate,
    GroupLimitCreate,
    GroupLimitOut,
    GroupLimitPage,
    GroupLimitPatch,
    GroupOut,
    GroupPage,
    GroupPatch,
    LimitAuditPage,
    LimitCreate,
    LimitOut,
    LimitPage,
    LimitPatch,
    MetricsOut,
    MonitorResult,
    OverviewOut,
    Phase,
    PortfolioVarOut,
    SavedScenarioCreate,
    SavedScenarioOut,
    SavedScenarioPage,
    SavedScenarioPatch,
    ScenarioRunIn,
    Severity,
    StressOut,
    StressRequest,
    ViolationPage,
)
from app.lib.db import DbConn, provide_db
from app.lib.errors import problem_response
from app.lib.pagination import Cursor, Limit

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

    @put("/group", summary="Put the account in a risk group, or take it out with null (risk_manager/admin)")
    async def set_group(
        self, db: DbConn, request: Request, account_id: FromPath[UUID], data: JSONBody[AccountGroupIn]
    ) -> AccountGroupOut:
        return await group_service.set_account_group(db, request.user, account_id, data)

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

    @get(
        "/overview",
        summary="Firm and group totals, the top limit utilisations, open alerts (risk_manager/admin)",
    )
    async def overview(self, db: DbConn, request: Request) -> OverviewOut:
        return await group_reports.overview(db, request.user)

    @get(
        "/var",
        summary="Parametric VaR of a group's accounts (firm-wide without group_id), with components",
        responses={404: problem_response("No risk group `group_id`")},
    )
    async def portfolio_var(
        self,
        db: DbConn,
        request: Request,
        group_id: FromQuery[UUID | None] = None,
        lookback: Lookback = 250,
    ) -> PortfolioVarOut:
        return await group_reports.portfolio_var(db, request.user, group_id, lookback=lookback)

    @post("/groups", status_code=201, summary="Create a risk group (risk_manager/admin)")
    async def create_group(self, db: DbConn, request: Request, data: JSONBody[GroupCreate]) -> GroupOut:
        return await group_service.create_group(db, request.user, data)

    @get("/groups", summary="Risk groups, newest first (risk_manager/admin)")
    async def list_groups(
        self, db: DbConn, request: Request, limit: Limit = 50, cursor: Cursor = None
    ) -> GroupPage:
        items, nxt = await group_service.list_groups(db, request.user, limit=limit, cursor=cursor)
        return GroupPage(items=items, next_cursor=nxt)

    @get("/groups/{group_id:uuid}", summary="One risk group")
    async def get_group(self, db: DbConn, request: Request, group_id: FromPath[UUID]) -> GroupOut:
        return await group_service.get_group(db, request.user, group_id)

    @patch("/groups/{group_id:uuid}", summary="Rename a risk group (risk_manager/admin)")
    async def rename_group(
        self, db: DbConn, request: Request, group_id: FromPath[UUID], data: JSONBody[GroupPatch]
    ) -> GroupOut:
        return await group_service.rename_group(db, request.user, group_id, data)

    @delete(
        "/groups/{group_id:uuid}", status_code=204,
        summary="Remove a risk group without accounts or sub-groups, and its limits (risk_manager/admin)",
    )
    async def delete_group(self, db: DbConn, request: Request, group_id: FromPath[UUID]) -> None:
        await group_service.delete_group(db, request.user, group_id)

    @get("/groups/{group_id:uuid}/limits", summary="The group's limits, newest first")
    async def list_group_limits(
        self, db: DbConn, request: Request, group_id: FromPath[UUID], limit: Limit = 50, cursor: Cursor = None
    ) -> GroupLimitPage:
        items, nxt = await group_service.list_group_limits(
            db, request.user, group_id, limit=limit, cursor=cursor
        )
        return GroupLimitPage(items=items, next_cursor=nxt)

    @post(
        "/groups/{group_id:uuid}/limits", status_code=201, summary="Create a group limit (risk_manager/admin)"
    )
    async def create_group_limit(
        self, db: DbConn, request: Request, group_id: FromPath[UUID], data: JSONBody[GroupLimitCreate]
    ) -> GroupLimitOut:
        return await group_service.create_group_limit(db, request.user, group_id, data)

    @patch("/groups/{group_id:uuid}/limits/{limit_id:uuid}", summary="Change a group limit")
    async def update_group_limit(
        self,
        db: DbConn,
        request: Request,
        group_id: FromPath[UUID],
        limit_id: FromPath[UUID],
        data: JSONBody[GroupLimitPatch],
    ) -> GroupLimitOut:
        return await group_service.update_group_limit(db, request.user, group_id, limit_id, data)

    @delete("/groups/{group_id:uuid}/limits/{limit_id:uuid}", status_code=204, summary="Remove a group limit")
    async def delete_group_limit(
        self, db: DbConn, request: Request, group_id: FromPath[UUID], limit_id: FromPath[UUID]
    ) -> None:
        await group_service.delete_group_limit(db, request.user, group_id, limit_id)

    @get("/groups/{group_id:uuid}/alerts", summary="Alerts on a group's limits, newest first (risk_manager)")
    async def list_group_alerts(
        self,
        db: DbConn,
        request: Request,
        group_id: FromPath[UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
        acknowledged: FromQuery[bool | None] = None,
        severity: FromQuery[Severity | None] = None,
    ) -> GroupAlertPage:
        items, nxt = await group_alerts.list_alerts(
            db, request.user, group_id, limit=limit, cursor=cursor, acknowledged=acknowledged,
            severity=severity,
        )
        return GroupAlertPage(items=items, next_cursor=nxt)

    @post(
        "/groups/{group_id:uuid}/alerts/{alert_id:uuid}/acknowledge",
        status_code=200,
        summary="Acknowledge a group alert (409 if already; risk_manager/admin)",
    )
    async def acknowledge_group_alert(
        self, db: DbConn, request: Request, group_id: FromPath[UUID], alert_id: FromPath[UUID]
    ) -> GroupAlertOut:
        return await group_alerts.acknowledge_alert(db, request.user, group_id, alert_id)

    @post("/scenarios", status_code=201, summary="Save a stress scenario (risk_manager/admin)")
    async def create_scenario(
        self, db: DbConn, request: Request, data: JSONBody[SavedScenarioCreate]
    ) -> SavedScenarioOut:
        return await scenario_service.create_scenario(db, request.user, data)

    @get("/scenarios", summary="Saved stress scenarios, newest first")
    async def list_scenarios(
        self, db: DbConn, request: Request, limit: Limit = 50, cursor: Cursor = None
    ) -> SavedScenarioPage:
        items, nxt = await scenario_service.list_scenarios(db, request.user, limit=limit, cursor=cursor)
        return SavedScenarioPage(items=items, next_cursor=nxt)

    @get("/scenarios/{scenario_id:uuid}", summary="One saved stress scenario")
    async def get_scenario(
        self, db: DbConn, request: Request, scenario_id: FromPath[UUID]
    ) -> SavedScenarioOut:
        return await scenario_service.get_scenario(db, request.user, scenario_id)

    @patch("/scenarios/{scenario_id:uuid}", summary="Change a saved stress scenario (risk_manager/admin)")
    async def update_scenario(
        self, db: DbConn, request: Request, scenario_id: FromPath[UUID], data: JSONBody[SavedScenarioPatch]
    ) -> SavedScenarioOut:
        return await scenario_service.update_scenario(db, request.user, scenario_id, data)

    @delete("/scenarios/{scenario_id:uuid}", status_code=204, summary="Remove a saved scenario")
    async def delete_scenario(self, db: DbConn, request: Request, scenario_id: FromPath[UUID]) -> None:
        await scenario_service.delete_scenario(db, request.user, scenario_id)

    @post(
        "/scenarios/{scenario_id:uuid}/run",
        status_code=200,
        summary="Stress accounts under a saved scenario (the rules of POST /api/v1/risk/stress)",
    )
    async def run_scenario(
        self,
        db: DbConn,
        request: Request,
        scenario_id: FromPath[UUID],
        data: JSONBody[ScenarioRunIn | None] = None,
    ) -> StressOut:
        return await scenario_service.run_scenario(db, request.user, scenario_id, data)
