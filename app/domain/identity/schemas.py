from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

Role = Literal["trader", "risk_manager", "admin", "market_data"]
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: resolved once per request by the auth middleware."""

    user_id: UUID
    role: str
    key_id: UUID
    email: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_read_all_accounts(self) -> bool:
        return self.role in ("admin", "risk_manager")


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: Role = "trader"


class UserUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Role | None = None
    is_active: bool | None = None


class UserOut(msgspec.Struct):
    id: UUID
    email: str
    role: str
    created_at: datetime
    is_active: bool = True


class UserCreated(UserOut, kw_only=True):
    api_key: str
    api_key_id: UUID


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    expires_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None  # an instant: with its UTC offset


class KeyRotate(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 86400)] = 3600


class KeyOut(msgspec.Struct):
    id: UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut, kw_only=True):
    api_key: str


class UserPage(msgspec.Struct):
    items: list[UserOut]
    next_cursor: str | None


class KeyPage(msgspec.Struct):
    items: list[KeyOut]
    next_cursor: str | None = None
