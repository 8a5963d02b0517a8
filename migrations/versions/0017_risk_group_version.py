"""risk group version: the optimistic group guard of order placement

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 12:00:00

`risk_groups.version` moves with every order placed under the group's limits (and every change of its
limits, members or sub-groups' members). Placement reads it with the group's sums and lets its write
apply only if it is unchanged, so a group order needs no lock and no transaction of its own unless
another order of the group committed in between (app/domain/risk/group_pretrade.py). Not indexed: a
bump stays a HOT update.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "risk_groups", sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("risk_groups", "version")
