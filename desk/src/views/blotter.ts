import { api, ApiProblem, problemText } from "../api";
import { h, qty, time } from "../dom";
import { amendFields, nest, OPEN, priceText, type Order } from "../orders";

const LABELS: Record<string, string> = {
  quantity: "Quantity",
  limit_price: "Limit price",
  stop_price: "Stop price",
  trail_price: "Trail price",
  trail_percent: "Trail percent",
};

/** The blotter table: entries newest first with their legs beneath, each open order with its actions. */
export function blotterTable(
  orders: Iterable<Order>,
  actions: { cancel(order: Order): void; amend(order: Order, opener: HTMLElement): void },
): HTMLElement {
  const rows = nest(orders);
  if (!rows.length) return h("p", {}, "No orders yet.");
  const head = ["Time", "Symbol", "Side", "Class", "Type", "Qty", "Filled", "Price", "Avg fill", "Status", "Version", "Actions"];
  return h(
    "table",
    { class: "blotter" },
    h("caption", { class: "sr-only" }, "Orders, each entry followed by its exit legs"),
    h("thead", {}, h("tr", {}, ...head.map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      ...rows.map(({ order: o, depth }) => {
        const open = OPEN.has(o.status);
        const name = `${o.side} ${o.quantity} ${o.symbol}${o.leg ? ` ${o.leg.replace("_", "-")} leg` : ""}`;
        const symbolCell = depth
          ? h(
              "td",
              { class: "leg-cell", style: `padding-left: ${8 + 16 * depth}px` },
              h("span", { "aria-hidden": "true" }, "↳ "),
              h("span", { class: "leg-name" }, `${(o.leg ?? "leg").replace("_", "-")} `),
              o.symbol,
            )
          : h("td", {}, o.symbol);
        return h(
          "tr",
          { "data-row": o.id, "data-parent": o.parent_id ?? undefined, class: depth ? "leg" : undefined },
          h("td", {}, time(o.created_at)),
          symbolCell,
          h("td", {}, o.side),
          h("td", {}, o.order_class ?? "simple", o.reduce_only ? h("span", { class: "muted" }, " reduce-only") : null),
          h("td", {}, o.type.replace("_", " ")),
          h("td", {}, qty(o.quantity), o.notional ? h("span", { class: "muted" }, ` (notional ${o.notional})`) : null),
          h("td", {}, qty(o.filled_quantity)),
          h("td", { "data-price-of": o.id }, priceText(o)),
          h("td", {}, o.avg_fill_price ?? "–"),
          h("td", {}, h("span", { class: `badge status-${o.status}`, "data-order": o.id }, o.status)),
          h("td", {}, `v${o.version ?? 1}`),
          h("td", {}, h("div", { class: "row-actions" }, ...rowActions(o, name, open, actions))),
        );
      }),
    ),
  );
}

function rowActions(
  o: Order,
  name: string,
  open: boolean,
  actions: { cancel(order: Order): void; amend(order: Order, opener: HTMLElement): void },
): HTMLElement[] {
  if (!open) return [];
  const cancel = h("button", { type: "button", class: "small", "aria-label": `Cancel ${name}`, "data-key": `cancel:${o.id}`, onclick: () => actions.cancel(o) }, "Cancel");
  // A held leg waits for its entry: it can be canceled (with its group) but not amended.
  if (o.status === "held") return [cancel];
  const amend = h(
    "button",
    {
      type: "button",
      class: "small",
      "aria-label": `Amend ${name}`,
      "data-key": `amend:${o.id}`,
      onclick: (event: Event) => actions.amend(o, event.currentTarget as HTMLElement),
    },
    "Amend",
  );
  return [amend, cancel];
}

/**
 * Amend (PATCH replace) in a modal <dialog>: the browser traps focus in it, Escape closes it, and focus
 * goes back to the Amend button. Only changed fields are sent; the server's field errors show beside
 * the inputs they name.
 */
export function amendDialog(accountId: string, order: Order, onDone: (order: Order) => void): HTMLDialogElement {
  const fields = amendFields(order);
  const inputs = new Map<string, HTMLInputElement>();
  const errors = new Map<string, HTMLElement>();
  const result = h("p", { id: "amend-result", role: "status", "aria-live": "polite" });
  const rows = fields.map((name) => {
    const id = `amend-${name}`;
    const value = (order as unknown as Record<string, string | null>)[name] ?? "";
    const control = h("input", { id, inputmode: "decimal", autocomplete: "off", value, "aria-describedby": `${id}-error` }) as HTMLInputElement;
    const error = h("p", { class: "field-error", id: `${id}-error` });
    inputs.set(name, control);
    errors.set(name, error);
    return h("div", { class: "field" }, h("label", { for: id }, LABELS[name] ?? name), control, error);
  });
  const dialog = h(
    "dialog",
    { id: "amend-dialog", "aria-labelledby": "amend-title", class: "card" },
    h(
      "form",
      {
        onsubmit: async (event: Event) => {
          event.preventDefault();
          const body: Record<string, string> = {};
          for (const [name, control] of inputs) {
            const before = (order as unknown as Record<string, string | null>)[name] ?? "";
            if (control.value.trim() !== before) body[name] = control.value.trim();
          }
          if (!Object.keys(body).length) {
            result.textContent = "Nothing changed.";
            return;
          }
          result.className = "";
          result.textContent = "Sending…";
          try {
            const updated = await api<Order>("PATCH", `accounts/${accountId}/orders/${order.id}`, body);
            onDone(updated);
            dialog.close();
          } catch (e) {
            result.className = "error";
            result.textContent = problemText(e);
            for (const [name, line] of errors) {
              const found = e instanceof ApiProblem ? e.problem.errors?.find((f) => f.field.split(".").pop() === name) : undefined;
              line.textContent = found?.message ?? "";
              if (found) inputs.get(name)!.setAttribute("aria-invalid", "true");
              else inputs.get(name)!.removeAttribute("aria-invalid");
            }
          }
        },
      },
      h("h2", { id: "amend-title" }, `Amend ${order.side} ${order.symbol} ${order.type.replace("_", " ")} (v${order.version ?? 1})`),
      ...rows,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", id: "amend-submit" }, "Send amendment"),
        h("button", { type: "button", onclick: () => dialog.close() }, "Close"),
      ),
      result,
    ),
  ) as HTMLDialogElement;
  dialog.addEventListener("close", () => dialog.remove());
  return dialog;
}
