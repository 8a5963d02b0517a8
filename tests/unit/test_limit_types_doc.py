"""docs/TRADING.md's table of risk limit types is the code's list, with the code's auto_reduce_only set."""

from __future__ import annotations

from pathlib import Path

from app.domain.risk.checks import LIMIT_TYPES, STOP_TYPES, SYMBOL_SCOPABLE_TYPES


def _rows() -> list[list[str]]:
    text = Path(__file__).resolve().parents[2].joinpath("docs", "TRADING.md").read_text()
    table = text.split("<!-- limit-types:start -->")[1].split("<!-- limit-types:end -->")[0]
    lines = table.strip().splitlines()[2:]
    return [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in lines]


def test_every_limit_type_is_documented_in_order():
    assert [row[0] for row in _rows()] == list(LIMIT_TYPES)


def test_documented_scope_and_auto_reduce_only_match_the_code():
    for name, _measures, _unit, scoped, _blocks, auto in _rows():
        assert (scoped == "yes") == (name in SYMBOL_SCOPABLE_TYPES), name
        assert (auto == "yes") == (name in STOP_TYPES), name
