"""The groups of contingent orders at run time: their members as one transaction changes them (`Groups`)
and the rules that move them (activation by the entry's fills, one-updates-the-other, the entry's end,
a client cancel), plus the group-aware cancel and expiry. The rules are set out in contingent.py's
docstring and docs/TRADING.md "Contingent orders and trailing stops"; matching
(matching.match_resting_orders) and the kill switch (killswitch.py) use them too.

Locks: the caller holds the group's instrument (a price update FOR UPDATE, `cancel` and `expire_groups`
FOR KEY SHARE) before `Groups.load` locks the group's rows by id; accounts come last (`apply`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert as sa_insert
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.identity.schemas import Principal
from app.domain.trading import rules
from app.domain.trading.queries import OPEN_OR_HELD as OPEN_OR_HELD_SQL
from app.domain.trading.rules import EventType
from app.domain.trading.schemas import OrderOut
from app.lib.db import tx, utcnow
from app.lib.decimals import plain
from app.lib.errors import not_found

ZERO = Decimal(0)

# ------------------------------------------------------------------------------------------------ groups

OPEN_OR_HELD = rules.OPEN_OR_HELD_STATUSES
_OPEN = rules.OPEN_STATUSES

MEMBER_COLUMNS = (
    "id, account_id, symbol, side, type, time_in_force, quantity, filled_quantity, avg_fill_price, "
    "limit_price, stop_price, triggered, status, reserved_cash, fees, client_order_id, created_at, "
    "updated_at, order_class, parent_id, leg, trail_price, trail_percent, hwm, reduce_only, notional, "
    "expires_at, version, reject_reason"
)
# Every member of the groups rooted at :roots, locked in id order (the caller holds the instrument).
_LOAD_GROUPS_SQL = text(
    f"""SELECT {MEMBER_COLUMNS} FROM orders
         WHERE id = ANY(CAST(:roots AS uuid[])) OR parent_id = ANY(CAST(:roots AS uuid[]))
         ORDER BY id FOR UPDATE"""
)
_WRITE_MEMBER_SQL = text(
    """UPDATE orders SET quantity = :quantity, filled_quantity = :filled_quantity,
                         avg_fill_price = :avg_fill_price, fees = :fees, status = :status,
                         reserved_cash = :reserved_cash, triggered = :triggered,
                         reject_reason = :reject_reason, updated_at = :updated_at
        WHERE id = :id"""
)


@dataclass(eq=False)
class Member:
    """One order of a group as this transaction changes it (the row is locked)."""

    id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    triggered: bool
    status: str
    reserved_cash: Decimal
    fees: Decimal
    client_order_id: str | None
    created_at: datetime
    updated_at: datetime
    order_class: str
    parent_id: uuid.UUID | None
    leg: str | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    hwm: Decimal | None
    reduce_only: bool
    notional: Decimal | None
    expires_at: datetime | None
    version: int
    reject_reason: str | None
    dirty: bool = False

    @property
    def root(self) -> uuid.UUID:
        return self.parent_id or self.id

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def out(self) -> OrderOut:
        return OrderOut(
            self.id,
            self.client_order_id,
            self.account_id,
            self.symbol,
            self.side,
            self.type,
            self.quantity,  # type: ignore[arg-type]
            self.filled_quantity,
            self.avg_fill_price,
            self.limit_price,
            self.stop_price,
            self.time_in_force,  # type: ignore[arg-type]
            self.status,
            self.reject_reason,
            self.fees,
            self.created_at,
            self.updated_at,
            self.order_class,  # type: ignore[arg-type]
            self.parent_id,
            self.leg,
            self.trail_price,
            self.trail_percent,
            self.hwm,
            self.reduce_only,  # type: ignore[arg-type]
            self.notional,
            self.expires_at,
            self.version,
        )

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "quantity": self.quantity,
            "filled_quantity": self.filled_quantity,
            "avg_fill_price": self.avg_fill_price,
            "fees": self.fees,
            "status": self.status,
            "reserved_cash": self.reserved_cash,
            "triggered": self.triggered,
            "reject_reason": self.reject_reason,
            "updated_at": self.updated_at,
        }


Change = tuple[
    dict[str, Any], OrderOut
]  # an order_events row (rules.event_row's keys) and the order after it


@dataclass
class Groups:
    """The groups one transaction touches, locked, as mutable members; every method returns the events
    it made, in order, and marks the members it changed (`write` stores them)."""

    members: dict[uuid.UUID, Member]
    # Each entry's filled quantity when loaded: what its legs may fill at this price (legs activated by a
    # fill act from the next price on, never at the price that filled their entry).
    entry_filled: dict[uuid.UUID, Decimal] = field(default_factory=dict)
    # The members of each group (by root), in `members`' order: a price acting on n groups asks for each
    # member's group, and a scan of every member per question cost O(n^2) (80 ms at 700 members).
    _by_root: dict[uuid.UUID, list[Member]] = field(default_factory=dict, init=False, repr=False)
    # The reservations of the members that ended (closed, or ended by the group's own rules: a leg with
    # nothing left to exit, a leg of an entry that ended unfilled), per account, until the caller takes
    # them off its accounts (`take_released`: matching's books, `apply` elsewhere).
    _released: dict[uuid.UUID, Decimal] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for m in self.members.values():
            self._by_root.setdefault(m.root, []).append(m)

    @classmethod
    async def load(cls, conn: AsyncConnection, roots: set[uuid.UUID]) -> Groups:
        rows = (await conn.execute(_LOAD_GROUPS_SQL, {"roots": list(roots)})).all()
        members = {r.id: Member(*r) for r in rows}  # (_MEMBER_COLS are Member's fields, in order)
        return cls(members, {m.id: m.filled_quantity for m in members.values() if m.leg is None})

    def release(self, m: Member) -> None:
        """`m` holds no cash any more: its reservation goes back to its account (`take_released`)."""
        if m.reserved_cash:
            self._released[m.account_id] = self._released.get(m.account_id, ZERO) + m.reserved_cash
        m.reserved_cash = ZERO

    def take_released(self) -> dict[uuid.UUID, Decimal]:
        """The cash the group's rules released since the last call, per account."""
        out, self._released = self._released, {}
        return out

    def group(self, member: Member) -> list[Member]:
        return self._by_root.get(member.root, [])

    def entry_of(self, member: Member) -> Member | None:
        if member.order_class == "oco":
            return None
        return self.members.get(member.parent_id if member.leg is not None else member.id)  # type: ignore[arg-type]

    def legs(self, member: Member) -> list[Member]:
        return [m for m in self.group(member) if m.leg is not None]

    def cap(self, leg: Member) -> Decimal:
        """What an active exit leg may fill now: its entry's fills (as loaded) minus the group's exit fills,
        never more than its own remaining quantity (an OCO: its remaining quantity, shared with its
        sibling through `reduced`)."""
        if leg.status not in _OPEN:
            return ZERO
        if leg.order_class == "oco":
            return max(leg.remaining, ZERO)
        entry = self.entry_of(leg)
        assert entry is not None
        exits = sum((m.filled_quantity for m in self.legs(leg)), ZERO)
        return max(min(self.entry_filled[entry.id] - exits, leg.remaining), ZERO)

    def _change(
        self,
        m: Member,
        etype: EventType,
        frm: str,
        now: datetime,
        *,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> Change:
        if frm != m.status:
            rules.transition(
                frm, m.status
            )  # an illegal transition is a bug: raise before anything is written
        m.dirty = True
        m.updated_at = now
        event = {
            "order_id": m.id,
            "account_id": m.account_id,
            "type": etype.value,
            "status_from": frm,
            "status_to": m.status,
            "reason": reason,
            "fill_id": None,
            "data": data,
            "created_at": now,
            "position_qty": None,
        }
        return event, m.out()

    def on_entry_fill(self, entry: Member, qty: Decimal, now: datetime) -> list[Change]:
        """The entry filled `qty` more: its open or held legs become active for it."""
        out = []
        legs = self.legs(entry)
        exits = sum((m.filled_quantity for m in legs), ZERO)
        for leg in legs:
            if leg.status in ("held", "accepted", "partially_filled"):
                frm = leg.status
                if frm == "held":
                    leg.status = "accepted"
                out.append(
                    self._change(
                        leg,
                        EventType.ACTIVATED,
                        frm,
                        now,
                        data={"quantity": plain(qty), "active_quantity": plain(entry.filled_quantity - exits)},
                    )
                )
        return out

    def on_leg_fill(self, leg: Member, qty: Decimal, now: datetime) -> list[Change]:
        """`leg` filled `qty` (already applied to it): the other open leg shrinks by as much (`reduced`);
        left with nothing to fill, it is canceled instead (a full fill cancels the other)."""
        out = []
        for other in self.legs(leg):
            if other is leg or other.status not in OPEN_OR_HELD:
                continue
            out.extend(self._shrink(other, qty, now, f"the {leg.leg} leg filled {plain(qty)}", by=leg.id))
        return out

    def _shrink(
        self, m: Member, by_qty: Decimal, now: datetime, reason: str, by: uuid.UUID | None = None
    ) -> list[Change]:
        """Lower `m`'s quantity by `by_qty`: one `reduced` event, or, when that leaves it nothing to fill,
        one `canceled` event with the same data (it keeps what it filled, and its cash goes back to its
        account). So every leg ends with an event a client waits for (`fill`, `canceled`, `expired`), never
        inside a `reduced`."""
        frm, before = m.status, m.quantity
        m.quantity = before - by_qty
        data: dict[str, Any] = {"quantity_from": plain(before), "quantity_to": plain(m.quantity)}
        if by is not None:
            data["order_id"] = str(by)
        if m.remaining > 0:
            return [self._change(m, EventType.REDUCED, frm, now, reason=reason, data=data)]
        m.status = "canceled"
        self.release(m)
        reason = f"{reason}: nothing left to exit in its group"
        return [self._change(m, EventType.CANCELED, frm, now, reason=reason, data=data)]

    def on_entry_final(self, entry: Member, now: datetime) -> list[Change]:
        """The entry ended (canceled, expired) having filled E of Q: its legs keep E (shrink by Q - E);
        with E = 0 they are canceled."""
        out = []
        short = entry.quantity - entry.filled_quantity
        for leg in self.legs(entry):
            if leg.status not in OPEN_OR_HELD or short <= 0:
                continue
            if entry.filled_quantity == 0:
                frm = leg.status
                leg.status = "canceled"
                self.release(leg)
                out.append(
                    self._change(leg, EventType.CANCELED, frm, now, reason=f"entry {entry.status} unfilled")
                )
            else:
                out.extend(self._shrink(leg, short, now, f"entry {entry.status} at its filled quantity"))
        return out

    def close(self, m: Member, to: str, etype: EventType, reason: str, now: datetime) -> list[Change]:
        """End one open or held member (canceled, expired): its events; its cash is released."""
        frm = m.status
        m.status = to
        self.release(m)
        out = [self._change(m, etype, frm, now, reason=reason)]
        if m.leg is None and m.order_class in ("bracket", "oto"):
            out.extend(self.on_entry_final(m, now))
        return out

    def cancel(self, target: Member, reason: str, now: datetime) -> list[Change]:
        """A client cancel of any open member. The entry: it ends, its legs keep what it filled. A leg: the
        whole group's open orders end with it, the entry included (a group is protected as a whole or not
        at all)."""
        if target.leg is None:
            return self.close(target, "canceled", EventType.CANCELED, reason, now)
        out: list[Change] = []
        for m in sorted(self.group(target), key=lambda m: m.leg is None):  # the legs, then the entry
            if m.status in OPEN_OR_HELD:
                reason_m = reason if m is target else f"{reason} (its group's {target.leg} leg)"
                out.extend(self.close(m, "canceled", EventType.CANCELED, reason_m, now))
        return out

    def take_dirty(self) -> list[dict[str, Any]]:
        """The rows of the members changed since the last call (`Member.row`), marked written."""
        rows = []
        for m in self.members.values():
            if m.dirty:
                rows.append(m.row())
                m.dirty = False
        return rows

    async def write(self, conn: AsyncConnection) -> None:
        rows = self.take_dirty()
        if rows:
            await conn.execute(_WRITE_MEMBER_SQL, rows)


# ----------------------------------------------------------------------------------------- cancel, expiry

_LOCK_INSTRUMENT_SQL = text("SELECT 1 FROM instruments WHERE symbol = :s FOR KEY SHARE")
_LOCK_ACCOUNT_SQL = text("SELECT id FROM accounts WHERE id = :a FOR UPDATE")
_RELEASE_SQL = text("UPDATE accounts SET reserved_cash = reserved_cash - :r, updated_at = :now WHERE id = :a")
_ROOT_SQL = text("SELECT coalesce(parent_id, id) FROM orders WHERE id = :id AND account_id = :a")


async def apply(conn: AsyncConnection, groups: Groups, changes: list[Change], now: datetime) -> None:
    """Store what `groups` changed outside matching: the members, the cash they released
    (`Groups.take_released`), their events (numbered, with the order after each) and the streams' messages
    after commit. Locks the accounts (by id) after the orders, as everywhere."""
    from app.domain.streams.events import defer_account_state
    from app.domain.streams.log import assign_seqs, defer_trade_updates, stored_order
    from app.domain.trading.models import OrderEvent

    released = groups.take_released()
    accounts = sorted({e["account_id"] for e, _ in changes} | set(released))
    for account_id in accounts:
        await conn.execute(_LOCK_ACCOUNT_SQL, {"a": account_id})
    await groups.write(conn)
    for account_id, cash in released.items():
        if cash:
            await conn.execute(_RELEASE_SQL, {"r": cash, "now": now, "a": account_id})
    if changes:
        events = [event for event, _ in changes]
        for event, state in changes:
            event["order_state"] = stored_order(state)
        owners = await assign_seqs(conn, events)
        await conn.execute(sa_insert(OrderEvent), events)
        defer_trade_updates(conn, events, owners, [state for _, state in changes])
    for account_id, cash in released.items():
        if cash:
            await defer_account_state(conn, account_id, now)


async def cancel(
    conn: AsyncConnection, principal: Principal, account_id: uuid.UUID, order_id: uuid.UUID, symbol: str
) -> list[uuid.UUID]:
    """A client cancel of a group member (`Groups.cancel`), locked instrument -> group -> account; an order
    already final raises `rules.OrderNotOpen` (grouped). The ids of the members this cancel ended."""
    from app.domain.accounts.access import ensure_may_trade, visible_owner

    async with tx(conn):
        owner = await visible_owner(conn, principal, account_id)
        ensure_may_trade(principal, owner)
        await conn.execute(_LOCK_INSTRUMENT_SQL, {"s": symbol})
        root = await conn.scalar(_ROOT_SQL, {"id": order_id, "a": account_id})
        groups = await Groups.load(conn, {root}) if root is not None else None
        target = groups.members.get(order_id) if groups is not None else None
        if target is None or groups is None:
            raise not_found("Order")
        if target.status not in OPEN_OR_HELD:
            raise rules.OrderNotOpen(target.status, grouped=True)
        now = utcnow()
        changes = groups.cancel(target, "canceled by client", now)
        await apply(conn, groups, changes, now)
    return [state.id for event, state in changes if event["type"] == EventType.CANCELED]


_EXPIRED_GROUPS_SQL = text(
    f"""SELECT DISTINCT coalesce(parent_id, id) AS root, symbol FROM orders
        WHERE expires_at <= :now AND status IN {OPEN_OR_HELD_SQL}
          AND order_class <> 'simple'
        LIMIT :batch"""
)


async def expire_groups(conn: AsyncConnection, now: datetime, batch: int = 500) -> int:
    """Expire the `day` members of groups whose session closed: per group, instrument -> group -> account.
    An entry expires first (its legs keep what it filled, or are canceled), then its open legs."""
    expired = 0
    while True:
        async with tx(conn):
            todo = (await conn.execute(_EXPIRED_GROUPS_SQL, {"now": now, "batch": batch})).all()
        for root, symbol in todo:
            async with tx(conn):
                await conn.execute(_LOCK_INSTRUMENT_SQL, {"s": symbol})
                groups = await Groups.load(conn, {root})
                changes: list[Change] = []
                for m in sorted(groups.members.values(), key=lambda m: m.leg is not None):  # the entry first
                    if m.status in OPEN_OR_HELD and m.expires_at is not None and m.expires_at <= now:
                        reason = "day order: session closed"
                        changes.extend(groups.close(m, "expired", EventType.EXPIRED, reason, now))
                        expired += 1
                await apply(conn, groups, changes, now)
        if len(todo) < batch:
            return expired
