import { api, all, problemText } from "../api";
import { clear, h, pct, scroller, time, toast } from "../dom";

interface Backtest {
  id: string;
  status: string;
  progress: number;
  strategy: string;
  symbol: string;
  timeframe: string;
  metrics: Record<string, number | string | null> | null;
  error: string | null;
  sweep_id: string | null;
  created_at: string;
}
interface Strategy {
  name: string;
  description: string;
  defaults: Record<string, unknown>;
}
interface SweepRun {
  rank: number;
  params: Record<string, number>;
  value: number | null;
}
interface Sweep {
  id: string;
  status: string;
  progress: number;
  rank_by: string;
  grid: Record<string, unknown[]>;
  ranked: SweepRun[];
}

// A 2-parameter sweep as a heatmap: one cell per combination, colour by the ranking metric.
export function heatmap(sweep: Sweep): HTMLElement {
  const names = Object.keys(sweep.grid);
  if (names.length !== 2) return h("p", { class: "muted" }, "Heatmaps need a sweep over exactly two parameters.");
  const [xName, yName] = names;
  const xs = [...sweep.grid[xName]];
  const ys = [...sweep.grid[yName]];
  const values = sweep.ranked.map((r) => r.value).filter((v): v is number => typeof v === "number");
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const cell = (x: unknown, y: unknown) => {
    const run = sweep.ranked.find((r) => r.params[xName] === x && r.params[yName] === y);
    const v = run?.value;
    const t = typeof v === "number" && hi > lo ? (v - lo) / (hi - lo) : 0.5;
    const style = typeof v === "number" ? `background: hsl(${Math.round(120 * t)}, 70%, ${85 - 30 * t}%)` : "";
    return h("td", { style, title: `${xName}=${x}, ${yName}=${y}` }, typeof v === "number" ? v.toFixed(3) : "–");
  };
  return h(
    "table",
    { class: "heatmap", "aria-label": `${sweep.rank_by} by ${xName} and ${yName}` },
    h("caption", {}, `${sweep.rank_by} by ${xName} (columns) and ${yName} (rows)`),
    h("thead", {}, h("tr", {}, h("th", {}, `${yName} \\ ${xName}`), ...xs.map((x) => h("th", { scope: "col" }, String(x))))),
    h("tbody", {}, ...ys.map((y) => h("tr", {}, h("th", { scope: "row" }, String(y)), ...xs.map((x) => cell(x, y))))),
  );
}

export async function researchView(): Promise<HTMLElement> {
  const strategies = (await api<{ items: Strategy[] }>("GET", "strategies")).items;
  const instruments = await all<{ symbol: string }>("instruments");
  const listBox = h("div", { id: "backtests" });
  const sweepBox = h("div", { id: "sweep" });

  async function renderList(): Promise<boolean> {
    const backtests = (await api<{ items: Backtest[] }>("GET", "backtests?limit=30")).items.filter((b) => !b.sweep_id);
    clear(listBox);
    listBox.append(
      scroller(
        "Backtests table",
        h(
        "table",
        {},
        h("caption", {}, "Backtests"),
        h("thead", {}, h("tr", {}, ...["Created", "Strategy", "Symbol", "Status", "Progress", "Sharpe", "Total return", "Report"].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          ...backtests.map((b) =>
            h(
              "tr",
              { "data-backtest": b.id },
              h("td", {}, time(b.created_at)),
              h("td", {}, b.strategy),
              h("td", {}, `${b.symbol} ${b.timeframe}`),
              h("td", {}, h("span", { class: `badge status-${b.status}` }, b.status)),
              h("td", {}, h("progress", { max: 1, value: b.progress, "aria-label": "progress" })),
              h("td", {}, typeof b.metrics?.sharpe === "number" ? b.metrics.sharpe.toFixed(2) : "–"),
              h("td", {}, typeof b.metrics?.total_return === "number" ? pct(b.metrics.total_return) : "–"),
              h("td", {}, b.status === "completed" ? h("a", { href: `/api/v1/backtests/${b.id}/report`, target: "_blank", rel: "noopener" }, "Report") : b.error ?? ""),
            ),
          ),
        ),
        ),
      ),
    );
    return backtests.some((b) => b.status === "queued" || b.status === "running");
  }

  const strategy = h("select", { id: "bt-strategy" }, ...strategies.map((s) => h("option", { value: s.name }, s.name))) as HTMLSelectElement;
  const symbol = h("select", { id: "bt-symbol" }, ...instruments.map((i) => h("option", { value: i.symbol }, i.symbol))) as HTMLSelectElement;
  const timeframe = h("input", { id: "bt-timeframe", value: "1d", required: true }) as HTMLInputElement;
  const cash = h("input", { id: "bt-cash", value: "100000", inputmode: "decimal", required: true }) as HTMLInputElement;
  const commission = h("input", { id: "bt-commission", value: "0.001", inputmode: "decimal" }) as HTMLInputElement;
  const params = h("textarea", { id: "bt-params", rows: 3, spellcheck: "false" }) as HTMLTextAreaElement;
  const grid = h("textarea", { id: "bt-grid", rows: 3, spellcheck: "false", placeholder: '{"fast": [5, 10], "slow": [20, 30]}' }) as HTMLTextAreaElement;
  const fillDefaults = () => {
    params.value = JSON.stringify(strategies.find((s) => s.name === strategy.value)?.defaults ?? {});
  };
  strategy.addEventListener("change", fillDefaults);
  fillDefaults();

  function parse(text: string, what: string): Record<string, unknown> | null {
    if (!text.trim()) return {};
    try {
      return JSON.parse(text);
    } catch {
      toast(`${what} is not valid JSON`, "error");
      return null;
    }
  }

  async function submit(sweep: boolean): Promise<void> {
    const p = parse(params.value, "Params");
    const g = sweep ? parse(grid.value, "Grid") : {};
    if (p === null || g === null) return;
    // A swept parameter is not also fixed: the grid's names leave the fixed params.
    for (const name of Object.keys(g)) delete p[name];
    const body = {
      strategy: strategy.value,
      symbol: symbol.value,
      timeframe: timeframe.value,
      initial_cash: cash.value,
      commission: commission.value,
      params: p,
      ...(sweep ? { grid: g } : {}),
    };
    try {
      if (sweep) {
        const created = await api<{ id: string }>("POST", "backtests/sweeps", body);
        await watchSweep(created.id);
      } else {
        await api("POST", "backtests", body);
        watchList();
      }
    } catch (e) {
      toast(problemText(e), "error");
    }
  }

  async function watchSweep(id: string): Promise<void> {
    const sweep = await api<Sweep>("GET", `backtests/sweeps/${id}`);
    clear(sweepBox);
    sweepBox.append(
      h("h2", {}, `Sweep ${sweep.status}`),
      h("progress", { max: 1, value: sweep.progress, "aria-label": "sweep progress" }),
      sweep.status === "completed" ? scroller("Sweep heatmap", heatmap(sweep)) : h("p", {}, `${Math.round(sweep.progress * 100)}%`),
    );
    if (sweep.status !== "completed" && sweep.status !== "failed" && document.body.contains(sweepBox)) {
      window.setTimeout(() => watchSweep(id), 500);
    }
  }

  function watchList(): void {
    renderList()
      .then((busy) => {
        if (busy && document.body.contains(listBox)) window.setTimeout(watchList, 500);
      })
      .catch(() => undefined);
  }

  const form = h(
    "form",
    {
      class: "card",
      id: "backtest-form",
      onsubmit: (event: Event) => {
        event.preventDefault();
        submit(false);
      },
    },
    h("h2", {}, "New backtest"),
    ...([
      ["bt-strategy", "Strategy", strategy],
      ["bt-symbol", "Symbol", symbol],
      ["bt-timeframe", "Timeframe", timeframe],
      ["bt-cash", "Initial cash", cash],
      ["bt-commission", "Commission (fraction)", commission],
      ["bt-params", "Params (JSON)", params],
      ["bt-grid", "Sweep grid (JSON, for a sweep)", grid],
    ] as [string, string, HTMLElement][]).map(([id, label, input]) => h("div", { class: "field" }, h("label", { for: id }, label), input)),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", id: "bt-submit" }, "Run backtest"),
      h("button", { type: "button", id: "sweep-submit", onclick: () => submit(true) }, "Run sweep"),
    ),
  );
  watchList();
  return h("section", {}, h("h1", {}, "Research"), h("div", { class: "grid" }, form, sweepBox), listBox);
}
