"""`POST /api/v1/risk/stress`: load the books, resolve the scenarios, run the numpy core, report.

Access: a trader stresses only accounts they own (naming another's is 404, as everywhere); a risk
manager or admin any account. Without `accounts`, every account the caller can read.

Decisions where the issue is silent (docs/RISK.md):

* `firm_pnl` / `firm_equity*` sum over the accounts stressed (for a trader: their own accounts).
* `groups` (risk manager / admin only; a trader gets `[]`) lists every group holding a stressed account,
  summing the accounts of its sub-groups too. `groups` in the request adds every account of those
  groups (and sub-groups) to `accounts`.
* A historical window moves each held symbol by `close(end) / close(start) - 1`, where `close(t)` is the
  close of the symbol's last daily candle with `ts <= t`. A symbol without such a candle (at either end)
  is not moved and is listed in `missing_history`.
* A shock on a symbol that is not an instrument is a 422 naming it; `*` needs no instrument.
* Money (P&L, equity after) is rounded half-even to 1e-8 of the base currency; a figure smaller than
  1e-6 in magnitude is reported as 0 (JSON decimals stay in plain notation).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.accounts.access import visible_to
from app.domain.accounts.models import Account
from app.domain.identity.schemas import Principal
from app.domain.markets.models import Instrument
from app.domain.risk import stress
from app.domain.risk.models import RiskGroup
from app.domain.risk.portfolios import Portfolio, as_books, load_portfolios
from app.domain.risk.schemas import (
    SHOCK_MAX,
    SHOCK_MIN,
    StressAccountResult,
    StressBreach,
    StressGroupResult,
    StressOut,
    StressRequest,
    StressScenario,
    StressScenarioResult,
)
from app.lib.db import utcnow
from app.lib.errors import Invalid, NotFound, RoleRequired

_ZERO = Decimal(0)
_NONE: list[StressBreach] = []  # shared by every account without a breach (never mutated)

_WINDOW_CLOSES_SQL = text(
    """
    SELECT s.symbol,
           (SELECT c.close FROM candles c WHERE c.symbol = s.symbol AND c.timeframe = '1d' AND c.ts <= :start
             ORDER BY c.ts DESC LIMIT 1) AS start_close,
           (SELECT c.close FROM candles c WHERE c.symbol = s.symbol AND c.timeframe = '1d' AND c.ts <= :end
             ORDER BY c.ts DESC LIMIT 1) AS end_close
      FROM unnest(CAST(:symbols AS text[])) AS s(symbol)
    """
)


def money(value: float) -> Decimal:
    """A float amount as a Decimal rounded half-even to 1e-8, in plain notation when encoded (str of a
    Decimal below 1e-6 would be exponent notation, so such amounts are 0)."""
    d = Decimal(f"{value:.8f}")
    return d if d and d.adjusted() >= -6 else _ZERO


def money_all(values: np.ndarray) -> list[Decimal]:
    """`money` of every finite value of a float array, in one pass: formatting and Decimal construction run
    through `map` (no Python frame per value); the few values near zero take `money` itself."""
    out = list(map(Decimal, map("{:.8f}".format, values.tolist())))
    for k in np.flatnonzero(np.abs(values) < 2e-6):
        out[k] = money(float(values[k]))
    return out


async def _target_accounts(
    conn: AsyncConnection, principal: Principal, requested: list[uuid.UUID] | None
) -> list[uuid.UUID]:
    stmt = select(Account.id).where(visible_to(principal)).order_by(Account.id)
    if requested is None:
        return list((await conn.execute(stmt)).scalars())
    wanted = set(requested)
    found = set((await conn.execute(stmt.where(Account.id.in_(wanted)))).scalars())
    missing = sorted(wanted - found, key=str)
    if missing:
        raise NotFound(
            f"Account {missing[0]}",
            errors=[{"field": "accounts", "message": f"account {a} not found"} for a in missing[:20]],
        )
    return sorted(found)


async def check_shocks(conn: AsyncConnection, scenarios: list[Any], field: str = "scenarios[{i}].") -> None:
    """422 with one error per bad shock: on a symbol that is not an instrument, or outside [SHOCK_MIN,
    SHOCK_MAX] (`field` prefixes `shocks.SYM`)."""
    shocks = [(i, s, move) for i, sc in enumerate(scenarios) for s, move in (sc.shocks or {}).items()]
    named = {s for _, s, _ in shocks if s != "*"}
    known = (
        set((await conn.execute(select(Instrument.symbol).where(Instrument.symbol.in_(named)))).scalars())
        if named
        else set()
    )
    errors = []
    for i, s, move in shocks:
        if s != "*" and s not in known:
            message = "unknown instrument"
        elif not SHOCK_MIN <= move <= SHOCK_MAX:  # (nan fails both)
            message = f"must be between {SHOCK_MIN:g} and {SHOCK_MAX:g} (-0.10 is a 10% fall)"
        else:
            continue
        errors.append({"field": f"{field.format(i=i)}shocks.{s}", "message": message})
    if errors:
        first = errors[0]
        symbol = first["field"].rsplit(".", 1)[1]
        unknown = first["message"] == "unknown instrument"
        title = f"Unknown symbol {symbol!r} in a shock" if unknown else f"Shock {symbol!r} is out of range"
        raise Invalid(title, errors=errors)


async def _historical_row(
    conn: AsyncConnection, symbols: list[str], scenario: StressScenario
) -> tuple[np.ndarray, list[str]]:
    window = scenario.historical
    assert window is not None
    moves = dict.fromkeys(symbols, 0.0)
    missing = []
    params = {"symbols": symbols, "start": window.start, "end": window.end}
    for symbol, start_close, end_close in await conn.execute(_WINDOW_CLOSES_SQL, params):
        if start_close is None or end_close is None or start_close <= 0:
            missing.append(symbol)
        else:
            moves[symbol] = float(end_close / start_close - 1)
    return np.array([moves[s] for s in symbols], dtype=np.float64), sorted(missing)


def _breaches(
    result: stress.StressResult, scenario: int, books: stress.Books, rows: list[Any]
) -> dict[int, list[StressBreach]]:
    by_account: dict[int, list[StressBreach]] = {}
    for k in np.flatnonzero(result.breached[scenario]):
        row = rows[k]
        used = float(result.used[scenario, k])
        by_account.setdefault(int(books.limit_account[k]), []).append(
            StressBreach(
                limit_id=row.id,
                limit_type=row.limit_type,
                symbol=row.symbol,
                limit_value=row.value,
                would_be=money(used) if np.isfinite(used) else None,
            )
        )
    return by_account


_GROUP_MEMBERS_SQL = text(
    """
    WITH RECURSIVE sub AS (
      SELECT id FROM risk_groups WHERE id = ANY(CAST(:groups AS uuid[]))
      UNION
      SELECT g.id FROM risk_groups g JOIN sub ON g.parent_id = sub.id
    )
    SELECT a.id FROM accounts a WHERE a.group_id IN (SELECT id FROM sub)
    """
)


async def _group_accounts(
    conn: AsyncConnection, principal: Principal, group_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    if not principal.can_read_all_accounts:
        raise RoleRequired("Stressing groups requires the risk_manager or admin role")
    known = set((await conn.execute(select(RiskGroup.id).where(RiskGroup.id.in_(group_ids)))).scalars())
    unknown = [g for g in group_ids if g not in known]
    if unknown:
        raise Invalid(
            f"Unknown group {unknown[0]}",
            errors=[{"field": "groups", "message": f"group {g} not found"} for g in unknown[:20]],
        )
    return list((await conn.execute(_GROUP_MEMBERS_SQL, {"groups": group_ids})).scalars())


async def _membership(conn: AsyncConnection) -> tuple[dict[uuid.UUID, Any], dict[uuid.UUID, uuid.UUID]]:
    tree = {
        r.id: r for r in (await conn.execute(select(RiskGroup.id, RiskGroup.name, RiskGroup.parent_id))).all()
    }
    if not tree:
        return {}, {}
    member_of = dict(
        (await conn.execute(select(Account.id, Account.group_id).where(Account.group_id.is_not(None)))).all()
    )
    return tree, member_of


def _group_results(
    tree: dict[uuid.UUID, Any],
    member_of: dict[uuid.UUID, uuid.UUID],
    portfolios: list[Portfolio],
    pnl: list[Decimal],
) -> list[StressGroupResult]:
    """Each group holding a stressed account (its sub-groups' accounts included), by name."""
    sums: dict[uuid.UUID, list[Decimal]] = {}
    counts: dict[uuid.UUID, int] = {}
    for p, loss in zip(portfolios, pnl, strict=True):
        gid, seen = member_of.get(p.id), set()
        while gid is not None and gid not in seen:
            seen.add(gid)
            total = sums.setdefault(gid, [_ZERO, _ZERO])
            total[0] += loss
            total[1] += p.equity
            counts[gid] = counts.get(gid, 0) + 1
            gid = tree[gid].parent_id
    return sorted(
        (
            StressGroupResult(gid, tree[gid].name, t[0], t[1], t[1] + t[0], counts[gid])
            for gid, t in sums.items()
        ),
        key=lambda g: g.name,
    )


async def stress_test(conn: AsyncConnection, principal: Principal, data: StressRequest) -> StressOut:
    names = [sc.name for sc in data.scenarios]
    if len(set(names)) != len(names):
        raise Invalid(
            "Scenario names must be unique", errors=[{"field": "scenarios", "message": "duplicate name"}]
        )
    await check_shocks(conn, data.scenarios)
    if data.groups is not None:
        members = await _group_accounts(conn, principal, data.groups)
        named = await _target_accounts(conn, principal, data.accounts) if data.accounts is not None else []
        ids = sorted(set(members) | set(named))
    else:
        ids = await _target_accounts(conn, principal, data.accounts)
    portfolios = await load_portfolios(conn, ids, with_orders=False)
    symbols = sorted({s for p in portfolios for s in p.state.positions})
    rows, missing = [], []
    for scenario in data.scenarios:
        if scenario.shocks is not None:
            rows.append(stress.shock_row(symbols, scenario.shocks))
            missing.append([])
        else:
            row, gaps = await _historical_row(conn, symbols, scenario) if symbols else (np.empty(0), [])
            rows.append(row)
            missing.append(gaps)
    books, limit_rows = as_books(portfolios, symbols)
    result = stress.run(books, np.vstack(rows) if symbols else np.zeros((len(rows), 0)))
    equity = [p.equity for p in portfolios]
    account_ids = [p.id for p in portfolios]
    firm_equity = sum(equity, _ZERO)
    out = []
    tree, member_of = await _membership(conn) if principal.can_read_all_accounts else ({}, {})
    for s, scenario in enumerate(data.scenarios):
        breaches = _breaches(result, s, books, limit_rows)
        pnls = money_all(result.pnl[s])
        firm_pnl = sum(pnls, _ZERO)
        accounts = [
            StressAccountResult(
                account_id=a, equity=e, pnl=x, equity_after=e + x, breaches=breaches.get(i, _NONE)
            )
            for i, (a, e, x) in enumerate(zip(account_ids, equity, pnls, strict=True))
        ]
        out.append(
            StressScenarioResult(
                scenario=scenario.name,
                kind="shocks" if scenario.shocks is not None else "historical",
                shocks={sym: float(rows[s][j]) for j, sym in enumerate(symbols)},
                missing_history=missing[s],
                firm_pnl=firm_pnl,
                firm_equity=firm_equity,
                firm_equity_after=firm_equity + firm_pnl,
                groups=_group_results(tree, member_of, portfolios, pnls),
                accounts=accounts,
            )
        )
    if conn.in_transaction():
        await conn.rollback()  # reads only
    return StressOut(as_of=utcnow(), results=out)
