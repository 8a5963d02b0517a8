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
    [(sql.WRITE_SQL, 40), (sql.GROUP_WRITE_SQL, 46), (sql.CONTINGENT_WRITE_SQL, 46), (sql.READ_SQL, 4),
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


def _bound(statement: str, cte: str) -> dict[int, str]:
    """The `$n` a CTE's INSERT ... SELECT or UPDATE ... SET ... WHERE binds to each column, by column name
    (`xmin`, the row version, as `version`)."""
    body = statement[statement.index(f"{cte} AS (") :]
    body = body[: body.index("\n)")]
    if "UPDATE" in body[:60]:
        return {int(n): "version" if column == "xmin" else column
                for column, n in re.findall(r"(\w+) = \$(\d+)", body)}
    insert = re.search(r"INSERT INTO \w+ \(([^)]*)\)\s*SELECT (.*?) FROM ", body, re.S)
    assert insert is not None, cte
    columns = [c.strip() for c in insert.group(1).split(",")]
    values = [v.strip() for v in insert.group(2).split(",")]
    return {int(v[1:]): c for c, v in zip(columns, values, strict=True) if re.fullmatch(r"\$\d+", v)}


def test_the_write_parameters_are_named_for_the_columns_they_fill():
    fields = sql.WriteParams.__struct_fields__
    assert len(fields) == 40 and params(sql.WRITE_SQL) == set(range(1, len(fields) + 1))
    prefixes = {"new_order": "order_", "new_fill": "fill_", "position": "position_", "account": "account_"}
    checked = 0
    for cte, prefix in prefixes.items():
        for n, column in _bound(sql.WRITE_SQL, cte).items():
            if column in ("created_at", "updated_at", "ts"):
                assert fields[n - 1] == "now"
                continue
            assert fields[n - 1] in (column, prefix + column), (cte, n, column, fields[n - 1])
            checked += 1
    assert checked >= 30  # the order's, the fill's, the position's and the account's columns
