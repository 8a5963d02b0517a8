"""Edge-triggered risk alerts with hysteresis (pure).

A limit's alert state is None, "warning" or "critical". An alert is raised only when the state moves up
(None -> warning at `warn_at_pct`, anything -> critical at 100%), never on every check while it stays
high. The state re-arms (back to None) only once utilisation falls below `warn_at_pct`; a fall from
critical to between warn and 100 keeps "critical" without a new alert, so a value hovering around 100%
does not flap. Jumping straight from below the warning level to >= 100% raises only "critical".
"""

from __future__ import annotations

from decimal import Decimal

WARNING = "warning"
CRITICAL = "critical"
_LEVELS = (None, WARNING, CRITICAL)
_CRITICAL_PCT = Decimal(100)


def next_alert(
    level: str | None, utilisation_pct: Decimal, warn_at_pct: Decimal
) -> tuple[str | None, str | None]:
    """(new level, severity of the alert to raise now or None) after observing `utilisation_pct`."""
    if level not in _LEVELS:
        raise ValueError(f"unknown alert level {level!r}")
    if utilisation_pct < warn_at_pct and utilisation_pct < _CRITICAL_PCT:
        return None, None
    if utilisation_pct >= _CRITICAL_PCT:
        return CRITICAL, (None if level == CRITICAL else CRITICAL)
    if level is None:
        return WARNING, WARNING
    return level, None
