"""Typed models of the Tradedesk API, mirroring the server's OpenAPI schemas field for field.

Money, prices and quantities are `Decimal` (the API sends decimal strings; a float would lose cents).
Unknown fields in a response are ignored, so a newer server does not break an older client; the
client's own test suite compares every model here with the server's OpenAPI document, so a field added
or renamed on either side is caught there. `SERVER_SCHEMAS` names the schema each model mirrors.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit", "trailing_stop"]
OrderClass = Literal["simple", "bracket", "oto", "oco"]
TimeInForce = Literal["gtc", "ioc", "fok", "day"]
TradingStateName = Literal["active", "reduce_only", "halted"]


class Model(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Base of every model: keyword construction, defaults left out of request bodies."""


# --- identity -----------------------------------------------------------------------------------------------


class User(Model, kw_only=True):
    id: uuid.UUID
    email: str
    role: str
    created_at: datetime
    is_active: bool = True


class UserCreated(User, kw_only=True):
    api_key: str
    api_key_id: uuid.UUID


class ApiKey(Model, kw_only=True):
    id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey, kw_only=True):
    api_key: str


# --- markets ------------------------------------------------------------------------------------------------


class Exchange(Model, kw_only=True):
    code: str
    name: str
    timezone: str
    session_close: str
    maker_fee_rate: Decimal
    taker_fee_rate: Decimal
    slippage_bps: Decimal
    status: str
    session_open: str
    session_days: list[int]


class Instrument(Model, kw_only=True):
    symbol: str
    exchange: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal
    min_notional: Decimal
    status: str
    last_price: Decimal | None = None
    last_price_at: datetime | None = None


class Candle(Model, kw_only=True):
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class CandleList(Model, kw_only=True):
    symbol: str
    timeframe: str
    items: list[Candle]


class Price(Model, kw_only=True):
    symbol: str
    price: Decimal | None
    ts: datetime | None
    fills: int | None = None


# --- accounts and trading -----------------------------------------------------------------------------------


class Account(Model, kw_only=True):
    id: uuid.UUID
    name: str
    base_currency: str
    initial_cash: Decimal
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    reserved_cash: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees_paid: Decimal
    allow_short: bool
    trading_state: str
    trading_state_reason: str | None
    owner_id: uuid.UUID
    created_at: datetime


class TakeProfit(Model, kw_only=True):
    """The take-profit leg of a bracket, OTO or OCO (a limit order on the closing side)."""

    limit_price: Decimal


class StopLoss(Model, kw_only=True):
    """The stop-loss leg: a stop, or with `limit_price` a stop-limit, on the closing side."""

    stop_price: Decimal
    limit_price: Decimal | None = None


class OrderRequest(Model, kw_only=True):
    """The body of `POST .../orders` and `.../orders/validate` (server schema `OrderCreate`)."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal | None = None  # or `notional` (market orders: a cash amount)
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = "gtc"
    client_order_id: str | None = None
    order_class: OrderClass = "simple"
    take_profit: TakeProfit | None = None
    stop_loss: StopLoss | None = None
    trail_price: Decimal | None = None  # trailing_stop: exactly one of trail_price / trail_percent
    trail_percent: Decimal | None = None
    notional: Decimal | None = None  # market orders: a cash amount instead of `quantity`
    reduce_only: bool = False


class OrderReplace(Model, kw_only=True):
    """The body of `PATCH .../orders/{order_id}`: only the fields to change."""

    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    time_in_force: TimeInForce | None = None


class Order(Model, kw_only=True):
    id: uuid.UUID
    client_order_id: str | None
    account_id: uuid.UUID
    symbol: str
    side: str
    type: str
    quantity: Decimal
    filled_quantity: Decimal
    avg_fill_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: str
    status: str
    reject_reason: str | None
    fees: Decimal
    created_at: datetime
    updated_at: datetime
    order_class: str = "simple"
    parent_id: uuid.UUID | None = None
    leg: str | None = None  # take_profit | stop_loss
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    hwm: Decimal | None = None  # trailing stop: the best price since acceptance
    reduce_only: bool = False
    notional: Decimal | None = None
    expires_at: datetime | None = None
    version: int = 1
    legs: list[Order] | None = None  # with nested=True


class Validation(Model, kw_only=True):
    accepted: bool
    estimated_price: Decimal | None = None
    estimated_cost: Decimal | None = None


class Fill(Model, kw_only=True):
    id: uuid.UUID
    order_id: uuid.UUID
    account_id: uuid.UUID
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str
    created_at: datetime


class OrderEvent(Model, kw_only=True):
    id: int
    order_id: uuid.UUID
    type: str
    status_from: str | None
    status_to: str
    reason: str | None
    fill_id: uuid.UUID | None
    data: dict[str, Any] | None
    created_at: datetime


class Position(Model, kw_only=True):
    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal
    market_price: Decimal | None
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal


class TradingState(Model, kw_only=True):
    account_id: uuid.UUID
    state: str
    reason: str | None
    previous_state: str
    canceled_orders: list[uuid.UUID] = msgspec.field(default_factory=list)  # what halting canceled


class TradeFill(Model, kw_only=True):
    """The execution carried by a fill's trade update (the order gives its symbol and side)."""

    id: uuid.UUID
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str
    realized_pnl: Decimal | None = None


class TradeUpdate(Model, kw_only=True):
    """One order event, from the stream or the activities list: `order` is the order after the event;
    `seq` counts the account's events from 1 without gaps, in commit order."""

    type: str = "trade_update"
    account_id: uuid.UUID
    seq: int
    event: str
    at: datetime
    order: Order
    fill: TradeFill | None = None
    position_qty: Decimal | None = None


class ActivityPage(Model, kw_only=True):
    items: list[TradeUpdate]
    next_after_seq: int | None


# --- risk ---------------------------------------------------------------------------------------------------


class RiskLimit(Model, kw_only=True):
    id: uuid.UUID
    account_id: uuid.UUID
    limit_type: str
    value: Decimal
    symbol: str | None
    warn_at_pct: Decimal
    enabled: bool
    auto_reduce_only: bool
    alert_level: str | None
    created_at: datetime
    updated_at: datetime


class Violation(Model, kw_only=True):
    id: uuid.UUID
    account_id: uuid.UUID
    limit_id: uuid.UUID | None
    limit_type: str
    limit_value: Decimal
    would_be: Decimal
    phase: str
    detail: dict[str, Any] | None
    created_at: datetime


class Alert(Model, kw_only=True):
    id: uuid.UUID
    account_id: uuid.UUID
    limit_id: uuid.UUID
    limit_type: str
    severity: str
    utilisation: float | None
    message: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: uuid.UUID | None


class VarMethod(Model, kw_only=True):
    """A model-based 1-day VaR/CVaR (parametric or Monte Carlo): fractions of `base_amount` and amounts."""

    var_95: float | None
    cvar_95: float | None
    var_99: float | None
    cvar_99: float | None
    var_95_amount: Decimal | None
    cvar_95_amount: Decimal | None
    var_99_amount: Decimal | None
    cvar_99_amount: Decimal | None


class VarReport(Model, kw_only=True):
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
    base_amount: Decimal
    missing_history: list[str]
    parametric: VarMethod | None = None
    monte_carlo: VarMethod | None = None


class LimitUsage(Model, kw_only=True):
    id: uuid.UUID
    limit_type: str
    symbol: str | None
    value: Decimal
    warn_at_pct: Decimal
    used: Decimal | None
    utilisation: float | None
    alert_level: str | None
    current_level: str | None
    breached: bool


class RiskMetrics(Model, kw_only=True):
    account_id: uuid.UUID
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
    var: VarReport
    limits: list[LimitUsage]


# --- risk at desk scale: groups, stress, overview, portfolio VaR ----------------------------------------


class RiskGroup(Model, kw_only=True):
    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    is_firm: bool
    created_at: datetime


class GroupLimit(Model, kw_only=True):
    id: uuid.UUID
    group_id: uuid.UUID
    limit_type: str
    value: Decimal
    symbol: str | None
    warn_at_pct: Decimal
    enabled: bool
    created_at: datetime
    updated_at: datetime
    alert_level: str | None  # the edge-triggered alert state: None, "warning" or "critical"


class GroupAlert(Model, kw_only=True):
    """An alert on a group limit, raised once per crossing of its warning line or of the limit."""

    id: uuid.UUID
    group_id: uuid.UUID
    limit_id: uuid.UUID
    limit_type: str
    severity: str
    utilisation: float | None
    message: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: uuid.UUID | None


class AccountGroup(Model, kw_only=True):
    account_id: uuid.UUID
    group_id: uuid.UUID | None
    group_limited: bool


class StressBreach(Model, kw_only=True):
    limit_id: uuid.UUID
    limit_type: str
    symbol: str | None
    limit_value: Decimal
    would_be: Decimal | None


class StressGroupResult(Model, kw_only=True):
    group_id: uuid.UUID
    name: str
    pnl: Decimal
    equity: Decimal
    equity_after: Decimal
    accounts: int


class StressAccountResult(Model, kw_only=True):
    account_id: uuid.UUID
    equity: Decimal
    pnl: Decimal
    equity_after: Decimal
    breaches: list[StressBreach]


class StressScenarioResult(Model, kw_only=True):
    scenario: str
    kind: str
    shocks: dict[str, float]
    missing_history: list[str]
    firm_pnl: Decimal
    firm_equity: Decimal
    firm_equity_after: Decimal
    groups: list[StressGroupResult]
    accounts: list[StressAccountResult]


class StressResult(Model, kw_only=True):
    as_of: datetime
    results: list[StressScenarioResult]


class HistoricalWindow(Model, kw_only=True):
    start: datetime
    end: datetime


class ScenarioRunSummary(Model, kw_only=True):
    as_of: datetime
    accounts: int
    firm_pnl: Decimal
    firm_equity: Decimal
    firm_equity_after: Decimal
    accounts_breaching: int
    breaches: int
    missing_history: list[str]


class SavedScenario(Model, kw_only=True):
    id: uuid.UUID
    name: str
    kind: str
    shocks: dict[str, float] | None
    historical: HistoricalWindow | None
    daily: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    last_run: ScenarioRunSummary | None  # (null for a trader)


class RiskTotals(Model, kw_only=True):
    accounts: int
    equity: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    daily_pnl: Decimal
    open_orders: int


class LimitUtilisation(Model, kw_only=True):
    scope: str
    owner_id: uuid.UUID
    limit_id: uuid.UUID
    limit_type: str
    symbol: str | None
    value: Decimal
    used: Decimal | None
    utilisation: float | None


class GroupOverview(Model, kw_only=True):
    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    is_firm: bool
    totals: RiskTotals
    limits: list[LimitUtilisation]


class RiskOverview(Model, kw_only=True):
    as_of: datetime
    firm: RiskTotals
    groups: list[GroupOverview]
    top_utilisations: list[LimitUtilisation]
    open_alerts: int
    recent_alerts: list[Alert]
    open_group_alerts: int
    recent_group_alerts: list[GroupAlert]


class ComponentVar(Model, kw_only=True):
    account_id: uuid.UUID
    var_95_amount: Decimal
    var_99_amount: Decimal


class PortfolioVar(Model, kw_only=True):
    group_id: uuid.UUID | None
    accounts: int
    lookback: int
    observations: int
    var_95_amount: Decimal | None
    var_99_amount: Decimal | None
    missing_history: list[str]
    components: list[ComponentVar]


# --- analytics ----------------------------------------------------------------------------------------------


class Performance(Model, kw_only=True):
    periods: int
    total_return: float | None
    cagr: float | None
    annual_volatility: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float | None
    max_drawdown_duration: int | None
    calmar: float | None
    var_95: float | None
    cvar_95: float | None
    var_99: float | None
    cvar_99: float | None
    skew: float | None
    kurtosis: float | None
    best_period: float | None
    worst_period: float | None


class AccountPerformance(Performance, kw_only=True):
    account_id: uuid.UUID
    frequency: str
    periods_per_year: int
    risk_free_rate: float
    points: int
    first_ts: datetime | None
    last_ts: datetime | None


# --- backtests ----------------------------------------------------------------------------------------------


class Strategy(Model, kw_only=True):
    name: str
    description: str
    params_schema: dict[str, Any]
    defaults: dict[str, Any]
    warmup_bars: int


class Backtest(Model, kw_only=True):
    id: uuid.UUID
    status: str
    progress: float
    strategy: str
    params: dict[str, Any]
    symbol: str
    timeframe: str
    start: datetime | None
    end: datetime | None
    initial_cash: Decimal
    commission: Decimal
    slippage_bps: Decimal
    metrics: dict[str, Any] | None
    error: str | None
    input_hash: str | None
    job_key: str | None
    sweep_id: uuid.UUID | None
    owner_id: uuid.UUID
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_seconds: float | None
    run_seconds: float | None
    kind: str = "single"  # or "portfolio"
    symbols: list[str] | None = None  # a portfolio's symbols
    exits: dict[str, float | None] | None = None  # a one-instrument run's exits inside bars
    periods_per_year: int | None = None  # a one-instrument run's annualisation (None: the data's calendar)


class BacktestTrade(Model, kw_only=True):
    index: int
    side: str
    quantity: Decimal
    entry_ts: datetime
    entry_price: Decimal
    exit_ts: datetime | None
    exit_price: Decimal | None
    pnl: Decimal
    return_pct: float
    commission: Decimal
    is_open: bool
    entry_bar: int
    exit_bar: int | None
    symbol: str | None = None  # a portfolio trade's symbol
    exit_reason: str | None = None


class EquityPoint(Model, kw_only=True):
    ts: datetime
    equity: Decimal
    drawdown: float


class BacktestEquity(Model, kw_only=True):
    backtest_id: uuid.UUID
    bars: int
    points: int
    items: list[EquityPoint]


class Commission(Model, kw_only=True):
    """A portfolio's fee per fill: ``max(minimum, fixed + rate * notional)``."""

    rate: Decimal = Decimal(0)
    fixed: Decimal = Decimal(0)
    minimum: Decimal = Decimal(0)


class Exits(Model, kw_only=True):
    """Exits inside bars, in percent (5 = 5 %)."""

    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None


class WeightsAt(Model, kw_only=True):
    ts: datetime
    weights: dict[str, float]


class TargetWeights(Model, kw_only=True, tag="target_weights", tag_field="type"):
    """Fixed `weights` with a `rebalance` period, or a `schedule` of weights."""

    weights: dict[str, float] | None = None
    rebalance: Literal["daily", "weekly", "monthly"] | None = None
    schedule: list[WeightsAt] | None = None


class SignalsAllocation(Model, kw_only=True, tag="signals", tag_field="type"):
    """A registered strategy per symbol."""

    strategy: str
    params: dict[str, Any] = {}
    sizing: Literal["equal_weight", "percent_equity"] = "equal_weight"
    percent: float | None = None


class RulesAllocation(Model, kw_only=True, tag="rules", tag_field="type"):
    """Entry and exit expressions of the rules language (docs/PORTFOLIO.md)."""

    entry: str
    exit: str
    sizing: Literal["equal_weight", "percent_equity"] = "equal_weight"
    percent: float | None = None


Allocation = TargetWeights | SignalsAllocation | RulesAllocation


class BacktestRequest(Model, kw_only=True):
    """The body of `POST /backtests` (server schema `BacktestSubmission`): `strategy` + `symbol` (+
    `params`), or a portfolio: `symbols` + `allocation` and the portfolio settings."""

    timeframe: str
    initial_cash: Decimal
    commission: Decimal | Commission = Decimal(0)
    slippage_bps: Decimal | None = None
    start: datetime | None = None
    end: datetime | None = None
    strategy: str | None = None
    symbol: str | None = None
    params: dict[str, Any] | None = None
    symbols: list[str] | None = None
    allocation: Allocation | None = None
    benchmark: str | None = None
    periods_per_year: int | None = None
    exits: Exits | None = None
    allow_short: bool | None = None
    leverage: float | None = None
    whole_units: bool | None = None


class PositionsPoint(Model, kw_only=True):
    ts: datetime
    quantities: dict[str, Decimal]


class BacktestPositions(Model, kw_only=True):
    """A portfolio backtest's quantity per symbol over time."""

    backtest_id: uuid.UUID
    symbols: list[str]
    bars: int
    points: int
    items: list[PositionsPoint]


class SkippedCombination(Model, kw_only=True):
    params: dict[str, Any]
    error: str


class SweepCreated(Model, kw_only=True):
    id: uuid.UUID
    status: str
    strategy: str
    symbol: str
    timeframe: str
    rank_by: str
    total: int
    skipped: list[SkippedCombination]
    job_key: str | None
    created_at: datetime


class SweepRun(Model, kw_only=True):
    rank: int
    id: uuid.UUID
    params: dict[str, Any]
    value: float | int | str | None
    metrics: dict[str, Any] | None


class Sweep(Model, kw_only=True):
    id: uuid.UUID
    status: str
    strategy: str
    symbol: str
    timeframe: str
    grid: dict[str, Any]
    rank_by: str
    total: int
    counts: dict[str, Any]
    progress: float
    created_at: datetime
    ranked: list[SweepRun]


class ReportToken(Model, kw_only=True):
    token: str
    url: str
    expires_at: datetime


# --- jobs ---------------------------------------------------------------------------------------------------


class JobAccepted(Model, kw_only=True):
    key: str
    status: str


class Job(Model, kw_only=True):
    key: str
    function: str
    status: str
    progress: float
    attempts: int
    retries: int
    timeout: int
    kwargs: dict[str, Any]
    result: Any
    error: str | None
    meta: dict[str, Any]
    queued_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    worker_id: str | None


# --- market feeds (replays and simulations) ---------------------------------------------------------------


class MarketFeed(Model, kw_only=True):
    id: str
    kind: str
    status: str
    progress: float
    symbols: list[str]
    params: dict[str, Any]
    prices_fed: int
    bars_fed: int
    fills: int
    total_prices: int | None
    market_ts: datetime | None
    error: str | None
    label: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None



class CancelFailure(Model, kw_only=True):
    id: uuid.UUID
    reason: str


class CancelAllResult(Model, kw_only=True):
    """`DELETE .../orders`: the orders canceled and the ones that could not be (with the reason)."""

    canceled: list[uuid.UUID]
    failed: list[CancelFailure]


class CloseFailure(Model, kw_only=True):
    symbol: str
    reason: str


class CloseAllResult(Model, kw_only=True):
    """`DELETE .../positions`: the closing orders placed and the positions that could not be closed."""

    orders: list[Order]
    failed: list[CloseFailure]

# Every model and the server schema it mirrors (checked against /schema/openapi.json by the test suite).
SERVER_SCHEMAS: dict[type[Model], str] = {
    User: "UserOut",
    UserCreated: "UserCreated",
    ApiKey: "KeyOut",
    ApiKeyCreated: "KeyCreated",
    Exchange: "ExchangeOut",
    Instrument: "InstrumentOut",
    Candle: "CandleOut",
    CandleList: "CandleList",
    Price: "PriceOut",
    Account: "AccountOut",
    OrderRequest: "OrderCreate",
    TakeProfit: "TakeProfit",
    StopLoss: "StopLoss",
    Order: "OrderOut",
    OrderReplace: "OrderReplace",
    CancelFailure: "CancelFailure",
    CancelAllResult: "CancelAllOut",
    CloseFailure: "CloseFailure",
    CloseAllResult: "CloseAllOut",
    Validation: "ValidateOut",
    Fill: "FillOut",
    OrderEvent: "OrderEventOut",
    Position: "PositionOut",
    TradingState: "TradingStateOut",
    RiskLimit: "LimitOut",
    Violation: "ViolationOut",
    Alert: "AlertOut",
    VarReport: "VarOut",
    VarMethod: "VarMethodOut",
    LimitUsage: "LimitUsage",
    RiskMetrics: "MetricsOut",
    RiskGroup: "GroupOut",
    GroupLimit: "GroupLimitOut",
    GroupAlert: "GroupAlertOut",
    AccountGroup: "AccountGroupOut",
    StressBreach: "StressBreach",
    StressGroupResult: "StressGroupResult",
    StressAccountResult: "StressAccountResult",
    StressScenarioResult: "StressScenarioResult",
    StressResult: "StressOut",
    HistoricalWindow: "HistoricalWindow",
    ScenarioRunSummary: "ScenarioRunSummary",
    SavedScenario: "SavedScenarioOut",
    RiskTotals: "TotalsOut",
    LimitUtilisation: "UtilisationOut",
    GroupOverview: "GroupOverviewOut",
    RiskOverview: "OverviewOut",
    ComponentVar: "ComponentVarOut",
    PortfolioVar: "PortfolioVarOut",
    Performance: "PerformanceOut",
    AccountPerformance: "AccountPerformanceOut",
    Strategy: "StrategyOut",
    Backtest: "BacktestOut",
    BacktestTrade: "TradeOut",
    EquityPoint: "EquityPoint",
    BacktestEquity: "EquityOut",
    Commission: "CommissionModel",
    Exits: "ExitsIn",
    WeightsAt: "ScheduleEntry",
    TargetWeights: "TargetWeights",
    SignalsAllocation: "Signals",
    RulesAllocation: "Rules",
    BacktestRequest: "BacktestSubmission",
    PositionsPoint: "PositionsPoint",
    BacktestPositions: "PositionsOut",
    SkippedCombination: "SkippedCombination",
    SweepCreated: "SweepCreated",
    SweepRun: "SweepRun",
    Sweep: "SweepOut",
    ReportToken: "ReportTokenOut",
    TradeFill: "TradeFill",
    TradeUpdate: "TradeUpdate",
    ActivityPage: "ActivityPage",
    JobAccepted: "JobAccepted",
    Job: "JobOut",
}

__all__ = [name for name in dir() if not name.startswith("_") and name not in {"annotations"}]
