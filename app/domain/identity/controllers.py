from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.openapi.spec import OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody

from app.domain.identity import services
from app.domain.identity.guards import requires_admin
from app.domain.identity.schemas import (
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyPage,
    KeyRotate,
    Principal,
    UserCreate,
    UserCreated,
    UserOut,
    UserPage,
    UserUpdate,
)
from app.lib.db import DbConn, provide_db
from app.lib.pagination import Cursor, Limit

DB = {"db": Provide(provide_db)}


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    dependencies = DB

    @post("/", guards=[requires_admin], status_code=201, summary="Create a user and their first API key")
    async def create_user(self, db: DbConn, data: JSONBody[UserCreate]) -> UserCreated:
        user, key, key_id = await services.create_user(db, data.email, data.role)
        return UserCreated(**{f: getattr(user, f) for f in user.__struct_fields__}, api_key=key, api_key_id=key_id)

    @get("/me", summary="The calling user")
    async def me(self, db: DbConn, request: Request) -> UserOut:
        principal: Principal = request.user
        return await services.get_user(db, principal.user_id)

    @patch("/{user_id:uuid}", guards=[requires_admin], summary="Change a user's role or deactivate them")
    async def update_user(
        self, db: DbConn, request: Request, user_id: FromPath[UUID], data: JSONBody[UserUpdate]
    ) -> UserOut:
        return await services.update_user(db, request.user, user_id, data)

    @get("/", guards=[requires_admin], summary="List users (admin)")
    async def list_users(
        self, db: DbConn, limit: Limit = 50, cursor: Cursor = None
    ) -> UserPage:
        items, nxt = await services.list_users(db, limit, cursor)
        return UserPage(items=items, next_cursor=nxt)


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose JSON body may be left out. Litestar marks every body `required` and, for
    `Struct | None`, documents a JSON `null` body; the handler accepts an absent body instead."""

    def __post_init__(self) -> None:
        body = self.request_body
        if isinstance(body, RequestBody):
            body.required = False
            for media in (body.content or {}).values():
                schema = media.schema
                if isinstance(schema, Schema) and schema.one_of:
                    refs = [
                        s for s in schema.one_of if not (isinstance(s, Schema) and s.type == OpenAPIType.NULL)
                    ]
                    if len(refs) == 1:
                        media.schema = refs[0]


class AuthKeyController(Controller):
    path = "/api/v1/auth/keys"
    tags = ["auth"]
    dependencies = DB

    @post("/", status_code=201, summary="Create an API key (the secret is shown once)")
    async def create_key(self, db: DbConn, request: Request, data: JSONBody[KeyCreate]) -> KeyCreated:
        cap = request.app.state.settings.api_keys_max_per_user
        user_id = request.user.user_id
        key, secret = await services.create_user_key(db, user_id, data.name, data.expires_at, cap)
        return KeyCreated(**{f: getattr(key, f) for f in key.__struct_fields__}, api_key=secret)

    @get("/", summary="List my API keys (never the secrets)")
    async def list_keys(
        self, db: DbConn, request: Request, limit: Limit = 50, cursor: Cursor = None
    ) -> KeyPage:
        items, nxt = await services.list_keys(db, request.user.user_id, limit=limit, cursor=cursor)
        return KeyPage(items=items, next_cursor=nxt)

    @delete("/{key_id:uuid}", status_code=204, summary="Revoke a key immediately")
    async def revoke_key(self, db: DbConn, request: Request, key_id: FromPath[UUID]) -> None:
        await services.revoke_key(db, request.user.user_id, key_id)

    @post(
        "/{key_id:uuid}/rotate",
        status_code=201,
        summary="Rotate: new secret; the old stays valid for grace_seconds",
        description="The body is optional (no body: `grace_seconds` 3600). A key is rotated once: "
        "rotating it again, or rotating an expired or revoked key, is 409.",
        operation_class=OptionalBodyOperation,
    )
    async def rotate_key(
        self, db: DbConn, request: Request, key_id: FromPath[UUID], data: JSONBody[KeyRotate | None] = None
    ) -> KeyCreated:
        grace = (data or KeyRotate()).grace_seconds
        key, secret = await services.rotate_key(db, request.user.user_id, key_id, grace)
        return KeyCreated(**{f: getattr(key, f) for f in key.__struct_fields__}, api_key=secret)


@get("/api/v1/auth/whoami", tags=["auth"], summary="The caller's identity from its key alone (no database round trip)")
async def whoami(request: Request) -> Principal:
    return request.user


__all__ = ["AuthKeyController", "UserController", "KeyOut"]
