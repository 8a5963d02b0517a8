"""The documented order state machine is the one the code enforces."""

import re
from pathlib import Path

from app.domain.trading.rules import markdown_transition_table


def test_docs_transition_table_matches_code():
    text = Path(__file__).resolve().parents[2].joinpath("docs", "TRADING.md").read_text()
    documented = text.split("<!-- transition-table:start -->")[1].split("<!-- transition-table:end -->")[0].strip()
    assert documented == markdown_transition_table().strip()


# Wording of a work log rather than of the project: who did what when belongs to git history.
_WORK_LOG = re.compile(
    r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|this|that|previous|last|next|"
    r"earlier|later|current) session\b|\bsession [0-9]+\b|\bsessions? [0-9]+[–-][0-9]+\b|"
    r"\bmachine (?-i:[A-Z])\b|"
    r"\b(?:I|we) (?:added|changed|fixed|measured|found|tried|removed|moved)\b",
    re.IGNORECASE,
)


def _project_documents() -> list[Path]:
    root = Path(__file__).resolve().parents[2]
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def test_docs_describe_the_project_not_a_work_log():
    found = []
    for path in _project_documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if match := _WORK_LOG.search(line):
                found.append(f"{path.name}:{number}: {match.group(0)!r} in {line.strip()[:100]}")
    assert not found, "work-log wording in the docs (history belongs to git):\n" + "\n".join(found)


def test_work_log_pattern_catches_diary_wording():
    for diary in ("measured in the fifth session", "on machine C", "this session's baseline", "We fixed it"):
        assert _WORK_LOG.search(diary), diary
    current_state = ("the exchange's session close", "a trading session", "SQLAlchemy session", "machine-readable")
    for current in current_state:
        assert not _WORK_LOG.search(current), current
