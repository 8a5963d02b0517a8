from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.risk.alerts import CRITICAL, WARNING, next_alert

D = Decimal
RANK = {None: 0, WARNING: 1, CRITICAL: 2}


def walk(path, warn="80", level=None):
    raised = []
    levels = []
    for pct in path:
        level, alert = next_alert(level, D(str(pct)), D(warn))
        levels.append(level)
        if alert:
            raised.append(alert)
    return raised, levels


def test_path_from_the_brief_raises_warning_critical_warning():
    raised, levels = walk([50, 85, 90, 101, 70, 85])
    assert raised == [WARNING, CRITICAL, WARNING]
    assert levels == [None, WARNING, WARNING, CRITICAL, None, WARNING]


def test_staying_high_does_not_repeat_alerts():
    raised, _ = walk([85, 85, 99.99, 100, 150, 100, 95, 120])
    assert raised == [WARNING, CRITICAL]


def test_falling_from_critical_to_above_warn_keeps_critical_without_flapping():
    raised, levels = walk([101, 95, 101, 95])
    assert raised == [CRITICAL]
    assert levels == [CRITICAL] * 4


def test_jump_straight_to_critical_raises_only_critical():
    assert walk([10, 250]) == ([CRITICAL], [None, CRITICAL])


def test_thresholds_are_inclusive():
    assert next_alert(None, D("80"), D("80")) == (WARNING, WARNING)
    assert next_alert(None, D("79.999"), D("80")) == (None, None)
    assert next_alert(WARNING, D("100"), D("80")) == (CRITICAL, CRITICAL)
    assert next_alert(WARNING, D("99.999"), D("80")) == (WARNING, None)


def test_re_arming_needs_a_value_below_warn():
    raised, _ = walk([85, 80, 81, 79.99, 81])
    assert raised == [WARNING, WARNING]


def test_warn_at_100_behaves_as_critical_only():
    assert walk([99, 100, 50, 100], warn="100")[0] == [CRITICAL, CRITICAL]


def test_unbounded_utilisation_is_critical():
    assert next_alert(None, D("Infinity"), D("80")) == (CRITICAL, CRITICAL)


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError):
        next_alert("panic", D("10"), D("80"))


@given(
    st.lists(st.decimals(min_value=0, max_value=200, places=2), max_size=50),
    st.decimals(min_value=1, max_value=100, places=1),
)
def test_an_alert_is_raised_exactly_when_the_level_goes_up(path, warn):
    level = None
    for pct in path:
        new, alert = next_alert(level, pct, warn)
        if RANK[new] > RANK[level]:
            assert alert == new
        else:
            assert alert is None
        expected = CRITICAL if pct >= 100 else (None if pct < warn else (level or WARNING))
        assert new == expected
        level = new
