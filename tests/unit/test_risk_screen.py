"""The sweep's float screen (`monitoring.quiet`) never hides what the exact decision (`monitoring.decide`)
would find: an account it calls quiet has no breach and no alert transition, on random books with limits
set around their warning lines, exactly on them and one unit of the last place below."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from types import SimpleNamespace

from app.domain.risk import checks, monitoring
from app.domain.risk.portfolios import Portfolio

KINDS = (
    "max_position_notional",
    "max_gross_exposure",
    "max_leverage",
    "max_concentration_pct",
    "max_daily_loss",
    "max_drawdown_pct",
)
SYMBOLS = ["A", "B", "C", "D"]


def _portfolio(rng: random.Random, factor: Decimal, kinds: tuple[str, ...] = KINDS, level: str | None = None):
    positions = {
        s: (Decimal(rng.randint(-500, 500) or 1), Decimal(rng.randint(100, 99_999)) / 100)
        for s in rng.sample(SYMBOLS, rng.randint(1, 4))
    }
    gross = sum(abs(q * price) for q, price in positions.values())
    state = checks.PortfolioState(cash=gross + rng.randint(1, 500_000), positions=positions)  # equity > 0
    equity = state.equity
    peak = max(equity, equity * Decimal("1.07"))
    state.drawdown_pct = (1 - equity / peak) * 100 if peak > 0 else Decimal(0)
    state.daily_pnl = Decimal(-rng.randint(1, 5_000))
    limits = []
    for kind in kinds:
        symbol = rng.choice([None, None, *positions]) if kind in ("max_position_notional",
                                                                   "max_concentration_pct") else None
        limit = checks.Limit("x", kind, Decimal(1), symbol)
        used = checks.current_value(state, limit)
        warn = Decimal(rng.choice([50, 80, 100]))
        assert used is not None
        if not used.is_finite() or used <= 0:
            value = Decimal(1000)
        else:  # the warning line at `factor` times what is used now
            value = used * 100 / (warn * factor)
        limits.append(SimpleNamespace(id=uuid.uuid4(), limit_type=kind, value=value, symbol=symbol,
                                      warn_at_pct=warn, enabled=True, auto_reduce_only=True,
                                      alert_level=level))
    return Portfolio(uuid.uuid4(), uuid.uuid4(), "active", state, peak, peak, None, limits)


def _decides_nothing(p: Portfolio) -> bool:
    d = monitoring.decide(p.state, p.limits, p.trading_state)
    return not d.breaches and not d.transitions and d.stop is None


def test_a_quiet_account_is_one_the_exact_decision_finds_nothing_for():
    rng = random.Random(7)
    near_one = Decimal(1) - Decimal("1e-15")
    factors = [Decimal("0.5"), Decimal("0.99"), Decimal(1), near_one, Decimal("1.000001"), Decimal(2)]
    books = [_portfolio(rng, f) for f in factors for _ in range(60)]
    screened = monitoring.quiet(books)
    assert all(_decides_nothing(p) for p, q in zip(books, screened, strict=True) if q)
    by_factor = [screened[i * 60 : (i + 1) * 60] for i in range(len(factors))]
    assert all(by_factor[0]), "well below every warning line: quiet"
    assert not any(by_factor[2]) and not any(by_factor[3]) and not any(by_factor[5])


def test_alert_states_and_unscreened_kinds_are_decided_exactly():
    rng = random.Random(11)
    armed = _portfolio(rng, Decimal("0.5"), level="warning")  # re-arms: a transition to None
    counted = _portfolio(rng, Decimal("0.5"), kinds=("max_gross_exposure",))
    counted.limits.append(SimpleNamespace(id=uuid.uuid4(), limit_type="max_open_orders", value=Decimal(5),
                                          symbol=None, warn_at_pct=Decimal(80), enabled=True,
                                          auto_reduce_only=False, alert_level=None))
    per_order = _portfolio(rng, Decimal("0.5"), kinds=("max_gross_exposure",))
    per_order.limits.append(SimpleNamespace(id=uuid.uuid4(), limit_type="max_order_notional",
                                            value=Decimal(5), symbol=None, warn_at_pct=Decimal(80),
                                            enabled=True, auto_reduce_only=False, alert_level=None))
    assert monitoring.quiet([armed, counted, per_order]) == [False, False, True]
    assert not _decides_nothing(armed)


def test_no_equity_left_is_never_quiet():
    p = _portfolio(random.Random(3), Decimal("0.5"), kinds=("max_leverage",))
    p.state.cash = -p.state.equity - 1 + p.state.cash  # equity -1: leverage unbounded
    assert p.state.equity == -1
    assert monitoring.quiet([p]) == [False]
    assert not _decides_nothing(p)
