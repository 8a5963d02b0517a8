"""Housekeeping jobs owned by the jobs area (run by the built-in schedules of migration 0002)."""

from __future__ import annotations

import time
from typing import Any

import msgspec

from app.lib.jobs import job
from app.lib.log import get_logger

log = get_logger("app.jobs.tasks")

# Outside the cache's `c:` entries, so clearing the cache keeps the rollup history.
ROLLUP_KEY = "stats:cache_rollup"
ROLLUP_TTL = 24 * 3600


@job("system.cache_stats_rollup", timeout=60)
async def cache_stats_rollup(ctx: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the cache counters, log the hit ratio since the previous snapshot, store the snapshot."""
    kv = ctx["kv"]
    stats = await ctx["cache"].stats()
    previous_raw = await kv.get(ROLLUP_KEY)
    previous = msgspec.json.decode(previous_raw) if previous_raw else None
    snapshot: dict[str, Any] = {"ts": round(time.time(), 3), **stats}
    # The lifetime ratio hides a recent drop; the ratio over the last interval is what an operator needs.
    if previous is not None and stats["hits"] >= previous["hits"] and stats["misses"] >= previous["misses"]:
        hits = stats["hits"] - previous["hits"]
        misses = stats["misses"] - previous["misses"]
        snapshot["interval_seconds"] = round(snapshot["ts"] - previous["ts"], 3)
        snapshot["interval_hits"] = hits
        snapshot["interval_misses"] = misses
        snapshot["interval_hit_ratio"] = hits / (hits + misses) if hits + misses else None
    await kv.set(ROLLUP_KEY, msgspec.json.encode(snapshot), ttl=ROLLUP_TTL)
    log.info("cache_stats_rollup", **snapshot)
    return snapshot
