"""The request and response structs of the risk API (limits, violations, alerts, metrics and VaR,
stress scenarios, risk groups, the desk overview) with their bounds.

Declarations only, no logic beyond msgspec's checks; about 500 lines because they are the whole surface
of one area, and the OpenAPI document is generated from them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from app.domain.risk.checks import LIMIT_TYPES
from app.domain.risk.groups import GROUP_LIMIT_TYPES
from app.lib.validation import at_most, positive

Severity = Literal["warning", "critical"]
Phase = Literal["pre_trade", "post_trade"]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
# The kinds of limit (docs/TRADING.md, "Risk limit types"). Decoded as free text so that an unknown kind
# is a 422 naming the allowed ones (checks.validate_limit), not a bare decoding error; the OpenAPI
# schema still lists them as an enum.
LimitTypeName = Annotated[
    str,
    # Litestar's struct schema takes `extra_json_schema["extra"]` as schema_extra.
    msgspec.Meta(min_length=1, max_length=32, extra_json_schema={"extra": {"enum": list(LIMIT_TYPES)}}),
]
LimitType = Literal[LIMIT_TYPES]  # type: ignore[valid-type]  # answers: always one of them
# The same for group limits (groups.validate_group_limit), a set of kinds of their own.
GroupLimitTypeName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=32, extra_json_schema={"extra": {"enum": list(GROUP_LIMIT_TYPES)}}),
]
_HUNDRED = Decimal(100)


class LimitCreate(msgspec.Struct, forbid_unknown_fields=True):
    limit_type: LimitTypeName
    value: Decimal
    symbol: Symbol | None = None
    warn_at_pct: Decimal = Decimal(80)
    enabled: bool = True
    auto_reduce_only: bool = True

    def __post_init__(self) -> None:
        positive(self, "value", "warn_at_pct")
        at_most(self, "warn_at_pct", _HUNDRED)


class LimitPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Partial update. `symbol: null` widens a limit to the whole account; the kind cannot change
    (a different kind is a different limit with its own alert state and audit trail)."""

    value: Decimal | msgspec.UnsetType = msgspec.UNSET
    symbol: Symbol | None | msgspec.UnsetType = msgspec.UNSET
    warn_at_pct: Decimal | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    auto_reduce_only: bool | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        # Field names as constants: the OpenAPI document reads the bounds from this call (openapi_schema).
        positive(self, "value", "warn_at_pct")
        at_most(self, "warn_at_pct", _HUNDRED)


class LimitOut(msgspec.Struct):
    id: UUID
    account_id: UUID
    limit_type: LimitType
    value: Decimal
    symbol: str | None
    warn_at_pct: Decimal
    enabled: bool
    auto_reduce_only: bool
    alert_level: Severity | None
    created_at: datetime
    updated_at: datetime


class LimitPage(msgspec.Struct):
    items: list[LimitOut]
    next_cursor: str | None


class LimitAuditOut(msgspec.Struct):
    id: int
    limit_id: UUID
    account_id: UUID
    actor_id: UUID | None
    action: Literal["create", "update", "delete"]
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    created_at: datetime


class LimitAuditPage(msgspec.Struct):
    items: list[LimitAuditOut]
    next_cursor: str | None


class LimitUsage(msgspec.Struct):
    """One enabled limit measured now. `used`/`utilisation` are null for per-order kinds (nothing to
    measure between orders) and utilisation is null when unbounded (leverage with no equity)."""

    id: UUID
    limit_type: LimitType
    symbol: str | None
    value: Decimal
    warn_at_pct: Decimal
    used: Decimal | None
    utilisation: float | None
    # `alert_level` is the edge-triggered state as of the last monitor run; `current_level` is what the
    # utilisation says right now ("ok" below warn_at_pct).
    alert_level: Severity | None
    current_level: Literal["ok", "warning", "critical"] | None
    breached: bool


class VarMethodOut(msgspec.Struct):
    """A model-based 1-day VaR/CVaR (risk/calculations.py): fractions of `base_amount` and amounts."""

    var_95: float | None
    cvar_95: float | None
    var_99: float | None
    cvar_99: float | None
    var_95_amount: Decimal | None
    cvar_95_amount: Decimal | None
    var_99_amount: Decimal | None
    cvar_99_amount: Decimal | None


class VarOut(msgspec.Struct):
    """Historical VaR (the top-level figures), and beside it the parametric (variance-covariance) and the
    seeded Monte Carlo VaR over the same closes (null with fewer than three common closes)."""

    lookback: int
    observations: int
    var_95: float | None
    cvar_95: float | None
    var_99: float | None
    cvar_99: float | None
    var_95_amount: Decimal | None
    cvar_95_amount: Decimal | None
    var_99_amount: Decimal | None
    cvar_99_amount: Decimal | None
    annual_volatility: float | None
    # The amount the return fractions are relative to: long-only value, else gross exposure.
    base_amount: Decimal
    missing_history: list[str]
    parametric: VarMethodOut | None = None
    monte_carlo: VarMethodOut | None = None


class MetricsOut(msgspec.Struct):
    account_id: UUID
    as_of: datetime
    base_currency: str
    equity: Decimal
    cash: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    leverage: float | None
    concentration_pct: float | None
    largest_symbol: str | None
    daily_pnl: Decimal | None
    day_open_equity: Decimal | None
    peak_equity: Decimal
    drawdown: float | None
    trading_state: str
    open_orders: int
    orders_last_minute: int
    var: VarOut
    limits: list[LimitUsage]


class ViolationOut(msgspec.Struct):
    id: UUID
    account_id: UUID
    limit_id: UUID | None
    limit_type: LimitType
    limit_value: Decimal
    would_be: Decimal
    phase: Phase
    detail: dict[str, Any] | None
    created_at: datetime


class ViolationPage(msgspec.Struct):
    items: list[ViolationOut]
    next_cursor: str | None


class AlertOut(msgspec.Struct):
    id: UUID
    account_id: UUID
    limit_id: UUID
    limit_type: LimitType
    severity: Severity
    utilisation: float | None  # used / value when the alert was raised; null if unbounded
    message: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: UUID | None


class AlertPage(msgspec.Struct):
    items: list[AlertOut]
    next_cursor: str | None


class MonitorResult(msgspec.Struct):
    account_id: UUID
    checked_at: datetime
    limits_checked: int
    violations: list[ViolationOut]
    alerts: list[AlertOut]
    trading_state: str
    previous_trading_state: str


# ------------------------------------------------------------------------------------------- stress tests

# A fractional price move: -0.10 is a 10% fall; -1 takes the price to zero (a price cannot go below).
# The range is checked by the service (stress_service.check_shocks), not here: a decode error in a mapping
# cannot say which key it is at, and a scenario of 50 symbols needs to know which shock is wrong.
SHOCK_MIN, SHOCK_MAX = -1.0, 100.0
Shock = Annotated[
    float,
    msgspec.Meta(
        description=f"a fractional price move in [{SHOCK_MIN:g}, {SHOCK_MAX:g}]: -0.10 is a 10% fall"
    ),
]
ShockKey = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class HistoricalWindow(msgspec.Struct, forbid_unknown_fields=True):
    """Replay the move of each symbol between two instants of its stored daily candles."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("`historical.end` must be after `historical.start`")


class StressScenario(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of `shocks` (symbol -> fractional move, `*` for every symbol without its own) or
    `historical` (a window of daily candles)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    shocks: Annotated[dict[ShockKey, Shock], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    historical: HistoricalWindow | None = None

    def __post_init__(self) -> None:
        if (self.shocks is None) == (self.historical is None):
            raise ValueError("a scenario needs exactly one of `shocks` and `historical`")


class StressRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Without `accounts`, every account the caller may read (a trader: their own; a risk manager: the
    firm)."""

    scenarios: Annotated[list[StressScenario], msgspec.Meta(min_length=1, max_length=50)]
    accounts: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=20_000)] | None = None
    groups: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=1000)] | None = None


# The stress answer holds one StressAccountResult per account and scenario (200,000 for 10,000 accounts
# x 20 scenarios). They and their breaches never take part in a reference cycle, so they are left out of
# the garbage collector (`gc=False`): tracked, their creation set off collections that walked every one
# of them again, which took most of the time of building the answer.
class StressBreach(msgspec.Struct, gc=False):
    """A limit the account would be over after the shock (`would_be` null: unbounded, no equity left)."""

    limit_id: UUID
    limit_type: str
    symbol: str | None
    limit_value: Decimal
    would_be: Decimal | None


class StressAccountResult(msgspec.Struct, gc=False):
    account_id: UUID
    equity: Decimal
    pnl: Decimal
    equity_after: Decimal
    breaches: list[StressBreach]


class StressGroupResult(msgspec.Struct):
    group_id: UUID
    name: str
    pnl: Decimal
    equity: Decimal
    equity_after: Decimal
    accounts: int


class StressScenarioResult(msgspec.Struct):
    scenario: str
    kind: Literal["shocks", "historical"]
    # The move applied to each symbol held by the stressed accounts.
    shocks: dict[str, float]
    # Held symbols a historical window has no daily close for (at or before `start` and `end`): not moved.
    missing_history: list[str]
    firm_pnl: Decimal
    firm_equity: Decimal
    firm_equity_after: Decimal
    groups: list[StressGroupResult]
    accounts: list[StressAccountResult]


class StressOut(msgspec.Struct):
    as_of: datetime
    results: list[StressScenarioResult]


# ------------------------------------------------------------------------------------------------ groups

GroupName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]  # not blank


class GroupCreate(msgspec.Struct, forbid_unknown_fields=True):
    """`is_firm` makes the single top group (no parent). Without `parent_id`, a group goes under the firm
    group when there is one."""

    name: GroupName
    parent_id: UUID | None = None
    is_firm: bool = False


class GroupPatch(msgspec.Struct, forbid_unknown_fields=True):
    """A new name (the tree is changed by moving accounts, and by removing empty groups)."""

    name: GroupName | None = None


class GroupOut(msgspec.Struct):
    id: UUID
    name: str
    parent_id: UUID | None
    is_firm: bool
    created_at: datetime


class GroupPage(msgspec.Struct):
    items: list[GroupOut]
    next_cursor: str | None


class AccountGroupIn(msgspec.Struct, forbid_unknown_fields=True):
    """`null` takes the account out of every group."""

    group_id: UUID | None


class AccountGroupOut(msgspec.Struct):
    account_id: UUID
    group_id: UUID | None
    group_limited: bool


class GroupLimitCreate(msgspec.Struct, forbid_unknown_fields=True):
    limit_type: GroupLimitTypeName
    value: Decimal
    symbol: Symbol | None = None
    warn_at_pct: Decimal = Decimal(80)
    enabled: bool = True

    def __post_init__(self) -> None:
        positive(self, "value", "warn_at_pct")
        at_most(self, "warn_at_pct", _HUNDRED)


class GroupLimitPatch(msgspec.Struct, forbid_unknown_fields=True):
    value: Decimal | msgspec.UnsetType = msgspec.UNSET
    warn_at_pct: Decimal | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        # Field names as constants: the OpenAPI document reads the bounds from this call (openapi_schema).
        positive(self, "value", "warn_at_pct")
        at_most(self, "warn_at_pct", _HUNDRED)


class GroupLimitOut(msgspec.Struct):
    id: UUID
    group_id: UUID
    limit_type: str
    value: Decimal
    symbol: str | None
    warn_at_pct: Decimal
    enabled: bool
    created_at: datetime
    updated_at: datetime
    # The edge-triggered alert state as of the last post-trade check of the group (risk/group_alerts.py).
    alert_level: Severity | None


class GroupAlertOut(msgspec.Struct):
    """An alert on a group limit (risk/group_alerts.py)."""

    id: UUID
    group_id: UUID
    limit_id: UUID
    limit_type: str
    severity: Severity
    utilisation: float | None  # used / value when the alert was raised; null if unbounded
    message: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: UUID | None


class GroupAlertPage(msgspec.Struct):
    items: list[GroupAlertOut]
    next_cursor: str | None


class GroupLimitPage(msgspec.Struct):
    items: list[GroupLimitOut]
    next_cursor: str | None


class UtilisationOut(msgspec.Struct):
    """One limit measured now, of an account (`scope: account`) or a group (`scope: group`)."""

    scope: Literal["account", "group"]
    owner_id: UUID  # the account's or the group's id
    limit_id: UUID
    limit_type: str
    symbol: str | None
    value: Decimal
    used: Decimal | None
    utilisation: float | None


class TotalsOut(msgspec.Struct):
    accounts: int
    equity: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    daily_pnl: Decimal
    open_orders: int


class GroupOverviewOut(msgspec.Struct):
    id: UUID
    name: str
    parent_id: UUID | None
    is_firm: bool
    totals: TotalsOut
    limits: list[UtilisationOut]


class OverviewOut(msgspec.Struct):
    as_of: datetime
    firm: TotalsOut  # every account
    groups: list[GroupOverviewOut]
    top_utilisations: list[UtilisationOut]
    open_alerts: int
    recent_alerts: list[AlertOut]
    open_group_alerts: int
    recent_group_alerts: list[GroupAlertOut]


class ComponentVarOut(msgspec.Struct):
    account_id: UUID
    var_95_amount: Decimal
    var_99_amount: Decimal


class PortfolioVarOut(msgspec.Struct):
    """Parametric 1-day VaR of the accounts' combined positions, with each account's component (Euler
    allocation: the components add up to the total; a negative one hedges the rest)."""

    group_id: UUID | None  # null: firm-wide (every account)
    accounts: int
    lookback: int
    observations: int
    var_95_amount: Decimal | None
    var_99_amount: Decimal | None
    missing_history: list[str]
    components: list[ComponentVarOut]


# --------------------------------------------------------------------------------------- saved scenarios


class SavedScenarioCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A stress scenario kept under a unique name: exactly one of `shocks` and `historical` (else 422), as
    in `POST /api/v1/risk/stress`. `daily` scenarios are run over the firm by `risk.run_saved_scenarios`."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    shocks: Annotated[dict[ShockKey, Shock], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    historical: HistoricalWindow | None = None
    daily: bool = True


class SavedScenarioPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields to change; `shocks` or `historical` (not both: 422) replaces the scenario's definition."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    shocks: Annotated[dict[ShockKey, Shock], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    historical: HistoricalWindow | None = None
    daily: bool | None = None


class ScenarioRunSummary(msgspec.Struct):
    """The firm-level figures of a scenario's last daily run (every account)."""

    as_of: datetime
    accounts: int
    firm_pnl: Decimal
    firm_equity: Decimal
    firm_equity_after: Decimal
    accounts_breaching: int  # accounts with at least one breach after the move
    breaches: int
    missing_history: list[str]


class SavedScenarioOut(msgspec.Struct):
    """`last_run` is null until the daily job has run the scenario, and for a trader."""

    id: UUID
    name: str
    kind: Literal["shocks", "historical"]
    shocks: dict[str, float] | None
    historical: HistoricalWindow | None
    daily: bool
    created_by: UUID | None
    created_at: datetime
    updated_at: datetime
    last_run: ScenarioRunSummary | None


class SavedScenarioPage(msgspec.Struct):
    items: list[SavedScenarioOut]
    next_cursor: str | None


class ScenarioRunIn(msgspec.Struct, forbid_unknown_fields=True):
    """Which accounts to stress under a saved scenario; the rules of `POST /api/v1/risk/stress`."""

    accounts: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=20_000)] | None = None
    groups: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=1000)] | None = None
