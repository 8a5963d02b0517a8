"""Trading jobs: day-order expiry (scheduled) and fills-vs-balances reconciliation."""

from __future__ import annotations

from typing import Any

import msgspec

from app.domain.trading.reconcile import reconcile_all
from app.domain.trading.services import expire_day_orders
from app.lib.jobs import job


@job("trading.expire_day_orders", timeout=120)
async def expire_day_orders_job(ctx: dict[str, Any]) -> dict[str, int]:
    """Expire `day` orders whose exchange session has closed."""
    async with ctx["engine"].connect() as conn:
        return {"expired": await expire_day_orders(conn)}


class ReconcileKwargs(msgspec.Struct, forbid_unknown_fields=True):
    batch: int = 500


@job("trading.reconcile", ReconcileKwargs, timeout=3600)
async def reconcile_job(ctx: dict[str, Any], *, batch: int = 500) -> dict[str, Any]:
    """Replay every account's fills and report any drift from stored cash and positions."""
    async with ctx["engine"].connect() as conn:
        drifts = await reconcile_all(conn, batch)
    return {"accounts_with_drift": len(drifts), "drift": {str(d.account_id): d.problems for d in drifts[:100]}}
