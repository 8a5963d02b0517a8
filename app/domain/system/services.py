"""Health and readiness probes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.lib.paths import MIGRATIONS_DIR

_HEAD: str | None = None


def migration_head() -> str:
    global _HEAD
    if _HEAD is None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        _HEAD = ScriptDirectory.from_config(cfg).get_current_head()
    return _HEAD


async def _timed(coro) -> tuple[bool, float, str | None]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(coro, timeout=2.0)
        return True, (time.perf_counter() - started) * 1000, detail
    except Exception as exc:
        return False, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {str(exc)[:200]}"


async def check_database(engine) -> str | None:
    async with engine.connect() as conn:
        version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    if version != migration_head():
        raise RuntimeError(f"database at migration {version!r}, head is {migration_head()!r}")
    return None


async def check_kv(kv) -> str | None:
    await kv.ping()
    return None


async def check_queue(queue) -> str | None:
    if queue is None:
        raise RuntimeError("no queue configured")
    info = await queue.info()
    return None if info is not None else "no info"


async def queue_workers(queue) -> tuple[int, int]:
    info = await queue.info()
    return len(info.get("workers", {})), int(info.get("queued", 0))


async def readiness(state: Any) -> dict[str, dict[str, Any]]:
    db, cache, queue = await asyncio.gather(
        _timed(check_database(state.engine)), _timed(check_kv(state.kv)), _timed(check_queue(state.queue))
    )
    return {
        "database": {"ok": db[0], "latency_ms": round(db[1], 3), "error": db[2]},
        "cache": {"ok": cache[0], "latency_ms": round(cache[1], 3), "error": cache[2]},
        "queue": {"ok": queue[0], "latency_ms": round(queue[1], 3), "error": queue[2]},
    }
