"""What placement keeps between the orders of an account: the state its last write left (a group's sums
included) and the hints that route its next order, in one object per app (`PlacementCaches`, built
with the app's resources: app/server/app.py; a test or a benchmark builds its own).

A kept state lets the next order of the account be decided without a read and written in one round trip;
the write applies only if everything the decision rests on is unchanged (placement.py's WRITE_SQL: the
account, instrument and exchange rows; group_pretrade.GUARD_CTE: the limited groups' versions and the
versions of the instruments their members hold and of their members' accounts with open orders), so a
kept state can be stale but an order written on it was decided on what its write statement saw. No
database work here: that is placement's (and contingent.py's for groups of orders).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

import msgspec

from app.domain.risk import group_pretrade
from app.domain.risk.group_pretrade import Figures
from app.domain.trading.schemas import OrderCreate

# The sums of positions, computed by the read only when one of these limits is enabled (FIGURES_SQL).
_POSITION_KINDS = frozenset({"max_gross_exposure", "max_net_exposure", "max_daily_loss", "max_net_position"})
# A group whose sums rest on more rows than this is read every time: the guard would scan them all.
MAX_GROUP_PARTS = 512
# PostgreSQL's numeric sums are exact; so are these at any realistic size.
_EXACT = Context(prec=100)


@dataclass(frozen=True, slots=True)
class GroupState:
    """An account's limited groups as of the last write in them: the sums and versions the next order
    is decided on, and the parts (group_pretrade.members_column) the guard compares."""

    figures: list[Figures]
    # 'a<account id>' or 'i<symbol>' -> row version (xmin); 'o<account id>' -> '' for a member with open
    # or held orders, whose row the guard compares (group_pretrade.members_column says why only those).
    parts: dict[str, str]
    # Derived from `parts` once and carried from state to state (`rows`); along a chain of kept states the
    # compared accounts keep their order and place in the rows (an account whose order rests is added at
    # the end).
    _rows: tuple[list[str], list[str], list[str], list[str]] | None = field(default=None, compare=False)
    _members: tuple[str, dict[str, int]] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, figures: Any, members: Any) -> GroupState | None:
        """The state a read returned (`group_figures`, `group_members` columns)."""
        if figures is None or members is None:
            return None
        found = group_pretrade.decode(figures) if isinstance(figures, str) else figures
        parts = {}
        for part in members:
            key, _, version = part.rpartition(":")
            if key:
                parts[key] = version
            else:
                parts[part] = ""  # ('o<account id>': no version)
        return cls(found, parts)

    def rows(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """The rows the guard compares: the ids and row versions of the member accounts with open or held
        orders, the held symbols and their instruments' row versions. Computed once per chain of states."""
        if self._rows is None:
            accounts, account_versions, symbols, symbol_versions = [], [], [], []
            for key, version in self.parts.items():
                if key[0] == "a":
                    if "o" + key[1:] in self.parts:
                        accounts.append(key[1:])
                        account_versions.append(version)
                elif key[0] == "i":
                    symbols.append(key[1:])
                    symbol_versions.append(version)
            object.__setattr__(self, "_rows", (accounts, account_versions, symbols, symbol_versions))
            object.__setattr__(self, "_members", (",".join(accounts), {a: i for i, a in enumerate(accounts)}))
        assert self._rows is not None
        return self._rows

    def guarded(self) -> group_pretrade.KeptRows:
        """The rows as the guard takes them (group_pretrade.guard's `kept`): the accounts and their versions
        comma-joined (two texts: asyncpg checks every element of an array parameter against the abstract
        Sequence, ~0.6 us each, which for a group of 32 was most of the Python a group order adds), the
        symbols and their versions as arrays."""
        _, versions, symbols, symbol_versions = self.rows()
        assert self._members is not None
        return self._members[0], ",".join(versions), symbols, symbol_versions

    def current_for(self, account_id: Any, row_version: str) -> bool:
        """Whether this state was taken with the account's row as the caller knows it."""
        return self.parts.get(f"a{account_id}") == row_version

    def after(
        self, account_id: Any, account_version: str, symbol: str, instrument_version: str,
        before: tuple[Decimal, Decimal], after: tuple[Decimal, Decimal] | None, last_price: Decimal | None,
        rests: bool,
    ) -> GroupState | None:
        """The state once the account's order in `symbol` is written: every group's version moved by the
        guard; the account's position (quantity, average entry price) `before` -> `after` (None: no fill)
        in the gross, net and per-symbol sums; one more open order if it `rests`; the account's new row
        version, and the instrument if the fill created its first position row. None when the groups carry
        a daily-loss limit: the day's opening equity is no row's version (the calendar and the snapshot
        job move it), so such groups are read every time."""
        kinds = {limit[1] for f in self.figures for limit in f.limits or ()}
        if "max_daily_loss" in kinds or len(self.parts) >= MAX_GROUP_PARTS:
            return None
        positions = bool(kinds & _POSITION_KINDS)
        d_gross = d_net = d_held = Decimal(0)
        if after is not None and positions:
            (q0, avg0), (q1, avg1) = before, after
            v0 = _EXACT.multiply(q0, last_price if last_price is not None else avg0)
            v1 = _EXACT.multiply(q1, last_price if last_price is not None else avg1)
            d_gross = _EXACT.subtract(abs(v1), abs(v0))
            d_net = _EXACT.subtract(v1, v0)
            d_held = _EXACT.subtract(q1, q0)
        figures = [
            msgspec.structs.replace(
                f,
                version=f.version + 1,
                gross=_plus(f.gross, d_gross, positions),
                net=_plus(f.net, d_net, positions),
                held=_plus(f.held, d_held, positions),
                open_orders=None if f.open_orders is None else str(int(f.open_orders) + rests),
            )
            for f in self.figures
        ]
        if f"a{account_id}" not in self.parts:
            return None  # (not a member as these parts have it: nothing to keep)
        parts = dict(self.parts)
        parts[f"a{account_id}"] = account_version
        # The next order's rows from these: a compared account's version moved, or the account added to
        # them if its order rests (a fill or a cancel of it will move no group row), perhaps one symbol
        # more.
        accounts, versions, symbols, symbol_versions = self.rows()
        members = self._members
        assert members is not None
        place = members[1].get(str(account_id))
        if place is not None:
            versions = list(versions)
            versions[place] = account_version
        elif rests:
            parts[f"o{account_id}"] = ""
            accounts, versions = [*accounts, str(account_id)], [*versions, account_version]
            members = (",".join(accounts), {**members[1], str(account_id): len(accounts) - 1})
        if after is not None and f"i{symbol}" not in self.parts:
            parts[f"i{symbol}"] = instrument_version
            symbols, symbol_versions = [*symbols, symbol], [*symbol_versions, instrument_version]
        return GroupState(figures, parts, (accounts, versions, symbols, symbol_versions), members)


def _plus(value: str | None, delta: Decimal, computed: bool) -> str | None:
    if value is None or not computed or not delta:
        return value
    return str(_EXACT.add(Decimal(value), delta))


# ------------------------------------------------------------------------------------------------ caches

# The state an account's last optimistic write left behind: its next order is decided on it and written
# directly, one round trip instead of two. Sound for the same reason the optimistic path is: the write
# applies only if the account row, the instrument row and the exchange row are still the versions the
# decision used, and everything the decision reads is on those rows or changes them (fills, placements,
# cash releases, trading-state and risk-limit changes all update the account row; prices, halts, tick and
# lot changes the instrument row; fees and sessions the exchange row). What no version covers is left
# out, so such accounts read as before:
# - other instruments' prices (equity): only accounts with no open position in another symbol are kept;
# - the order counts and limits that risk checks read: only accounts without enabled limits (lean read);
# - the open sell quantity of a long-only account, which a cancel lowers: a stale value can only be too
#   high, so it can only reject, and every rejection (any 4xx) is decided again on a fresh read. Likewise
#   a client_order_id already used (the write hits the unique index and writes nothing): the fresh read
#   answers with the replay or the 409.
# A write that finds a version changed writes nothing; the order then goes the usual way (read, decide,
# write). An entry is used once (popped) and replaced by the write it made. Bounded; only a hint.
#
# An account under group limits is kept too, with its limited groups' sums as its write left them
# (`group_states`, per group and symbol, shared by the group's accounts: GroupState). Its write applies
# only if, besides its own rows, the groups' versions (moved by every order in them and by every change
# of their limits or members) and the row versions of the instruments the members hold (moved by every
# price) and of the members' accounts with open or held orders (moved by every fill, cancel, expiry and
# release of one) are those the decision used (group_pretrade.GUARD_CTE). Groups with a daily-loss limit are read every time
# (GroupState.after).
SNAPSHOT_LIMIT = 10_000
HINT_LIMIT = 10_000

# Accounts whose optimistic write lost a race recently. Many clients hammering ONE account would mostly
# lose (each write changes the version the others read), paying an unlocked read and a void write
# before their locked retry; for a while they go straight to the locked path instead, where they queue
# on the row lock. Only a hint: either path is correct.
CONTENTION_SECONDS = 2.0
# Accounts whose lean read found enabled risk limits recently read the full book at once instead of a
# lean read and then the full one; accounts whose read found group limits recently queue on their
# group's gate at once and read their groups' sums with the book. Only hints: a lean read reports limits
# that exist in its own snapshot, and a limit added after the read changes the account row, so the
# optimistic write fails and the locked path (always the full book) decides again; the group read says
# whether the account is still under group limits.
LIMITED_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    symbol: str
    row: dict[str, Any]  # what placement's LEAN_READ_SQL would return now for an order in `symbol`

    def fits(self, data: OrderCreate) -> bool:
        return data.symbol == self.symbol and (data.side == "buy" or self.row["open_sell_quantity"] is not None)


class PlacementCaches:
    """Placement's per-process state between orders: kept snapshots and group states, and the hints
    (contended, limited, grouped accounts; the groups' gates). Every entry is only a hint or guarded by
    the write, so an empty object (a new process, a test's own) is always correct. Bounded."""

    __slots__ = ("snapshots", "group_states", "contended", "limited", "grouped", "gates")

    def __init__(self) -> None:
        self.snapshots: dict[uuid.UUID, Snapshot] = {}
        self.group_states: dict[tuple[Any, str], GroupState] = {}
        self.contended: dict[uuid.UUID, float] = {}
        self.limited: dict[uuid.UUID, float] = {}
        self.grouped: dict[uuid.UUID, tuple[float, Any]] = {}  # (until, the account's group)
        # Orders of accounts under a group limit are serial per group: each committed one moves the
        # group's version, so of the orders of one group decided on the same read only the first can
        # commit, and on the locked path they queue on the group row. Queued here first, one order per
        # process and group reads and writes at a time, and its guarded write loses only to another
        # process. Only a queue: the database (version test, row lock) is what guarantees the limit. Keyed
        # by the account's own group (accounts of sibling groups under one limited parent meet in the
        # database only).
        self.gates: dict[Any, asyncio.Lock] = {}

    def take_snapshot(self, account_id: uuid.UUID) -> Snapshot | None:
        return self.snapshots.pop(account_id, None)

    def keep_snapshot(self, account_id: uuid.UUID, snapshot: Snapshot) -> None:
        if len(self.snapshots) >= SNAPSHOT_LIMIT:
            del self.snapshots[next(iter(self.snapshots))]  # the oldest entry
        self.snapshots[account_id] = snapshot

    def forget_open_sells(self, account_id: uuid.UUID) -> None:
        """The account's open sells grew by orders the kept count does not have: its sells read again."""
        snapshot = self.snapshots.get(account_id)
        if snapshot is not None:
            snapshot.row["open_sell_quantity"] = None

    def take_group_state(self, group_id: Any, symbol: str) -> GroupState | None:
        return self.group_states.pop((group_id, symbol), None)

    def keep_group_state(self, group_id: Any, symbol: str, state: GroupState) -> None:
        if len(self.group_states) >= SNAPSHOT_LIMIT:
            del self.group_states[next(iter(self.group_states))]
        self.group_states[(group_id, symbol)] = state

    def is_contended(self, account_id: uuid.UUID) -> bool:
        return hinted(self.contended, account_id)

    def mark_contended(self, account_id: uuid.UUID) -> None:
        self.contended[account_id] = time.monotonic() + CONTENTION_SECONDS

    def is_limited(self, account_id: uuid.UUID) -> bool:
        return hinted(self.limited, account_id)

    def mark_limited(self, account_id: uuid.UUID) -> None:
        self.limited[account_id] = time.monotonic() + LIMITED_SECONDS

    def group_of(self, account_id: uuid.UUID) -> Any | None:
        """The group of an account recently found under group limits (None: not hinted)."""
        hint = self.grouped.get(account_id)
        return hint[1] if hint is not None and hint[0] > time.monotonic() else None

    def mark_grouped(self, account_id: uuid.UUID, group_id: Any) -> None:
        if len(self.grouped) >= HINT_LIMIT:
            self.grouped.clear()  # only hints
        self.grouped[account_id] = (time.monotonic() + LIMITED_SECONDS, group_id)

    def unmark_grouped(self, account_id: uuid.UUID) -> None:
        self.grouped.pop(account_id, None)

    def gate(self, group_id: Any) -> asyncio.Lock:
        gate = self.gates.get(group_id)
        if gate is None:
            if len(self.gates) >= HINT_LIMIT:
                for key in [k for k, g in self.gates.items() if not g.locked()]:
                    del self.gates[key]
            gate = self.gates[group_id] = asyncio.Lock()
        return gate


def hinted(hints: dict[uuid.UUID, float], account_id: uuid.UUID) -> bool:
    until = hints.get(account_id)
    if until is None:
        return False
    if until > time.monotonic():
        return True
    del hints[account_id]
    if len(hints) > HINT_LIMIT:  # drop expired entries of accounts that went quiet
        now = time.monotonic()
        for key in [k for k, t in hints.items() if t <= now]:
            del hints[key]
    return False
