"""The floor: the three benchmark endpoints as a bare ASGI callable (asyncpg pool, msgspec, hand-written SQL).

No framework, no ORM, no validation library. It does the same database work as our app and the FastAPI
peer (auth by key hash, owner check, the same locks and rows written), so the gap between it and a
framework is the framework's own cost. Where hand-written SQL allows it, round trips are folded (the
owner check rides along with the list query; a placement is lock, one read, one write statement), since
that is what "as fast as reasonably possible" means for code holding a row lock. Serve with::

    DATABASE_URL=postgresql://... granian --interface asgi --workers 1 --loop uvloop --no-ws \
        benchmarks.peers.raw_asgi_app:app
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import msgspec

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/td_peers")
POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10")) + int(os.environ.get("DB_MAX_OVERFLOW", "10"))
# Our app memoizes verified keys for API_KEY_CACHE_SECONDS (1 s): the peers do the same so that the
# comparison measures frameworks, not whether a cache exists.
KEY_CACHE_SECONDS = float(os.environ.get("API_KEY_CACHE_SECONDS", "1.0"))
FEE_QUANTUM = Decimal("1E-8")
AVG_QUANTUM = Decimal("1E-10")
ZERO = Decimal(0)

ORDER_COLS = (
    "id, client_order_id, account_id, symbol, side, type, quantity, filled_quantity, avg_fill_price,"
    " limit_price, stop_price, time_in_force, status, reject_reason, created_at, updated_at"
)
SQL_KEY = """SELECT k.user_id, u.role, k.expires_at FROM api_keys k JOIN users u ON u.id = k.user_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.is_active"""
SQL_ACCOUNT_VISIBLE = "SELECT 1 FROM accounts WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2)"
# The owner check rides along as EXISTS so the common case is one round trip; an empty page is then
# disambiguated (no orders vs no such account) with SQL_ACCOUNT_VISIBLE.
SQL_LIST = f"""SELECT {ORDER_COLS} FROM orders
               WHERE account_id = $1 AND EXISTS ({SQL_ACCOUNT_VISIBLE})
               ORDER BY created_at DESC, id DESC LIMIT $3"""
SQL_LIST_AFTER = f"""SELECT {ORDER_COLS} FROM orders
               WHERE account_id = $1 AND EXISTS ({SQL_ACCOUNT_VISIBLE}) AND (created_at, id) < ($4, $5)
               ORDER BY created_at DESC, id DESC LIMIT $3"""
SQL_LOCK_ACCOUNT = """SELECT cash, reserved_cash, trading_state, allow_short FROM accounts
                      WHERE id = $1 AND ($2::uuid IS NULL OR owner_id = $2) FOR UPDATE"""
# Everything else the checks need, read in one statement *after* the lock is held: under READ COMMITTED
# a new statement sees what the previous lock holder committed (folding these reads into the locking
# query would return the position as it was before the wait).
SQL_STATE = """
SELECT i.status, i.lot_size, i.min_quantity, i.min_notional, i.last_price, e.taker_fee_rate,
       p.quantity AS pos_qty, p.avg_entry_price AS pos_avg,
       (SELECT o.id FROM orders o WHERE o.account_id = $1 AND o.client_order_id = $3) AS existing_id
FROM (SELECT 1) AS one
LEFT JOIN (instruments i JOIN exchanges e ON e.code = i.exchange_code) ON i.symbol = $2
LEFT JOIN positions p ON p.account_id = $1 AND p.symbol = $2
"""
SQL_ORDER = f"SELECT {ORDER_COLS} FROM orders WHERE id = $1"
# Order, fill, position, cash and the three audit events in one statement: one round trip in the lock.
# (Foreign keys are checked at the end of the statement, so the fill may reference the new order.)
SQL_PLACE = f"""
WITH o AS (
    INSERT INTO orders (id, account_id, client_order_id, symbol, side, type, time_in_force, quantity,
                        filled_quantity, avg_fill_price, limit_price, stop_price, status, fees)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, 'filled', $12)
    RETURNING {ORDER_COLS}
), f AS (
    INSERT INTO fills (id, order_id, account_id, symbol, side, quantity, price, fee, liquidity)
    VALUES ($13, $1, $2, $4, $5, $8, $9, $12, 'taker')
), p AS (
    INSERT INTO positions (account_id, symbol, quantity, avg_entry_price, realized_pnl)
    VALUES ($2, $4, $14, $15, $16)
    ON CONFLICT (account_id, symbol) DO UPDATE
    SET quantity = EXCLUDED.quantity, avg_entry_price = EXCLUDED.avg_entry_price,
        realized_pnl = positions.realized_pnl + EXCLUDED.realized_pnl, updated_at = now()
), a AS (
    UPDATE accounts SET cash = cash + $17, fees_paid = fees_paid + $12, realized_pnl = realized_pnl + $16,
                        updated_at = now()
    WHERE id = $2
), e AS (
    INSERT INTO order_events (order_id, account_id, type, status_from, status_to, fill_id)
    VALUES ($1, $2, 'created', NULL, 'new', NULL), ($1, $2, 'accepted', 'new', 'accepted', NULL),
           ($1, $2, 'filled', 'accepted', 'filled', $13)
)
SELECT * FROM o
"""


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str
    side: str
    type: str
    quantity: Decimal
    time_in_force: str = "gtc"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    client_order_id: str | None = None


class OrderOut(msgspec.Struct):
    """Field order = ORDER_COLS, so a row converts with `OrderOut(*record)` (no per-field lookups)."""

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
    created_at: datetime
    updated_at: datetime


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        self.status, self.title, self.detail = status, title, detail


_encode = msgspec.json.Encoder().encode
_decode_order = msgspec.json.Decoder(OrderIn).decode
_pool: asyncpg.Pool | None = None
_keys: dict[str, tuple[float, Any]] = {}
_HEALTH = _encode({"status": "ok"})
_JSON = [(b"content-type", b"application/json")]


async def _principal(scope: dict) -> tuple[uuid.UUID, str]:
    key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                key = token.strip()
        elif name == b"x-api-key" and key is None:
            key = value.decode("latin-1").strip()
    if not key:
        raise Problem(401, "Missing API key")
    digest = hashlib.sha256(key.encode()).hexdigest()
    now = time.monotonic()
    hit = _keys.get(digest)
    if hit is None or hit[0] < now:
        row = await _pool.fetchrow(SQL_KEY, digest)
        if len(_keys) > 10_000:
            _keys.clear()
        _keys[digest] = hit = (now + KEY_CACHE_SECONDS, row)
    row = hit[1]
    if row is None or (row["expires_at"] is not None and row["expires_at"].timestamp() <= time.time()):
        raise Problem(401, "Invalid, expired or revoked API key")
    return row["user_id"], row["role"]


def _owner_filter(user_id: uuid.UUID, role: str) -> uuid.UUID | None:
    return None if role in ("admin", "risk_manager") else user_id


async def _list_orders(scope: dict, account_id: uuid.UUID) -> tuple[int, bytes]:
    user_id, role = await _principal(scope)
    owner = _owner_filter(user_id, role)
    qs = parse_qs(scope["query_string"].decode("latin-1"))
    try:
        limit = int(qs.get("limit", ["50"])[0])
    except ValueError:
        raise Problem(400, "Invalid limit") from None
    if not 1 <= limit <= 500:
        raise Problem(400, "limit must be between 1 and 500")
    cursor = qs.get("cursor", [None])[0]
    async with _pool.acquire() as conn:
        if cursor:
            try:
                raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
                ts_s, id_s = raw.split("|", 1)
                after = (datetime.fromisoformat(ts_s), uuid.UUID(id_s))
            except ValueError:
                raise Problem(400, "Invalid cursor") from None
            rows = await conn.fetch(SQL_LIST_AFTER, account_id, owner, limit + 1, *after)
        else:
            rows = await conn.fetch(SQL_LIST, account_id, owner, limit + 1)
        if not rows and await conn.fetchval(SQL_ACCOUNT_VISIBLE, account_id, owner) is None:
            raise Problem(404, "Account not found")
    nxt = None
    if len(rows) > limit:
        last = rows[limit - 1]
        raw = f"{last['created_at'].isoformat()}|{last['id']}".encode()
        nxt = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return 200, _encode({"items": [OrderOut(*r) for r in rows[:limit]], "next_cursor": nxt})


def _multiple_of(value: Decimal, step: Decimal) -> bool:
    return step > 0 and value % step == 0


async def _place_order(scope: dict, receive: Any, account_id: uuid.UUID) -> tuple[int, bytes]:
    user_id, role = await _principal(scope)
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        req = _decode_order(body)
    except (msgspec.ValidationError, msgspec.DecodeError, InvalidOperation) as exc:
        raise Problem(422, "Invalid order", str(exc)) from None
    if req.side not in ("buy", "sell"):
        raise Problem(422, "Invalid order", "side must be buy or sell")
    if req.type != "market":
        raise Problem(422, "Unsupported order type", "this benchmark peer only implements market orders")
    if req.time_in_force not in ("gtc", "ioc", "fok", "day"):
        raise Problem(422, "Invalid order", "unknown time_in_force")
    if req.quantity <= 0:
        raise Problem(422, "Invalid order", "quantity must be positive")
    owner = _owner_filter(user_id, role)
    async with _pool.acquire() as conn, conn.transaction():
        account = await conn.fetchrow(SQL_LOCK_ACCOUNT, account_id, owner)
        if account is None:
            raise Problem(404, "Account not found")
        st = await conn.fetchrow(SQL_STATE, account_id, req.symbol, req.client_order_id)
        if st["existing_id"] is not None:
            # Looked up under the account lock, so a racing duplicate waits and then sees the first.
            existing = await conn.fetchrow(SQL_ORDER, st["existing_id"])
            same = (existing["symbol"], existing["side"], existing["type"], existing["quantity"]) == (
                req.symbol,
                req.side,
                req.type,
                req.quantity,
            )
            if not same:
                raise Problem(409, "client_order_id reused with different order fields")
            return 200, _encode(OrderOut(*existing))
        if account["trading_state"] != "active":
            raise Problem(422, "Account is not active for trading")
        if st["status"] is None:
            raise Problem(422, "Unknown instrument")
        if st["status"] != "trading":
            raise Problem(422, "Instrument is halted")
        price = st["last_price"]
        if price is None:
            raise Problem(422, "Instrument has no last price")
        qty = req.quantity
        if not _multiple_of(qty, st["lot_size"]) or qty < st["min_quantity"]:
            raise Problem(422, "Quantity is off the lot size or below the minimum")
        notional = qty * price
        if notional < st["min_notional"]:
            raise Problem(422, "Order notional below the instrument minimum")
        fee = (notional * st["taker_fee_rate"]).quantize(FEE_QUANTUM, rounding=ROUND_HALF_EVEN)
        q0 = st["pos_qty"] if st["pos_qty"] is not None else ZERO
        avg0 = st["pos_avg"] if st["pos_avg"] is not None else ZERO
        if req.side == "buy":
            if notional + fee > account["cash"] - account["reserved_cash"]:
                raise Problem(422, "Insufficient buying power")
            cash_delta, signed = -notional - fee, qty
        else:
            if not account["allow_short"] and qty > q0:
                raise Problem(422, "Insufficient position to sell")
            cash_delta, signed = notional - fee, -qty
        q1, avg1, pnl = _average_cost(q0, avg0, signed, price)
        order = await conn.fetchrow(
            SQL_PLACE,
            uuid.uuid4(),
            account_id,
            req.client_order_id,
            req.symbol,
            req.side,
            req.type,
            req.time_in_force,
            qty,
            price,
            req.limit_price,
            req.stop_price,
            fee,
            uuid.uuid4(),
            q1,
            avg1,
            pnl,
            cash_delta,
        )
    return 201, _encode(OrderOut(*order))


def _average_cost(
    q0: Decimal, avg0: Decimal, signed: Decimal, price: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """(new quantity, new average entry, realised PnL of this fill) under average-cost accounting."""
    q1 = q0 + signed
    if q0 == 0 or (q0 > 0) == (signed > 0):
        avg = (abs(q0) * avg0 + abs(signed) * price) / abs(q1)
        if avg.as_tuple().exponent < -10:
            avg = avg.quantize(AVG_QUANTUM, rounding=ROUND_HALF_EVEN)
        return q1, avg, ZERO
    closed = min(abs(signed), abs(q0))
    pnl = (price - avg0) * closed if q0 > 0 else (avg0 - price) * closed
    if q1 == 0:
        return q1, ZERO, pnl
    return q1, (avg0 if (q1 > 0) == (q0 > 0) else price), pnl


async def _send(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*(headers or _JSON), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                _pool = await asyncpg.create_pool(DATABASE_URL, min_size=2, max_size=POOL_SIZE)
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    try:
        if path == "/health":
            await _send(send, 200, _HEALTH)
            return
        parts = path.strip("/").split("/")
        # api/v1/accounts/{id}/orders
        if len(parts) == 5 and parts[:3] == ["api", "v1", "accounts"] and parts[4] == "orders":
            try:
                account_id = uuid.UUID(parts[3])
            except ValueError:
                raise Problem(404, "Account not found") from None
            if method == "GET":
                status, body = await _list_orders(scope, account_id)
            elif method == "POST":
                status, body = await _place_order(scope, receive, account_id)
            else:
                raise Problem(405, "Method not allowed")
            await _send(send, status, body)
            return
        raise Problem(404, "Not found")
    except Problem as p:
        problem = {"type": "about:blank", "title": p.title, "status": p.status}
        if p.detail:
            problem["detail"] = p.detail
        await _send(send, p.status, _encode(problem), [(b"content-type", b"application/problem+json")])
