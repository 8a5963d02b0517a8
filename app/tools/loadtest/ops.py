"""The scenarios of a load run and the request list each worker cycles through."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

SCENARIOS = ("health", "me", "instruments", "orders-list", "positions", "place-order", "validate", "mix")
# 60 % reads spread evenly, 25 % placements, 15 % validations.
MIX_WEIGHTS = {"instruments": 20, "orders-list": 20, "positions": 20, "place-order": 25, "validate": 15}
NOT_DONE = 0xFFFF  # status slot of a request that never completed (cancelled at the hard deadline)
MAX_SAMPLES = 50_000_000


@dataclass(slots=True)
class Op:
    name: str
    method: str
    path: str
    # Request number -> body; None for bodiless requests.
    body: Callable[[int], bytes] | None = None


def needs_account(scenario: str) -> bool:
    return scenario in ("orders-list", "positions", "place-order", "validate", "mix")


def build_ops(
    scenario: str, *, prefix: str, account: str | None, symbol: str, quantity: str, run_id: str
) -> tuple[list[Op], list[int]]:
    """The operations of a scenario and the cyclic schedule of op indices the workers walk through."""
    order_head = (
        f'{{"symbol":{json.dumps(symbol)},"side":"buy","type":"market","quantity":"{quantity}",'
        f'"time_in_force":"gtc","client_order_id":"lt-{run_id}-'
    ).encode()

    def order_body(n: int) -> bytes:
        # Unique per request (and per run) so every placement is a new order, never an idempotent replay.
        return order_head + str(n).encode() + b'"}'

    acct = f"{prefix}/api/v1/accounts/{account}"
    catalogue = {
        "health": Op("health", "GET", f"{prefix}/health"),
        "me": Op("me", "GET", f"{prefix}/api/v1/users/me"),
        "instruments": Op("instruments", "GET", f"{prefix}/api/v1/instruments"),
        "orders-list": Op("orders-list", "GET", f"{acct}/orders?limit=100"),
        "positions": Op("positions", "GET", f"{acct}/positions"),
        "place-order": Op("place-order", "POST", f"{acct}/orders", order_body),
        "validate": Op("validate", "POST", f"{acct}/orders/validate", order_body),
    }
    accounts = account.split(",") if account and "," in account else None
    if accounts and scenario in ("orders-list", "positions", "place-order", "validate"):
        # Several accounts (bots each trading their own): one op per account, and each client keeps to one
        # of them (client i trades account i mod n; run_load pins them), so that concurrent requests do not
        # all queue on one account's row lock, and no bot has two of its own orders in flight at once.
        per_account = [
            build_ops(scenario, prefix=prefix, account=a, symbol=symbol, quantity=quantity, run_id=run_id)[0][
                0
            ]
            for a in accounts
        ]
        return per_account, list(range(len(per_account)))
    if scenario != "mix":
        return [catalogue[scenario]], [0]
    ops = [catalogue[name] for name in MIX_WEIGHTS]
    schedule = [i for i, weight in enumerate(MIX_WEIGHTS.values()) for _ in range(weight)]
    # Interleaved, not in blocks, so any window of the run sees the mix; seeded so runs are comparable.
    random.Random(7).shuffle(schedule)
    return ops, schedule
