// Orders as the API describes them (API.md, "Accounts, orders" and "Orders: classes, trailing stops,
// replace, bulk actions"), and the pure rules the ticket and the blotter share. Fields of the contingent
// order work are optional: an answer without them (or with fields this page does not know) still renders.

export type OrderClass = "simple" | "bracket" | "oto" | "oco";
export type OrderType = "market" | "limit" | "stop" | "stop_limit" | "trailing_stop";

export interface Order {
  id: string;
  client_order_id?: string | null;
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
  order_class?: string;
  parent_id?: string | null;
  leg?: string | null;
  trail_price?: string | null;
  trail_percent?: string | null;
  hwm?: string | null;
  reduce_only?: boolean;
  notional?: string | null;
  expires_at?: string | null;
  version?: number;
  legs?: Order[] | null;
}

/** Statuses an order can still leave: it can be canceled (and, unless held, amended). */
export const OPEN = new Set(["new", "accepted", "partially_filled", "held"]);

export const ORDER_CLASSES: OrderClass[] = ["simple", "bracket", "oto", "oco"];
export const ORDER_TYPES: OrderType[] = ["market", "limit", "stop", "stop_limit", "trailing_stop"];

/** What the ticket holds, as typed (trimmed strings; "" is empty). */
export interface TicketInput {
  symbol: string;
  side: string;
  orderClass: OrderClass;
  type: OrderType;
  sizing: "quantity" | "notional";
  quantity: string;
  notional: string;
  limitPrice: string;
  stopPrice: string;
  trailKind: "trail_price" | "trail_percent";
  trail: string;
  takeProfit: string;
  stopLossStop: string;
  stopLossLimit: string;
  reduceOnly: boolean;
  timeInForce: string;
}

export type FieldErrors = Record<string, string>;

/** Which ticket inputs apply to a class and type (the others are hidden and never sent). */
export function ticketFields(input: Pick<TicketInput, "orderClass" | "type" | "sizing">): Set<string> {
  const on = new Set(["symbol", "side", "order_class", "type", "time_in_force", "reduce_only"]);
  if (input.type === "market") on.add("sizing");
  on.add(input.type === "market" && input.sizing === "notional" ? "notional" : "quantity");
  // An OCO is its two exits: the take-profit's limit is its price, there is no entry price.
  if ((input.type === "limit" || input.type === "stop_limit") && input.orderClass !== "oco") on.add("limit_price");
  if (input.type === "stop" || input.type === "stop_limit") on.add("stop_price");
  if (input.type === "trailing_stop") on.add("trail");
  if (input.orderClass !== "simple") {
    on.add("take_profit.limit_price");
    on.add("stop_loss.stop_price");
    on.add("stop_loss.limit_price");
  }
  return on;
}

const DECIMAL = /^\d+(\.\d+)?$/;

function positive(value: string): boolean {
  return DECIMAL.test(value) && /[1-9]/.test(value);
}

/**
 * The API body for the ticket, or the field errors found before sending (the server checks everything
 * again; these catch what needs no server: missing and malformed numbers, fields the class requires).
 * Defaults are left out (`order_class` simple, `reduce_only` false), so a simple order is the same body
 * the four-type API has always taken.
 */
export function orderBody(input: TicketInput): { body: Record<string, unknown>; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const on = ticketFields(input);
  const body: Record<string, unknown> = { symbol: input.symbol, side: input.side, type: input.type };
  if (input.orderClass !== "simple") body.order_class = input.orderClass;
  const need = (field: string, value: string, label: string): string | undefined => {
    if (!value) errors[field] = `${label} is required`;
    else if (!positive(value)) errors[field] = `${label} must be a positive number`;
    else return value;
    return undefined;
  };
  if (on.has("notional")) body.notional = need("notional", input.notional, "Notional");
  else body.quantity = need("quantity", input.quantity, "Quantity");
  if (on.has("limit_price")) body.limit_price = need("limit_price", input.limitPrice, "Limit price");
  if (on.has("stop_price")) body.stop_price = need("stop_price", input.stopPrice, "Stop price");
  if (on.has("trail")) {
    const label = input.trailKind === "trail_percent" ? "Trail percent" : "Trail price";
    body[input.trailKind] = need(input.trailKind, input.trail, label);
  }
  if (input.orderClass !== "simple") {
    // OTO: one leg, whichever is filled in; bracket and OCO: both.
    const oto = input.orderClass === "oto";
    if (oto && !input.takeProfit && !input.stopLossStop) {
      errors["take_profit.limit_price"] = "An OTO order needs a take-profit or a stop-loss";
    } else if (oto && input.takeProfit && input.stopLossStop) {
      errors["stop_loss.stop_price"] = "An OTO order takes one leg: a take-profit or a stop-loss, not both";
    }
    if (!oto || input.takeProfit) {
      const tp = need("take_profit.limit_price", input.takeProfit, "Take-profit limit price");
      if (tp) body.take_profit = { limit_price: tp };
    }
    if (!oto || input.stopLossStop || input.stopLossLimit) {
      const sl = need("stop_loss.stop_price", input.stopLossStop, "Stop-loss stop price");
      const leg: Record<string, string> = sl ? { stop_price: sl } : {};
      if (input.stopLossLimit) {
        const limit = need("stop_loss.limit_price", input.stopLossLimit, "Stop-loss limit price");
        if (limit) leg.limit_price = limit;
      }
      if (sl) body.stop_loss = leg;
    }
    if (input.orderClass === "oco" && input.type !== "limit") errors.type = "An OCO order's type is limit";
    if (input.timeInForce !== "gtc" && input.timeInForce !== "day") {
      errors.time_in_force = "Orders with legs take day or gtc";
    }
  }
  if (input.reduceOnly) body.reduce_only = true;
  body.time_in_force = input.timeInForce;
  for (const [key, value] of Object.entries(body)) if (value === undefined) delete body[key];
  return { body, errors };
}

/**
 * The ticket input a server's field name points at. msgspec names a path (`take_profit.limit_price`,
 * `legs[0].stop_price`) or a bare field (`take_profit`); the nearest input that shows it wins.
 */
export function fieldFor(name: string, shown: Set<string>): string | null {
  const path = name.replace(/^\$\.?/, "").replace(/\[\d+\]/g, "");
  const candidates = [path];
  if (path === "take_profit") candidates.push("take_profit.limit_price");
  if (path === "stop_loss") candidates.push("stop_loss.stop_price");
  if (path === "trail_price" || path === "trail_percent") candidates.push("trail");
  if (path === "quantity" && !shown.has("quantity")) candidates.push("notional");
  if (path === "order_class") candidates.push("order_class");
  const last = path.split(".").pop() ?? path;
  candidates.push(last);
  for (const c of candidates) if (shown.has(c)) return c;
  return null;
}

/** Entries with their legs beneath (a leg's `parent_id` names its entry; an OCO's stop-loss names its
 * take-profit), newest entries first; a leg whose parent is not in the list stands on its own. */
export function nest(orders: Iterable<Order>): { order: Order; depth: number }[] {
  const all = [...orders];
  const byId = new Map(all.map((o) => [o.id, o]));
  const children = new Map<string, Order[]>();
  const roots: Order[] = [];
  for (const o of all) {
    if (o.parent_id && byId.has(o.parent_id) && o.parent_id !== o.id) {
      const list = children.get(o.parent_id) ?? [];
      list.push(o);
      children.set(o.parent_id, list);
    } else roots.push(o);
  }
  // By time, not by text: the API writes as many fractional digits as a timestamp has.
  const at = (o: Order) => Date.parse(o.created_at) || 0;
  roots.sort((a, b) => at(b) - at(a) || (a.id < b.id ? 1 : -1));
  const out: { order: Order; depth: number }[] = [];
  const seen = new Set<string>();
  const walk = (o: Order, depth: number) => {
    if (seen.has(o.id)) return;
    seen.add(o.id);
    out.push({ order: o, depth });
    const legs = (children.get(o.id) ?? []).sort(
      (a, b) => (a.leg ?? "").localeCompare(b.leg ?? "") || at(a) - at(b),
    );
    legs.forEach((leg) => walk(leg, depth + 1));
  };
  roots.forEach((o) => walk(o, 0));
  // A cycle (never expected) must not hide orders.
  all.filter((o) => !seen.has(o.id)).forEach((o) => walk(o, 0));
  return out;
}

/** Flattens `legs` of a `?nested=true` answer into the list (the blotter nests by `parent_id`). */
export function flatten(orders: Order[]): Order[] {
  const out: Order[] = [];
  const visit = (o: Order) => {
    out.push(o);
    (o.legs ?? []).forEach(visit);
  };
  orders.forEach(visit);
  return out;
}

/** The price column: limit / stop, and for a trailing stop its live stop, the trail and the watermark. */
export function priceText(o: Order): string {
  if (o.type === "trailing_stop") {
    const trail = o.trail_percent ? `${o.trail_percent}%` : o.trail_price ?? "–";
    return `stop ${o.stop_price ?? "–"} · trail ${trail} · hwm ${o.hwm ?? "–"}`;
  }
  if (o.type === "stop_limit") return `${o.stop_price ?? "–"} → ${o.limit_price ?? "–"}`;
  return o.limit_price ?? o.stop_price ?? "–";
}

/** Which fields an amend (PATCH replace) offers for an order of this type. */
export function amendFields(o: Order): string[] {
  const fields = ["quantity"];
  if (o.type === "limit" || o.type === "stop_limit") fields.push("limit_price");
  if (o.type === "stop" || o.type === "stop_limit") fields.push("stop_price");
  if (o.type === "trailing_stop") fields.push(o.trail_percent ? "trail_percent" : "trail_price");
  return fields;
}
