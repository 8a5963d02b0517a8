"""The security audit trail: one row per security-relevant event, never updated or deleted by the app."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Identity, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.lib.db import Base, created_at_col


class AuditEvent(Base):
    __tablename__ = "audit_events"

    # An identity column orders events of the same microsecond and keeps the cursor small.
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    occurred_at: Mapped[datetime] = created_at_col()
    type: Mapped[str] = mapped_column(String(64))
    # Who acted (None: an unauthenticated caller or a job) and whose user/key/account was acted on. No
    # foreign keys: the trail outlives the rows it talks about.
    actor_id: Mapped[uuid.UUID | None]
    subject_user_id: Mapped[uuid.UUID | None]
    account_id: Mapped[uuid.UUID | None]
    target: Mapped[str | None] = mapped_column(String(200))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        Index("ix_audit_events_occurred_at_id", "occurred_at", "id"),
        Index("ix_audit_events_type_occurred_at", "type", "occurred_at"),
        Index("ix_audit_events_actor_id_occurred_at", "actor_id", "occurred_at"),
        Index("ix_audit_events_subject_user_id_occurred_at", "subject_user_id", "occurred_at"),
    )
