"""Role guards, declared once per controller or route."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from app.lib.errors import RoleRequired


def _role(connection: ASGIConnection) -> str | None:
    user = connection.scope.get("user")
    return user.role if user is not None else None


def requires_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if _role(connection) != "admin":
        raise RoleRequired("This operation requires the admin role")


def requires_risk_manager(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if _role(connection) not in ("admin", "risk_manager"):
        raise RoleRequired("This operation requires the risk_manager or admin role")


def requires_market_data(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if _role(connection) not in ("admin", "market_data"):
        raise RoleRequired("This operation requires the admin or market-data role")
