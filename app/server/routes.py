"""Every domain's HTTP controllers, registered in one list."""

from __future__ import annotations

from typing import Any


def route_handlers() -> list[Any]:
    from app.domain.accounts.controllers import AccountController
    from app.domain.analytics.controllers import AnalyticsController
    from app.domain.audit.controllers import AuditController
    from app.domain.backtesting.controllers import (
        BacktestController,
        SharedReportController,
        StrategyController,
    )
    from app.domain.desk.controllers import DeskSessionController, desk_assets, desk_page
    from app.domain.identity.controllers import AuthKeyController, UserController, whoami
    from app.domain.jobs.controllers import JobController, ScheduleController
    from app.domain.jobs.web_ui import saq_ui
    from app.domain.markets.controllers import ExchangeController, InstrumentController, MarketController
    from app.domain.risk.controllers import DeskRiskController, RiskController
    from app.domain.streams.controllers import StreamController, stream_socket
    from app.domain.system.cache_controller import CacheController
    from app.domain.system.controllers import HealthController
    from app.domain.trading.controllers import OrderController

    handlers: list[Any] = [
        HealthController,
        UserController,
        AuthKeyController,
        whoami,
        ExchangeController,
        InstrumentController,
        MarketController,
        AccountController,
        OrderController,
        RiskController,
        DeskRiskController,
        JobController,
        ScheduleController,
        saq_ui,
        CacheController,
        StrategyController,
        BacktestController,
        SharedReportController,
        AnalyticsController,
        DeskSessionController,
        desk_page,
        desk_assets,
        AuditController,
        StreamController,
        stream_socket,
    ]
    return handlers
