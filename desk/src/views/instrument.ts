import { CandlestickSeries, createChart, createSeriesMarkers, type UTCTimestamp } from "lightweight-charts";
import { api } from "../api";
import { h } from "../dom";
import type { Live, Message } from "../live";

interface Candle {
  ts: string;
  open: string;
  high: string;
  low: string;
  close: string;
}

export async function instrumentView(symbol: string, accountId: string | null, live: Live): Promise<HTMLElement> {
  const instrument = await api<{ symbol: string; exchange: string; last_price: string | null; tick_size: string }>(
    "GET",
    `instruments/${encodeURIComponent(symbol)}`,
  );
  const candles = (await api<{ items: Candle[] }>("GET", `instruments/${encodeURIComponent(symbol)}/candles?timeframe=1d&limit=1000`)).items;
  const fills = accountId
    ? (await api<{ items: { side: string; quantity: string; price: string; created_at: string }[] }>(
        "GET",
        `accounts/${accountId}/fills?symbol=${encodeURIComponent(symbol)}&limit=500`,
      )).items
    : [];
  const last = h("strong", { id: "last-price" }, instrument.last_price ?? "–");
  // The chart is a canvas (plus the library's attribution link, so no role="img" around it): its text
  // alternative is the figure's caption.
  const chartBox = h("div", { class: "chart", id: "candle-chart" });
  const closes = candles.length ? `, ${candles[0].ts.slice(0, 10)} to ${candles[candles.length - 1].ts.slice(0, 10)}, last close ${candles[candles.length - 1].close}` : "";
  const view = h(
    "section",
    {},
    h("h1", {}, `${symbol} `, h("small", {}, instrument.exchange)),
    h("p", {}, "Last price ", last),
    h(
      "figure",
      { class: "chart-figure", "aria-labelledby": "chart-caption" },
      chartBox,
      h(
        "figcaption",
        { id: "chart-caption", class: "muted" },
        `Daily candles of ${symbol}: ${candles.length} bars${closes}.`,
        accountId ? ` ${fills.length} fills of this account are marked on the chart.` : "",
      ),
    ),
  );
  requestAnimationFrame(() => {
    const chart = createChart(chartBox, { height: 420, layout: { textColor: "#1f2933" }, timeScale: { timeVisible: true } });
    const series = chart.addSeries(CandlestickSeries);
    series.setData(
      candles.map((c) => ({
        time: (Date.parse(c.ts) / 1000) as UTCTimestamp,
        open: Number(c.open),
        high: Number(c.high),
        low: Number(c.low),
        close: Number(c.close),
      })),
    );
    if (candles.length) {
      const first = Date.parse(candles[0].ts) / 1000;
      const markers = fills
        .map((f) => ({ t: Math.max(first, Math.floor(Date.parse(f.created_at) / 86400000) * 86400), f }))
        .sort((a, b) => a.t - b.t)
        .map(({ t, f }) => ({
          time: t as UTCTimestamp,
          position: f.side === "buy" ? ("belowBar" as const) : ("aboveBar" as const),
          color: f.side === "buy" ? "#0b7a3e" : "#b42318",
          shape: f.side === "buy" ? ("arrowUp" as const) : ("arrowDown" as const),
          text: `${f.side} ${f.quantity} @ ${f.price}`,
        }));
      createSeriesMarkers(series, markers);
    }
    chart.timeScale().fitContent();
    (view as any).chart = chart;
  });
  live.subscribe([`prices:${symbol}`]);
  const off = live.on((message: Message) => {
    if (message.type === "price" && message.symbol === symbol) last.textContent = message.price;
  });
  const poll = window.setInterval(async () => {
    if (live.connected) return;
    const price = await api<{ price: string | null }>("GET", `instruments/${encodeURIComponent(symbol)}/price`).catch(() => null);
    if (price?.price) last.textContent = price.price;
  }, 2000);
  (view as any).dispose = () => {
    off();
    window.clearInterval(poll);
    live.unsubscribeAll();
    (view as any).chart?.remove();
  };
  return view;
}
