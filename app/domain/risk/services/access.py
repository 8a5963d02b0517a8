"""Who may read an account's risk data and who may change its limits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.lib.errors import RoleRequired, not_found
from app.lib.log import get_logger

log = get_logger("app.risk")


async def visible_account(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, *, lock: bool = False
) -> Any:
    if lock:
        # A limit change is a change of what order placement decides on: it updates the account row (not
        # only locks it), so an order decided on the old limits fails its row-version check and is
        # decided again under the account lock, after this change (app/domain/trading/placement.py).
        stmt: Any = (
            update(Account)
            .where(Account.id == account_id, visible_to(principal))
            .values(updated_at=func.now())
            .returning(Account.id, Account.owner_id)
        )
    else:
        stmt = select(Account.id, Account.owner_id).where(Account.id == account_id, visible_to(principal))
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise not_found("Account")
    return row


def ensure_may_manage(principal: Principal) -> None:
    if not principal.can_read_all_accounts:
        raise RoleRequired("Managing risk limits requires the risk_manager or admin role")
