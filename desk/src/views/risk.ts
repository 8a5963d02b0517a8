import { ApiProblem, api, all, problemText } from "../api";
import { clear, h, money, pct, time, toast } from "../dom";
import type { Account } from "./accounts";
import { stateBadge } from "./accounts";

interface LimitUsage {
  limit_type: string;
  symbol: string | null;
  value: string;
  used: string | null;
  utilisation: number | null;
  breached: boolean;
}
interface Metrics {
  equity: string;
  gross_exposure: string;
  net_exposure: string;
  daily_pnl: string | null;
  limits: LimitUsage[];
}
interface Alert {
  id: string;
  account_id: string;
  limit_type: string;
  severity: string;
  message: string;
  created_at: string;
}
interface Violation {
  limit_type: string;
  limit_value: string;
  would_be: string;
  phase: string;
  created_at: string;
}

interface GroupAlert {
  id: string;
  group_id: string;
  severity: string;
  message: string;
  created_at: string;
}
interface Overview {
  groups: {
    id: string;
    name: string;
    totals: { accounts: number; gross_exposure: string; net_exposure: string; daily_pnl: string };
    limits: Pick<LimitUsage, "limit_type" | "symbol" | "value" | "utilisation">[];
  }[];
  open_group_alerts: number;
  recent_group_alerts: GroupAlert[];
}

function bar(u: Pick<LimitUsage, "limit_type" | "symbol" | "value" | "utilisation">): HTMLElement {
  const value = Math.max(0, Math.min(1, u.utilisation ?? 0));
  const level = (u.utilisation ?? 0) >= 1 ? "critical" : (u.utilisation ?? 0) >= 0.8 ? "warning" : "ok";
  return h(
    "div",
    { class: "usage" },
    h("span", {}, `${u.limit_type}${u.symbol ? ` (${u.symbol})` : ""}`),
    h("meter", { min: 0, max: 1, low: 0.8, high: 0.99, optimum: 0, value, "aria-label": `${u.limit_type} utilisation` }),
    h("span", { class: `level-${level}` }, `${pct(u.utilisation)} of ${u.value}`),
  );
}

// An open alert (of an account or a group) with its Acknowledge button.
function alertLine(alert: Pick<Alert, "severity" | "message" | "created_at">, acknowledge: () => Promise<void>): HTMLElement {
  return h(
    "p",
    { class: `alert ${alert.severity}` },
    `${time(alert.created_at)} ${alert.severity}: ${alert.message} `,
    h("button", { type: "button", class: "small", onclick: acknowledge }, "Acknowledge"),
  );
}

// Risk managers' groups: each group with limits, its utilisations and its open alerts (from the
// overview, the newest twenty), each acknowledged in place. A trader's overview is 403: no panel.
async function groupsPanel(): Promise<HTMLElement | null> {
  let overview: Overview;
  try {
    overview = await api<Overview>("GET", "risk/overview");
  } catch (e) {
    if (e instanceof ApiProblem && e.status === 403) return null;
    throw e;
  }
  const panel = h("div", { id: "risk-groups" }, h("h2", {}, "Groups"));
  const alertsOf = new Map<string, GroupAlert[]>();
  for (const alert of overview.recent_group_alerts) {
    alertsOf.set(alert.group_id, [...(alertsOf.get(alert.group_id) ?? []), alert]);
  }
  const shown = overview.groups.filter((g) => g.limits.length || alertsOf.has(g.id));
  if (!shown.length) panel.append(h("p", { class: "muted" }, "No group limits."));
  for (const group of shown) {
    const card = h(
      "article",
      { class: "card", "data-group": group.id },
      h("h3", {}, group.name),
      h(
        "p",
        {},
        `${group.totals.accounts} account${group.totals.accounts === 1 ? "" : "s"} · ` +
          `gross ${money(group.totals.gross_exposure)} · net ${money(group.totals.net_exposure)}`,
      ),
      ...group.limits.map(bar),
    );
    for (const alert of alertsOf.get(group.id) ?? []) {
      card.append(
        alertLine(alert, async () => {
          try {
            await api("POST", `risk/groups/${group.id}/alerts/${alert.id}/acknowledge`);
          } catch (e) {
            toast(problemText(e), "error");
          }
          const fresh = await groupsPanel();
          if (fresh) panel.replaceWith(fresh);
        }),
      );
    }
    panel.append(card);
  }
  return panel;
}

export async function riskView(): Promise<HTMLElement> {
  const accounts = await all<Account>("accounts");
  const metrics = new Map<string, Metrics>();
  await Promise.all(accounts.map(async (a) => metrics.set(a.id, await api<Metrics>("GET", `accounts/${a.id}/risk/metrics`))));
  const totals = { equity: 0, gross: 0, net: 0, pnl: 0 };
  for (const m of metrics.values()) {
    totals.equity += Number(m.equity);
    totals.gross += Number(m.gross_exposure);
    totals.net += Number(m.net_exposure);
    totals.pnl += Number(m.daily_pnl ?? 0);
  }
  const firm = h(
    "div",
    { class: "cards", id: "firm-totals" },
    ...[
      ["Firm equity", totals.equity],
      ["Gross exposure", totals.gross],
      ["Net exposure", totals.net],
      ["Daily PnL", totals.pnl],
    ].map(([label, value]) => h("div", { class: "card stat" }, h("span", {}, String(label)), h("strong", {}, money(String(value))))),
  );

  const list = h("div", { id: "risk-accounts" });
  for (const account of accounts) {
    const m = metrics.get(account.id)!;
    const alertsBox = h("div", {});
    const violationsBox = h("div", {});
    const reason = h("input", { id: `reason-${account.id}`, placeholder: "reason", required: true }) as HTMLInputElement;
    const state = h(
      "select",
      { id: `state-${account.id}`, "aria-label": `Trading state of ${account.name}` },
      ...["active", "reduce_only", "halted"].map((s) => h("option", { value: s, selected: s === account.trading_state }, s)),
    ) as HTMLSelectElement;
    const stateForm = h(
      "form",
      {
        class: "inline",
        onsubmit: async (event: Event) => {
          event.preventDefault();
          try {
            await api("PUT", `accounts/${account.id}/trading-state`, { state: state.value, reason: reason.value });
            toast(`${account.name}: ${state.value}`);
            badge.replaceWith((badge = stateBadge(state.value)));
          } catch (e) {
            toast(problemText(e), "error");
          }
        },
      },
      h("label", { for: `state-${account.id}` }, "State"),
      state,
      h("label", { for: `reason-${account.id}` }, "Reason"),
      reason,
      h("button", { type: "submit" }, "Apply"),
    );
    let badge = stateBadge(account.trading_state);

    async function loadAlerts(): Promise<void> {
      const alerts = (await api<{ items: Alert[] }>("GET", `accounts/${account.id}/risk/alerts?acknowledged=false&limit=20`)).items;
      clear(alertsBox);
      for (const alert of alerts) {
        alertsBox.append(
          alertLine(alert, async () => {
            await api("POST", `accounts/${account.id}/risk/alerts/${alert.id}/acknowledge`);
            await loadAlerts();
          }),
        );
      }
      const violations = (await api<{ items: Violation[] }>("GET", `accounts/${account.id}/risk/violations?limit=5`)).items;
      clear(violationsBox);
      for (const v of violations) {
        violationsBox.append(h("p", { class: "violation" }, `${time(v.created_at)} ${v.phase}: ${v.limit_type} ${v.would_be} over ${v.limit_value}`));
      }
    }
    await loadAlerts();
    list.append(
      h(
        "article",
        { class: "card", "data-account": account.id },
        h("h2", {}, h("a", { href: `#/accounts/${account.id}` }, account.name), " ", badge),
        h("p", {}, `Equity ${money(m.equity)} · gross ${money(m.gross_exposure)} · net ${money(m.net_exposure)}`),
        ...(m.limits.length ? m.limits.map(bar) : [h("p", { class: "muted" }, "No limits.")]),
        alertsBox,
        violationsBox,
        stateForm,
      ),
    );
  }
  const groups = await groupsPanel();
  return h("section", {}, h("h1", {}, "Risk"), firm, ...(groups ? [groups] : []), list);
}
