"""market clock sessions, replays and simulations

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 06:00:00

Exchanges gain the session's opening time and trading weekdays (the market clock); `market_feeds` holds
replays and simulations (the job's state), `market_feed_symbols` the one-feed-per-symbol claims.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "exchanges", sa.Column("session_open", sa.Time(), server_default=sa.text("'09:30'"), nullable=False)
    )
    op.add_column(
        "exchanges",
        sa.Column(
            "session_days",
            postgresql.ARRAY(sa.SmallInteger()),
            server_default=sa.text("'{1,2,3,4,5}'"),
            nullable=False,
        ),
    )
    # The demo exchange trades around the clock (its session rolls over at its close).
    op.execute(
        "UPDATE exchanges SET session_open = session_close, session_days = '{1,2,3,4,5,6,7}' WHERE code = 'DEMOX'"
    )
    op.create_table(
        "market_feeds",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=True),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("symbols", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("progress", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_prices", sa.BigInteger(), nullable=True),
        sa.Column("prices_fed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("bars_fed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("fills", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("market_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("job_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_market_feeds_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_feeds")),
    )
    op.create_index(
        "ix_market_feeds_kind_created",
        "market_feeds",
        ["kind", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_table(
        "market_feed_symbols",
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("feed_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feed_id"],
            ["market_feeds.id"],
            name=op.f("fk_market_feed_symbols_feed_id_market_feeds"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["symbol"],
            ["instruments.symbol"],
            name=op.f("fk_market_feed_symbols_symbol_instruments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_market_feed_symbols")),
    )
    op.create_index(op.f("ix_market_feed_symbols_feed_id"), "market_feed_symbols", ["feed_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_market_feed_symbols_feed_id"), table_name="market_feed_symbols")
    op.drop_table("market_feed_symbols")
    op.drop_index("ix_market_feeds_kind_created", table_name="market_feeds")
    op.drop_table("market_feeds")
    op.drop_column("exchanges", "session_days")
    op.drop_column("exchanges", "session_open")
