"""A parameter sweep from a notebook or a script: fan out, wait, rank, plot.

Runs STRATEGY over a grid of parameters on the workers, waits for every run, prints the ranking and writes
an SVG chart (a heatmap for a two-parameter grid, bars otherwise) that any browser or notebook displays.

    python clients/python/examples/sweep_research.py --url http://127.0.0.1:8000 --key "$KEY" --symbol DEMO \\
        --grid fast=5,10,20 --grid slow=30,50,100 --out sweep.svg
"""

from __future__ import annotations

import argparse
import html
import time
from pathlib import Path

from tradedesk_client import Client
from tradedesk_client.models import Sweep


def heatmap_svg(sweep: Sweep) -> str:
    names = list(sweep.grid)
    values = [r.value for r in sweep.ranked if isinstance(r.value, int | float)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    cell, pad = 70, 90
    if len(names) == 2:
        xs, ys = sweep.grid[names[0]], sweep.grid[names[1]]
        by = {(r.params[names[0]], r.params[names[1]]): r.value for r in sweep.ranked}
        parts = []
        for j, y in enumerate(ys):
            parts.append(f'<text x="{pad - 8}" y="{pad + j * cell + cell / 2}" text-anchor="end">{y}</text>')
            for i, x in enumerate(xs):
                v = by.get((x, y))
                t = (v - lo) / (hi - lo) if isinstance(v, int | float) and hi > lo else 0.5
                fill = (
                    f"hsl({round(120 * t)},70%,{round(85 - 30 * t)}%)"
                    if isinstance(v, int | float)
                    else "#eee"
                )
                label = f"{v:.2f}" if isinstance(v, int | float) else "–"
                parts.append(
                    f'<rect x="{pad + i * cell}" y="{pad + j * cell}" width="{cell}" height="{cell}" '
                    f'fill="{fill}" stroke="#fff"/><text x="{pad + i * cell + cell / 2}" '
                    f'y="{pad + j * cell + cell / 2 + 4}" text-anchor="middle">{label}</text>'
                )
        for i, x in enumerate(xs):
            parts.append(
                f'<text x="{pad + i * cell + cell / 2}" y="{pad - 8}" text-anchor="middle">{x}</text>'
            )
        width, height = pad + len(xs) * cell + 20, pad + len(ys) * cell + 20
        title = f"{sweep.rank_by}: {names[0]} (columns) by {names[1]} (rows)"
    else:
        top = sweep.ranked[:20]
        parts = []
        for k, run in enumerate(top):
            v = run.value if isinstance(run.value, int | float) else 0.0
            w = 300 * (v - min(lo, 0)) / ((hi - min(lo, 0)) or 1)
            label = html.escape(", ".join(f"{a}={b}" for a, b in run.params.items()))
            parts.append(
                f'<text x="{pad + 160}" y="{pad + k * 22 + 14}" text-anchor="end">{label}</text>'
                f'<rect x="{pad + 170}" y="{pad + k * 22}" width="{w:.1f}" height="18" fill="#0b5cad"/>'
                f'<text x="{pad + 176 + w:.1f}" y="{pad + k * 22 + 14}">{v:.3f}</text>'
            )
        width, height, title = pad + 560, pad + 22 * len(top) + 20, f"top runs by {sweep.rank_by}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="12"><text x="10" y="24" font-size="15">{html.escape(title)}</text>{"".join(parts)}</svg>'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--strategy", default="sma_cross")
    parser.add_argument("--symbol", default="DEMO")
    parser.add_argument("--timeframe", default="1d")
    parser.add_argument("--grid", action="append", default=[], help="name=v1,v2,... (repeat per parameter)")
    parser.add_argument("--rank-by", default="sharpe")
    parser.add_argument("--out", type=Path, default=Path("sweep.svg"))
    args = parser.parse_args()
    grid = {}
    for item in args.grid or ["fast=5,10,20", "slow=30,50,100"]:
        name, _, values = item.partition("=")
        grid[name] = [float(v) if "." in v else int(v) for v in values.split(",")]
    with Client(args.url, api_key=args.key) as td:
        created = td.backtests.sweep(
            args.strategy,
            args.symbol,
            args.timeframe,
            "100000",
            grid,
            rank_by=args.rank_by,
            commission="0.001",
        )
        print(f"sweep {created.id}: {created.total} runs")
        while (sweep := td.backtests.get_sweep(created.id)).status not in ("completed", "failed"):
            print(f"  {sweep.progress:.0%}")
            time.sleep(0.5)
    for run in sweep.ranked[:10]:
        print(f"{run.rank:3d}  {run.value!s:>10}  {run.params}")
    args.out.write_text(heatmap_svg(sweep))
    print(f"chart: {args.out}")


if __name__ == "__main__":
    main()
