"""Demo data for `make run`: an admin key, a demo exchange, instruments and synthetic candles."""

from __future__ import annotations

import secrets
from pathlib import Path

from app.lib.db import create_engine
from app.lib.log import get_logger
from app.lib.settings import Settings

log = get_logger("app.seed")


def _demo_key_file(settings: Settings) -> Path:
    return settings.data_dir / "demo-admin-key"


async def seed_demo(settings: Settings) -> str:
    """Idempotent: re-running keeps the same admin key and does not duplicate data."""
    from app.domain.identity.services import ensure_admin_key

    key = settings.admin_api_key
    key_file = _demo_key_file(settings)
    if key is None:
        if key_file.exists():
            key = key_file.read_text().strip()
        else:
            key = "td_" + secrets.token_urlsafe(32)
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(key + "\n")
            key_file.chmod(0o600)
    engine = create_engine(settings)
    try:
        await ensure_admin_key(engine, key)
        from app.domain.markets.seed import seed_markets, start_demo_simulation

        await seed_markets(engine)
        if settings.demo_simulation:
            feed_id = await start_demo_simulation(engine, settings, key)
            log.info("demo_simulation_started", simulation_id=feed_id)
    finally:
        await engine.dispose()
    return key
