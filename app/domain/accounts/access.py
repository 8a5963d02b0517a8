"""Tenant isolation: every account-scoped query filters by owner in SQL.

A caller who may not see an account gets 404, exactly as if it did not exist. risk_manager and admin read
every account; only the owner (or an admin) may trade on it.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import ColumnElement, true

from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.lib.errors import NotAccountOwner


def visible_to(principal: Principal) -> ColumnElement[bool]:
    if principal.can_read_all_accounts:
        return true()
    return Account.owner_id == principal.user_id


def ensure_may_trade(principal: Principal, owner_id: UUID) -> None:
    if owner_id != principal.user_id and not principal.is_admin:
        raise NotAccountOwner("Only the account owner can place or cancel orders on this account")
