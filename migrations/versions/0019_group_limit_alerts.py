"""edge-triggered alerts on group limits

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 02:15:00

A group limit gets the alert state an account limit has (`alert_level`: none, warning, critical), and
its alerts a table of their own (`risk_group_alerts`): the post-trade checks (after a price, and the
scheduled sweep) raise one alert per crossing of a group limit's warning line or of the limit itself
(docs/RISK.md, "Group alerts").
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("risk_group_limits", sa.Column("alert_level", sa.String(length=16), nullable=True))
    op.create_table(
        "risk_group_alerts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("group_id", sa.UUID(), nullable=False),
        sa.Column("limit_id", sa.UUID(), nullable=False),
        sa.Column("limit_type", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("utilisation", sa.Numeric(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["risk_groups.id"],
            name=op.f("fk_risk_group_alerts_group_id_risk_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_group_alerts")),
    )
    op.create_index(
        "ix_risk_group_alerts_group_created",
        "risk_group_alerts",
        ["group_id", sa.literal_column("created_at DESC")],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_risk_group_alerts_group_created", table_name="risk_group_alerts")
    op.drop_table("risk_group_alerts")
    op.drop_column("risk_group_limits", "alert_level")
