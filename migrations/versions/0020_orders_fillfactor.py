"""orders pages keep room for updates in place (fillfactor 85)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 07:00:00

A trailing stop's hwm and stop move with every price in the trader's favour, and a replace changes
prices and quantities: neither touches an indexed column, so PostgreSQL can write the new row version in
the same page without an entry in any of the table's seven indexes (a heap-only tuple), if the page has
room. Full pages (fillfactor 100) left none: one price moving 198 trailing stops wrote 198 new versions
elsewhere and ~1,000 index entries. With 15 % of each new page kept free, 181 of them were written in
place (measured by `pg_stat_user_tables.n_tup_hot_upd` around the price of
`benchmarks/measure_contingent.py`). Fills and cancels change `status`, which the partial indexes'
predicates read, so they still write index entries.

The setting applies to pages written from now on (no rewrite, a brief SHARE UPDATE EXCLUSIVE lock), so
it is an expand step (docs/DEPLOYMENT.md, "Migrations"); existing pages fill to 85 % as they are
rewritten (VACUUM FULL or pg_repack would apply it at once). Cost: the orders heap grows ~15 %.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders SET (fillfactor = 85)")


def downgrade() -> None:
    op.execute("ALTER TABLE orders RESET (fillfactor)")
