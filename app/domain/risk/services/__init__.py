"""Risk management of an account: limits (audited), metrics, post-trade monitoring, violations and
alerts, in one module per idea, re-exported here (the controllers, jobs and tests import this package).

- `access`: who may read an account's risk data (filtered in SQL: anybody else gets 404) and who may
  change its limits (risk_manager and admin; the owner gets 403);
- `mappers`: the column lists of the risk tables' queries and their row-to-schema mappers;
- `limits`: per-account limits and their audit trail;
- `metrics`: exposure, drawdown, VaR and limit utilisation;
- `monitor`: the post-trade monitor of one account and the sweeps over accounts;
- `snapshots`: the equity snapshot job;
- `feeds`: violations and alerts.

Limit writes and the monitor lock the account row like order placement does, so none of them interleave
with an order's pre-trade check. Decisions where DOMAIN.md / API.md are silent:

* Peak equity for drawdown is the highest of `accounts.peak_equity`, every equity snapshot and equity
  now; the monitor and the snapshot job write a higher peak back to `accounts.peak_equity`, so the
  pre-trade drawdown stop sees the same peak as the metrics.
* Historical VaR takes the last `lookback` daily closes of each held symbol and keeps the timestamps all
  of them share. A held symbol without daily candles leaves VaR/volatility null (it is listed in
  `missing_history`) rather than understating the risk of the rest; a flat book has zero VaR.
* The monitor records a post-trade violation on every run that finds a limit breached (it is the record
  of what each check saw); alerts, by contrast, are edge-triggered (risk/alerts.py).
* An automatic switch to reduce_only is a system decision: its audit row has no actor, even when a user
  asked for the check (who asked is kept on the violation's detail as `checked_by`).
"""

from app.domain.risk.services.access import ensure_may_manage, visible_account
from app.domain.risk.services.feeds import acknowledge_alert, list_alerts, list_violations
from app.domain.risk.services.limits import (
    create_limit,
    delete_limit,
    ensure_symbol,
    get_limit,
    limit_audit,
    list_limits,
    raise_problems,
    update_limit,
)
from app.domain.risk.services.mappers import (
    ALERT_COLS,
    AUDIT_COLS,
    LIMIT_COLS,
    VIOLATION_COLS,
    alert_out,
    as_float,
    limit_out,
    violation_out,
)
from app.domain.risk.services.metrics import CLOSES_SQL, risk_metrics
from app.domain.risk.services.monitor import check_accounts, monitor_account, monitor_all, run_monitor
from app.domain.risk.services.snapshots import SNAPSHOT_SQL, snapshot_equity

__all__ = [
    "ALERT_COLS",
    "AUDIT_COLS",
    "CLOSES_SQL",
    "LIMIT_COLS",
    "SNAPSHOT_SQL",
    "VIOLATION_COLS",
    "acknowledge_alert",
    "alert_out",
    "as_float",
    "check_accounts",
    "create_limit",
    "delete_limit",
    "ensure_may_manage",
    "ensure_symbol",
    "get_limit",
    "limit_audit",
    "list_alerts",
    "list_limits",
    "list_violations",
    "limit_out",
    "monitor_account",
    "monitor_all",
    "raise_problems",
    "risk_metrics",
    "run_monitor",
    "snapshot_equity",
    "update_limit",
    "violation_out",
    "visible_account",
]
