"""Pre-trade risk of one order on one snapshot of its account: the `PortfolioState` an `AccountBook`
gives, the account's limits as `checks.Limit`, the margin multiplier, and the 422 of a breach.

Order placement decides on an unlocked read of the account and writes only if the account row is still
the version it read, else decides again under the account lock (app/domain/trading/placement.py);
replaces and contingent orders decide under the lock. Every order changes the account row, so either
way two concurrent orders of one account cannot both pass a limit they only fit together. Group limits
across accounts: risk/group_pretrade.py.
"""

from __future__ import annotations

from decimal import Decimal

from app.domain.risk import checks
from app.domain.trading.book import AccountBook
from app.lib.errors import Invalid


def portfolio_state(book: AccountBook) -> checks.PortfolioState:
    equity = book.equity
    daily_pnl = equity - book.day_open_equity if book.day_open_equity is not None else Decimal(0)
    drawdown = Decimal(0)
    if book.peak_equity > 0 and equity < book.peak_equity:
        drawdown = (1 - equity / book.peak_equity) * 100
    return checks.PortfolioState(
        cash=book.cash,
        positions={
            s: (p.quantity, book.prices.get(s) or p.avg_entry_price) for s, p in book.positions.items() if p.quantity
        },
        open_orders=book.open_orders,
        orders_last_minute=book.orders_last_minute,
        reserved_cash=book.reserved_cash,
        daily_pnl=daily_pnl,
        drawdown_pct=drawdown,
    )


def book_limits(book: AccountBook) -> list[checks.Limit]:
    return [
        checks.Limit(id=lid, limit_type=ltype, value=value, symbol=sym, warn_at_pct=warn)
        for lid, ltype, value, sym, warn in book.limits
    ]


def margin_multiplier(book: AccountBook) -> Decimal:
    """Buying power may exceed cash only when an account-wide max_leverage limit above 1 allows it."""
    best = Decimal(1)
    for _, ltype, value, sym, _ in book.limits:
        if ltype == "max_leverage" and sym is None and value > best:
            best = value
    return best


def check(book: AccountBook, state: checks.PortfolioState, order: checks.ProposedOrder) -> checks.Breach | None:
    if not book.limits:
        return None
    return checks.check_pre_trade(state, order, book_limits(book))


class RiskLimitBreached(Invalid):
    """An order (or replace) that would take the account past one of its limits: a 422 naming the limit,
    its value and what the order would make it (`RiskLimitBreached.of(breach)`)."""

    @classmethod
    def of(cls, breach: checks.Breach) -> RiskLimitBreached:
        would_be = format(breach.would_be, "f") if breach.would_be.is_finite() else "Infinity"
        return cls(
            breach.message,
            slug="risk-limit-breached",
            title="Risk limit breached",
            limit_id=breach.limit_id,
            limit_type=breach.limit_type,
            limit_value=format(breach.limit_value, "f"),
            would_be=would_be,
            symbol=breach.symbol,
        )


def breach_error(breach: checks.Breach) -> RiskLimitBreached:
    return RiskLimitBreached.of(breach)

