"""Market-data jobs: asynchronous candle loads (`POST .../candles?async=true`); the replay and simulation
jobs live in feed_jobs (both modules are listed in app/server/wiring.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from sqlalchemy import delete, func, select

from app.domain.markets.models import CandleUploadChunk
from app.domain.markets.services import load_candles_csv
from app.lib.errors import ApiError
from app.lib.jobs import job


class LoadCandlesKwargs(msgspec.Struct, forbid_unknown_fields=True):
    upload_id: str


@job("markets.load_candles", LoadCandlesKwargs, timeout=3600, retries=1, public=False)
async def load_candles_job(ctx: dict[str, Any], *, upload_id: str) -> dict[str, Any]:
    """Load a parked CSV upload into candles (all or nothing), reporting progress by bytes read."""
    engine = ctx["engine"]
    saq_job = ctx.get("job")
    upload = uuid.UUID(upload_id)
    async with engine.connect() as reader, engine.connect() as conn:
        info = (
            await reader.execute(
                select(CandleUploadChunk.symbol, CandleUploadChunk.timeframe,
                       func.sum(func.length(CandleUploadChunk.data)), func.count())
                .where(CandleUploadChunk.upload_id == upload)
                .group_by(CandleUploadChunk.symbol, CandleUploadChunk.timeframe)
            )
        ).one_or_none()
        await reader.commit()
        if info is None:
            raise ValueError(f"upload {upload_id} has no data (already loaded?)")
        symbol, timeframe, total, count = info
        done = 0
        last_report = 0.0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal done, last_report
            for seq in range(count):
                data = await reader.scalar(
                    select(CandleUploadChunk.data).where(CandleUploadChunk.upload_id == upload, CandleUploadChunk.seq == seq)
                )
                await reader.commit()
                done += len(data)
                if saq_job is not None and time.monotonic() - last_report > 0.5:
                    last_report = time.monotonic()
                    await saq_job.update(progress=round(0.95 * done / max(total, 1), 4))
                yield data

        try:
            result = await load_candles_csv(conn, symbol, timeframe, chunks())
        except ApiError as exc:
            # The upload's own fault (a bad row): kept on the job as the problem the synchronous load would
            # have answered, which the status endpoint shows (rather than the job's traceback).
            if saq_job is not None:
                body = exc.extra if isinstance(exc.extra, dict) else {}
                problem = {"detail": exc.detail, "errors": body.get("errors"), "row": body.get("row")}
                await saq_job.update(meta={**(saq_job.meta or {}), "problem": problem})
            raise
        finally:
            await reader.execute(delete(CandleUploadChunk).where(CandleUploadChunk.upload_id == upload))
            await reader.commit()
    cache = ctx.get("cache")
    if cache is not None:
        await cache.invalidate(f"candles:{symbol}", "instruments")
    if saq_job is not None:
        await saq_job.update(progress=1.0)
    return msgspec.to_builtins(result)
