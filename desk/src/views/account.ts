import { api, all, ApiProblem } from "../api";
import { clear, h, money, qty, table, time, toast } from "../dom";
import type { Live, Message } from "../live";
import { type Account, stateBadge } from "./accounts";

interface Order {
  id: string;
  symbol: string;
  side: string;
  type: string;
  quantity: string;
  filled_quantity: string;
  avg_fill_price: string | null;
  limit_price: string | null;
  stop_price: string | null;
  time_in_force: string;
  status: string;
  reject_reason: string | null;
  created_at: string;
  updated_at: string;
}
interface Fill {
  id: string;
  order_id: string;
  symbol: string;
  side: string;
  quantity: string;
  price: string;
  fee: string;
  created_at: string;
}
interface Position {
  symbol: string;
  quantity: string;
  avg_entry_price: string;
  market_price: string | null;
  market_value: string | null;
  unrealized_pnl: string | null;
  realized_pnl: string;
}

const OPEN = new Set(["new", "accepted", "partially_filled", "held"]);

export function problemText(e: unknown): string {
  if (!(e instanceof ApiProblem)) return String(e);
  const p = e.problem;
  const parts = [p.detail || p.title || `HTTP ${p.status}`];
  if (p.limit_type) parts.push(`limit ${p.limit_type} = ${p.limit_value}, order would make it ${p.would_be}`);
  for (const f of p.errors ?? []) parts.push(`${f.field}: ${f.message}`);
  return parts.join(" — ");
}

export async function accountView(accountId: string, live: Live): Promise<HTMLElement> {
  let account = await api<Account>("GET", `accounts/${accountId}`);
  const instruments = await all<{ symbol: string; status: string; last_price: string | null }>("instruments");
  const orders = new Map<string, Order>();
  // A REST refresh that was sent before a fill can answer after the stream brought it: keep the newer state.
  const keep = (o: Order): void => {
    const known = orders.get(o.id);
    if (!known || Date.parse(o.updated_at) >= Date.parse(known.updated_at)) orders.set(o.id, o);
  };
  for (const o of (await api<{ items: Order[] }>("GET", `accounts/${accountId}/orders?limit=100`)).items) keep(o);
  let fills = (await api<{ items: Fill[] }>("GET", `accounts/${accountId}/fills?limit=100`)).items;
  let positions = (await api<{ items: Position[] }>("GET", `accounts/${accountId}/positions`)).items;

  const summary = h("div", { class: "cards", id: "account-summary" });
  const blotter = h("div", { id: "blotter" });
  const fillsBox = h("div", { id: "fills" });
  const positionsBox = h("div", { id: "positions" });
  const haltNotice = h("p", { class: "halted", id: "halt-notice", role: "alert" });
  const feed = h("span", { class: "feed", id: "feed-status" }, live.connected ? "live" : "polling");

  function renderSummary(): void {
    clear(summary);
    const card = (label: string, value: string | Node) => h("div", { class: "card stat" }, h("span", {}, label), h("strong", {}, value));
    summary.append(
      card("Equity", money(account.equity)),
      card("Cash", money(account.cash)),
      card("Buying power", money(account.buying_power)),
      card("Realized PnL", money(account.realized_pnl)),
      card("Unrealized PnL", money(account.unrealized_pnl)),
      card("State", stateBadge(account.trading_state)),
    );
    const halted = account.trading_state === "halted";
    haltNotice.textContent = halted
      ? `Account halted${account.trading_state_reason ? `: ${account.trading_state_reason}` : ""}. New orders are refused.`
      : account.trading_state === "reduce_only"
        ? "Reduce-only: only orders that shrink a position are accepted."
        : "";
    submit.disabled = halted;
  }

  function renderBlotter(): void {
    clear(blotter);
    const sorted = [...orders.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
    const rows = sorted.map((o) => [
      document.createTextNode(time(o.created_at)),
      document.createTextNode(o.symbol),
      document.createTextNode(o.side),
      document.createTextNode(o.type),
      document.createTextNode(qty(o.quantity)),
      document.createTextNode(qty(o.filled_quantity)),
      document.createTextNode(o.limit_price ?? o.stop_price ?? "–"),
      document.createTextNode(o.avg_fill_price ?? "–"),
      h("span", { class: `badge status-${o.status}`, "data-order": o.id }, o.status),
      OPEN.has(o.status)
        ? h("button", { type: "button", class: "small", onclick: () => cancel(o.id), "aria-label": `Cancel order ${o.id}` }, "Cancel")
        : document.createTextNode(""),
    ]);
    blotter.append(
      rows.length
        ? table(["Time", "Symbol", "Side", "Type", "Qty", "Filled", "Price", "Avg fill", "Status", ""], rows)
        : h("p", {}, "No orders yet."),
    );
  }

  function renderFills(): void {
    clear(fillsBox);
    const rows = fills.map((f) => [
      document.createTextNode(time(f.created_at)),
      document.createTextNode(f.symbol),
      document.createTextNode(f.side),
      document.createTextNode(f.quantity),
      document.createTextNode(f.price),
      document.createTextNode(f.fee),
    ]);
    fillsBox.append(rows.length ? table(["Time", "Symbol", "Side", "Qty", "Price", "Fee"], rows) : h("p", {}, "No fills yet."));
  }

  function renderPositions(): void {
    clear(positionsBox);
    const rows = positions.map((p) => [
      h("a", { href: `#/instruments/${encodeURIComponent(p.symbol)}?account=${accountId}` }, p.symbol),
      document.createTextNode(p.quantity),
      document.createTextNode(p.avg_entry_price),
      h("span", { "data-price": p.symbol }, p.market_price ?? "–"),
      document.createTextNode(money(p.unrealized_pnl)),
      document.createTextNode(money(p.realized_pnl)),
      Number(p.quantity) !== 0
        ? h("button", { type: "button", class: "small", onclick: () => flatten(p) }, "Flatten")
        : document.createTextNode(""),
    ]);
    positionsBox.append(
      rows.length
        ? table(["Symbol", "Qty", "Avg entry", "Last", "Unrealized", "Realized", ""], rows)
        : h("p", {}, "No positions."),
    );
    live.subscribe(positions.map((p) => `prices:${p.symbol}`));
  }

  async function refresh(): Promise<void> {
    account = await api<Account>("GET", `accounts/${accountId}`);
    positions = (await api<{ items: Position[] }>("GET", `accounts/${accountId}/positions`)).items;
    renderSummary();
    renderPositions();
  }

  async function refreshAll(): Promise<void> {
    for (const o of (await api<{ items: Order[] }>("GET", `accounts/${accountId}/orders?limit=100`)).items) keep(o);
    fills = (await api<{ items: Fill[] }>("GET", `accounts/${accountId}/fills?limit=100`)).items;
    renderBlotter();
    renderFills();
    await refresh();
  }

  async function cancel(orderId: string): Promise<void> {
    try {
      const order = await api<Order>("DELETE", `accounts/${accountId}/orders/${orderId}`);
      keep(order);
      renderBlotter();
      await refresh();
    } catch (e) {
      toast(problemText(e), "error");
    }
  }

  async function flatten(p: Position): Promise<void> {
    const side = Number(p.quantity) > 0 ? "sell" : "buy";
    const quantity = p.quantity.replace(/^-/, "");
    try {
      const order = await api<Order>("POST", `accounts/${accountId}/orders`, { symbol: p.symbol, side, type: "market", quantity });
      keep(order);
      toast(`Flatten ${p.symbol}: ${order.status}`);
      await refreshAll();
    } catch (e) {
      toast(problemText(e), "error");
    }
  }

  // --- the order ticket ---------------------------------------------------------------------------
  const field = (id: string, label: string, input: HTMLElement) => h("div", { class: "field" }, h("label", { for: id }, label), input);
  const symbol = h(
    "select",
    { id: "ticket-symbol", required: true },
    ...instruments.filter((i) => i.status === "trading").map((i) => h("option", { value: i.symbol }, i.symbol)),
  ) as HTMLSelectElement;
  const side = h("select", { id: "ticket-side" }, h("option", { value: "buy" }, "buy"), h("option", { value: "sell" }, "sell")) as HTMLSelectElement;
  const type = h(
    "select",
    { id: "ticket-type" },
    ...["market", "limit", "stop", "stop_limit"].map((t) => h("option", { value: t }, t)),
  ) as HTMLSelectElement;
  const quantity = h("input", { id: "ticket-quantity", inputmode: "decimal", required: true, value: "1" }) as HTMLInputElement;
  const limitPrice = h("input", { id: "ticket-limit", inputmode: "decimal" }) as HTMLInputElement;
  const stopPrice = h("input", { id: "ticket-stop", inputmode: "decimal" }) as HTMLInputElement;
  const tif = h("select", { id: "ticket-tif" }, ...["gtc", "day", "ioc", "fok"].map((t) => h("option", { value: t }, t))) as HTMLSelectElement;
  const verdict = h("p", { id: "ticket-result", role: "status", "aria-live": "polite" });
  const validateButton = h("button", { type: "button", id: "ticket-validate", onclick: () => send(true) }, "Validate");
  const submit = h("button", { type: "submit", id: "ticket-submit" }, "Place order") as HTMLButtonElement;

  function orderBody(): Record<string, string> {
    const body: Record<string, string> = {
      symbol: symbol.value,
      side: side.value,
      type: type.value,
      quantity: quantity.value.trim(),
      time_in_force: tif.value,
    };
    if (type.value === "limit" || type.value === "stop_limit") body.limit_price = limitPrice.value.trim();
    if (type.value === "stop" || type.value === "stop_limit") body.stop_price = stopPrice.value.trim();
    return body;
  }

  async function send(dryRun: boolean): Promise<void> {
    verdict.className = "";
    verdict.textContent = dryRun ? "Checking…" : "Placing…";
    try {
      if (dryRun) {
        const result = await api<{ accepted: boolean; estimated_cost?: string }>("POST", `accounts/${accountId}/orders/validate`, orderBody());
        verdict.textContent = `Accepted by every check${result.estimated_cost ? `; estimated cost ${money(result.estimated_cost)}` : ""}.`;
      } else {
        const order = await api<Order>("POST", `accounts/${accountId}/orders`, orderBody());
        keep(order);
        renderBlotter();
        verdict.textContent = `Order ${order.status}.`;
        await refresh();
      }
    } catch (e) {
      verdict.className = "error";
      verdict.textContent = problemText(e);
    }
  }

  const ticket = h(
    "form",
    {
      class: "card ticket",
      id: "ticket",
      "aria-label": "Order ticket",
      onsubmit: (event: Event) => {
        event.preventDefault();
        send(false);
      },
    },
    h("h2", {}, "Order ticket"),
    field("ticket-symbol", "Symbol", symbol),
    field("ticket-side", "Side", side),
    field("ticket-type", "Type", type),
    field("ticket-quantity", "Quantity", quantity),
    field("ticket-limit", "Limit price", limitPrice),
    field("ticket-stop", "Stop price", stopPrice),
    field("ticket-tif", "Time in force", tif),
    h("div", { class: "actions" }, validateButton, submit),
    verdict,
  );

  // --- live updates -------------------------------------------------------------------------------
  live.subscribe([`trade_updates:${accountId}`, "accounts"]);
  const off = live.on((message: Message) => {
    if (message.type === "trade_update" && message.account_id === accountId) {
      keep(message.order);
      if (message.fill && !fills.some((f) => f.id === message.fill.id)) {
        // A trade update's fill carries the execution; the order gives its symbol and side.
        const fill: Fill = {
          id: message.fill.id,
          order_id: message.order.id,
          symbol: message.order.symbol,
          side: message.order.side,
          quantity: message.fill.quantity,
          price: message.fill.price,
          fee: message.fill.fee,
          created_at: message.at,
        };
        fills = [fill, ...fills];
      }
      renderBlotter();
      renderFills();
      if (message.fill || message.event === "canceled" || message.event === "expired") refresh();
    } else if (message.type === "price") {
      document.querySelectorAll(`[data-price="${CSS.escape(message.symbol)}"]`).forEach((el) => (el.textContent = message.price));
    } else if (message.type === "account" && message.account_id === accountId) {
      refreshAll(); // cash moved: a fill, a cancel or a state change; the blotter follows too
    }
  });
  // Without the stream the page polls every second; with it, a slow safety net every 3 s still catches
  // anything the stream did not bring (a resumed connection replays by seq, but a page never misses a fill).
  let ticks = 0;
  const poll = window.setInterval(() => {
    feed.textContent = live.connected ? "live" : "polling";
    ticks += 1;
    if (!live.connected || ticks % 3 === 0) refreshAll().catch(() => undefined);
  }, 1000);

  const view = h(
    "section",
    { class: "account" },
    h("h1", {}, account.name, " ", feed),
    summary,
    haltNotice,
    h("div", { class: "grid" }, ticket, h("div", { class: "card" }, h("h2", {}, "Positions"), positionsBox)),
    h("div", { class: "card" }, h("h2", {}, "Blotter"), blotter),
    h("div", { class: "card" }, h("h2", {}, "Fills"), fillsBox),
  );
  (view as any).dispose = () => {
    off();
    window.clearInterval(poll);
    live.unsubscribeAll();
  };
  renderSummary();
  renderBlotter();
  renderFills();
  renderPositions();
  return view;
}
