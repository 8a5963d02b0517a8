import { api, ApiProblem, problemText } from "../api";
import { h, money } from "../dom";
import {
  fieldFor,
  ORDER_CLASSES,
  ORDER_TYPES,
  orderBody,
  ticketFields,
  type FieldErrors,
  type Order,
  type OrderClass,
  type OrderType,
  type TicketInput,
} from "../orders";

// Field name (as the API names it) -> the input's id. Each input has a visible label, an error line tied
// to it by aria-describedby, and is hidden (so out of the tab order) when the class and type do not take it.
const IDS: Record<string, string> = {
  symbol: "ticket-symbol",
  side: "ticket-side",
  order_class: "ticket-class",
  type: "ticket-type",
  sizing: "ticket-sizing",
  quantity: "ticket-quantity",
  notional: "ticket-notional",
  limit_price: "ticket-limit",
  stop_price: "ticket-stop",
  trail: "ticket-trail",
  "take_profit.limit_price": "ticket-tp-limit",
  "stop_loss.stop_price": "ticket-sl-stop",
  "stop_loss.limit_price": "ticket-sl-limit",
  reduce_only: "ticket-reduce-only",
  time_in_force: "ticket-tif",
};

export interface Ticket {
  element: HTMLElement;
  setHalted(halted: boolean): void;
}

export function orderTicket(
  accountId: string,
  instruments: { symbol: string; status: string }[],
  onPlaced: (order: Order) => void,
): Ticket {
  const select = (id: string, values: string[], labels: Record<string, string> = {}) =>
    h("select", { id }, ...values.map((v) => h("option", { value: v }, labels[v] ?? v))) as HTMLSelectElement;
  const input = (id: string, attrs: Record<string, string> = {}) =>
    h("input", { id, inputmode: "decimal", autocomplete: "off", ...attrs }) as HTMLInputElement;

  const symbol = select(
    IDS.symbol,
    instruments.filter((i) => i.status === "trading").map((i) => i.symbol),
  );
  symbol.required = true;
  const side = select(IDS.side, ["buy", "sell"]);
  const orderClass = select(IDS.order_class, ORDER_CLASSES, { oto: "oto (one leg)", oco: "oco (two exits)" });
  const type = select(IDS.type, ORDER_TYPES, { stop_limit: "stop limit", trailing_stop: "trailing stop" });
  const sizing = select(IDS.sizing, ["quantity", "notional"], { notional: "notional (cash amount)" });
  const quantity = input(IDS.quantity, { value: "1" });
  const notional = input(IDS.notional);
  const limitPrice = input(IDS.limit_price);
  const stopPrice = input(IDS.stop_price);
  const trailKind = select("ticket-trail-kind", ["trail_price", "trail_percent"], {
    trail_price: "price amount",
    trail_percent: "percent",
  });
  const trail = input(IDS.trail);
  const takeProfit = input(IDS["take_profit.limit_price"]);
  const stopLossStop = input(IDS["stop_loss.stop_price"]);
  const stopLossLimit = input(IDS["stop_loss.limit_price"]);
  const reduceOnly = h("input", { id: IDS.reduce_only, type: "checkbox" }) as HTMLInputElement;
  const tif = select(IDS.time_in_force, ["gtc", "day", "ioc", "fok"]);
  const verdict = h("p", { id: "ticket-result", role: "status", "aria-live": "polite" });
  const validateButton = h("button", { type: "button", id: "ticket-validate", onclick: () => send(true) }, "Validate");
  const submit = h("button", { type: "submit", id: "ticket-submit" }, "Place order") as HTMLButtonElement;

  const errorLines = new Map<string, HTMLElement>();
  const wrappers = new Map<string, HTMLElement>();
  const field = (name: string, label: string, control: HTMLElement, extra?: HTMLElement) => {
    const id = IDS[name];
    const error = h("p", { class: "field-error", id: `${id}-error` });
    control.setAttribute("aria-describedby", `${id}-error`);
    errorLines.set(name, error);
    const wrapper = h("div", { class: "field", "data-field": name }, h("label", { for: id }, label), control, extra, error);
    wrappers.set(name, wrapper);
    return wrapper;
  };
  const trailField = field("trail", "Trail", trail, h("div", { class: "field sub" }, h("label", { for: "ticket-trail-kind" }, "Trail by"), trailKind));
  const checkbox = h(
    "div",
    { class: "field check", "data-field": "reduce_only" },
    reduceOnly,
    h("label", { for: IDS.reduce_only }, "Reduce only (may only shrink a position)"),
  );
  wrappers.set("reduce_only", checkbox);
  const legs = h(
    "fieldset",
    { class: "legs", id: "ticket-legs" },
    h("legend", {}, "Exit legs"),
    field("take_profit.limit_price", "Take-profit limit price", takeProfit),
    field("stop_loss.stop_price", "Stop-loss stop price", stopLossStop),
    field("stop_loss.limit_price", "Stop-loss limit price (optional)", stopLossLimit),
  );

  function current(): TicketInput {
    return {
      symbol: symbol.value,
      side: side.value,
      orderClass: orderClass.value as OrderClass,
      type: type.value as OrderType,
      sizing: sizing.value as "quantity" | "notional",
      quantity: quantity.value.trim(),
      notional: notional.value.trim(),
      limitPrice: limitPrice.value.trim(),
      stopPrice: stopPrice.value.trim(),
      trailKind: trailKind.value as "trail_price" | "trail_percent",
      trail: trail.value.trim(),
      takeProfit: takeProfit.value.trim(),
      stopLossStop: stopLossStop.value.trim(),
      stopLossLimit: stopLossLimit.value.trim(),
      reduceOnly: reduceOnly.checked,
      timeInForce: tif.value,
    };
  }

  function layout(): void {
    const on = ticketFields(current());
    for (const [name, wrapper] of wrappers) wrapper.hidden = !on.has(name);
    legs.hidden = orderClass.value === "simple";
  }
  [orderClass, type, sizing].forEach((el) => el.addEventListener("change", layout));

  function showErrors(errors: FieldErrors): boolean {
    let first: HTMLElement | null = null;
    for (const [name, line] of errorLines) {
      const message = errors[name] ?? "";
      line.textContent = message;
      const control = document.getElementById(IDS[name]);
      if (message) {
        control?.setAttribute("aria-invalid", "true");
        first ??= control;
      } else control?.removeAttribute("aria-invalid");
    }
    first?.focus();
    return first !== null;
  }

  /** The server's field errors, each on the input it names (the rest stay in the summary line). */
  function serverErrors(e: unknown): FieldErrors {
    const out: FieldErrors = {};
    if (!(e instanceof ApiProblem)) return out;
    const shown = ticketFields(current());
    for (const f of e.problem.errors ?? []) {
      const name = fieldFor(f.field, shown);
      if (name && errorLines.has(name) && !out[name]) out[name] = f.message;
    }
    return out;
  }

  async function send(dryRun: boolean): Promise<void> {
    const { body, errors } = orderBody(current());
    verdict.className = "";
    if (showErrors(errors)) {
      verdict.className = "error";
      verdict.textContent = "Check the highlighted fields.";
      return;
    }
    verdict.textContent = dryRun ? "Checking…" : "Placing…";
    try {
      if (dryRun) {
        const result = await api<{ accepted: boolean; estimated_cost?: string }>("POST", `accounts/${accountId}/orders/validate`, body);
        verdict.textContent = `Accepted by every check${result.estimated_cost ? `; estimated cost ${money(result.estimated_cost)}` : ""}.`;
      } else {
        const order = await api<Order>("POST", `accounts/${accountId}/orders`, body);
        verdict.textContent = `Order ${order.status}.`;
        onPlaced(order);
      }
    } catch (e) {
      showErrors(serverErrors(e));
      verdict.className = "error";
      verdict.textContent = problemText(e);
    }
  }

  const element = h(
    "form",
    {
      class: "card ticket",
      id: "ticket",
      "aria-labelledby": "ticket-title",
      novalidate: true,
      onsubmit: (event: Event) => {
        event.preventDefault();
        send(false);
      },
    },
    h("h2", { id: "ticket-title" }, "Order ticket"),
    field("symbol", "Symbol", symbol),
    field("side", "Side", side),
    field("order_class", "Class", orderClass),
    field("type", "Type", type),
    field("sizing", "Size by", sizing),
    field("quantity", "Quantity", quantity),
    field("notional", "Notional", notional),
    field("limit_price", "Limit price", limitPrice),
    field("stop_price", "Stop price", stopPrice),
    trailField,
    legs,
    checkbox,
    field("time_in_force", "Time in force", tif),
    h("div", { class: "actions" }, validateButton, submit),
    verdict,
  );
  layout();
  return {
    element,
    setHalted(halted: boolean) {
      submit.disabled = halted;
    },
  };
}
