from __future__ import annotations

from datetime import datetime
from uuid import UUID

from litestar import Controller, get
from litestar.di import Provide
from litestar.params import FromQuery

from app.domain.audit import services
from app.domain.audit.schemas import AuditPage, AuditType
from app.domain.identity.guards import requires_admin
from app.lib.db import DbConn, provide_db
from app.lib.errors import Malformed
from app.lib.pagination import Cursor, Limit


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]
    guards = [requires_admin]
    dependencies = {"db": Provide(provide_db)}

    @get("/", summary="Security audit trail (admin), newest first")
    async def list_audit_events(
        self,
        db: DbConn,
        limit: Limit = 50,
        cursor: Cursor = None,
        type: FromQuery[AuditType | None] = None,  # noqa: A002  (the public query parameter name)
        user_id: FromQuery[UUID | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> AuditPage:
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise Malformed(
                    f"{name} needs a UTC offset",
                    errors=[{"field": name, "message": "RFC 3339 with offset"}],
                )
        if since is not None and until is not None and since >= until:
            raise Malformed(
                "since must be before until", errors=[{"field": "since", "message": "not before until"}]
            )
        items, nxt = await services.list_events(
            db, limit=limit, cursor=cursor, event_type=type, user_id=user_id, since=since, until=until
        )
        return AuditPage(items=items, next_cursor=nxt)
