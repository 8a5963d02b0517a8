"""Brute-force protection for API keys: failures per client IP are slowed, then refused for a while.

Only failed authentications touch it: a request with a valid key costs nothing here (no Redis round
trip), whatever its IP. Per IP, within `window_seconds`:
- after `slow_after` failures each further 401 is delayed, doubling from `delay_base_ms` up to
  `delay_max_ms`, which caps how fast one client can try keys on a connection;
- after `block_after` failures the IP is blocked for `block_seconds`: its failed attempts are answered
  429 with `Retry-After` at once, without an audit row each (one `auth.ip_blocked` event marks the
  start), so a flood costs one Redis round trip and a key lookup per attempt.

A valid key is never refused, not even from a blocked IP: keys carry 256 bits of entropy and cannot be
guessed, so the block is about load and noise, and refusing valid keys would let anybody who shares an
address with users (a NAT, a proxy) lock them out. Missing credentials are plain 401s, not counted:
they guess nothing.

Counts live in the app's KV store (Redis across processes, memory in embedded mode). If it is down,
failures are answered 401 without counting, like the rate limiter's safe mode.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from litestar.types import Scope

from app.domain.audit.services import client_ip, record_detached
from app.lib.errors import DomainError, RateLimited, Unauthenticated
from app.lib.kv import KV
from app.lib.log import ThrottledWarning, get_logger
from app.lib.metrics import AUTH_FAILURES, AUTH_IP_BLOCKS
from app.lib.settings import Settings

log = get_logger("app.security")
_warn_store_unavailable = ThrottledWarning(log, "auth_failure_store_unavailable")

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class BruteForcePolicy:
    window_seconds: int = 300
    slow_after: int = 5
    block_after: int = 20
    block_seconds: int = 900
    delay_base_ms: int = 250
    delay_max_ms: int = 5_000

    @classmethod
    def from_settings(cls, settings: Settings) -> BruteForcePolicy:
        return cls(
            window_seconds=settings.auth_failure_window_seconds,
            slow_after=settings.auth_slowdown_after,
            block_after=settings.auth_block_after,
            block_seconds=settings.auth_block_seconds,
            delay_base_ms=settings.auth_slowdown_base_ms,
            delay_max_ms=settings.auth_slowdown_max_ms,
        )

    def delay_seconds(self, failures: int) -> float:
        """How long the answer to the `failures`-th failure in the window is held back."""
        if failures <= self.slow_after:
            return 0.0
        return (
            min(self.delay_base_ms * 2 ** min(failures - self.slow_after - 1, 30), self.delay_max_ms) / 1000
        )


async def _block_remaining(kv: KV, policy: BruteForcePolicy, ip: str) -> tuple[float, bool]:
    """Seconds the IP stays blocked, and whether this call started the block."""
    key = f"authblock:{ip}"
    for _ in range(2):  # a block that expires between the two calls is started again
        until = time.time() + policy.block_seconds
        if await kv.set_nx(key, str(until).encode(), policy.block_seconds):
            return float(policy.block_seconds), True
        current = await kv.get(key)
        if current is not None:
            return max(float(current) - time.time(), 1.0), False
    return float(policy.block_seconds), False


async def reject_failed_authentication(
    scope: Scope, policy: BruteForcePolicy, key_prefix: str | None
) -> DomainError:
    """Count a failed key from this request's IP; audit it, hold it back, and return the error to raise."""
    state = scope["app"].state
    ip = client_ip(scope)
    try:
        failures, _ = await state.kv.incr_window(f"authfail:{ip}", policy.window_seconds)
        blocked_for, newly_blocked = (
            await _block_remaining(state.kv, policy, ip) if failures > policy.block_after else (0.0, False)
        )
    except Exception as exc:
        _warn_store_unavailable(error=repr(exc)[:200])
        failures, blocked_for, newly_blocked = 0, 0.0, False
    if blocked_for:
        AUTH_FAILURES.labels("blocked").inc()
        if newly_blocked:
            AUTH_IP_BLOCKS.inc()
            await record_detached(
                state.engine,
                "auth.ip_blocked",
                target=ip,
                details={"failures": failures, "block_seconds": policy.block_seconds},
            )
        retry_after = str(max(int(blocked_for + 0.999), 1))
        return RateLimited(
            "Too many failed authentication attempts from this address",
            headers={**UNAUTHORIZED_HEADERS, "Retry-After": retry_after},
        )
    delay = policy.delay_seconds(failures)
    AUTH_FAILURES.labels("slowed" if delay else "rejected").inc()
    await record_detached(
        state.engine, "auth.failed", target=ip, details={"key_prefix": key_prefix, "failures": failures}
    )
    if delay:
        await asyncio.sleep(delay)
    return Unauthenticated("Invalid, expired or revoked API key", headers=UNAUTHORIZED_HEADERS)
