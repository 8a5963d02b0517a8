"""The documented order state machine is the one the code enforces."""

from pathlib import Path

from app.domain.trading.rules import markdown_transition_table


def test_docs_transition_table_matches_code():
    text = Path(__file__).resolve().parents[2].joinpath("docs", "TRADING.md").read_text()
    documented = text.split("<!-- transition-table:start -->")[1].split("<!-- transition-table:end -->")[0].strip()
    assert documented == markdown_transition_table().strip()
