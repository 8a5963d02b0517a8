"""per-account event sequence: the durable log behind the streams and the activities list

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 06:10:00

Every order event gets `seq`, 1, 2, 3, ... per account with no gaps, taken from `accounts.event_seq` in
the same statement or transaction that writes the event (the account row is updated or locked by every
writer already, so the counter costs no extra lock and seq order is commit order). The unique index
serves resume and the activities list (`account_id, seq > n ORDER BY seq`) and makes a duplicate seq
impossible.

`order_state` is the full Order object after the event and `position_qty` the position after a fill:
a replayed `trade_update` is then a copy of the row, exactly what was published live. Events written
before this revision have neither (NULL); they are numbered here in id order (the order they were
written in per account, since each writer held the account row).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "accounts", sa.Column("event_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("order_events", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column(
        "order_events", sa.Column("order_state", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column("order_events", sa.Column("position_qty", sa.Numeric(), nullable=True))
    op.execute(
        """
        UPDATE order_events e SET seq = n.seq
          FROM (SELECT id, row_number() OVER (PARTITION BY account_id ORDER BY id) AS seq FROM order_events) n
         WHERE n.id = e.id
        """
    )
    op.execute(
        """
        UPDATE accounts a SET event_seq = m.seq
          FROM (SELECT account_id, max(seq) AS seq FROM order_events GROUP BY account_id) m
         WHERE m.account_id = a.id
        """
    )
    # Expand only (docs/DEPLOYMENT.md, "Migrations"): the previous release, still running during a rolling
    # deploy, writes events without a seq. Those rows stay out of the stream log (they bump no counter, so
    # the numbering of the new release's events has no gap); NOT NULL comes in a later contract migration.
    op.create_index("uq_order_events_account_seq", "order_events", ["account_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_order_events_account_seq", table_name="order_events")
    op.drop_column("order_events", "position_qty")
    op.drop_column("order_events", "order_state")
    op.drop_column("order_events", "seq")
    op.drop_column("accounts", "event_seq")
