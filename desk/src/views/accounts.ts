import { api, all, ApiProblem } from "../api";
import { h, money, scroller, table, toast } from "../dom";

export interface Account {
  id: string;
  name: string;
  base_currency: string;
  cash: string;
  equity: string;
  buying_power: string;
  realized_pnl: string;
  unrealized_pnl: string;
  trading_state: string;
  trading_state_reason: string | null;
}

export function stateBadge(state: string): HTMLElement {
  return h("span", { class: `badge state-${state}` }, state);
}

export async function accountsView(): Promise<HTMLElement> {
  const accounts = await all<Account>("accounts");
  const name = h("input", { id: "new-account-name", required: true, maxlength: 100 }) as HTMLInputElement;
  const cash = h("input", { id: "new-account-cash", required: true, inputmode: "decimal", value: "100000" }) as HTMLInputElement;
  const create = h(
    "form",
    {
      class: "inline",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        try {
          const created = await api<Account>("POST", "accounts", { name: name.value, initial_cash: cash.value });
          location.hash = `#/accounts/${created.id}`;
        } catch (e) {
          toast(e instanceof ApiProblem ? e.message : String(e), "error");
        }
      },
    },
    h("label", { for: "new-account-name" }, "Name"),
    name,
    h("label", { for: "new-account-cash" }, "Initial cash"),
    cash,
    h("button", { type: "submit" }, "Create account"),
  );
  const rows = accounts.map((a) => [
    h("a", { href: `#/accounts/${a.id}` }, a.name),
    document.createTextNode(money(a.equity)),
    document.createTextNode(money(a.cash)),
    document.createTextNode(money(a.buying_power)),
    document.createTextNode(money(a.realized_pnl)),
    document.createTextNode(money(a.unrealized_pnl)),
    stateBadge(a.trading_state),
  ]);
  return h(
    "section",
    {},
    h("h1", {}, "Accounts"),
    accounts.length
      ? scroller("Accounts table", table(["Account", "Equity", "Cash", "Buying power", "Realized PnL", "Unrealized PnL", "State"], rows))
      : h("p", {}, "No accounts yet."),
    create,
  );
}
