"""risk groups: accounts belong to groups (the firm at the top) with limits on their sums

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 06:20:00

`risk_groups` is a tree (`parent_id`) with at most one firm group (`is_firm`, no parent);
`accounts.group_id` places an account in one group (and so in all its ancestors);
`accounts.group_limited` says whether any of the account's groups has an enabled limit (placement's
cue to take the group lock); `risk_group_limits` bounds the sums over a group's accounts (aggregate
gross and net exposure, per-symbol net position, daily loss, open orders), checked pre-trade with the
group row locked (docs/RISK.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_groups",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("is_firm", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("NOT is_firm OR parent_id IS NULL", name=op.f("ck_risk_groups_firm_is_top")),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["risk_groups.id"],
            name=op.f("fk_risk_groups_parent_id_risk_groups"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_risk_groups_name")),
    )
    op.create_index(
        "uq_risk_groups_firm", "risk_groups", ["is_firm"], unique=True, postgresql_where=sa.text("is_firm")
    )
    op.create_table(
        "risk_group_limits",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("group_id", sa.UUID(), nullable=False),
        sa.Column("limit_type", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=True),
        sa.Column("warn_at_pct", sa.Numeric(), server_default=sa.text("80"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["risk_groups.id"],
            name=op.f("fk_risk_group_limits_group_id_risk_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_group_limits")),
    )
    op.create_index(op.f("ix_risk_group_limits_group_id"), "risk_group_limits", ["group_id"], unique=False)
    op.add_column("accounts", sa.Column("group_id", sa.UUID(), nullable=True))
    op.add_column(
        "accounts", sa.Column("group_limited", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.create_foreign_key(
        op.f("fk_accounts_group_id_risk_groups"),
        "accounts",
        "risk_groups",
        ["group_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(op.f("ix_accounts_group_id"), "accounts", ["group_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_accounts_group_id"), table_name="accounts")
    op.drop_constraint(op.f("fk_accounts_group_id_risk_groups"), "accounts", type_="foreignkey")
    op.drop_column("accounts", "group_limited")
    op.drop_column("accounts", "group_id")
    op.drop_index(op.f("ix_risk_group_limits_group_id"), table_name="risk_group_limits")
    op.drop_table("risk_group_limits")
    op.drop_index("uq_risk_groups_firm", table_name="risk_groups", postgresql_where=sa.text("is_firm"))
    op.drop_table("risk_groups")
