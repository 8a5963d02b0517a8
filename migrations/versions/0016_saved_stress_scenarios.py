"""saved stress scenarios (named price scenarios run by id and daily by a job); positions by symbol

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-06 09:30:00

`risk_scenarios` keeps a stress scenario of `POST /api/v1/risk/stress` under a unique name: either
`shocks` (symbol -> fractional move) or a historical window (`historical_start`, `historical_end`).
`daily` scenarios are run over the firm by the `risk.run_saved_scenarios` job, which stores the run's
firm-level summary in `last_run` (docs/RISK.md).

`ix_positions_symbol` lets the post-trade check after a price update find the holders of that symbol
without reading every position (docs/BENCHMARKS.md, "Risk at desk scale"). `symbol` never changes on a
position, so updates of a position stay HOT.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_scenarios",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("shocks", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("historical_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("historical_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("daily", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.CheckConstraint(
            "(shocks IS NULL) <> (historical_start IS NULL AND historical_end IS NULL) "
            "AND (historical_start IS NULL) = (historical_end IS NULL) "
            "AND (historical_end IS NULL OR historical_end > historical_start)",
            name=op.f("ck_risk_scenarios_one_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_risk_scenarios_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_scenarios")),
        sa.UniqueConstraint("name", name=op.f("uq_risk_scenarios_name")),
    )
    op.create_index(op.f("ix_positions_symbol"), "positions", ["symbol"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_positions_symbol"), table_name="positions")
    op.drop_table("risk_scenarios")
