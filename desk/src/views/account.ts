import { api, all, problemText } from "../api";
import { clear, h, money, scroller, table, time, toast } from "../dom";
import type { Live, Message } from "../live";
import { flatten, OPEN, type Order } from "../orders";
import { type Account, stateBadge } from "./accounts";
import { amendDialog, blotterTable } from "./blotter";
import { orderTicket } from "./ticket";

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

/** `fn` run one at a time: calls while it runs make exactly one more run after it (none are lost). */
function coalesced(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let next: Promise<void> | null = null;
  const call = (): Promise<void> => {
    if (!running) {
      running = fn().finally(() => {
        running = null;
      });
      return running;
    }
    next ??= running
      .catch(() => undefined)
      .then(() => {
        next = null;
        return call();
      });
    return next;
  };
  return call;
}

export async function accountView(accountId: string, live: Live): Promise<HTMLElement> {
  let account = await api<Account>("GET", `accounts/${accountId}`);
  const instruments = await all<{ symbol: string; status: string; last_price: string | null }>("instruments");
  const orders = new Map<string, Order>();
  // A REST read sent before a fill can answer after the stream brought it: keep the newer state.
  const keep = (o: Order): void => {
    const known = orders.get(o.id);
    if (!known || Date.parse(o.updated_at) >= Date.parse(known.updated_at)) orders.set(o.id, o);
  };
  const loadOrders = async () => {
    for (const o of flatten((await api<{ items: Order[] }>("GET", `accounts/${accountId}/orders?limit=100`)).items)) keep(o);
  };
  await loadOrders();
  let fills = (await api<{ items: Fill[] }>("GET", `accounts/${accountId}/fills?limit=100`)).items;
  let positions = (await api<{ items: Position[] }>("GET", `accounts/${accountId}/positions`)).items;

  const summary = h("div", { class: "cards", id: "account-summary" });
  const blotter = h("div", { id: "blotter" });
  const fillsBox = h("div", { id: "fills" });
  const positionsBox = h("div", { id: "positions" });
  const haltNotice = h("p", { class: "halted", id: "halt-notice", role: "alert" });
  const feed = h("span", { class: "feed", id: "feed-status" }, live.connected ? "live" : "polling");
  // Fills are announced to screen readers as they arrive (the tables update silently).
  const announcer = h("p", { class: "sr-only", id: "fill-announcer", role: "status" });
  const ticket = orderTicket(accountId, instruments, (order) => {
    keep(order);
    renderBlotter();
    refreshAccount();
  });

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
    ticket.setHalted(halted);
  }

  function renderBlotter(): void {
    // A re-render must not lose the keyboard user's place: focus goes back to the same button.
    const focused = document.activeElement;
    const focusKey = focused instanceof HTMLElement && blotter.contains(focused) ? focused.dataset.key : undefined;
    clear(blotter);
    blotter.append(scroller("Blotter table", blotterTable(orders.values(), { cancel, amend })));
    if (focusKey) {
      const again = blotter.querySelector<HTMLElement>(`[data-key="${CSS.escape(focusKey)}"]`);
      (again ?? blotter.querySelector<HTMLElement>(".scroll-x"))?.focus();
    }
    cancelAll.disabled = ![...orders.values()].some((o) => OPEN.has(o.status));
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
    fillsBox.append(
      rows.length ? scroller("Fills table", table(["Time", "Symbol", "Side", "Qty", "Price", "Fee"], rows)) : h("p", {}, "No fills yet."),
    );
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
        ? h("button", { type: "button", class: "small", onclick: () => closePosition(p), "aria-label": `Close position ${p.symbol}` }, "Close")
        : document.createTextNode(""),
    ]);
    positionsBox.append(
      rows.length
        ? scroller("Positions table", table(["Symbol", "Qty", "Avg entry", "Last", "Unrealized", "Realized", "Actions"], rows))
        : h("p", {}, "No positions."),
    );
    closeAll.disabled = !positions.some((p) => Number(p.quantity) !== 0);
    live.subscribe(positions.map((p) => `prices:${p.symbol}`));
  }

  // Account and positions (cash, PnL, marks) after anything that moves them.
  const refreshAccount = coalesced(async () => {
    account = await api<Account>("GET", `accounts/${accountId}`);
    positions = (await api<{ items: Position[] }>("GET", `accounts/${accountId}/positions`)).items;
    renderSummary();
    renderPositions();
  });

  // Everything: used while the stream is down, and once after each (re)subscription to catch what
  // happened between these reads and the stream's first message.
  const refreshAll = coalesced(async () => {
    await loadOrders();
    fills = (await api<{ items: Fill[] }>("GET", `accounts/${accountId}/fills?limit=100`)).items;
    renderBlotter();
    renderFills();
    await refreshAccount();
  });

  async function cancel(order: Order): Promise<void> {
    try {
      const canceled = await api<Order>("DELETE", `accounts/${accountId}/orders/${order.id}`);
      keep(canceled);
      renderBlotter();
      await refreshAll(); // a canceled leg cancels its group
    } catch (e) {
      toast(problemText(e), "error");
    }
  }

  function amend(order: Order, opener: HTMLElement): void {
    const dialog = amendDialog(accountId, order, (updated) => {
      keep(updated);
      renderBlotter();
      toast(`Order amended (v${updated.version ?? "?"}).`);
      refreshAccount();
    });
    dialog.addEventListener("close", () => {
      // Back to the Amend button, or its successor if the blotter was redrawn meanwhile.
      const target = opener.isConnected
        ? opener
        : blotter.querySelector<HTMLElement>(`[data-key="amend:${CSS.escape(order.id)}"]`) ?? blotter.querySelector<HTMLElement>(".scroll-x");
      target?.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
  }

  async function cancelAllOrders(): Promise<void> {
    try {
      const result = await api<{ canceled: string[]; failed: { id: string; reason: string }[] }>("DELETE", `accounts/${accountId}/orders`);
      toast(`Canceled ${result.canceled.length} orders${result.failed.length ? `; ${result.failed.length} could not be canceled` : ""}.`);
      await refreshAll();
    } catch (e) {
      toast(problemText(e), "error");
    }
  }

  async function closePosition(p: Position): Promise<void> {
    try {
      const order = await api<Order>("DELETE", `accounts/${accountId}/positions/${encodeURIComponent(p.symbol)}`);
      keep(order);
      toast(`Close ${p.symbol}: ${order.status}`);
      await refreshAll();
    } catch (e) {
      toast(problemText(e), "error");
    }
  }

  async function closeAllPositions(): Promise<void> {
    try {
      const result = await api<{ orders: Order[]; failed: { symbol?: string; reason?: string }[] }>(
        "DELETE",
        `accounts/${accountId}/positions?cancel_orders=true`,
      );
      result.orders.forEach((o) => keep(o));
      toast(`Closing ${result.orders.length} positions${result.failed.length ? `; ${result.failed.length} failed` : ""}.`);
      await refreshAll();
    } catch (e) {
      toast(problemText(e), "error");
    }
  }

  const cancelAll = h("button", { type: "button", class: "small", id: "cancel-all", onclick: cancelAllOrders }, "Cancel all orders") as HTMLButtonElement;
  const closeAll = h("button", { type: "button", class: "small", id: "close-all", onclick: closeAllPositions }, "Close all positions") as HTMLButtonElement;

  // --- live updates -------------------------------------------------------------------------------
  // The stream brings every order event (trade_updates) and every change of cash and state (accounts);
  // prices move marks, PnL and trailing stops, which are re-read when a price of this account arrives
  // (at most once a second). No polling while the stream is up: it is the fallback when the stream is
  // down, and a (re)subscription re-reads everything once.
  let synced = false;
  let priceTimer: number | null = null;
  const priceSymbols = new Set<string>();
  const onPrice = (symbol: string) => {
    priceSymbols.add(symbol);
    if (priceTimer !== null) return;
    priceTimer = window.setTimeout(async () => {
      priceTimer = null;
      const symbols = new Set(priceSymbols);
      priceSymbols.clear();
      if (positions.some((p) => symbols.has(p.symbol))) refreshAccount().catch(() => undefined);
      const trailing = [...orders.values()].filter((o) => o.type === "trailing_stop" && OPEN.has(o.status) && symbols.has(o.symbol));
      if (!trailing.length) return;
      for (const o of trailing) {
        const fresh = await api<Order>("GET", `accounts/${accountId}/orders/${o.id}`).catch(() => null);
        if (fresh) keep(fresh);
      }
      renderBlotter();
    }, 1000);
  };

  live.subscribe([`trade_updates:${accountId}`, "accounts", ...new Set([...orders.values()].filter((o) => o.type === "trailing_stop" && OPEN.has(o.status)).map((o) => `prices:${o.symbol}`))]);
  const offStatus = live.onStatus((connected) => {
    feed.textContent = connected ? "live" : "polling";
    if (!connected) synced = false;
  });
  const off = live.on((message: Message) => {
    if (message.type === "subscribed") {
      if (!synced && (message.streams ?? []).includes(`trade_updates:${accountId}`)) {
        synced = true;
        refreshAll().catch(() => undefined);
      }
    } else if (message.type === "trade_update" && message.account_id === accountId) {
      const order: Order = message.order;
      keep(order);
      if (order.type === "trailing_stop" && OPEN.has(order.status)) live.subscribe([`prices:${order.symbol}`]);
      if (message.fill && !fills.some((f) => f.id === message.fill.id)) {
        // A trade update's fill carries the execution; the order gives its symbol and side.
        const fill: Fill = {
          id: message.fill.id,
          order_id: order.id,
          symbol: order.symbol,
          side: order.side,
          quantity: message.fill.quantity,
          price: message.fill.price,
          fee: message.fill.fee,
          created_at: message.at,
        };
        fills = [fill, ...fills];
        announcer.textContent = `Fill: ${order.side} ${fill.quantity} ${order.symbol} at ${fill.price}; order ${order.status.replace("_", " ")}.`;
      }
      renderBlotter();
      renderFills();
      if (message.fill) refreshAccount().catch(() => undefined);
    } else if (message.type === "price") {
      document.querySelectorAll(`[data-price="${CSS.escape(message.symbol)}"]`).forEach((el) => (el.textContent = message.price));
      onPrice(message.symbol);
    } else if (message.type === "account" && message.account_id === accountId) {
      const stateChanged = message.trading_state !== account.trading_state;
      account = {
        ...account,
        cash: message.cash,
        equity: message.equity,
        buying_power: message.buying_power,
        realized_pnl: message.realized_pnl,
        unrealized_pnl: message.unrealized_pnl,
        trading_state: message.trading_state,
      };
      renderSummary();
      if (stateChanged) refreshAccount().catch(() => undefined); // the reason comes with the account
    }
  });
  const poll = window.setInterval(() => {
    if (!live.connected) refreshAll().catch(() => undefined);
  }, 1000);

  const view = h(
    "section",
    { class: "account" },
    h("h1", {}, account.name, " ", feed),
    summary,
    haltNotice,
    announcer,
    h(
      "div",
      { class: "grid" },
      ticket.element,
      h("section", { class: "card", "aria-labelledby": "positions-title" }, h("div", { class: "card-head" }, h("h2", { id: "positions-title" }, "Positions"), closeAll), positionsBox),
    ),
    h("section", { class: "card", "aria-labelledby": "blotter-title" }, h("div", { class: "card-head" }, h("h2", { id: "blotter-title" }, "Blotter"), cancelAll), blotter),
    h("section", { class: "card", "aria-labelledby": "fills-title" }, h("h2", { id: "fills-title" }, "Fills"), fillsBox),
  );
  (view as any).dispose = () => {
    off();
    offStatus();
    window.clearInterval(poll);
    if (priceTimer !== null) window.clearTimeout(priceTimer);
    live.unsubscribeAll();
  };
  renderSummary();
  renderBlotter();
  renderFills();
  renderPositions();
  return view;
}
