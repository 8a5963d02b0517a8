"""Group limits at order placement: the group guard and the sums it decides on (asyncpg, raw SQL).

Only accounts with `accounts.group_limited` come here (placement reads the flag with the account row).
A group order must be decided on sums that include every order of the group committed before it, or two
accounts of one group racing could together exceed a group limit. Two ways to get that, both keyed on
`risk_groups.version`, which every committed order under a group's limits moves:

* optimistic (placement's default): the account's limited groups' sums and versions are read without a
  lock, with the book (`FIGURES_COLUMN` in the read, or `FIGURES_SQL` on its own); the order is decided
  on them, and the write statement (`GUARD_CTE`) first bumps those groups' versions, but only if they
  are still the ones read; if one moved, the statement writes nothing and the order is decided again on
  the locked path. Two round trips; one when the order is decided on the state the account's previous
  write in the group left (placement.py's kept state), whose write also checks that no member account
  row and no price the sums use changed since (`members_column`, $43 to $46 of `GUARD_CTE`);
* locked (`GROUP_LOCK_SQL`, the fallback, and contingent orders and replaces): takes every limited group
  of the account FOR NO KEY UPDATE in id order (before the instrument and the account: the lock order of
  app/domain/risk) and bumps its version at once, then reads the sums in a new statement, which sees
  every order the previous holder committed. Holding the lock bumps the version, so an optimistic order
  decided before it cannot commit after it.

Accounts of unrelated groups (and accounts without group limits) never touch another group's row. NO KEY
UPDATE rather than UPDATE: foreign-key checks (a new member, a new limit) take KEY SHARE on the group row
and need not wait for orders. Every change of a group's limits or members moves the version too
(app/domain/risk/group_service.py).

What moves a group's sums without a placement (prices, fills of resting orders, cancels) is not
serialised with placements by either path: a decision is on the sums of its read, as an account's is.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

import msgspec

from app.domain.risk import checks, groups
from app.domain.trading.book import AccountBook
from app.domain.trading.queries import OPEN_OR_HELD_STATUS_SQL

_ANCESTORS = """WITH RECURSIVE anc AS (
  SELECT g.id, g.parent_id FROM accounts a JOIN risk_groups g ON g.id = a.group_id WHERE a.id = $1
  UNION ALL
  SELECT g.id, g.parent_id FROM risk_groups g JOIN anc ON g.id = anc.parent_id
), limited AS (
  SELECT DISTINCT anc.id FROM anc JOIN risk_group_limits l ON l.group_id = anc.id AND l.enabled
)"""

# The account's limited groups, locked in id order and their versions moved, with the account's group
# they were found from (the caller compares it with the group it reads under the account lock: a move in
# between means retry).
GROUP_LOCK_SQL = f"""{_ANCESTORS}, locked AS (
  SELECT g.id FROM risk_groups g WHERE g.id IN (SELECT id FROM limited) ORDER BY g.id FOR NO KEY UPDATE OF g
)
UPDATE risk_groups g SET version = g.version + 1 FROM locked WHERE g.id = locked.id
RETURNING g.id, (SELECT a.group_id FROM accounts a WHERE a.id = $1) AS account_group
"""

# Per limited group, as one JSON array of [group id, name, version, enabled limits, gross, net, net
# position in the order's symbol ($2), open orders, daily PnL] (numbers as strings): the sums over every
# account of it and of its sub-groups. Positions are marked at the last price (at cost when never
# priced), as everywhere; daily PnL is equity now minus the day's first snapshot (load_book's rule). A sum
# no enabled limit of these groups measures is not computed (NULL, read as 0). Positions are summed in one
# join per statement rather than a subquery per account (half the statement's time for a group of 32).
_FIGURES_BODY = f"""{_ANCESTORS}, kinds AS (
  SELECT coalesce(array_agg(DISTINCT l.limit_type), '{{}}') AS k
    FROM risk_group_limits l WHERE l.group_id IN (SELECT id FROM limited) AND l.enabled
), tree AS (
  SELECT id AS root, id AS member FROM limited
  UNION ALL
  SELECT tree.root, g.id FROM risk_groups g JOIN tree ON g.parent_id = tree.member
), members AS (
  SELECT tree.root, a.id, a.cash FROM tree JOIN accounts a ON a.group_id = tree.member
), pos AS (
  SELECT m.root, m.id, sum(abs(p.quantity * coalesce(i.last_price, p.avg_entry_price))) AS gross,
         sum(p.quantity * coalesce(i.last_price, p.avg_entry_price)) AS net,
         sum(p.quantity) FILTER (WHERE p.symbol = $2) AS held
    FROM members m JOIN positions p ON p.account_id = m.id JOIN instruments i ON i.symbol = p.symbol
   WHERE p.quantity <> 0
     AND (SELECT k && '{{max_gross_exposure,max_net_exposure,max_daily_loss,max_net_position}}' FROM kinds)
   GROUP BY m.root, m.id
)
SELECT json_agg(json_build_array(
         g.id::text, g.name, g.version,
         (SELECT json_agg(json_build_array(l.id::text, l.limit_type, l.value::text, l.symbol,
                                           l.warn_at_pct::text))
            FROM risk_group_limits l WHERE l.group_id = g.id AND l.enabled),
         (SELECT coalesce(sum(pos.gross), 0) FROM pos WHERE pos.root = g.id)::text,
         (SELECT coalesce(sum(pos.net), 0) FROM pos WHERE pos.root = g.id)::text,
         (SELECT coalesce(sum(pos.held), 0) FROM pos WHERE pos.root = g.id)::text,
         CASE WHEN (SELECT 'max_open_orders' = ANY(k) FROM kinds) THEN
           (SELECT count(*) FROM members m JOIN orders o ON o.account_id = m.id
             WHERE m.root = g.id AND o.status IN ('new', 'held', 'accepted', 'partially_filled')) END::text,
         CASE WHEN (SELECT 'max_daily_loss' = ANY(k) FROM kinds) THEN
           (SELECT sum(e.equity - coalesce(
              (SELECT s.equity FROM equity_snapshots s
                WHERE s.account_id = e.id AND s.ts >= date_trunc('day', now(), 'UTC') ORDER BY s.ts LIMIT 1),
              (SELECT s.equity FROM equity_snapshots s
                WHERE s.account_id = e.id AND s.ts < date_trunc('day', now(), 'UTC')
                ORDER BY s.ts DESC LIMIT 1),
              e.equity))
              FROM (SELECT m.id, m.cash + coalesce(pos.net, 0) AS equity FROM members m
                      LEFT JOIN pos ON pos.id = m.id AND pos.root = m.root WHERE m.root = g.id) e) END::text
       ) ORDER BY g.id)::text
  FROM risk_groups g WHERE g.id IN (SELECT id FROM limited)"""

# $1: the account, $2: the order's symbol.
FIGURES_SQL = _FIGURES_BODY


def figures_column(account: str, symbol: str) -> str:
    """FIGURES_SQL as a column of another statement whose parameters name the account and the symbol."""
    assert "$3" not in _FIGURES_BODY
    return "(" + _FIGURES_BODY.replace("$1", account).replace("$2", symbol) + ") AS group_figures"


# What the sums of a set of limited groups rest on besides the groups' own rows, as one text per row:
# 'a<account id>:<row version>' for every member account (of the groups and of their sub-groups),
# 'o<account id>' for every member with an open or held order, and 'i<symbol>:<row version>' for every
# instrument a member has a position row in (any quantity: a superset of the marked ones). Every writer
# that moves a member's cash, positions or open orders updates its account row (a fill, a placement, a
# cancel, a replace, an expiry, a release, a leg's activation: each writes order events, numbered by
# `accounts.event_seq`), every price, halt or tick change the instrument row, and every change of a
# group's limits or members its version; what is left is the day's PnL, whose opening equity moves with
# the calendar and the snapshot job (a kept state never carries it: kept.GroupState.after).
#
# Of the members, the guard compares only the 'o' ones (kept.GroupState.rows). A member's positions and
# open orders change in two ways: by an order placed, replaced or closed on it, which under group limits
# always moves the groups' versions (optimistic, kept or locked path alike: the guard's $42 fails), or
# by what happens to an order already open (a fill at a price, a cancel, an expiry, a halt, a leg's
# activation or its sibling's cancel), which moves no group row. A member without an open or held order
# when the sums were read can change in the first way only until one is placed, and that placement
# moves the versions. (Accounts are never deleted; a change of membership moves the versions.) Cash
# alone moves no sum a kept state carries. `{roots}`: the SQL of the limited groups' ids.
_MEMBERS_STATE_BODY = """WITH RECURSIVE {anc}tree AS (
  SELECT g.id FROM risk_groups g WHERE g.id = ANY({roots})
  UNION
  SELECT g.id FROM risk_groups g JOIN tree ON g.parent_id = tree.id
), m AS (
  SELECT a.id, a.xmin FROM tree JOIN accounts a ON a.group_id = tree.id
), parts AS (
  SELECT 'a' || m.id::text || ':' || m.xmin::text AS part FROM m
  UNION
  SELECT 'o' || m.id::text FROM m
   WHERE EXISTS (SELECT FROM orders o WHERE o.account_id = m.id AND o.{open_or_held})
  UNION
  SELECT 'i' || i.symbol || ':' || i.xmin::text FROM m JOIN positions p ON p.account_id = m.id
    JOIN instruments i ON i.symbol = p.symbol
)"""


def members_column(account: str) -> str:
    """The parts (`_MEMBERS_STATE_BODY`) of the account's limited groups, as a text[] column named
    `group_members` of a statement whose parameter `account` names the account."""
    anc = _ANCESTORS.removeprefix("WITH RECURSIVE ").replace("$1", account) + ", "
    body = _MEMBERS_STATE_BODY.format(
        anc=anc, roots="ARRAY(SELECT id FROM limited)", open_or_held=OPEN_OR_HELD_STATUS_SQL
    )
    return f"({body} SELECT array_agg(part) FROM parts) AS group_members"


# The first statement of a guarded write ($41: the groups' ids, $42: their versions as read, both in id
# order): each group row is locked in id order and its version moved if it is still the one read. In READ
# COMMITTED a row another order updated since the read is re-read after that order's commit and fails the
# version test, so `guard` then holds fewer rows than $41 and the caller's write applies nothing. A
# decision on a kept state (app/domain/trading/kept.py) also passes the rows its sums rest on (its
# parts): the member accounts that can change without moving a version (those with open or held orders,
# `members_column`; $43, comma-joined) with their row versions ($44, likewise), the instruments the
# members hold ($45) with theirs ($46). If any of those rows differs in the statement's snapshot, no
# group row is moved and nothing is written either. (A decision on a fresh read passes NULLs: it read
# the parts in the same snapshot as the sums.)
#
# The kept state names the rows rather than the statement finding them again from the groups (the
# recursive walk of the sub-groups and the positions join of `members_column`, and a digest of the parts,
# cost ~0.15 ms of the write), which is as sound: who is a member changes only by `set_account_group`,
# which moves the versions of the old and the new group's whole chain ($42 fails), and a member's set of
# position rows changes only with a fill, which updates the member's account row (its version fails).
GUARD_CTE = """guard AS (
  UPDATE risk_groups g SET version = g.version + 1
    FROM (SELECT g2.id FROM risk_groups g2
             JOIN unnest((SELECT $41::uuid[]), (SELECT $42::bigint[])) AS v(id, version) ON v.id = g2.id
           WHERE g2.version = v.version ORDER BY g2.id FOR NO KEY UPDATE OF g2) AS same
   WHERE g.id = same.id AND ($43::text IS NULL OR (
     (SELECT count(*)
        FROM unnest(string_to_array($43::text, ',')::uuid[], string_to_array($44::text, ','))
             AS m(id, version)
        JOIN accounts a ON a.id = m.id
       WHERE a.xmin = m.version::xid) = cardinality(string_to_array($43::text, ','))
     AND (SELECT count(*) FROM unnest((SELECT $45::text[]), (SELECT $46::text[])) AS h(symbol, version)
            JOIN instruments i ON i.symbol = h.symbol
           WHERE i.xmin = h.version::xid) = cardinality($45::text[])))
  RETURNING g.id
)"""
GUARD_HOLDS = "(SELECT count(*) FROM guard) = cardinality($41::uuid[])"


class Figures(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One limited group as the read found it."""

    group_id: str
    name: str
    version: int
    limits: list[tuple[str, str, str, str | None, str]] | None
    gross: str | None
    net: str | None
    held: str | None
    open_orders: str | None
    daily_pnl: str | None


_decode = msgspec.json.Decoder(list[Figures] | None).decode


def decode(value: str | None) -> list[Figures]:
    """The groups of a FIGURES_SQL answer (or a read's `group_figures` column)."""
    return (_decode(value) if value else None) or []


# The rows a kept state rests on: member account ids and their row versions (each comma-joined), held
# symbols and theirs.
KeptRows = tuple[str, str, list[str], list[str]]
# The guard's $41 to $46.
GuardParams = tuple[list[str], list[int], str | None, str | None, list[str] | None, list[str] | None]
_NO_ROWS = (None, None, None, None)


def guard(found: list[Figures], kept: KeptRows | None = None) -> GuardParams:
    """The write's $41 to $46 for the groups a decision read; `kept`: the rows a kept state rests on
    (kept.GroupState.guarded)."""
    return ([f.group_id for f in found], [f.version for f in found], *(kept or _NO_ROWS))


@functools.lru_cache(maxsize=1024)
def _limits(
    group_id: str, name: str, found: tuple[tuple[str, str, str, str | None, str], ...]
) -> tuple[groups.GroupLimit, ...]:
    """A group's limits as the read returned them, parsed once: an order decided on a kept state
    carries the same limits as the one before it (a change of them moves the group's version)."""
    return tuple(
        groups.GroupLimit(lid, group_id, name, kind, Decimal(value), symbol, Decimal(warn))
        for lid, kind, value, symbol, warn in found
    )


def _d(value: str | None) -> Decimal:
    return Decimal(value) if value is not None else Decimal(0)


async def read(apg: Any, account_id: Any, symbol: str) -> list[Figures]:
    """The account's limited groups' sums and versions, in a statement of their own."""
    return decode(await apg.fetchval(FIGURES_SQL, account_id, symbol))


async def breach(
    apg: Any, book: AccountBook, order: checks.ProposedOrder, found: list[Figures] | None = None
) -> checks.Breach | None:
    """The first group limit of the account's groups that the order would breach (groups in id order), on
    the figures `found` by the caller's read or, without them, read now."""
    if found is None:
        found = await read(apg, book.id, order.symbol)
    position = book.position(order.symbol)
    mark = book.prices.get(order.symbol) or position.avg_entry_price
    for f in found:
        figures = groups.GroupFigures(
            gross=_d(f.gross),
            net=_d(f.net),
            daily_pnl=_d(f.daily_pnl),
            open_orders=int(f.open_orders or 0),
            net_position={order.symbol: _d(f.held)},
        )
        limits = _limits(f.group_id, f.name, tuple(f.limits or ()))
        hit = groups.check_pre_trade(figures, list(limits), order, position.quantity, mark)
        if hit is not None:
            return hit
    return None
