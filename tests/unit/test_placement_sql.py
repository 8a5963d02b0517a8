"""Placement's statements as placement_sql.py generates them: each variant numbers its parameters without a
gap (asyncpg binds them by position) and carries exactly the parts its parameter asks for."""

from __future__ import annotations

import re

import pytest

from app.domain.risk import group_pretrade
from app.domain.trading import placement_sql as sql


def params(statement: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", statement)}


@pytest.mark.parametrize(
    ("statement", "count"),
    [(sql.WRITE_SQL, 40), (sql.GROUP_WRITE_SQL, 43), (sql.CONTINGENT_WRITE_SQL, 46), (sql.READ_SQL, 4),
     (sql.LEAN_READ_SQL, 4), (sql.READ_GROUP_SQL, 4), (sql.LEAN_READ_GROUP_SQL, 4), (sql.BOOK_SQL, 4)],
)
def test_parameters_are_numbered_without_a_gap(statement, count):
    assert params(statement) == set(range(1, count + 1))


def test_the_group_write_is_the_write_behind_the_guard():
    assert sql.GROUP_WRITE_SQL.count(group_pretrade.GUARD_HOLDS) == 2  # in `inst` and in the answer
    assert sql.GROUP_WRITE_SQL.startswith(f"\nWITH {group_pretrade.GUARD_CTE}, inst AS (")
    assert "groups_unchanged" in sql.GROUP_WRITE_SQL and "groups_unchanged" not in sql.WRITE_SQL
    assert "legs AS" not in sql.GROUP_WRITE_SQL


def test_the_contingent_write_adds_the_columns_and_the_legs_only():
    assert "legs AS" in sql.CONTINGENT_WRITE_SQL and "coalesce(e.order_id" in sql.CONTINGENT_WRITE_SQL
    assert all(column in sql.CONTINGENT_WRITE_SQL for column in sql.CONTINGENT_COLUMNS)
    assert "guard AS" not in sql.CONTINGENT_WRITE_SQL and "hwm" not in sql.WRITE_SQL
    with pytest.raises(ValueError):
        sql.write_sql(groups=True, contingent=True)


def test_the_group_reads_add_the_groups_sums_and_their_parts_to_the_reads():
    for plain, grouped in ((sql.READ_SQL, sql.READ_GROUP_SQL), (sql.LEAN_READ_SQL, sql.LEAN_READ_GROUP_SQL)):
        assert "group_figures" in grouped and "group_figures" not in plain
        assert "group_members" in grouped and "group_members" not in plain
        added = f", {group_pretrade.figures_column('$1::uuid', '$3::text')}, {group_pretrade.members_column('$1::uuid')}"
        assert grouped.replace(added, "") == plain
