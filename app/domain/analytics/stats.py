"""Shared statistical primitives (pure numpy, no I/O).

Both risk metrics (portfolio VaR) and performance analytics use the same historical VaR definition
from DOMAIN.md, so it lives here once.
"""

from __future__ import annotations

import numpy as np


def historical_var_cvar(returns: np.ndarray, level: float) -> tuple[float | None, float | None]:
    """1-period historical VaR and CVaR at confidence `level` (e.g. 0.95), as positive fractions.

    var = -percentile(r, 100*(1-level)) with numpy's default linear interpolation;
    cvar = -mean(r[r <= percentile]). Returns (None, None) when there are fewer than 2 returns.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return None, None
    cutoff = float(np.percentile(r, 100.0 * (1.0 - level)))
    tail = r[r <= cutoff]
    cvar = -float(tail.mean()) if tail.size else -cutoff
    return -cutoff, cvar
