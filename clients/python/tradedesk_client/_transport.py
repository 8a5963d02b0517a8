"""Requests, retries and decoding, shared by the sync and the async client.

Retry rules (the part of a trading client that most often goes wrong):
- 429 and 503 (and 502/504 from a proxy) are retried after the server's `Retry-After` when it sends one,
  else after an exponential backoff with full jitter, so a fleet of bots does not reconnect in lockstep.
- A connection error or a timeout is retried too. That is safe for writes only because every write
  carries an `Idempotency-Key` that stays the same across the retries of one logical call: if the first
  attempt reached the server, the retry gets the stored first response back instead of placing a
  second order. A retry that arrives while the first attempt is still running gets 409
  `idempotency-in-flight`, which is retried the same way.
- Everything else (4xx) is raised at once as a typed `ApiError`.
"""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from tradedesk_client.errors import ApiError, error_for

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_json_encoder = msgspec.json.Encoder(decimal_format="string")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. `attempts` counts the first try (1 = never retry)."""

    attempts: int = 6
    backoff: float = 0.2
    max_backoff: float = 10.0
    max_retry_after: float = 60.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            # A little jitter on top, so clients told the same Retry-After do not all return at once.
            return min(retry_after, self.max_retry_after) + random.uniform(0, self.backoff)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class Call:
    """One logical API call; its retries reuse the same idempotency key."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    model: Any = None
    idempotency_key: str | None = None
    expect_json: bool = True

    def __post_init__(self) -> None:
        if self.method in WRITE_METHODS and self.idempotency_key is None:
            self.idempotency_key = str(uuid.uuid4())

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        headers = {}
        content = None
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        if self.body is not None:
            headers["Content-Type"] = "application/json"
            content = _json_encoder.encode(self.body)
        params = {k: _param(v) for k, v in (self.params or {}).items() if v is not None}
        return client.build_request(self.method, self.path, params=params, content=content, headers=headers)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def should_retry(policy: RetryPolicy, attempt: int, response: httpx.Response | None) -> bool:
    if attempt >= policy.attempts:
        return False
    if response is None:  # connection error or timeout
        return True
    if response.status_code in policy.statuses:
        return True
    return (
        response.status_code == 409
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and b"idempotency-in-flight" in response.content
    )


def raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        problem = msgspec.json.decode(response.content)
        if not isinstance(problem, dict):
            raise ValueError
    except (msgspec.DecodeError, ValueError):
        problem = {"title": response.reason_phrase, "detail": response.text[:500]}
    raise error_for(
        response.status_code,
        problem,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def decode(call: Call, response: httpx.Response) -> Any:
    raise_for_problem(response)
    if not call.expect_json or response.status_code == 204 or not response.content:
        return None if call.expect_json else response.text
    if call.model is None:
        return msgspec.json.decode(response.content)
    return msgspec.json.decode(response.content, type=call.model)


__all__ = ["ApiError", "Call", "RetryPolicy", "decode", "parse_retry_after", "should_retry"]
