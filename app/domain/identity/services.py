"""Users and API keys. Keys are random, shown once and stored only as sha256."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ARRAY, ColumnElement, Uuid, any_, cast, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.domain.audit.services import record as audit
from app.domain.identity.models import ApiKey, User
from app.domain.identity.schemas import KeyOut, Principal, UserOut, UserUpdate
from app.lib.db import driver_connection, tx, utcnow
from app.lib.errors import AlreadyExists, Conflict, Invalid, NotFound
from app.lib.pagination import decode_cursor, encode_cursor, newest_first

KEY_PREFIX = "td_"
ROLES = ("trader", "risk_manager", "admin", "market_data")


def new_key() -> str:
    # 32 random bytes = 256 bits of entropy, url-safe.
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:10] if key.startswith(KEY_PREFIX) else "bootstrap"


_USER_COLS = (User.id, User.email, User.role, User.created_at, User.is_active)
_KEY_COLS = (ApiKey.id, ApiKey.name, ApiKey.prefix, ApiKey.created_at, ApiKey.last_used_at, ApiKey.expires_at, ApiKey.revoked_at)


async def create_user(conn: AsyncConnection, email: str, role: str) -> tuple[UserOut, str, uuid.UUID]:
    """Create a user and their first key; returns (user, plaintext key, key id). 409 on a taken email."""
    async with tx(conn):
        taken = await conn.scalar(select(User.id).where(func.lower(User.email) == email.lower()))
        if taken is not None:
            raise AlreadyExists("A user with this email already exists")
        try:
            row = (await conn.execute(insert(User).values(email=email, role=role).returning(*_USER_COLS))).one()
        except IntegrityError as exc:
            raise AlreadyExists("A user with this email already exists") from exc
        key = new_key()
        key_id = await conn.scalar(
            insert(ApiKey)
            .values(user_id=row.id, name="default", prefix=display_prefix(key), key_hash=hash_key(key))
            .returning(ApiKey.id)
        )
    return UserOut(**row._mapping), key, key_id


async def list_users(conn: AsyncConnection, limit: int, cursor: str | None) -> tuple[list[UserOut], str | None]:
    stmt = select(*_USER_COLS).order_by(User.created_at.desc(), User.id.desc()).limit(limit + 1)
    if cursor:
        ts, last_id = decode_cursor(cursor)
        stmt = stmt.where((User.created_at, User.id) < (ts, last_id))  # type: ignore[operator]
    rows = (await conn.execute(stmt)).all()
    items = [UserOut(**r._mapping) for r in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return items, nxt


async def get_user(conn: AsyncConnection, user_id: uuid.UUID) -> UserOut:
    # A single-row read in autocommit on the driver: no BEGIN/ROLLBACK round trips around it.
    apg = await driver_connection(conn)
    row = await apg.fetchrow("SELECT id, email, role, created_at, is_active FROM users WHERE id = $1", user_id)
    if row is None:
        raise NotFound("User")
    return UserOut(*row)


async def update_user(
    conn: AsyncConnection, actor: Principal, user_id: uuid.UUID, data: UserUpdate
) -> UserOut:
    """Change a user's role or (de)activate them, audited. An admin cannot change themselves, so the last
    admin can never demote or lock out themselves by mistake."""
    if data.role is None and data.is_active is None:
        raise Invalid("Nothing to change: give role and/or is_active", "role")
    if user_id == actor.user_id:
        raise Conflict("Admins cannot change their own role or status")
    async with tx(conn):
        locked = select(User.role, User.is_active).where(User.id == user_id).with_for_update()
        old = (await conn.execute(locked)).one_or_none()
        if old is None:
            raise NotFound("User")
        changes = {k: v for k, v in (("role", data.role), ("is_active", data.is_active)) if v is not None}
        changed = update(User).where(User.id == user_id).values(**changes).returning(*_USER_COLS)
        row = (await conn.execute(changed)).one()
        if data.role is not None and data.role != old.role:
            details = {"from": old.role, "to": data.role}
            await audit(conn, "user.role_changed", subject_user_id=user_id, details=details)
        if data.is_active is not None and data.is_active != old.is_active:
            status_event = "user.activated" if data.is_active else "user.deactivated"
            await audit(conn, status_event, subject_user_id=user_id)
    KEY_CACHE.clear()  # cached principals carry the role
    return UserOut(**row._mapping)


async def create_key(
    conn: AsyncConnection, user_id: uuid.UUID, name: str, expires_at: datetime | None, rotated_from: uuid.UUID | None = None
) -> tuple[KeyOut, str]:
    key = new_key()
    row = (
        await conn.execute(
            insert(ApiKey)
            .values(
                user_id=user_id,
                name=name,
                prefix=display_prefix(key),
                key_hash=hash_key(key),
                expires_at=expires_at,
                rotated_from=rotated_from,
            )
            .returning(*_KEY_COLS)
        )
    ).one()
    if rotated_from is None:
        await audit(conn, "key.created", subject_user_id=user_id, target=str(row.id), details={"name": name})
    return KeyOut(**row._mapping), key


def _live(now: datetime) -> ColumnElement[bool]:
    return ApiKey.revoked_at.is_(None) & (ApiKey.expires_at.is_(None) | (ApiKey.expires_at > now))


async def lock_user(conn: AsyncConnection, user_id: uuid.UUID) -> None:
    """Serialise one user's submissions that a per-user cap counts (FOR NO KEY UPDATE: inserts of rows
    that reference the user, which take KEY SHARE, still pass)."""
    await conn.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


async def create_user_key(
    conn: AsyncConnection, user_id: uuid.UUID, name: str, expires_at: datetime | None, max_live_keys: int
) -> tuple[KeyOut, str]:
    """A new key for the caller: 422 when it would be born expired, 409 past the live-key cap (each key
    is its own credential; without a cap a user could mint keys without end)."""
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise Invalid("expires_at must be in the future", "expires_at")
    async with tx(conn):
        await lock_user(conn, user_id)
        live = await conn.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id, _live(now))
        )
        if live >= max_live_keys:
            raise Conflict(
                f"A user may hold at most {max_live_keys} live API keys; revoke one first",
                slug="too-many-api-keys",
                limit=max_live_keys,
            )
        return await create_key(conn, user_id, name, expires_at)


async def list_keys(
    conn: AsyncConnection, user_id: uuid.UUID, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[KeyOut], str | None]:
    """The user's keys, revoked ones included, newest first, a page at a time."""
    stmt = select(*_KEY_COLS).where(ApiKey.user_id == user_id)
    return await newest_first(
        conn, stmt, ApiKey.created_at, ApiKey.id, lambda r: KeyOut(**r._mapping), limit=limit, cursor=cursor
    )


async def revoke_key(conn: AsyncConnection, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    async with tx(conn):
        result = await conn.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.user_id == user_id)
            .values(revoked_at=func.coalesce(ApiKey.revoked_at, func.now()))
        )
        if result.rowcount:
            await audit(conn, "key.revoked", subject_user_id=user_id, target=str(key_id))
    if result.rowcount == 0:
        raise NotFound("API key")
    KEY_CACHE.clear()


async def rotate_key(
    conn: AsyncConnection, user_id: uuid.UUID, key_id: uuid.UUID, grace_seconds: int
) -> tuple[KeyOut, str]:
    """Issue the successor of a live key; the old one stays valid for the grace period.

    A key has at most one successor: a second rotation (a client retrying) is 409 instead of a second new
    key that would inherit the first rotation's grace expiry. Concurrent rotations of one key queue on its
    row lock, so exactly one of them wins. An expired key is refused: its successor would be born dead.
    """
    async with tx(conn):
        old = (
            await conn.execute(
                select(ApiKey.name, ApiKey.expires_at, ApiKey.revoked_at)
                .where(ApiKey.id == key_id, ApiKey.user_id == user_id)
                .with_for_update()
            )
        ).one_or_none()
        if old is None:
            raise NotFound("API key")
        if old.revoked_at is not None:
            raise Conflict("API key is revoked")
        now = utcnow()
        if old.expires_at is not None and old.expires_at <= now:
            raise Conflict("API key has expired; create a new key instead")
        successor = await conn.scalar(select(ApiKey.id).where(ApiKey.rotated_from == key_id).limit(1))
        if successor is not None:
            raise Conflict("API key was already rotated; use its successor", successor_id=str(successor))
        grace_end = now + timedelta(seconds=grace_seconds)
        # The old key stays valid for the grace period (never longer than it already would have).
        new_expiry = grace_end if old.expires_at is None else min(old.expires_at, grace_end)
        await conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(expires_at=new_expiry))
        created = await create_key(conn, user_id, old.name, old.expires_at, rotated_from=key_id)
        details = {"new_key_id": str(created[0].id), "old_key_valid_until": new_expiry.isoformat()}
        await audit(conn, "key.rotated", subject_user_id=user_id, target=str(key_id), details=details)
    KEY_CACHE.clear()
    return created


AdminKeyAction = Literal["unchanged", "created", "restored"]


async def ensure_admin_key(
    engine: AsyncEngine, key: str, email: str = "admin@tradedesk.local"
) -> AdminKeyAction:
    """Idempotent bootstrap of the admin that authenticates with exactly `key`.

    The configured key is the operator's way back in, so start-up makes it work whatever happened to it
    through the API: a revoked or expired bootstrap key is reinstated, and its user made an active admin
    again. Returns what it did (the caller logs it).
    """
    digest = hash_key(key)
    async with engine.begin() as conn:
        # Serialise concurrent start-ups (several API processes) on one advisory lock.
        await conn.execute(select(func.pg_advisory_xact_lock(7_305_001)))
        found = (
            await conn.execute(
                select(ApiKey.id, ApiKey.user_id, ApiKey.revoked_at, ApiKey.expires_at, User.role)
                .add_columns(User.is_active)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == digest)
            )
        ).one_or_none()
        if found is not None:
            now = utcnow()
            usable = found.revoked_at is None and (found.expires_at is None or found.expires_at > now)
            if usable and found.role == "admin" and found.is_active:
                return "unchanged"
            await conn.execute(
                update(ApiKey).where(ApiKey.id == found.id).values(revoked_at=None, expires_at=None)
            )
            await conn.execute(
                update(User).where(User.id == found.user_id).values(role="admin", is_active=True)
            )
            KEY_CACHE.clear()
            return "restored"
        user_id = await conn.scalar(select(User.id).where(func.lower(User.email) == email))
        if user_id is None:
            user_id = await conn.scalar(insert(User).values(email=email, role="admin").returning(User.id))
        await conn.execute(
            insert(ApiKey).values(user_id=user_id, name="bootstrap", prefix=display_prefix(key), key_hash=digest)
        )
    return "created"


@dataclass(slots=True)
class _CachedKey:
    principal: Principal | None
    expires_at: datetime | None
    valid_until: float


class KeyCache:
    """Per-process memo of verified keys for at most `ttl` seconds.

    Bounds the staleness of a revocation to `ttl` (1 s by default) while sparing the database a lookup
    on most requests of a busy client.
    """

    def __init__(self, ttl: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: dict[str, _CachedKey] = {}

    def get(self, digest: str) -> _CachedKey | None:
        item = self._items.get(digest)
        if item is None or item.valid_until < time.monotonic():
            return None
        return item

    def put(self, digest: str, principal: Principal | None, expires_at: datetime | None) -> None:
        if len(self._items) >= self.max_entries:
            self._items.clear()
        self._items[digest] = _CachedKey(principal, expires_at, time.monotonic() + self.ttl)

    def clear(self) -> None:
        self._items.clear()


KEY_CACHE = KeyCache()


_LOOKUPS: dict[str, asyncio.Future[Principal | None]] = {}


async def authenticate(engine: AsyncEngine, presented: str) -> Principal | None:
    """Resolve a presented key. Concurrent requests with the same uncached key share one lookup, so a
    burst from a bot on a cold process does not queue N identical queries and row updates."""
    digest = hash_key(presented)
    if KEY_CACHE.get(digest) is None:
        pending = _LOOKUPS.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        _LOOKUPS[digest] = future
        try:
            result = await _authenticate(engine, digest)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            _LOOKUPS.pop(digest, None)
    return await _authenticate(engine, digest)


async def live_principals(engine: AsyncEngine, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Principal]:
    """The principal each key of `key_ids` stands for now, for the keys still live (not revoked, not
    expired, their user active), read from the database, not the cache: what an open stream, authenticated
    once when it connected, is checked against again (a revocation, a deactivation or a role change since
    then applies to it too)."""
    if not key_ids:
        return {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(ApiKey.id, ApiKey.user_id, User.role, User.email)
            .join(User, User.id == ApiKey.user_id)
            # one array parameter, however many connections (an IN list would be a parameter per key)
            .where(ApiKey.id == any_(cast(list(key_ids), ARRAY(Uuid))), _live(utcnow()), User.is_active)
        )
        return {r.id: Principal(user_id=r.user_id, role=r.role, key_id=r.id, email=r.email) for r in rows}


async def authenticate_digest(engine: AsyncEngine, digest: str) -> Principal | None:
    """Resolve a key by its stored digest (a desk session keeps the digest, never the key itself); the
    same cache and the same revocation and expiry rules as a presented key."""
    return await _authenticate(engine, digest)


async def _authenticate(engine: AsyncEngine, digest: str) -> Principal | None:
    cached = KEY_CACHE.get(digest)
    now = utcnow()
    if cached is None:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(ApiKey.id, ApiKey.user_id, ApiKey.expires_at, ApiKey.revoked_at, ApiKey.key_hash, User.role, User.email, User.is_active, ApiKey.last_used_at)
                    .join(User, User.id == ApiKey.user_id)
                    .where(ApiKey.key_hash == digest)
                )
            ).one_or_none()
            if row is None or row.revoked_at is not None or not row.is_active or not hmac.compare_digest(row.key_hash, digest):
                KEY_CACHE.put(digest, None, None)
                return None
            principal = Principal(user_id=row.user_id, role=row.role, key_id=row.id, email=row.email)
            KEY_CACHE.put(digest, principal, row.expires_at)
            # last_used_at is informational: refresh it at most once a minute per key.
            if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
                await conn.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=func.now()))
                await conn.commit()
            cached = KEY_CACHE.get(digest)
            if cached is None:
                return principal if row.expires_at is None or row.expires_at > now else None
    if cached.principal is None:
        return None
    if cached.expires_at is not None and cached.expires_at <= now:
        return None
    return cached.principal
