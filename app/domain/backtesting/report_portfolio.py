"""The portfolio tear sheet and the 2-parameter sweep heatmap: self-contained HTML like report.py.

Same rules as the single-backtest report (inline SVG built here, no CDN, the one hashed render-check
script, `SECURITY_HEADERS`): equity against the benchmark, underwater (drawdown), monthly returns as a
heatmap, rolling Sharpe ratio, exposure per symbol (the largest few, the rest summed), and for sweeps
over two parameters a heatmap of the ranking metric. Every chart carries one `.series` geometry
element, which is what the render check measures.
"""

from __future__ import annotations

import html
import math
from typing import Any

import msgspec
import numpy as np

from app.domain.backtesting.report import (
    COLORS,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    METRIC_ORDER,
    RENDER_SCRIPT,
    STYLE,
    WIDTH,
    Frame,
    axes,
    date_label,
    drawdown_chart,
    esc,
    format_metric,
    num,
    svg,
    svg_path,
    table,
)
from app.domain.backtesting.schemas import BacktestOut

MAX_EXPOSURE_LINES = 8
PALETTE = ("#1f6fd0", "#e07b00", "#1a9a3a", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#b7950b", "#444b55")
BENCHMARK_COLOR = "#9aa3b0"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _legend(items: list[tuple[str, str]]) -> str:
    spans = "".join(f'<span><i style="background:{c}"></i>{esc(name)}</span>' for name, c in items)
    return f'<div class="legend">{spans}</div>'


def equity_vs_benchmark_chart(
    ts: np.ndarray, equity: np.ndarray, bench: np.ndarray | None, intraday: bool
) -> str:
    height = 280
    lo, hi = float(equity.min()), float(equity.max())
    if bench is not None:
        lo, hi = min(lo, float(bench.min())), max(hi, float(bench.max()))
    f = Frame(height, float(ts[0]), float(ts[-1]), lo, hi)
    body = [axes(f, ts, intraday, num)]
    if bench is not None:
        body.append(
            f'<path d="{svg_path(f.x(ts), f.y(bench))}" fill="none" stroke="{BENCHMARK_COLOR}" '
            'stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
    body.append(
        f'<path class="series" d="{svg_path(f.x(ts), f.y(equity))}" fill="none" stroke="{COLORS["equity"]}" '
        'stroke-width="2" stroke-linejoin="round"/>'
    )
    return svg("equity", height, "Equity against the benchmark", "".join(body))


def rolling_sharpe_chart(ts: np.ndarray, values: np.ndarray, window: int, intraday: bool) -> str:
    height = 200
    f = Frame(
        height, float(ts[0]), float(ts[-1]), min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    )
    zero = float(f.y(0.0))
    body = [
        axes(f, ts, intraday, lambda v: f"{v:.1f}"),
        f'<line x1="{f.x0}" x2="{f.x1}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#9aa3b0" '
        'stroke-dasharray="4 4"/>',
        f'<path class="series" d="{svg_path(f.x(ts), f.y(values))}" fill="none" stroke="{PALETTE[3]}" '
        'stroke-width="1.5"/>',
    ]
    return svg("rolling-sharpe", height, f"Rolling Sharpe ratio over {window} bars", "".join(body))


def exposure_chart(
    ts: np.ndarray, symbols: list[str], exposure: np.ndarray, intraday: bool
) -> tuple[str, list[tuple[str, str]]]:
    """Lines for the symbols with the largest mean exposure, the rest summed as "others", and the
    gross exposure (sum over symbols) as the `.series` line."""
    height = 240
    gross = exposure.sum(axis=1)
    order = np.argsort(-exposure.mean(axis=0), kind="stable")
    top = order[:MAX_EXPOSURE_LINES].tolist()
    lines = [(symbols[j], exposure[:, j]) for j in top]
    if len(order) > MAX_EXPOSURE_LINES:
        lines.append(("others", exposure[:, order[MAX_EXPOSURE_LINES:]].sum(axis=1)))
    f = Frame(height, float(ts[0]), float(ts[-1]), 0.0, max(float(gross.max()), 0.01))
    body = [axes(f, ts, intraday, lambda v: f"{v * 100:.0f}%")]
    legend = []
    for k, (name, values) in enumerate(lines):
        color = PALETTE[k % len(PALETTE)]
        legend.append((name, color))
        body.append(
            f'<path d="{svg_path(f.x(ts), f.y(values))}" fill="none" stroke="{color}" stroke-width="1.2">'
            f"<title>{esc(name)}</title></path>"
        )
    body.append(
        f'<path class="series" d="{svg_path(f.x(ts), f.y(gross))}" fill="none" stroke="#1d2330" '
        'stroke-width="2"><title>gross exposure</title></path>'
    )
    legend.append(("gross", "#1d2330"))
    return svg("exposure", height, "Exposure per symbol as a share of equity", "".join(body)), legend


def _diverging(value: float, scale: float) -> str:
    """Red for losses, green for gains, white at zero; saturates at +/- scale."""
    if not math.isfinite(value):
        return "#f2f4f7"
    t = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    if t >= 0:
        r, g, b = (int(255 - (255 - c) * t) for c in (26, 154, 58))
    else:
        r, g, b = (int(255 - (255 - c) * -t) for c in (208, 52, 44))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    name: str,
    label: str,
    rows: list[str],
    cols: list[str],
    values: list[list[float | None]],
    fmt: Any,
    ascending: bool = False,
) -> str:
    """A grid of coloured cells with their values; the outline is the chart's `.series`."""
    cell_w = max(40.0, min(90.0, (WIDTH - MARGIN_LEFT - MARGIN_RIGHT) / max(len(cols), 1)))
    cell_h = 26.0
    x0, y0 = float(MARGIN_LEFT), 28.0
    height = int(y0 + cell_h * len(rows) + 12)
    finite = [abs(v) for row in values for v in row if v is not None and math.isfinite(v)]
    centre = 0.0
    if name == "sweep" and finite:
        flat = [v for row in values for v in row if v is not None and math.isfinite(v)]
        centre = float(np.median(flat))
        finite = [abs(v - centre) for v in flat]
    scale = max(finite) if finite else 1.0
    out = []
    for j, c in enumerate(cols):
        out.append(
            f'<text x="{x0 + cell_w * (j + 0.5):.1f}" y="{y0 - 8:.1f}" text-anchor="middle">{esc(c)}</text>'
        )
    for i, r in enumerate(rows):
        y = y0 + cell_h * i
        out.append(f'<text x="{x0 - 6:.1f}" y="{y + cell_h * 0.65:.1f}" text-anchor="end">{esc(r)}</text>')
        for j, v in enumerate(values[i]):
            x = x0 + cell_w * j
            shown = math.nan if v is None else (v - centre) * (-1 if ascending else 1)
            text = "–" if v is None else fmt(v)
            out.append(
                f'<rect class="cell" x="{x:.1f}" y="{y:.1f}" width="{cell_w - 1:.1f}" '
                f'height="{cell_h - 1:.1f}" fill="{_diverging(shown, scale)}">'
                f"<title>{esc(r)} {esc(cols[j])}: {esc(text)}</title></rect>"
                f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h * 0.65:.1f}" '
                f'text-anchor="middle">{esc(text)}</text>'
            )
    w, h = cell_w * len(cols), cell_h * len(rows)
    out.append(
        f'<path class="series" d="M{x0:.1f},{y0:.1f} h{w:.1f} v{h:.1f} h{-w:.1f} Z" fill="none" '
        'stroke="#aeb5c0" stroke-width="1"/>'
    )
    return svg(name, height, label, "".join(out))


def monthly_heatmap(monthly: list[list[float]]) -> str:
    years = sorted({int(y) for y, _, _ in monthly})
    grid: dict[tuple[int, int], float] = {(int(y), int(m)): float(r) for y, m, r in monthly}
    values = [[grid.get((y, m)) for m in range(1, 13)] for y in years]
    return heatmap(
        "monthly",
        "Monthly returns",
        [str(y) for y in years],
        list(MONTHS),
        values,
        lambda v: f"{v * 100:.1f}%",
    )


def _page(title: str, subtitle: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<h1>{esc(title)}</h1><div class="sub">{subtitle}</div>{body}'
        f"<script>{RENDER_SCRIPT}</script></body></html>"
    )


def _metric_tables(metrics: dict[str, Any]) -> str:
    ordered = [k for k in METRIC_ORDER if k in metrics] + sorted(k for k in metrics if k not in METRIC_ORDER)
    rows = [(k.replace("_", " "), format_metric(k, metrics[k])) for k in ordered]
    half = (len(rows) + 1) // 2
    return f'<div class="cols">{table(rows[:half])}{table(rows[half:])}</div>'


def render_tear_sheet(
    bt: BacktestOut, stored: dict[str, Any], positions: dict[str, Any], trades: list[dict[str, Any]]
) -> str:
    """The portfolio report. `stored` is the equity document (ts, equity, benchmark?, tear_sheet) and
    `positions` the positions document (symbols, ts, exposure) written by portfolio_tasks."""
    ts = np.asarray(stored["ts"], dtype=np.int64)
    equity = np.asarray(stored["equity"], dtype=np.float64)
    bench = np.asarray(stored["benchmark"], dtype=np.float64) if stored.get("benchmark") else None
    intraday = bt.timeframe != "1d"
    peak = np.maximum.accumulate(equity)
    drawdown = np.minimum(np.where(peak > 0, equity / np.where(peak > 0, peak, 1.0) - 1.0, 0.0), 0.0)
    sheet = stored.get("tear_sheet") or {}
    spec = bt.params
    parts = []
    legend = [("portfolio", COLORS["equity"])] + (
        [("benchmark " + str(spec.get("benchmark")), BENCHMARK_COLOR)] if bench is not None else []
    )
    parts.append("<h2>Equity</h2>" + _legend(legend) + equity_vs_benchmark_chart(ts, equity, bench, intraday))
    parts.append("<h2>Underwater (drawdown)</h2>" + drawdown_chart(ts, drawdown, intraday))
    if sheet.get("monthly"):
        parts.append("<h2>Monthly returns</h2>" + monthly_heatmap(sheet["monthly"]))
    rolling = sheet.get("rolling_sharpe")
    if rolling and len(rolling.get("ts", [])) > 1:
        parts.append(
            f"<h2>Rolling Sharpe ratio ({int(rolling['window'])} bars)</h2>"
            + rolling_sharpe_chart(
                np.asarray(rolling["ts"], dtype=np.int64),
                np.asarray(rolling["values"], dtype=np.float64),
                int(rolling["window"]),
                intraday,
            )
        )
    if positions and len(positions.get("ts", [])) > 1:
        chart, items = exposure_chart(
            np.asarray(positions["ts"], dtype=np.int64),
            list(positions["symbols"]),
            np.asarray(positions["exposure"], dtype=np.float64),
            intraday,
        )
        parts.append("<h2>Exposure per symbol</h2>" + _legend(items) + chart)
    alloc = spec.get("allocation", {})
    setup = [
        ("allocation", str(alloc.get("type"))),
        ("symbols", f"{len(spec.get('symbols', []))}: " + ", ".join(spec.get("symbols", [])[:12])),
        ("timeframe", bt.timeframe),
        ("bars", f"{int(stored.get('bars', ts.size)):,}"),
        ("from", date_label(int(ts[0]), intraday) if ts.size else "–"),
        ("to", date_label(int(ts[-1]), intraday) if ts.size else "–"),
        ("initial cash", str(bt.initial_cash)),
        ("commission", msgspec.json.encode(spec.get("commission")).decode()),
        ("slippage (bps)", str(bt.slippage_bps)),
        ("exits", msgspec.json.encode(spec.get("exits")).decode()),
        ("input hash", (bt.input_hash or "")[:16] + "…"),
    ]
    detail = [(k, msgspec.json.encode(v).decode()) for k, v in sorted(alloc.items()) if k != "type"]
    parts.append("<h2>Metrics</h2>" + _metric_tables(bt.metrics or {}))
    parts.append(
        '<h2>Setup</h2><div class="cols">'
        f"{table(setup, numeric=False)}{table(detail or [('allocation', 'none')], numeric=False)}</div>"
    )
    closed = [t for t in trades if not t.get("is_open")]
    parts.append(
        f'<h2>Trades</h2><p class="sub">{len(closed)} closed, {len(trades) - len(closed)} open; '
        "the full list is at the trades endpoint.</p>"
    )
    finished = bt.finished_at.strftime("%Y-%m-%d %H:%M:%S UTC") if bt.finished_at else "–"
    subtitle = (
        f'Backtest <code>{esc(bt.id)}</code> · <span class="status">{esc(bt.status)}</span> · '
        f"finished {esc(finished)}"
    )
    title = (
        f"Portfolio backtest: {alloc.get('type')} over {len(spec.get('symbols', []))} symbols, {bt.timeframe}"
    )
    return _page(title, subtitle, "".join(parts))


def render_sweep_heatmap(
    sweep_id: str,
    strategy: str,
    metric: str,
    x_name: str,
    y_name: str,
    runs: list[tuple[Any, Any, float | None]],
    ascending: bool,
) -> str:
    """A sweep over two parameters: `runs` is (x value, y value, metric value) per completed run."""
    xs = sorted({r[0] for r in runs}, key=lambda v: (str(type(v)), v))
    ys = sorted({r[1] for r in runs}, key=lambda v: (str(type(v)), v))
    grid = {(r[1], r[0]): r[2] for r in runs}
    values = [[grid.get((y, x)) for x in xs] for y in ys]
    chart = heatmap(
        "sweep",
        f"{metric} by {x_name} and {y_name}",
        [f"{y_name}={y}" for y in ys],
        [f"{x_name}={x}" for x in xs],
        values,
        lambda v: format_metric(metric, v),
        ascending=ascending,
    )
    note = "lower is better" if ascending else "higher is better"
    return _page(
        f"Sweep {strategy}: {metric} by {x_name} and {y_name}",
        f"Sweep <code>{html.escape(sweep_id)}</code> · {len(runs)} completed runs · {note}",
        "<h2>Heatmap</h2>" + chart,
    )
