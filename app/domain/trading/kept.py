"""What placement keeps between the orders of an account: the state its last write left (a group's sums
included) and the hints that route its next order.

A kept state lets the next order of the account be decided without a read and written in one round trip;
the write applies only if everything the decision rests on is unchanged (placement.py's WRITE_SQL: the
account, instrument and exchange rows; group_pretrade.GUARD_CTE: the limited groups' versions and the
digest of their members' account rows and of the instruments they hold), so a kept state can be stale
but an order is never written on stale state. This module is pure: the database work is placement's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Any

import msgspec

from app.domain.risk import group_pretrade
from app.domain.risk.group_pretrade import Figures

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
    parts: dict[str, str]  # 'a<account id>' or 'i<symbol>' -> row version (xmin)

    @classmethod
    def of(cls, figures: Any, members: Any) -> GroupState | None:
        """The state a read returned (`group_figures`, `group_members` columns), or a kept one as it is."""
        if isinstance(figures, list) and isinstance(members, dict):
            return cls(figures, members)
        if figures is None or members is None:
            return None
        found = group_pretrade.decode(figures) if isinstance(figures, str) else figures
        parts = {}
        for part in members:
            key, _, version = part.rpartition(":")
            parts[key] = version
        return cls(found, parts)

    def digest(self) -> str:
        return group_pretrade.members_digest([f"{k}:{v}" for k, v in self.parts.items()])

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
        parts = dict(self.parts)
        parts[f"a{account_id}"] = account_version
        if after is not None:
            parts.setdefault(f"i{symbol}", instrument_version)
        return GroupState(figures, parts)


def _plus(value: str | None, delta: Decimal, computed: bool) -> str | None:
    if value is None or not computed or not delta:
        return value
    return str(_EXACT.add(Decimal(value), delta))
