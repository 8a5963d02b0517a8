"""The backtest report: one self-contained HTML page (no CDN, no external file, no library).

Charts are inline SVG built here on the server from the stored (downsampled) equity curve, so the page
renders the same in any browser, in an e-mail attachment or offline. The only script is a small static
one that checks the charts were laid out and leaves a marker element (`#render-status`) that automated
checks read; it is allowed by its hash in the Content-Security-Policy, so nothing else can run.

Numbers on the page are rounded for reading; the API endpoints give exact values.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from app.domain.backtesting.schemas import MONEY_METRICS, BacktestOut
from app.lib.decimals import plain

WIDTH = 1200
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 78, 16, 14, 26
MAX_MARKERS = 1_000
MAX_TRADE_ROWS = 200
COLORS = {"price": "#444b55", "equity": "#1f6fd0", "drawdown": "#d0342c", "buy": "#1a9a3a", "sell": "#d0342c"}

RENDER_SCRIPT = """(function () {
  var charts = document.querySelectorAll("svg[data-chart]");
  var drawn = 0, detail = [];
  for (var i = 0; i < charts.length; i++) {
    var series = charts[i].querySelector(".series");
    if (!series) { continue; }
    var box = series.getBBox();
    var length = series.getTotalLength();
    if (length > 0 && box.width > 0) { drawn++; }
    var size = Math.round(box.width) + "x" + Math.round(box.height);
    detail.push(charts[i].getAttribute("data-chart") + ":" + size);
  }
  var marker = document.createElement("div");
  marker.id = "render-status";
  marker.hidden = true;
  marker.setAttribute("data-charts", String(charts.length));
  marker.setAttribute("data-drawn", String(drawn));
  marker.setAttribute("data-markers", String(document.querySelectorAll(".trade-marker").length));
  marker.setAttribute("data-detail", detail.join(" "));
  document.body.appendChild(marker);
  document.body.setAttribute("data-rendered", drawn > 0 && drawn === charts.length ? "true" : "false");
})();"""

SCRIPT_HASH = base64.b64encode(hashlib.sha256(RENDER_SCRIPT.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{SCRIPT_HASH}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       background: #ffffff; margin: 0; padding: 24px 32px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.sub { color: #5a6270; margin-bottom: 16px; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #e6effa; }
svg { display: block; width: 100%; max-width: 1200px; height: auto; background: #fbfcfe;
      border: 1px solid #e3e7ee; border-radius: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #5a6270; }
.grid line { stroke: #e8ebf1; } .axis { stroke: #aeb5c0; }
table { border-collapse: collapse; margin-top: 4px; }
td, th { padding: 3px 12px 3px 0; text-align: left; vertical-align: top; }
th { color: #5a6270; font-weight: 500; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cols { display: flex; flex-wrap: wrap; gap: 48px; }
.pos { color: #1a7a32; } .neg { color: #b02a22; }
.legend span { margin-right: 16px; } .legend i { display: inline-block; width: 10px; height: 10px;
  margin-right: 4px; vertical-align: -1px; }
"""

_PERCENT = {
    "total_return",
    "cagr",
    "annual_volatility",
    "max_drawdown",
    "var_95",
    "cvar_95",
    "var_99",
    "cvar_99",
    "best_period",
    "worst_period",
    "win_rate",
    "exposure_pct",
}
METRIC_ORDER = (
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration",
    "var_95",
    "cvar_95",
    "var_99",
    "cvar_99",
    "skew",
    "kurtosis",
    "best_period",
    "worst_period",
    "periods",
    "trades",
    "open_trades",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_win",
    "avg_loss",
    "exposure_pct",
    "initial_cash",
    "final_equity",
)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(x: float, digits: int = 2) -> str:
    if not math.isfinite(x):
        return "–"
    if x != 0 and abs(x) < 1:  # significant digits, in plain notation ("0.0000011", never "1.1e-06")
        d = Decimal(repr(x))
        return plain(d.quantize(Decimal(1).scaleb(d.adjusted() - max(digits, 4) + 1)).normalize())
    return f"{x:,.{digits}f}"


def format_metric(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in MONEY_METRICS:
        return num(float(value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    x = float(value)
    if key in _PERCENT:
        return f"{x * 100:.2f}%"
    return f"{x:.3f}"


def date_label(ts: int, intraday: bool) -> str:
    dt = datetime.fromtimestamp(int(ts), UTC)
    return dt.strftime("%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d")


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


class Frame:
    """Maps data coordinates to one chart's SVG pixels."""

    def __init__(self, height: int, t0: float, t1: float, lo: float, hi: float) -> None:
        if hi <= lo:  # a flat series still gets a visible band around it
            pad = abs(lo) * 0.01 or 1.0
            lo, hi = lo - pad, hi + pad
        else:
            pad = (hi - lo) * 0.05
            lo, hi = lo - pad, hi + pad
        self.height, self.t0, self.t1, self.lo, self.hi = height, t0, t1, lo, hi
        self.x0, self.x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
        self.y0, self.y1 = MARGIN_TOP, height - MARGIN_BOTTOM

    def x(self, t: np.ndarray | float) -> np.ndarray | float:
        span = (self.t1 - self.t0) or 1.0
        return self.x0 + (np.asarray(t, dtype=np.float64) - self.t0) / span * (self.x1 - self.x0)

    def y(self, v: np.ndarray | float) -> np.ndarray | float:
        return self.y1 - (np.asarray(v, dtype=np.float64) - self.lo) / (self.hi - self.lo) * (
            self.y1 - self.y0
        )


def svg_path(xs: np.ndarray, ys: np.ndarray) -> str:
    pts = [f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True)]
    if len(pts) == 1:  # one point: a short horizontal stub so the series is visible
        x, y = float(xs[0]), float(ys[0])
        pts = [f"{x - 2:.1f},{y:.1f}", f"{x + 2:.1f},{y:.1f}"]
    return "M" + " L".join(pts)


def axes(f: Frame, ts: np.ndarray, intraday: bool, fmt: Any) -> str:
    out = ['<g class="grid">']
    for v in _nice_ticks(f.lo, f.hi):
        y = float(f.y(v))
        out.append(f'<line x1="{f.x0}" x2="{f.x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(f'<text x="{f.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(fmt(v))}</text>')
    out.append("</g>")
    n_labels = 6
    for i in range(n_labels):
        t = f.t0 + (f.t1 - f.t0) * i / (n_labels - 1)
        x = float(f.x(t))
        anchor = "start" if i == 0 else ("end" if i == n_labels - 1 else "middle")
        label = esc(date_label(int(t), intraday))
        out.append(f'<text x="{x:.1f}" y="{f.height - 8}" text-anchor="{anchor}">{label}</text>')
    out.append(f'<line class="axis" x1="{f.x0}" x2="{f.x1}" y1="{f.y1}" y2="{f.y1}"/>')
    out.append(f'<line class="axis" x1="{f.x0}" x2="{f.x0}" y1="{f.y0}" y2="{f.y1}"/>')
    return "".join(out)


def svg(name: str, height: int, label: str, body: str) -> str:
    return (
        f'<svg data-chart="{name}" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _triangle(x: float, y: float, up: bool, size: float = 6.0) -> str:
    if up:  # a buy: pointing up, drawn just below the fill price
        return f"{x:.1f},{y:.1f} {x - size:.1f},{y + size * 1.6:.1f} {x + size:.1f},{y + size * 1.6:.1f}"
    return f"{x:.1f},{y:.1f} {x - size:.1f},{y - size * 1.6:.1f} {x + size:.1f},{y - size * 1.6:.1f}"


def _sample(items: list[Any], limit: int) -> list[Any]:
    if len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in np.unique(idx)]


def price_chart(ts: np.ndarray, close: np.ndarray, trades: list[dict[str, Any]], intraday: bool) -> str:
    height = 330
    lo, hi = float(close.min()), float(close.max())
    for t in trades:
        for key in ("entry_price", "exit_price"):
            if t.get(key) is not None:
                lo, hi = min(lo, float(t[key])), max(hi, float(t[key]))
    f = Frame(height, float(ts[0]), float(ts[-1]), lo, hi)
    body = [axes(f, ts, intraday, num)]
    body.append(
        f'<path class="series" d="{svg_path(f.x(ts), f.y(close))}" fill="none" stroke="{COLORS["price"]}" '
        'stroke-width="1.5" stroke-linejoin="round"/>'
    )
    for t in _sample(trades, MAX_MARKERS):
        long = t["side"] == "long"
        legs = [("entry", t["entry_ts"], t["entry_price"], long)]
        if t.get("exit_ts") is not None:
            legs.append(("exit", t["exit_ts"], t["exit_price"], not long))
        for leg, when, price, is_buy in legs:
            x, y = float(f.x(when)), float(f.y(price))
            color = COLORS["buy"] if is_buy else COLORS["sell"]
            tip = f"{t['side']} {leg} {date_label(when, intraday)} @ {num(float(price), 4)}"
            body.append(
                f'<polygon class="trade-marker" points="{_triangle(x, y, is_buy)}" fill="{color}" '
                f'fill-opacity="0.85"><title>{esc(tip)}</title></polygon>'
            )
    return svg("price", height, "Close price with trade entries and exits", "".join(body))


def equity_chart(ts: np.ndarray, equity: np.ndarray, initial_cash: float, intraday: bool) -> str:
    height = 280
    lo, hi = min(float(equity.min()), initial_cash), max(float(equity.max()), initial_cash)
    f = Frame(height, float(ts[0]), float(ts[-1]), lo, hi)
    y_base = float(f.y(initial_cash))
    body = [
        axes(f, ts, intraday, num),
        f'<line x1="{f.x0}" x2="{f.x1}" y1="{y_base:.1f}" y2="{y_base:.1f}" stroke="#9aa3b0" '
        'stroke-dasharray="4 4"/>',
        f'<path class="series" d="{svg_path(f.x(ts), f.y(equity))}" fill="none" stroke="{COLORS["equity"]}" '
        'stroke-width="2" stroke-linejoin="round"/>',
    ]
    return svg("equity", height, "Equity curve", "".join(body))


def drawdown_chart(ts: np.ndarray, drawdown: np.ndarray, intraday: bool) -> str:
    height = 190
    f = Frame(height, float(ts[0]), float(ts[-1]), min(float(drawdown.min()), -0.01), 0.0)
    xs, ys = f.x(ts), f.y(drawdown)
    zero = float(f.y(0.0))
    area = svg_path(xs, ys) + f" L{float(xs[-1]):.1f},{zero:.1f} L{float(xs[0]):.1f},{zero:.1f} Z"
    body = [
        axes(f, ts, intraday, lambda v: f"{v * 100:.0f}%"),
        f'<path d="{area}" fill="{COLORS["drawdown"]}" fill-opacity="0.18" stroke="none"/>',
        f'<path class="series" d="{svg_path(xs, ys)}" fill="none" stroke="{COLORS["drawdown"]}" '
        'stroke-width="1.5"/>',
    ]
    return svg("drawdown", height, "Drawdown from the running peak", "".join(body))


def table(rows: list[tuple[str, str]], numeric: bool = True) -> str:
    cls = ' class="num"' if numeric else ""
    body = "".join(f"<tr><th>{esc(k)}</th><td{cls}>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _trades_table(trades: list[dict[str, Any]], intraday: bool) -> str:
    shown = trades[-MAX_TRADE_ROWS:][::-1]
    head = (
        "<tr><th>#</th><th>side</th><th>entry</th><th>entry price</th><th>exit</th><th>exit price</th>"
        "<th>quantity</th><th>PnL</th><th>return</th></tr>"
    )
    rows = []
    offset = len(trades) - 1
    for i, t in enumerate(shown):
        pnl = float(t["pnl"])
        exit_ts = date_label(t["exit_ts"], intraday) if t.get("exit_ts") is not None else "open"
        exit_px = num(float(t["exit_price"]), 4) if t.get("exit_price") is not None else "–"
        rows.append(
            f"<tr><td>{offset - i + 1}</td><td>{esc(t['side'])}</td>"
            f"<td>{date_label(t['entry_ts'], intraday)}</td>"
            f'<td class="num">{num(float(t["entry_price"]), 4)}</td><td>{exit_ts}</td>'
            f'<td class="num">{exit_px}</td><td class="num">{num(float(t["quantity"]), 4)}</td>'
            f'<td class="num {"pos" if pnl > 0 else "neg" if pnl < 0 else ""}">{num(pnl)}</td>'
            f'<td class="num">{float(t["return_pct"]) * 100:.2f}%</td></tr>'
        )
    note = (
        f'<p class="sub">Latest {len(shown)} of {len(trades)} trades.</p>' if len(trades) > len(shown) else ""
    )
    return f"{note}<table>{head}{''.join(rows)}</table>"


def render_report(bt: BacktestOut, stored: dict[str, Any], trades: list[dict[str, Any]]) -> str:
    """The HTML page for a completed backtest. `stored` is the backtest_results.equity document
    (ts, equity, close: the downsampled curve) and `trades` the stored trade list."""
    ts = np.asarray(stored["ts"], dtype=np.int64)
    equity = np.asarray(stored["equity"], dtype=np.float64)
    close = np.asarray(stored.get("close") or stored["equity"], dtype=np.float64)
    intraday = bt.timeframe != "1d"
    peak = np.maximum.accumulate(equity)
    drawdown = np.minimum(np.where(peak > 0, equity / np.where(peak > 0, peak, 1.0) - 1.0, 0.0), 0.0)

    metrics = bt.metrics or {}
    ordered = [k for k in METRIC_ORDER if k in metrics] + sorted(k for k in metrics if k not in METRIC_ORDER)
    metric_rows = [(k.replace("_", " "), format_metric(k, metrics[k])) for k in ordered]
    half = (len(metric_rows) + 1) // 2
    param_rows = [(k, msgspec.json.encode(v).decode()) for k, v in sorted(bt.params.items())]
    setup_rows = [
        ("strategy", bt.strategy),
        ("symbol", bt.symbol),
        ("timeframe", bt.timeframe),
        ("bars", f"{int(stored.get('bars', ts.size)):,}"),
        ("from", date_label(int(ts[0]), intraday) if ts.size else "–"),
        ("to", date_label(int(ts[-1]), intraday) if ts.size else "–"),
        ("initial cash", plain(bt.initial_cash)),
        ("commission", plain(bt.commission)),
        ("slippage (bps)", str(bt.slippage_bps)),
        *[
            (name.replace("_pct", " (%)").replace("_", " "), f"{level:g}")
            for name, level in (bt.exits or {}).items()
            if level is not None
        ],
        ("periods per year", str(metrics.get("periods_per_year", bt.periods_per_year or "–"))),
        ("input hash", (bt.input_hash or "")[:16] + "…"),
        ("run time", f"{bt.run_seconds:.2f} s" if bt.run_seconds is not None else "–"),
    ]
    title = f"Backtest {bt.strategy} on {bt.symbol} {bt.timeframe}"
    finished = bt.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC") if bt.finished_at else "–"
    param_rows = param_rows or [("parameters", "none")]
    charts = ""
    if ts.size:
        charts = (
            "<h2>Price and trades</h2>"
            f'<div class="legend"><span><i style="background:{COLORS["buy"]}"></i>buy</span>'
            f'<span><i style="background:{COLORS["sell"]}"></i>sell</span></div>'
            + price_chart(ts, close, trades, intraday)
            + "<h2>Equity</h2>"
            + equity_chart(ts, equity, float(bt.initial_cash), intraday)
            + "<h2>Drawdown</h2>"
            + drawdown_chart(ts, drawdown, intraday)
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f'<div class="sub">Backtest <code>{esc(bt.id)}</code> · '
        f'<span class="status">{esc(bt.status)}</span> · finished {esc(finished)}</div>'
        f"{charts}"
        '<h2>Metrics</h2><div class="cols">'
        f"{table(metric_rows[:half])}{table(metric_rows[half:])}</div>"
        '<h2>Setup</h2><div class="cols">'
        f"{table(setup_rows, numeric=False)}{table(param_rows, numeric=False)}</div>"
        f"<h2>Trades</h2>{_trades_table(trades, intraday)}"
        f"<script>{RENDER_SCRIPT}</script>"
        "</body></html>"
    )
