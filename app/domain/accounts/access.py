"""Tenant isolation: every account-scoped query filters by owner in SQL.

A caller who may not see an account gets 404, exactly as if it did not exist. risk_manager and admin read
every account; only the owner (or an admin) may trade on it. "Visible to" has one home, here, in the
three shapes the queries need: a SQLAlchemy predicate (`visible_to`), the same condition as SQL text for
hand-written statements (`visible_sql`), and the owner of a visible account or a 404 (`visible_owner`).
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import ColumnElement, text, true
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.lib.errors import NotAccountOwner, not_found


def visible_to(principal: Principal) -> ColumnElement[bool]:
    if principal.can_read_all_accounts:
        return true()
    return Account.owner_id == principal.user_id


def visible_sql(account: str, user_id: str, read_all: str) -> str:
    """`visible_to` for a statement written as text: the `accounts` row aliased `account` is visible to the
    user given by the `user_id` parameter, or `read_all` (the principal's can_read_all_accounts) holds."""
    prefix = f"{account}." if account else ""
    return f"({prefix}owner_id = {user_id} OR {read_all})"


_OWNER_SQL = text(
    f"SELECT owner_id FROM accounts WHERE id = :account_id AND {visible_sql('', ':user_id', ':read_all')}"
)


async def visible_owner(conn: AsyncConnection, principal: Principal, account_id: UUID) -> UUID:
    """The owner of the account, if `principal` may see it; otherwise 404 (as if it did not exist)."""
    owner = await conn.scalar(
        _OWNER_SQL,
        {"account_id": account_id, "user_id": principal.user_id, "read_all": principal.can_read_all_accounts},
    )
    if owner is None:
        raise not_found("Account")
    return owner


def ensure_may_trade(principal: Principal, owner_id: UUID) -> None:
    if owner_id != principal.user_id and not principal.is_admin:
        raise NotAccountOwner("Only the account owner can place or cancel orders on this account")
