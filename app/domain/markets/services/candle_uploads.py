"""Asynchronous candle uploads: the body parked in chunks for a job, and the job's status."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.markets.candles import MAX_LINE_BYTES, CandleValidationError, check_csv_header
from app.domain.markets.models import Instrument
from app.domain.markets.schemas import CandleLoadAccepted, CandleLoadStatus
from app.domain.markets.services.candle_loads import candle_error
from app.lib.db import tx
from app.lib.errors import NotFound, QueueUnavailable

UPLOAD_CHUNK = 1 << 20


def candle_load_job_key(upload_id: uuid.UUID) -> str:
    return f"candle-load:{upload_id}"


async def _csv_header_first(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks unchanged, once the first line has been checked to be the CSV header: a body that is
    not a candle CSV at all is refused at once (422) instead of by the worker after a 202."""
    head = b""
    checked = False
    async for chunk in chunks:
        if checked:
            yield chunk
            continue
        head += chunk
        if b"\n" in head or len(head) > MAX_LINE_BYTES:
            _require_csv_header(head.split(b"\n", 1)[0])
            checked = True
            yield head
    if not checked:
        _require_csv_header(head)
        yield head


def _require_csv_header(first_line: bytes) -> None:
    try:
        check_csv_header(first_line)
    except CandleValidationError as exc:
        raise candle_error(exc) from exc


async def park_candle_upload(
    conn: AsyncConnection, queue: Any, symbol: str, timeframe: str, chunks: AsyncIterator[bytes]
) -> CandleLoadAccepted:
    """Store the streamed body in 1 MiB rows and enqueue `markets.load_candles` for it."""
    chunks = _csv_header_first(chunks)
    from app.domain.markets.models import CandleUploadChunk
    from app.lib.jobs import enqueue

    if queue is None:
        raise QueueUnavailable("The job queue is not available; upload without ?async=true")
    upload_id = uuid.uuid4()
    total = 0
    async with tx(conn):
        if await conn.scalar(select(Instrument.symbol).where(Instrument.symbol == symbol)) is None:
            raise NotFound("Instrument")
        seq = 0
        buffer = bytearray()

        async def flush(data: bytes) -> None:
            nonlocal seq
            await conn.execute(
                insert(CandleUploadChunk).values(
                    upload_id=upload_id, seq=seq, symbol=symbol, timeframe=timeframe, data=data
                )
            )
            seq += 1

        async for chunk in chunks:
            buffer += chunk
            total += len(chunk)
            while len(buffer) >= UPLOAD_CHUNK:
                await flush(bytes(buffer[:UPLOAD_CHUNK]))
                del buffer[:UPLOAD_CHUNK]
        if buffer or seq == 0:
            await flush(bytes(buffer))
    key = candle_load_job_key(upload_id)
    await enqueue(queue, "markets.load_candles", {"upload_id": str(upload_id)}, key=key)
    return CandleLoadAccepted(
        upload_id=str(upload_id),
        job_key=key,
        status="queued",
        bytes=total,
        status_url=f"/api/v1/instruments/{symbol}/candles/loads/{upload_id}",
    )


async def candle_load_status(queue: Any, symbol: str, upload_id: uuid.UUID) -> CandleLoadStatus:
    if queue is None:
        raise QueueUnavailable("The job queue is not available")
    job = await queue.job(candle_load_job_key(upload_id))
    if (
        job is None
        or (job.kwargs or {}).get("upload_id") != str(upload_id)
        or job.meta.get("symbol") not in (None, symbol)
    ):
        raise NotFound("Candle load")
    status = str(job.status.value if hasattr(job.status, "value") else job.status)
    # A bad upload failed with the problem a synchronous load answers (tasks.load_candles_job); any other
    # failure is the server's, whose traceback (file paths, library frames) stays in its log and jobs API.
    problem = (job.meta or {}).get("problem") or {}
    error = problem.get("detail") or ("the load failed on the server; its log has the cause" if job.error else None)
    return CandleLoadStatus(
        upload_id=str(upload_id),
        symbol=symbol,
        status=status,
        progress=float(job.progress or 0),
        result=job.result if isinstance(job.result, dict) else None,
        error=error,
        errors=problem.get("errors"),
        row=problem.get("row"),
    )
