"""Fills, round-trip accounting and exits inside bars for the portfolio engine (portfolio.py).

Vectorised over symbols: a rebalance is one batch of sells and one of buys (a Python loop only over
the buys that cash cannot fully cover), and the exits of a holding period are found by one scan over
its bars and applied as one batch. The rules are those of portfolio.py's module docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from app.domain.backtesting.exits import Exits, first_exits
from app.domain.backtesting.portfolio_model import Commission, PortfolioBars, PortfolioTrade


class Book:
    """Per-symbol position and round-trip accounting, updated a vector of fills at a time."""

    def __init__(self, bars: PortfolioBars, cash: float) -> None:
        m = bars.m
        self.bars = bars
        self.cash = cash
        self.q = np.zeros(m)
        self.avg = np.zeros(m)  # average entry price of the open position
        self.extreme = np.zeros(m)  # best price since the position opened (trailing stop)
        self.t_side = np.zeros(m)
        self.t_bar = np.zeros(m, dtype=np.int64)
        self.t_real = np.zeros(m)  # realised PnL net of fees so far
        self.t_fee = np.zeros(m)
        self.t_entry_notional = np.zeros(m)
        self.t_entry_qty = np.zeros(m)
        self.t_exit_notional = np.zeros(m)
        self.t_exit_qty = np.zeros(m)
        self.t_peak = np.zeros(m)
        self.fills = 0
        # Closed round trips, in batches: (symbols, exit bars, snapshots of their accounting, reasons).
        self.closed: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def fill(
        self,
        idx: np.ndarray,
        dq: np.ndarray,
        price: np.ndarray,
        fee: np.ndarray,
        bar: int | np.ndarray,
        reason: str | np.ndarray = "signal",
    ) -> None:
        """Apply fills of signed quantity ``dq`` at ``price`` with ``fee`` to symbols ``idx`` at ``bar``.

        ``bar`` may give one bar per fill for fills that only close positions (exits inside bars).
        """
        if idx.size == 0:
            return
        self.fills += int(idx.size)
        q = self.q[idx]
        side = np.sign(q)
        size = np.abs(dq)
        closing = np.where(side * dq < 0.0, np.minimum(size, np.abs(q)), 0.0)
        opening = size - closing
        fee_close = fee * (closing / size)
        fee_open = fee - fee_close
        self.cash -= float(np.sum(dq * price)) + float(np.sum(fee))

        # Closing part (reduce, close, or the first half of a reversal).
        c = closing > 0.0
        if np.any(c):
            ci = idx[c]
            self.t_real[ci] += side[c] * (price[c] - self.avg[ci]) * closing[c] - fee_close[c]
            self.t_fee[ci] += fee_close[c]
            self.t_exit_notional[ci] += closing[c] * price[c]
            self.t_exit_qty[ci] += closing[c]
            self.q[ci] -= side[c] * closing[c]
            # A position is closed when what is left is below rounding of its size.
            flat = np.abs(self.q[ci]) <= 1e-12 * np.maximum(np.abs(q[c]), 1e-300)
            if np.any(flat):
                fi = ci[flat]
                self.q[fi] = 0.0
                why = np.full(fi.size, reason, dtype=object) if isinstance(reason, str) else reason[c][flat]
                at = np.full(fi.size, bar) if np.ndim(bar) == 0 else np.asarray(bar)[c][flat]
                self.closed.append((fi, at, self._snapshot(fi), why))
        # Opening part (from flat, an increase, or the second half of a reversal).
        o = opening > 0.0
        if np.any(o):
            oi = idx[o]
            new = self.q[oi] == 0.0
            direction = np.sign(dq[o])
            if np.any(new):
                ni = oi[new]
                self.t_side[ni] = direction[new]
                self.t_bar[ni] = bar
                for arr in (
                    self.t_real,
                    self.t_fee,
                    self.t_entry_notional,
                    self.t_entry_qty,
                    self.t_exit_notional,
                    self.t_exit_qty,
                    self.t_peak,
                ):
                    arr[ni] = 0.0
                self.avg[ni] = 0.0
                self.extreme[ni] = self.bars.open[bar, ni]
            held = np.abs(self.q[oi])
            self.avg[oi] = (self.avg[oi] * held + price[o] * opening[o]) / (held + opening[o])
            self.q[oi] += direction * opening[o]
            self.t_real[oi] -= fee_open[o]
            self.t_fee[oi] += fee_open[o]
            self.t_entry_notional[oi] += opening[o] * price[o]
            self.t_entry_qty[oi] += opening[o]
            self.t_peak[oi] = np.maximum(self.t_peak[oi], np.abs(self.q[oi]))

    def _snapshot(self, i: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                self.t_side[i],
                self.t_bar[i].astype(np.float64),
                self.t_real[i],
                self.t_fee[i],
                self.t_entry_notional[i],
                self.t_entry_qty[i],
                self.t_exit_notional[i],
                self.t_exit_qty[i],
                self.t_peak[i],
            ],
            axis=1,
        )

    def trades(self) -> list[PortfolioTrade]:
        bars = self.bars
        ts = bars.ts
        rows: list[tuple[int, int, PortfolioTrade]] = []
        if self.closed:
            idx = np.concatenate([c[0] for c in self.closed])
            at = np.concatenate([c[1] for c in self.closed]).astype(np.int64)
            snap = np.concatenate([c[2] for c in self.closed])
            why = np.concatenate([c[3] for c in self.closed])
            t_bar = snap[:, 1].astype(np.int64)
            columns = zip(
                idx.tolist(),
                at.tolist(),
                t_bar.tolist(),
                ts[t_bar].tolist(),
                ts[at].tolist(),
                snap[:, 0].tolist(),
                snap[:, 2].tolist(),
                snap[:, 3].tolist(),
                (snap[:, 4] / snap[:, 5]).tolist(),
                (snap[:, 6] / snap[:, 7]).tolist(),
                snap[:, 4].tolist(),
                snap[:, 8].tolist(),
                why.tolist(),
                strict=True,
            )
            for (
                i,
                exit_bar,
                entry_bar,
                entry_ts,
                exit_ts,
                side,
                real,
                fee,
                entry_px,
                exit_px,
                en,
                peak,
                reason,
            ) in columns:
                trade = PortfolioTrade(
                    symbol=bars.symbols[i],
                    side="long" if side > 0 else "short",
                    quantity=peak,
                    entry_ts=entry_ts,
                    entry_price=entry_px,
                    exit_ts=exit_ts,
                    exit_price=exit_px,
                    pnl=real,
                    return_pct=real / en,
                    commission=fee,
                    is_open=False,
                    entry_bar=entry_bar,
                    exit_bar=exit_bar,
                    exit_reason=str(reason),
                )
                rows.append((entry_bar, i, trade))
        last = bars.close[-1]
        for i in np.flatnonzero(self.q != 0.0).tolist():
            side = float(self.t_side[i])
            pnl = float(self.t_real[i] + side * (last[i] - self.avg[i]) * abs(self.q[i]))
            en = float(self.t_entry_notional[i])
            rows.append(
                (
                    int(self.t_bar[i]),
                    i,
                    PortfolioTrade(
                        symbol=bars.symbols[i],
                        side="long" if side > 0 else "short",
                        quantity=float(self.t_peak[i]),
                        entry_ts=int(ts[int(self.t_bar[i])]),
                        entry_price=en / float(self.t_entry_qty[i]),
                        exit_ts=None,
                        exit_price=None,
                        pnl=pnl,
                        return_pct=pnl / en,
                        commission=float(self.t_fee[i]),
                        is_open=True,
                        entry_bar=int(self.t_bar[i]),
                        exit_bar=None,
                        exit_reason=None,
                    ),
                )
            )
        # Closed trades by exit, then open ones; ties by entry bar and symbol order: deterministic.
        return [t for _, _, t in sorted(rows, key=lambda r: (r[2].is_open, r[2].exit_bar or 0, r[0], r[1]))]


def rebalance(
    book: Book,
    bar: int,
    w: np.ndarray,
    *,
    commission: Commission,
    slip: float,
    whole_units: bool,
    lot: np.ndarray,
    leverage: float,
) -> None:
    """Trade to target weights ``w`` (NaN = leave as is) at ``bar``'s open: sells, then buys.

    Buys may spend cash down to ``-(leverage - 1) * V`` (borrowing; none without leverage). An
    exhausted portfolio (V <= 0: a leveraged position gapping through its equity, fees above it) targets
    nothing, the positions a decision would leave alone included: they are closed as far as cash allows
    and nothing is bought. (Targets ``w * V / open`` with a negative V would turn a long weight into a
    short position, and borrow against a debt.)
    """
    o = book.bars.open[bar]
    value = book.cash + float(book.q @ o)
    if value <= 0.0:
        value, w = 0.0, np.zeros_like(w)
    keep = np.isnan(w)
    target = np.where(keep, book.q, np.where(keep, 0.0, w) * value / o)
    if whole_units:
        target = np.where(keep, target, np.sign(target) * np.floor(np.abs(target) / lot) * lot)
    delta = target - book.q
    sells = np.flatnonzero(delta < 0.0)
    if sells.size:
        price = o[sells] * (1.0 - slip)
        book.fill(sells, delta[sells], price, commission.fee(-delta[sells] * price), bar)
    buys = np.flatnonzero(delta > 0.0)
    if buys.size == 0:
        return
    price = o[buys] * (1.0 + slip)
    want = delta[buys]
    cost = want * price + commission.fee(want * price)
    credit = (leverage - 1.0) * value
    over = np.flatnonzero(np.cumsum(cost) > book.cash + credit)
    full = buys.size if over.size == 0 else int(over[0])
    if full:
        book.fill(buys[:full], want[:full], price[:full], commission.fee(want[:full] * price[:full]), bar)
    # What cash cannot cover, one symbol at a time in symbol order (usually only the last buy or two).
    for k in range(full, buys.size):
        qty = min(float(want[k]), commission.max_notional(book.cash + credit) / float(price[k]))
        if whole_units:
            qty = math.floor(qty / float(lot[buys[k]])) * float(lot[buys[k]])
        if qty <= 0.0:
            continue
        one = np.array([qty])
        book.fill(buys[k : k + 1], one, price[k : k + 1], commission.fee(one * price[k]), bar)


def scan_exits(
    book: Book, a: int, b: int, exits: Exits, slip: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First exit bar in [a, b) of every open position: (symbols, bars, prices, reasons).

    Updates ``book.extreme`` for the positions that survive the segment.
    """
    cols = np.flatnonzero(book.q != 0.0)
    if cols.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0), np.empty(0, dtype=object)
    bars = book.bars
    hits = first_exits(
        bars.open[a:b, cols],
        bars.high[a:b, cols],
        bars.low[a:b, cols],
        np.sign(book.q[cols]),
        book.avg[cols],
        book.extreme[cols],
        exits,
        slip,
    )
    survivors = np.ones(cols.size, dtype=bool)
    survivors[hits.cols] = False
    book.extreme[cols[survivors]] = hits.extreme[survivors]
    return cols[hits.cols], a + hits.rows, hits.price, hits.reason


def run_exits(
    book: Book,
    a: int,
    b: int,
    exits: Exits,
    slip: float,
    commission: Commission,
    record: Callable[..., None],
    blocked: np.ndarray,
    *,
    block: bool,
) -> None:
    """Close every position whose exit level is reached in [a, b): one batch of fills, then the cash
    and quantities after each exit bar recorded for the equity curve."""
    sym, bar, price, reason = scan_exits(book, a, b, exits, slip)
    if sym.size == 0:
        return
    order = np.lexsort((sym, bar))
    sym, bar, price, reason = sym[order], bar[order], price[order], reason[order]
    held = book.q[sym].copy()
    fee = commission.fee(np.abs(held) * price)
    cash = book.cash + np.cumsum(held * price - fee)  # cash after each fill, in bar order
    book.fill(sym, -held, price, fee, bar, reason)
    book.cash = float(cash[-1])
    # Each position exits once per segment, so the quantities after exit bar k are the final ones
    # with the positions that exit later still held.
    ends = np.append(np.flatnonzero(bar[1:] != bar[:-1]), bar.size - 1)
    for end in ends.tolist():
        q = book.q.copy()
        q[sym[end + 1 :]] = held[end + 1 :]
        record(int(bar[end]), q, float(cash[end]))
    if block:
        blocked[sym] = True
