"""Group limits at order placement: the group lock and the sums read under it (asyncpg, raw SQL).

Only accounts with `accounts.group_limited` come here (placement reads the flag with the account row):
they are placed on the locked path, which first takes every limited group of the account FOR NO KEY
UPDATE (in id order, before the instrument and the account: the lock order of app/domain/risk), then
reads the groups' sums in a new statement, so it sees every order that the previous holder of a group
lock committed. Two accounts of one group therefore decide one after the other, and together cannot
exceed a group limit; accounts of unrelated groups (and accounts without group limits, which never take
a group lock) are not serialised by it. NO KEY UPDATE rather than UPDATE: foreign-key checks (a new
member, a new limit) take KEY SHARE on the group row and need not wait for orders.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from app.domain.risk import checks, groups
from app.domain.trading.book import AccountBook

_ANCESTORS = """WITH RECURSIVE anc AS (
  SELECT g.id, g.parent_id FROM accounts a JOIN risk_groups g ON g.id = a.group_id WHERE a.id = $1
  UNION ALL
  SELECT g.id, g.parent_id FROM risk_groups g JOIN anc ON g.id = anc.parent_id
), limited AS (
  SELECT DISTINCT anc.id FROM anc JOIN risk_group_limits l ON l.group_id = anc.id AND l.enabled
)"""

# The account's limited groups, locked in id order, with the account's group they were found from (the
# caller compares it with the group it reads under the account lock: a move in between means retry).
GROUP_LOCK_SQL = f"""{_ANCESTORS}
SELECT g.id, (SELECT a.group_id FROM accounts a WHERE a.id = $1) AS account_group
  FROM risk_groups g WHERE g.id IN (SELECT id FROM limited) ORDER BY g.id FOR NO KEY UPDATE OF g
"""

# Per limited group: its enabled limits and the sums over every account of it and of its sub-groups
# ($2: the order's symbol, for the net position). Positions are marked at the last price (at cost when
# never priced), as everywhere; daily PnL is equity now minus the day's first snapshot (load_book's rule).
GROUP_FIGURES_SQL = f"""{_ANCESTORS}, tree AS (
  SELECT id AS root, id AS member FROM limited
  UNION ALL
  SELECT tree.root, g.id FROM risk_groups g JOIN tree ON g.parent_id = tree.member
), valued AS (
  SELECT tree.root, a.cash + coalesce(pv.net, 0) AS equity, coalesce(pv.gross, 0) AS gross,
         coalesce(pv.net, 0) AS net,
         coalesce((SELECT p.quantity FROM positions p WHERE p.account_id = a.id AND p.symbol = $2), 0)
           AS held,
         (SELECT count(*) FROM orders o
           WHERE o.account_id = a.id AND o.status IN ('new', 'accepted', 'partially_filled')) AS open_orders,
         coalesce(
           (SELECT s.equity FROM equity_snapshots s
             WHERE s.account_id = a.id AND s.ts >= date_trunc('day', now(), 'UTC') ORDER BY s.ts LIMIT 1),
           (SELECT s.equity FROM equity_snapshots s
             WHERE s.account_id = a.id AND s.ts < date_trunc('day', now(), 'UTC') ORDER BY s.ts DESC LIMIT 1)
         ) AS day_open
    FROM tree
    JOIN accounts a ON a.group_id = tree.member
    LEFT JOIN LATERAL (
      SELECT sum(abs(p.quantity * coalesce(i.last_price, p.avg_entry_price))) AS gross,
             sum(p.quantity * coalesce(i.last_price, p.avg_entry_price)) AS net
        FROM positions p JOIN instruments i ON i.symbol = p.symbol
       WHERE p.account_id = a.id AND p.quantity <> 0
    ) pv ON true
)
SELECT v.root::text AS group_id, g.name,
       (SELECT json_agg(json_build_array(l.id::text, l.limit_type, l.value::text, l.symbol,
                                         l.warn_at_pct::text))
          FROM risk_group_limits l WHERE l.group_id = v.root AND l.enabled)::text AS limits,
       sum(v.gross) AS gross, sum(v.net) AS net, sum(v.held) AS held, sum(v.open_orders) AS open_orders,
       sum(v.equity - coalesce(v.day_open, v.equity)) AS daily_pnl
  FROM valued v JOIN risk_groups g ON g.id = v.root
 GROUP BY v.root, g.name
 ORDER BY v.root
"""


def _limits(row: Any) -> list[groups.GroupLimit]:
    return [
        groups.GroupLimit(lid, row["group_id"], row["name"], kind, Decimal(value), symbol, Decimal(warn))
        for lid, kind, value, symbol, warn in msgspec.json.decode(row["limits"] or "[]")
    ]


async def breach(apg: Any, book: AccountBook, order: checks.ProposedOrder) -> checks.Breach | None:
    """The first group limit of the account's groups that the order would breach (groups in id order)."""
    position = book.position(order.symbol)
    mark = book.prices.get(order.symbol) or position.avg_entry_price
    for row in await apg.fetch(GROUP_FIGURES_SQL, book.id, order.symbol):
        figures = groups.GroupFigures(
            gross=row["gross"],
            net=row["net"],
            daily_pnl=row["daily_pnl"],
            open_orders=int(row["open_orders"]),
            net_position={order.symbol: row["held"]},
        )
        found = groups.check_pre_trade(figures, _limits(row), order, position.quantity, mark)
        if found is not None:
            return found
    return None
